import Testing
@testable import SSDTensor

/// Exact f16 / bf16 ⇄ f32 conversion (`HalfConversion`), checked exhaustively over all 16-bit
/// patterns, at every rounding midpoint, and against values computed with PyTorch 2.13.
struct HalfConversionTests {
    private static func isF16NaN(_ h: UInt16) -> Bool { h & 0x7C00 == 0x7C00 && h & 0x03FF != 0 }
    private static func isBF16NaN(_ b: UInt16) -> Bool { b & 0x7F80 == 0x7F80 && b & 0x007F != 0 }

    /// f16 → f32 → f16 gives back every one of the 65536 bit patterns (NaNs stay NaN with their sign).
    @Test func f16RoundTripIsExhaustivelyExact() {
        var failures = 0
        for bits in 0...0xFFFF {
            let h = UInt16(bits)
            let f = HalfConversion.floatFromF16(h)
            let back = HalfConversion.f16FromFloat(f)
            if Self.isF16NaN(h) {
                if !(f.isNaN && Self.isF16NaN(back) && (back & 0x8000) == (h & 0x8000)) { failures += 1 }
            } else if back != h {
                failures += 1
            }
        }
        #expect(failures == 0)
    }

    #if !(os(macOS) && arch(x86_64))
    /// f16 → f32 agrees with the compiler's own `Float16` conversion for every pattern.
    @Test func f16ToFloatMatchesNativeFloat16() {
        var failures = 0
        for bits in 0...0xFFFF {
            let h = UInt16(bits)
            let ours = HalfConversion.floatFromF16(h)
            let native = Float(Float16(bitPattern: h))
            if native.isNaN ? !ours.isNaN : ours.bitPattern != native.bitPattern { failures += 1 }
        }
        #expect(failures == 0)
    }

