import Foundation
import Testing

@testable import SSDPipeline

/// `ImageProcessing.pilResize` against Pillow 13.0 and the `padding_mask_crop` helpers against diffusers 0.42.1's
/// `VaeImageProcessor`, bit for bit (Scripts/fixtures/resample.py, Tests/Fixtures/resample/).
struct PILResampleTests {
    struct Source: Decodable, Sendable {
        var name: String, channels: Int, width: Int, height: Int, offset: Int
    }
    struct Resize: Decodable, Sendable, CustomTestStringConvertible {
        var source: String, filter: String, width: Int, height: Int, box: [Float]?, offset: Int
        var testDescription: String { "\(source) \(filter) → \(width)x\(height)" + (box.map { " box \($0)" } ?? "") }
    }
    struct CropRegionCase: Decodable, Sendable {
        var mask: String, width: Int, height: Int, pad: Int, region: [Int]
    }
    struct Fill: Decodable, Sendable {
        var source: String, mode: String, width: Int, height: Int, region: [Int]?, offset: Int
    }
    struct Overlay: Decodable, Sendable {
        var mask: String, image: String, generated: String, region: [Int], offset: Int
    }
    struct Manifest: Decodable, Sendable {
        var sources: [Source], resizes: [Resize], crop_regions: [CropRegionCase], fills: [Fill], overlays: [Overlay]
    }

    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/resample").path
    static let manifest: Manifest? = {
        guard let data = FileManager.default.contents(atPath: folder + "/resample.json") else { return nil }
        return try? JSONDecoder().decode(Manifest.self, from: data)
    }()
    static let blob: [UInt8] = FileManager.default.contents(atPath: folder + "/resample.bin").map { [UInt8]($0) } ?? []

    static func bytes(_ offset: Int, _ count: Int) -> [UInt8] { Array(blob[offset..<(offset + count)]) }

    static func source(_ name: String) throws -> Source {
        try #require(manifest?.sources.first { $0.name == name })
    }

    static func image(_ name: String) throws -> RGBImage {
        let s = try source(name)
        #expect(s.channels == 3)
        return try RGBImage(width: s.width, height: s.height, pixels: bytes(s.offset, s.width * s.height * 3))
    }

    static func region(_ r: [Int]) -> CropRegion { CropRegion(x1: r[0], y1: r[1], x2: r[2], y2: r[3]) }

    static let filters: [String: PILFilter] = ["nearest": .nearest, "box": .box, "bilinear": .bilinear,
                                               "hamming": .hamming, "bicubic": .bicubic, "lanczos": .lanczos]

    @Test func fixturesAreThere() throws {
        let manifest = try #require(Self.manifest)
        #expect(manifest.resizes.count >= 90)
        #expect(Set(manifest.resizes.map(\.filter)) == Set(Self.filters.keys))
        #expect(Set(manifest.resizes.map { Self.sourceChannels($0.source) }) == [1, 3])
    }

    static func sourceChannels(_ name: String) -> Int { manifest?.sources.first { $0.name == name }?.channels ?? 0 }

    @Test(arguments: manifest?.resizes ?? [])
    func resizeMatchesPillow(_ c: Resize) throws {
        let s = try Self.source(c.source)
        let pixels = Self.bytes(s.offset, s.width * s.height * s.channels)
        let filter = try #require(Self.filters[c.filter])
        let box = c.box.map { PILBox(x0: $0[0], y0: $0[1], x1: $0[2], y1: $0[3]) }
            ?? PILBox(x0: 0, y0: 0, x1: Float(s.width), y1: Float(s.height))
        let ours = ImageProcessing.pilResize(pixels, channels: s.channels, width: s.width, height: s.height,
                                             toWidth: c.width, toHeight: c.height, box: box, filter: filter)
        let expected = Self.bytes(c.offset, c.width * c.height * s.channels)
        #expect(ours == expected, "\(zip(ours, expected).filter { $0 != $1 }.count) of \(expected.count) bytes differ")
        if c.box == nil {
            #expect(ImageProcessing.pilResize(pixels, channels: s.channels, width: s.width, height: s.height,
                                              toWidth: c.width, toHeight: c.height, filter: filter) == expected)
        }
    }

    /// `resized` (init images, masks, control images) is the Lanczos resize of RGB images.
    @Test func resizedIsLanczos() throws {
        let manifest = try #require(Self.manifest)
        let c = try #require(manifest.resizes.first { $0.source == "rgb" && $0.filter == "lanczos" && $0.box == nil && $0.width > 9 })
        let resized = try ImageProcessing.resized(Self.image("rgb"), to: ImageSize(width: c.width, height: c.height))
        #expect(resized.pixels == Self.bytes(c.offset, c.width * c.height * 3))
    }

    @Test func cropRegionMatchesDiffusers() throws {
        let manifest = try #require(Self.manifest)
        let mask = try Self.image("mask")
        for c in manifest.crop_regions {
            let region = ImageProcessing.cropRegion(mask: mask, width: c.width, height: c.height, pad: c.pad)
            #expect(region == Self.region(c.region), "\(c.width)x\(c.height) pad \(c.pad)")
        }
        let black = try RGBImage(width: 5, height: 4, pixels: [UInt8](repeating: 0, count: 60))
        #expect(ImageProcessing.cropRegion(mask: black, width: 8, height: 8, pad: 2) == nil)
        #expect(ImageProcessing.cropRegion(mask: mask, width: 64, height: 64, pad: .max)
                == ImageProcessing.cropRegion(mask: mask, width: 64, height: 64, pad: 100))
    }

    @Test func fillAndCropMatchDiffusers() throws {
        let manifest = try #require(Self.manifest)
        for c in manifest.fills {
            let size = ImageSize(width: c.width, height: c.height)
            let image = try Self.image(c.source)
            let ours: RGBImage
            if c.mode == "fill" {
                ours = try c.region.map { try ImageProcessing.prepared(image, to: size, crop: Self.region($0)) }
                    ?? ImageProcessing.resizedAndFilled(image, to: size)
            } else {
                ours = try ImageProcessing.resizedAndCropped(image, to: size)
            }
            #expect(ours.pixels == Self.bytes(c.offset, c.width * c.height * 3), "\(c.source) \(c.mode) \(size) \(c.region ?? [])")
        }
    }

    @Test func overlayMatchesDiffusers() throws {
        let manifest = try #require(Self.manifest)
        for c in manifest.overlays {
            let original = try Self.image(c.image)
            let ours = try ImageProcessing.overlay(mask: Self.image(c.mask), original: original,
                                                   generated: Self.image(c.generated), region: Self.region(c.region))
            #expect(ours.width == original.width && ours.height == original.height)
            #expect(ours.pixels == Self.bytes(c.offset, original.width * original.height * 3), "\(c.generated) \(c.region)")
        }
    }
}
