import Foundation
import Testing
@testable import SSDPipeline

struct PNGEncoderTests {
    static func randomImage(_ w: Int, _ h: Int, alpha: Bool, seed: UInt64) throws -> RGBImage {
        var rng = PNGTestRNG(seed: seed)
        return try RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) },
                            alpha: alpha ? (0..<(w * h)).map { _ in UInt8.random(in: 0...255, using: &rng) } : nil)
    }

    /// A smooth image, as a generated picture mostly is.
    static func gradient(_ w: Int, _ h: Int) throws -> RGBImage {
        var p: [UInt8] = []
        for y in 0..<h {
            for x in 0..<w { p += [UInt8(x * 255 / max(w - 1, 1)), UInt8(y * 255 / max(h - 1, 1)), UInt8((x + y) / 2 & 0xFF)] }
        }
        return try RGBImage(width: w, height: h, pixels: p)
    }

    static func testImages() throws -> [(String, RGBImage, [(String, String)])] {
        [
            ("one_pixel", try randomImage(1, 1, alpha: false, seed: 1), []),
            ("noise_7x5", try randomImage(7, 5, alpha: false, seed: 2), [("Comment", "noise")]),
            ("noise_rgba_33x17", try randomImage(33, 17, alpha: true, seed: 3), []),
            ("gradient_96x64", try gradient(96, 64),
             [("parameters", "a photo of an astronaut riding a horse\nNegative prompt: blurry\nSteps: 50, Sampler: Euler, CFG scale: 9, Seed: 42, Size: 96x64, Model: SSD-1B")]),
            ("unicode_text", try gradient(16, 8), [("parameters", "un chat sur la lune ☾, 猫"), ("Title", "Latin-1: café")]),
        ]
    }

    /// Our encoder's output decodes bit-exact through our decoder, with its text chunks.
    @Test func roundTripsThroughTheDecoder() throws {
        for (name, image, texts) in try Self.testImages() {
            let png = image.pngData(textChunks: texts)
            #expect(try RGBImage(pngData: png) == image, "\(name)")
            let read = try RGBImage.pngTextChunks(png)
            #expect(read.map(\.0) == texts.map(\.0) && read.map(\.1) == texts.map(\.1), "\(name)")
        }
    }

    @Test func textChunkKinds() throws {
        let image = try Self.gradient(4, 4)
        let png = image.pngData(textChunks: [("parameters", "plain"), ("parameters", "ünïcode ☃"), ("  bad\u{1}  key  ", "x")])
        #expect(pngChunk(png, "tEXt") == Array("parameters".utf8) + [0] + Array("plain".utf8))
        #expect(pngChunk(png, "iTXt") == Array("parameters".utf8) + [0, 0, 0, 0, 0] + Array("ünïcode ☃".utf8))
        #expect(try RGBImage.pngTextChunks(png).last.map { [$0.0, $0.1] } == ["bad_ key", "x"])
        #expect(PNGChunk.validKeyword(String(repeating: "k", count: 100)).count == 79)
        #expect(PNGChunk.validKeyword("  ") == Array("Comment".utf8))
    }

    /// The zlib stream inflates back through our inflater, for inputs that exercise each block kind,
    /// overlapping copies (distance 1), maximal matches and the 65535-byte stored-block limit.
    @Test func zlibRoundTrips() throws {
        var rng = PNGTestRNG(seed: 5)
        let noise = (0..<150_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let text = Array(String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 300).utf8)
        let inputs: [[UInt8]] = [
            [], [42], [1, 2], [UInt8](repeating: 0, count: 100_000), noise, text,
            (0..<70_000).map { UInt8(truncatingIfNeeded: $0 % 251) }, Array(noise.prefix(3000)) + text + Array(noise.prefix(3000)),
        ]
        for input in inputs {
            let z = Zlib.compress(input)
            #expect(try Zlib.decompress(z, limit: input.count) == input, "input of \(input.count) bytes")
        }
        // Noise is stored (5 bytes of framing per block), repetition compresses hugely.
        #expect(Zlib.compress(noise).count < noise.count + noise.count / 1000)
        #expect(Zlib.compress([UInt8](repeating: 0, count: 100_000)).count < 200)
        #expect(Zlib.compress(text).count < 200)
    }

    /// A smooth gradient compresses to a small fraction of its raw size, with dynamic Huffman blocks.
    @Test func compressionActuallyCompresses() throws {
        let image = try Self.gradient(256, 256)
        let png = image.pngData()
        let raw = 256 * (256 * 3 + 1)
        #expect(png.count * 20 < raw, "\(png.count) bytes for \(raw) raw")
        let idat = try #require(pngChunk(png, "IDAT"))
        #expect((idat[2] >> 1) & 3 == 2)  // first block: dynamic Huffman
    }

    /// The per-row filter choice follows the minimum-sum-of-absolute-differences heuristic.
    @Test func filterChoicePerRow() throws {
        let w = 32
        // Row 0: a horizontal ramp (Sub gives all 8s); rows 1–3: the same ramp (Up gives zeros).
        var p: [UInt8] = []
        for _ in 0..<4 { for x in 0..<w { for _ in 0..<3 { p.append(UInt8(x * 8)) } } }
        let png = try RGBImage(width: w, height: 4, pixels: p).pngData()
        let raw = try Zlib.decompress(try #require(pngChunk(png, "IDAT")), limit: 4 * (3 * w + 1))
        #expect((0..<4).map { raw[$0 * (3 * w + 1)] } == [1, 2, 2, 2])
    }

    @Test func rejectsInconsistentImages() {
        #expect(throws: ImageError.invalidImage("5 pixel bytes do not make a 2×1 RGB image")) { try RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 4, 5]) }
        #expect(throws: ImageError.invalidImage("size 0×1 is not positive")) { try RGBImage(width: 0, height: 1, pixels: []) }
        #expect(throws: ImageError.invalidImage("1 alpha bytes for 2 pixels")) { try RGBImage(width: 2, height: 1, pixels: [UInt8](repeating: 0, count: 6), alpha: [0]) }
    }

    /// With SSD_PNG_EXPORT_DIR set, writes the encoded test images for
    /// `python Scripts/make_fixtures.py png --check DIR` (PIL) and by-hand checks with libpng.
    @Test func exportForIndependentDecoders() throws {
        guard let dir = ProcessInfo.processInfo.environment["SSD_PNG_EXPORT_DIR"] else { return }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var manifest: [[String: Any]] = []
        var images = try Self.testImages()
        images.append(("gradient_512x512", try Self.gradient(512, 512), []))
        images.append(("noise_rgba_300x200", try Self.randomImage(300, 200, alpha: true, seed: 9), []))
        for (name, image, texts) in images {
            try Data(image.pngData(textChunks: texts)).write(to: URL(fileURLWithPath: "\(dir)/\(name).png"))
            try Data(image.pixels + (image.alpha ?? [])).write(to: URL(fileURLWithPath: "\(dir)/\(name).rgb"))
            manifest.append(["name": name, "width": image.width, "height": image.height, "alpha": image.alpha != nil,
                             "text": Dictionary(texts, uniquingKeysWith: { $1 })])
        }
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: "\(dir)/manifest.json"))
    }
}