    /// f32 → f16 agrees with the native conversion on a seeded sample of arbitrary f32 patterns.
    @Test func floatToF16MatchesNativeFloat16OnRandomPatterns() {
        var rng = SafetensorsTestRNG(seed: 0x5EED_F16)
        var failures = 0
        for _ in 0..<200_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            let ours = HalfConversion.f16FromFloat(f)
            let native = Float16(f).bitPattern
            if f.isNaN ? !Self.isF16NaN(ours) : ours != native { failures += 1 }
        }
        #expect(failures == 0)
    }
    #endif

    /// At the midpoint between two neighbouring f16 values the even one wins; one f32 ulp either
    /// side picks the nearer one. Covers subnormals, the largest finite value (its midpoint to
    /// 65536 rounds to infinity) and both signs.
    @Test func f16RoundsToNearestEvenAtEveryMidpoint() {
        var failures = 0
        for bits in 0..<0x7C00 {
            for sign: UInt16 in [0, 0x8000] {
                let lo = UInt16(bits) | sign, hi = UInt16(bits + 1) | sign
                let a = Double(HalfConversion.floatFromF16(lo))
                let b = bits + 1 == 0x7C00 ? (sign == 0 ? 65536.0 : -65536.0) : Double(HalfConversion.floatFromF16(hi))
                let mid = Float((a + b) / 2)  // exact: f16 midpoints need 12 significand bits
                let even = (bits & 1) == 0 ? lo : hi
                let towardHi = sign == 0 ? mid.nextUp : mid.nextDown
                let towardLo = sign == 0 ? mid.nextDown : mid.nextUp
                if HalfConversion.f16FromFloat(mid) != even { failures += 1 }
                if HalfConversion.f16FromFloat(towardHi) != hi { failures += 1 }
                if HalfConversion.f16FromFloat(towardLo) != lo { failures += 1 }
            }
        }
        #expect(failures == 0)
    }

    /// bf16 → f32 → bf16 gives back every pattern (NaN stays NaN).
    @Test func bf16RoundTripIsExhaustivelyExact() {
        var failures = 0
        for bits in 0...0xFFFF {
            let b = UInt16(bits)
            let f = HalfConversion.floatFromBF16(b)
            if f.bitPattern != UInt32(b) << 16 { failures += 1 }
            let back = HalfConversion.bf16FromFloat(f)
            if Self.isBF16NaN(b) ? !Self.isBF16NaN(back) : back != b { failures += 1 }
        }
        #expect(failures == 0)
    }

    /// Ties go to even, anything past the midpoint to the far neighbour, for every pair of
    /// neighbouring finite bf16 values (subnormals, and the midpoint above the largest finite
    /// value, which rounds to infinity).
    @Test func bf16RoundsToNearestEvenAtEveryMidpoint() {
        var failures = 0
        for bits in 0..<0x7F80 {
            for sign: UInt32 in [0, 0x8000_0000] {
                let lo = UInt16(bits) | UInt16(sign >> 16), hi = UInt16(bits + 1) | UInt16(sign >> 16)
                let mid = UInt32(bits) << 16 | 0x8000 | sign
                let even = (bits & 1) == 0 ? lo : hi
                if HalfConversion.bf16FromFloat(Float(bitPattern: mid)) != even { failures += 1 }
                if HalfConversion.bf16FromFloat(Float(bitPattern: mid + 1)) != hi { failures += 1 }
                if HalfConversion.bf16FromFloat(Float(bitPattern: mid - 1)) != lo { failures += 1 }
            }
        }
        #expect(failures == 0)
    }

    /// f32 bit patterns with the f16 and bf16 bits PyTorch 2.13 gives for `.to(torch.float16)` /
    /// `.to(torch.bfloat16)` on CPU.
    static let torchValues: [(f32: UInt32, f16: UInt16, bf16: UInt16)] = [
        (0x0000_0000, 0x0000, 0x0000),  // 0.0
        (0x8000_0000, 0x8000, 0x8000),  // -0.0
        (0x3F80_0000, 0x3C00, 0x3F80),  // 1.0
        (0x3EAA_AAAB, 0x3555, 0x3EAB),  // 1/3
        (0xBDCC_CCCD, 0xAE66, 0xBDCD),  // -0.1
        (0x477F_E000, 0x7BFF, 0x4780),  // 65504 (largest f16)
        (0x477F_EFFD, 0x7BFF, 0x4780),  // 65519.99 (just below the f16 overflow midpoint)
        (0x477F_F000, 0x7C00, 0x4780),  // 65520 (midpoint: rounds to inf)
        (0x322B_CC77, 0x0000, 0x322C),  // 1e-8
        (0x3380_0000, 0x0001, 0x3380),  // 2^-24, smallest f16 subnormal
        (0x3300_0000, 0x0000, 0x3300),  // 2^-25, tie to even → 0
        (0x3300_0001, 0x0001, 0x3300),  // just above 2^-25
        (0x3340_0000, 0x0001, 0x3340),  // 3·2^-26
        (0x3880_0000, 0x0400, 0x3880),  // 2^-14, smallest f16 normal
        (0x387F_E000, 0x0400, 0x3880),  // 2^-14 − 2^-25 (subnormal midpoint rounds up to the normal)
        (0x3851_B717, 0x0347, 0x3852),  // 5e-5 (f16 subnormal)
        (0x7F80_0000, 0x7C00, 0x7F80),  // inf
        (0xFF80_0000, 0xFC00, 0xFF80),  // -inf
        (0x7F61_B1E6, 0x7C00, 0x7F62),  // 3e38
        (0x7F7F_FFFF, 0x7C00, 0x7F80),  // largest f32: bf16 rounds to inf
        (0x3F80_8000, 0x3C04, 0x3F80),  // 1 + 2^-8: bf16 tie to even (down)
        (0x3F81_8000, 0x3C0C, 0x3F82),  // 1 + 3·2^-8: bf16 tie to even (up)
        (0x0001_16C2, 0x0000, 0x0001),  // 1e-40 (f32 subnormal)
        (0x0000_0001, 0x0000, 0x0000),  // smallest f32 subnormal
        (0x8000_0001, 0x8000, 0x8000),  // its negative
        (0x000A_E398, 0x0000, 0x000B),  // 1e-39
        (0x3E99_999A, 0x34CD, 0x3E9A),  // 0.3
    ]

    @Test func matchesPyTorchOnKnownValues() {
        for (f32, f16, bf16) in Self.torchValues {
            let f = Float(bitPattern: f32)
            #expect(HalfConversion.f16FromFloat(f) == f16, "f16 of \(f)")
            #expect(HalfConversion.bf16FromFloat(f) == bf16, "bf16 of \(f)")
        }
        // PyTorch canonicalises NaN payloads (f16 0x7E00, bf16 0xFFFF on this CPU); only NaN-ness is promised.
        for nan: UInt32 in [0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0x7FA0_0000] {
            #expect(Self.isF16NaN(HalfConversion.f16FromFloat(Float(bitPattern: nan))))
            #expect(Self.isBF16NaN(HalfConversion.bf16FromFloat(Float(bitPattern: nan))))
        }
    }
}

/// A small seeded generator (SplitMix64) so that randomised tests repeat exactly.
struct SafetensorsTestRNG: RandomNumberGenerator {
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
