#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// float32 scalar functions as PyTorch evaluates them on 0-dim CPU tensors (`std::exp(float)` etc.,
/// the C library's float versions) and float64 ones as NumPy evaluates them.
enum HostMath {
    static func exp(_ x: Float) -> Float { expf(x) }
    static func log(_ x: Float) -> Float { logf(x) }
    static func expm1(_ x: Float) -> Float { expm1f(x) }
    static func exp(_ x: Double) -> Double { libmExp(x) }
    static func log(_ x: Double) -> Double { libmLog(x) }
    static func pow(_ x: Double, _ y: Double) -> Double { libmPow(x, y) }
    static func cos(_ x: Double) -> Double { libmCos(x) }
}

@inline(__always) private func libmExp(_ x: Double) -> Double { exp(x) }
@inline(__always) private func libmLog(_ x: Double) -> Double { log(x) }
@inline(__always) private func libmPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
@inline(__always) private func libmCos(_ x: Double) -> Double { cos(x) }

/// Elementwise float32 arithmetic on host arrays, one rounding per operation (no fused
/// multiply-adds), mirroring one PyTorch CPU op per call.
enum Elementwise {
    /// `f(a[i], b[i])` for every i.
    @inline(__always)
    static func zip(_ a: [Float], _ b: [Float], _ f: (Float, Float) -> Float) -> [Float] {
        precondition(a.count == b.count)
        return [Float](unsafeUninitializedCapacity: a.count) { buffer, initialized in
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    for i in 0..<pa.count { buffer[i] = f(pa[i], pb[i]) }
                }
            }
            initialized = a.count
        }
    }

    /// `f(a[i])` for every i.
    @inline(__always)
    static func map(_ a: [Float], _ f: (Float) -> Float) -> [Float] {
        [Float](unsafeUninitializedCapacity: a.count) { buffer, initialized in
            a.withUnsafeBufferPointer { pa in
                for i in 0..<pa.count { buffer[i] = f(pa[i]) }
            }
            initialized = a.count
        }
    }

    /// `x * s` (tensor times 0-dim tensor).
    static func scale(_ x: [Float], _ s: Float) -> [Float] { map(x) { $0 * s } }
    /// `x / s`.
    static func divide(_ x: [Float], _ s: Float) -> [Float] { map(x) { $0 / s } }
    /// `a + b`.
    static func add(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b) { $0 + $1 } }
    /// `a - b`.
    static func subtract(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b) { $0 - $1 } }
    /// `x.clamp(-limit, limit)`.
    static func clamp(_ x: [Float], _ limit: Float) -> [Float] { map(x) { Swift.min(Swift.max($0, -limit), limit) } }
}
