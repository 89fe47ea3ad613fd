import Foundation
import Testing
@testable import SSDSchedulers
import SSDTensor

@Suite struct TorchRandomTests {
    /// 64-bit FNV-1a of the little-endian float32 bytes, as the fixture script computes it.
    static func fnv1a64(_ values: [Float]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for value in values {
            var bits = value.bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { bytes in
                for byte in bytes {
                    hash ^= UInt64(byte)
                    hash = hash &* 0x0000_0100_0000_01B3
                }
            }
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    @Test func randnStreamsMatchTorchBitForBit() throws {
        let streams = try #require(Fixtures.randn?["streams"] as? [[String: Any]])
        #expect(streams.count >= 6)
        for stream in streams {
            let seedText = try #require(stream["seed"] as? String)
            let seed = try #require(UInt64(seedText))
            var generator = TorchCPUGenerator(seed: seed)
            for call in try #require(stream["calls"] as? [[String: Any]]) {
                let count = try #require(call["count"] as? Int)
                let dtype: DType = ["float16": .f16, "bfloat16": .bf16][call["dtype"] as? String ?? ""] ?? .f32
                let values = dtype == .f32 ? generator.normal(count: count) : generator.normal(count: count, dtype: dtype)
                #expect(values.count == count)
                let head = try Fixtures.floats(call["head"])
                #expect(values.prefix(head.count).map(\.bitPattern) == head.map(\.bitPattern), "seed \(seed) count \(count) head")
                if call["values"] != nil {
                    let expected = try Fixtures.floats(call["values"])
                    #expect(values.map(\.bitPattern) == expected.map(\.bitPattern), "seed \(seed) count \(count)")
                }
                #expect(Self.fnv1a64(values) == call["fnv1a64"] as? String, "seed \(seed) count \(count) checksum")
            }
        }
    }

    @Test func initialLatentsOfTheStepFixtureComeFromTheGenerator() throws {
        let steps = try #require(Fixtures.steps)
        var generator = TorchCPUGenerator(seed: UInt64(try #require(steps["initial_seed"] as? Int)))
        let initial = try Fixtures.floats(steps["initial"])
        let base = try Fixtures.floats(steps["base"])
        #expect(generator.normal(count: initial.count).map(\.bitPattern) == initial.map(\.bitPattern))
        #expect(generator.normal(count: base.count).map(\.bitPattern) == base.map(\.bitPattern))
    }

    @Test func copiesAndReseedingRestartTheStream() {
        var a = TorchCPUGenerator(seed: 5)
        _ = a.normal(count: 3)  // leaves a cached Box–Muller value
        var b = a
        #expect(a.normal(count: 40) == b.normal(count: 40))
        #expect(a.normal(count: 1) == b.normal(count: 1))
        a.manualSeed(5)
        var fresh = TorchCPUGenerator(seed: 5)
        #expect(a.normal(count: 17) == fresh.normal(count: 17))
        #expect(a.normal(count: 0).isEmpty)
    }

    @Test func mersenneTwisterMatchesTheReferenceSequence() {
        // std::mt19937 default seed 5489: the 10000th output is 4123659995 (C++ [rand.predef]).
        var engine = MersenneTwister19937(seed: 5489)
        var value: UInt32 = 0
        for _ in 0..<10000 { value = engine.next() }
        #expect(value == 4_123_659_995)
    }
}
