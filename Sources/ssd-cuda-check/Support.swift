import SSDTensor
#if canImport(Glibc)
import Glibc
#endif

/// A small deterministic generator (SplitMix64) for test inputs.
struct Random {
    var state: UInt64

    mutating func nextUInt64() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Float { Float(nextUInt64() >> 40) / Float(1 << 24) }

    /// `count` standard normal values times `scale`.
    mutating func normal(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in
            let u1 = max(uniform(), 1e-7), u2 = uniform()
            return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2) * scale
        }
    }
}

/// `%.3e`-style formatting without Foundation.
func format(_ value: Double, _ spec: String = "%.3e") -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { vsnprintf(&buffer, 64, spec, $0) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// ‖a − b‖₂ / ‖b‖₂ (DESIGN.md §7).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    if den == 0 { return num == 0 ? 0 : .infinity }
    return (num / den).squareRoot()
}

/// Writes a line to standard error.
func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
