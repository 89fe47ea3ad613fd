/// Element types a tensor or a weight file can hold (safetensors `F32`, `F16`, `BF16`, `I32`, `I64`).
public enum DType: String, Sendable, Codable, Hashable, CaseIterable {
    /// 32-bit float, IEEE half, bfloat16, 32- and 64-bit signed integers.
    case f32, f16, bf16, i32, i64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i64: return 8
        }
    }

    /// True for the floating-point types.
    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// The safetensors header spelling (`"F32"`, `"BF16"`, …).
    public var safetensorsName: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .i32: return "I32"
        case .i64: return "I64"
        }
    }

    /// Parses a safetensors header dtype; nil for types this library does not read.
    public init?(safetensorsName: String) {
        switch safetensorsName {
        case "F32": self = .f32
        case "F16": self = .f16
        case "BF16": self = .bf16
        case "I32": self = .i32
        case "I64": self = .i64
        default: return nil
        }
    }
}

/// Exact IEEE half / bfloat16 conversions, bit-identical to PyTorch's (round to nearest, ties to even).
public enum HalfConversion {
    /// f16 bits → f32 (exact; handles subnormals, infinities and NaN).
    @inline(__always)
    public static func floatFromF16(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        var mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal: normalise.
            var e: UInt32 = 127 - 15 + 1
            while mant & 0x400 == 0 { mant <<= 1; e -= 1 }
            mant &= 0x3FF
            return Float(bitPattern: sign | (e << 23) | (mant << 13))
        }
        if exp == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13) | (mant != 0 ? 0x0040_0000 : 0))
        }
        return Float(bitPattern: sign | ((exp + 127 - 15) << 23) | (mant << 13))
    }

    /// f32 → f16 bits, round to nearest even (overflow → ±inf, NaN stays NaN).
    @inline(__always)
    public static func f16FromFloat(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let absx = x & 0x7FFF_FFFF
        if absx >= 0x7F80_0000 {  // inf or NaN
            return sign | 0x7C00 | (absx > 0x7F80_0000 ? 0x0200 | UInt16((absx >> 13) & 0x3FF) : 0)
        }
        if absx >= 0x4780_0000 {  // ≥ 65536: overflows after rounding in every case
            return sign | 0x7C00
        }
        if absx < 0x3880_0000 {  // below the smallest normal half (2^-14): subnormal or zero
            if absx < 0x3300_0000 { return sign }  // < 2^-25 rounds to zero (2^-25 exactly ties to 0)
            let e = Int(absx >> 23)
            let m = (absx & 0x7F_FFFF) | 0x80_0000
            let s = UInt32(126 - e)  // bits to drop so that 2^-24 (the half subnormal unit) is 1
            let q = m >> s
            let rem = m & ((1 << s) - 1)
            let half = UInt32(1) << (s - 1)
            var r = q
            if rem > half || (rem == half && (q & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        // Normal range: rebias exponent, round the 13 dropped bits.
        var r = (absx >> 13) &- ((127 - 15) << 10)
        let rem = absx & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) { r += 1 }
        return sign | UInt16(truncatingIfNeeded: r)
    }

    /// bf16 bits → f32 (exact).
    @inline(__always)
    public static func floatFromBF16(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// f32 → bf16 bits, round to nearest even; NaN stays a quiet NaN (as PyTorch's `c10::BFloat16`).
    @inline(__always)
    public static func bf16FromFloat(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(truncatingIfNeeded: (x >> 16) | 0x0040) }
        let lsb = (x >> 16) & 1
        return UInt16(truncatingIfNeeded: (x &+ 0x7FFF &+ lsb) >> 16)
    }
}
