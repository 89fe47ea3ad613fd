import Foundation
import Testing
@testable import SSDPipeline

/// Tests/Fixtures/png, made by `Scripts/make_fixtures.py png` (Pillow and an independent writer).
let pngFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/png")

/// Assembles a PNG from chunks (CRCs computed).
func makePNG(_ chunks: [(String, [UInt8])]) -> [UInt8] {
    var out = PNGDecoder.signature
    for (type, data) in chunks { PNGChunk.append(type, data, to: &out) }
    return out
}

func ihdr(width: Int, height: Int, depth: UInt8 = 8, colorType: UInt8 = 2, interlace: UInt8 = 0) -> (String, [UInt8]) {
    var d: [UInt8] = []
    d.appendBigEndian(UInt32(width))
    d.appendBigEndian(UInt32(height))
    return ("IHDR", d + [depth, colorType, 0, 0, interlace])
}

/// The error decoding `bytes` gives (nil when it decodes).
func pngError(_ bytes: [UInt8]) -> ImageError? {
    do {
        _ = try RGBImage(pngData: bytes)
        return nil
    } catch {
        return error
    }
}

/// The data of the first chunk of that type.
func pngChunk(_ png: [UInt8], _ type: String) -> [UInt8]? {
    var found: [UInt8]?
    try? PNGDecoder.forEachChunk(png) { (t, body) throws(ImageError) in
        if t == type { found = Array(body); return false }
        return true
    }
    return found
}

/// SplitMix64, seeded, so that randomised tests repeat exactly.
struct PNGTestRNG: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct PNGDecoderTests {
    struct Fixture: Decodable {
        let name: String, width: Int, height: Int, alpha: Bool, colorType: Int, bitDepth: Int, interlaced: Bool
    }

    static func fixtures() throws -> [Fixture] {
        try JSONDecoder().decode([Fixture].self, from: Data(contentsOf: pngFixtures.appendingPathComponent("manifest.json")))
    }

    static func fixture(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: pngFixtures.appendingPathComponent(name + ".png")))
    }

    /// Every kind of PNG (all colour types and bit depths, Adam7, tRNS, stored/fixed blocks, split
    /// IDAT, files written by Pillow) decodes to the expected RGB8 and alpha bytes.
    @Test func decodesEveryFixtureExactly() throws {
        let fixtures = try Self.fixtures()
        #expect(fixtures.count >= 60)
        var kinds = Set<String>()
        for f in fixtures {
            let expected = try [UInt8](Data(contentsOf: pngFixtures.appendingPathComponent(f.name + ".rgb")))
            let image = try RGBImage(pngData: Self.fixture(f.name))
            let n = f.width * f.height
            #expect(image.width == f.width && image.height == f.height, "\(f.name)")
            #expect(image.pixels == Array(expected[0..<(3 * n)]), "\(f.name)")
            #expect(image.alpha == (f.alpha ? Array(expected[(3 * n)...]) : nil), "\(f.name)")
            kinds.insert("\(f.colorType)/\(f.bitDepth)/\(f.interlaced)")
        }
        // 15 colour type / bit depth combinations, each plain and interlaced.
        #expect(kinds.count == 30)
    }

    @Test func greyscaleMatchesPILConvertL() throws {
        let image = try RGBImage(width: 4, height: 1, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 200, 77])
        // PIL 13: Image.new("RGB", (1, 1), c).convert("L") gives 76, 150, 29 and 130 for these colours.
        #expect(image.greyscale() == [76, 150, 29, 130])
        // A greyscale PNG reads back its grey values through greyscale().
        let grey = try RGBImage(pngData: Self.fixture("pillow_L"))
        #expect(grey.greyscale() == stride(from: 0, to: grey.pixels.count, by: 3).map { grey.pixels[$0] })
        #expect(grey.alphaChannel() == [UInt8](repeating: 255, count: grey.width * grey.height))
    }

    @Test func rejectsWhatIsNotAPNG() {
        #expect(pngError([]) == .truncated("file ends inside the signature"))
        #expect(pngError(Array("GIF89a..........".utf8)) == .notPNG)
        #expect(pngError(PNGDecoder.signature) == .truncated("file ends before IEND (at byte 8)"))
    }

    @Test func rejectsBadCRC() throws {
        var png = try RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 9, count: 12)).pngData()
        png[20] ^= 1  // inside IHDR's height
        #expect(pngError(png) == .badCRC(chunk: "IHDR"))
    }

    @Test func rejectsTruncatedFiles() throws {
        let png = try RGBImage(width: 5, height: 4, pixels: (0..<60).map { UInt8($0 * 4) }).pngData()
        for cut in [9, 20, 33, png.count - 20, png.count - 1] {
            let error = pngError(Array(png.prefix(cut)))
            guard case .truncated = error else {
                Issue.record("cut at \(cut): \(String(describing: error))")
                continue
            }
        }
        // A zlib stream cut short inside its own (valid) chunk.
        let z = Zlib.compress([0] + [UInt8](repeating: 7, count: 6))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", Array(z.prefix(z.count - 5))), ("IEND", [])]))
            == .truncated("deflate stream ends early"))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", Array(z.prefix(z.count - 2))), ("IEND", [])]))
            == .truncated("zlib checksum missing"))
        // Image data shorter than the image.
        #expect(pngError(makePNG([ihdr(width: 2, height: 2), ("IDAT", Zlib.compress([0, 1, 2, 3, 4, 5, 6])), ("IEND", [])]))
            == .truncated("image data is 7 of 14 bytes"))
        #expect(pngError(makePNG([ihdr(width: 2, height: 2), ("IEND", [])])) == .truncated("no IDAT chunk"))
    }

    @Test func rejectsBadZlib() {
        let raw: [UInt8] = [0, 1, 2, 3, 4, 5, 6]
        var z = Zlib.compress(raw)
        z[0] = 0x79
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", z), ("IEND", [])])) == .corrupt("zlib: unknown compression method"))
        z = Zlib.compress(raw)
        z[1] ^= 1
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", z), ("IEND", [])])) == .corrupt("zlib: header check failed"))
        z = Zlib.compress(raw)
        z[z.count - 1] ^= 1
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", z), ("IEND", [])])) == .corrupt("zlib: Adler-32 checksum mismatch"))
        // Block type 3 does not exist.
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", [0x78, 0x9C, 0x07, 0, 0, 0, 0, 0]), ("IEND", [])]))
            == .corrupt("deflate: invalid block type 3"))
        // More data than the image holds.
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", Zlib.compress(raw + [9])), ("IEND", [])]))
            == .corrupt("deflate: more data than the image needs"))
    }

    @Test func rejectsBadHeadersAndUnsupportedFeatures() throws {
        let idat = ("IDAT", Zlib.compress([0, 1, 2, 3, 4, 5, 6]))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1, depth: 3), idat, ("IEND", [])])) == .invalidHeader("bit depth 3 with colour type 2"))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1, colorType: 5), idat, ("IEND", [])])) == .invalidHeader("colour type 5"))
        #expect(pngError(makePNG([ihdr(width: 0, height: 1), idat, ("IEND", [])])) == .invalidHeader("size 0×1"))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1, interlace: 2), idat, ("IEND", [])])) == .unsupported("interlace method 2"))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("ABCD", []), idat, ("IEND", [])])) == .unsupported("critical chunk ABCD"))
        #expect(pngError(makePNG([idat, ihdr(width: 2, height: 1), ("IEND", [])])) == .invalidHeader("the first chunk is IDAT, not IHDR"))
        #expect(pngError(makePNG([ihdr(width: 100_000, height: 100_000), idat, ("IEND", [])]))
            == .tooLarge(width: 100_000, height: 100_000, maxPixels: 1 << 26))
        #expect(pngError(makePNG([ihdr(width: 2, height: 1, colorType: 3), idat, ("IEND", [])])) == .invalidHeader("palette image without PLTE"))
        // Ancillary chunks this decoder does not know are skipped.
        let ok = makePNG([ihdr(width: 2, height: 1), ("gAMA", [0, 0, 0xB1, 0x8F]), idat, ("IEND", [])])
        #expect(try RGBImage(pngData: ok).pixels == [1, 2, 3, 4, 5, 6])
    }

    @Test func rejectsBadFilterAndPaletteIndex() {
        #expect(pngError(makePNG([ihdr(width: 2, height: 1), ("IDAT", Zlib.compress([7, 1, 2, 3, 4, 5, 6])), ("IEND", [])]))
            == .corrupt("unknown filter type 7"))
        let plte = ("PLTE", [UInt8](repeating: 50, count: 6))  // two entries
        #expect(pngError(makePNG([ihdr(width: 2, height: 1, colorType: 3), plte, ("IDAT", Zlib.compress([0, 1, 2])), ("IEND", [])]))
            == .corrupt("palette index 2 past the 2-entry PLTE"))
    }

    /// Seeded random damage to real fixtures never crashes; what still decodes has a consistent size.
    @Test func randomDamageNeverCrashes() throws {
        var rng = PNGTestRNG(seed: 99)
        var decoded = 0
        for name in ["ct2_8bit_adam7", "ct3_4bit_plain", "ct6_16bit_adam7", "stored_blocks", "fixed_blocks", "pillow_RGBA"] {
            let valid = try Self.fixture(name)
            for _ in 0..<250 {
                var png = valid
                if Bool.random(using: &rng) {
                    png.removeLast(Int.random(in: 1...png.count, using: &rng))
                } else {
                    for _ in 0..<Int.random(in: 1...3, using: &rng) {
                        png[Int.random(in: 0..<png.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                    }
                }
                if let image = try? RGBImage(pngData: png) {
                    decoded += 1
                    #expect(image.pixels.count == image.width * image.height * 3)
                }
            }
        }
        #expect(decoded < 150)  // CRCs catch almost everything
    }

    /// Random damage inside the zlib stream, CRC fixed up so that the inflater sees it.
    @Test func randomDamageToTheCompressedStreamNeverCrashes() throws {
        var rng = PNGTestRNG(seed: 7)
        let image = try RGBImage(width: 24, height: 9, pixels: (0..<648).map { UInt8(truncatingIfNeeded: $0 * $0 / 7) })
        let idat = try #require(pngChunk(image.pngData(), "IDAT"))
        var outcomes = [String: Int]()
        for _ in 0..<1500 {
            var z = idat
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                z[Int.random(in: 0..<z.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            }
            let png = makePNG([ihdr(width: 24, height: 9), ("IDAT", z), ("IEND", [])])
            let key = pngError(png).map { "\($0)" } ?? "decoded"
            outcomes[key, default: 0] += 1
        }
        #expect(outcomes.count > 5, "\(outcomes)")
    }
}
