import SSDTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `torch.Generator("cpu").manual_seed(seed)` followed by `torch.randn(..., dtype=torch.float32)`,
/// bit for bit, as PyTorch computes it on x86-64 CPUs with AVX2 or AVX-512 (its default kernels
/// there; verified against torch 2.13 on an AVX-512 machine, whose `normal_kernel` takes the AVX2
/// branch).
///
/// What is matched (PyTorch `aten/src/ATen/core/MT19937RNGEngine.h`, `CPUGeneratorImpl.cpp`,
/// `core/DistributionsHelper.h`, `core/TransformationHelper.h`,
/// `native/cpu/DistributionTemplates.h`, `native/cpu/avx_mathfun.h`):
/// - The engine is MT19937 seeded with the low 32 bits of the seed; `manual_seed` also clears the
///   cached second Box–Muller value.
/// - A float uniform is `(u32 & 0xFFFFFF) · 2⁻²⁴` from one engine word; a double uniform is
///   `(u64 & (2⁵³−1)) · 2⁻⁵³` from two words (first word high).
/// - `count ≥ 16` (`normal_fill_AVX2`): `count` float uniforms are drawn first; each block of 16
///   becomes 16 normals by Box–Muller in the 8/8 layout (`u1 = 1 − data[j]`, `u2 = data[j+8]`,
///   `data[j] = r·cos θ`, `data[j+8] = r·sin θ`, `r = √(−2·log u1)`, `θ = float(2π)·u2`), with
///   `log` and `sin`/`cos` the Cephes-style polynomials of `avx_mathfun.h` (`log256_ps`,
///   `sincos256_ps`) evaluated in float32 operation by operation, with fused multiply-adds
///   exactly where GCC fused them in PyTorch's build (see `TorchVectorMath`). If `count % 16 ≠ 0`, 16 more uniforms are
///   drawn and overwrite the last 16 entries, which are then transformed again.
/// - `count < 16` (`normal_distribution<double>`): each value is `r·cos θ` in double precision with
///   `r = √(−2·log1p(−u2))`, `θ = 2π·u1` (u1 drawn first), converted to float; `r·sin θ` is cached
///   and returned by the next scalar draw (a later `count ≥ 16` call neither uses nor clears it).
///   These use the C library's `log1p`, `sin`, `cos`, `sqrt` in double precision; glibc's are what
///   PyTorch uses on Linux, so on other C libraries a last-bit difference in a double could, very
///   rarely, change the rounded float.
/// - `dtype` float16/bfloat16 (`normal(count:dtype:)`): the same float32 numbers rounded to the
///   type, except that for `count ≥ 16` torch draws uniforms block by block, so the tail block uses
///   the 16 uniforms after the last full block (not after `count`) and the stream advances by
///   `16·⌈count/16⌉`. Verified against torch 2.13 for float16 and bfloat16.
public struct TorchCPUGenerator: RandomSource, Hashable {
    private var engine: MersenneTwister19937
    private var cachedNormal: Double?
    /// The seed given to `init(seed:)` or the last `manualSeed`.
    public private(set) var seed: UInt64

    /// `torch.Generator("cpu").manual_seed(seed)`.
    public init(seed: UInt64) {
        self.seed = seed
        engine = MersenneTwister19937(seed: seed)
        cachedNormal = nil
    }

    /// `generator.manual_seed(seed)`: restarts the stream.
    public mutating func manualSeed(_ seed: UInt64) {
        self = TorchCPUGenerator(seed: seed)
    }

    /// The next 32-bit engine word (`CPUGeneratorImpl::random`).
    public mutating func random32() -> UInt32 { engine.next() }

    /// `CPUGeneratorImpl::random64`: two words, the first in the high half.
    public mutating func random64() -> UInt64 {
        let high = UInt64(engine.next())
        let low = UInt64(engine.next())
        return (high << 32) | low
    }

    /// `uniform_real_distribution<float>(0, 1)`.
    public mutating func uniformFloat() -> Float {
        Float(random32() & 0xFF_FFFF) * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`.
    public mutating func uniformDouble() -> Double {
        Double(random64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `torch.randn(count, generator=self)` in float32.
    public mutating func normal(count: Int) -> [Float] {
        guard count > 0 else { return [] }
        if count < 16 {
            return (0..<count).map { _ in Float(scalarNormal()) }
        }
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count { data[i] = uniformFloat() }
        data.withUnsafeMutableBufferPointer { buffer in
            var start = 0
            while start + 16 <= count {
                TorchVectorMath.boxMuller16(buffer, at: start)
                start += 16
            }
        }
        if count % 16 != 0 {
            let start = count - 16
            for i in start..<count { data[i] = uniformFloat() }
            data.withUnsafeMutableBufferPointer { TorchVectorMath.boxMuller16($0, at: start) }
        }
        return data
    }

    /// `torch.randn(count, generator=self, dtype=dtype)`; f32 is `normal(count:)`.
    public mutating func normal(count: Int, dtype: DType) -> [Float] {
        guard dtype == .f16 || dtype == .bf16, count >= 16, count % 16 != 0 else {
            return roundedToDType(normal(count: count), dtype)
        }
        // Reduced types fill block by block: the tail block's uniforms follow the last full block.
        let fullBlocks = count / 16 * 16
        let values = normal(count: fullBlocks + 16)
        return roundedToDType(Array(values[0..<(count - 16)] + values[fullBlocks...]), dtype)
    }

    /// `normal_distribution<double>(0, 1)` with the generator's cached second value.
    private mutating func scalarNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached * 1.0 + 0.0
        }
        let u1 = uniformDouble()
        let u2 = uniformDouble()
        let radius = sqrt(-2.0 * log1p(-u2))
        let theta = 2.0 * Double.pi * u1
        cachedNormal = radius * sin(theta)
        return radius * cos(theta) * 1.0 + 0.0
    }
}

/// Scalar float32 re-statements of the AVX routines PyTorch's `normal_fill_AVX2` uses
/// (`aten/src/ATen/native/cpu/avx_mathfun.h`, after Julien Pommier's `sse_mathfun`), operation by
/// operation, so they give the same bits on any CPU.
///
/// PyTorch's x86-64 wheels are built by GCC with `-mfma` and its default `-ffp-contract=fast`, and
/// GCC's intrinsics headers spell `_mm256_mul_ps`/`_mm256_add_ps` as plain vector `*`/`+`, so a
/// product whose only use is an add or subtract is fused into one FMA (the first such product in
/// statement order wins when two meet in one subtraction). The places marked "fused" below are
/// exactly those; Swift's scalar `addingProduct` is an IEEE fused multiply-add on every CPU
/// (hardware or the C library's `fma`). Verified bit for bit on millions of values.
enum TorchVectorMath {
    // Constants are C `float` arrays initialised from double literals: double, then float.
    static let sqrtHalf = Float(0.707106781186547524 as Double)
    static let logP: [Float] = [
        7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
        -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1,
    ].map { (value: Double) in Float(value) }
    static let logQ1 = Float(-2.12194440e-4 as Double)
    static let logQ2 = Float(0.693359375 as Double)
    static let minusDP1 = Float(-0.78515625 as Double)
    static let minusDP2 = Float(-2.4187564849853515625e-4 as Double)
    static let minusDP3 = Float(-3.77489497744594108e-8 as Double)
    static let sinP: [Float] = [-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1].map { (value: Double) in Float(value) }
    static let cosP: [Float] = [2.443315711809948E-005, -1.388731625493765E-003, 4.166664568298827E-002]
        .map { (value: Double) in Float(value) }
    static let fourOverPi = Float(1.27323954473516 as Double)
    /// `_mm256_set1_ps(2.0f * c10::pi<double>)`: the product is formed in double.
    static let twoPi = Float(2.0 * Double.pi)

    /// `log256_ps` for one lane.
    static func log(_ input: Float) -> Float {
        let invalid = !(input > 0)
        var x = max(input, Float(bitPattern: 0x0080_0000))
        let exponentBits = Int32(bitPattern: x.bitPattern >> 23)
        x = Float(bitPattern: (x.bitPattern & ~UInt32(0x7F80_0000)) | Float(0.5).bitPattern)
        var e = Float(exponentBits &- 0x7F)
        e = e + 1
        let below = x < sqrtHalf
        let tmp: Float = below ? x : 0
        x = x - 1
        e = e - (below ? 1 : 0)
        x = x + tmp
        let z = x * x
        var y = logP[0]
        for coefficient in logP.dropFirst() {
            y = coefficient.addingProduct(y, x)  // fused
        }
        y = y * x
        y = (e * logQ1).addingProduct(y, z)  // fused: y·z + (e·q1)
        y = y.addingProduct(-z, 0.5)  // fused: y − z·0.5
        x = x + y
        x = x.addingProduct(e, logQ2)  // fused
        return invalid ? Float(bitPattern: x.bitPattern | 0xFFFF_FFFF) : x
    }

    /// `sincos256_ps` for one lane: (sin, cos).
    static func sincos(_ input: Float) -> (sin: Float, cos: Float) {
        var signSin = input.bitPattern & 0x8000_0000
        var x = Float(bitPattern: input.bitPattern & 0x7FFF_FFFF)
        var y = x * fourOverPi
        var j = Int32(y)  // cvttps: truncation (inputs here are far inside Int32)
        j = (j &+ 1) & ~1
        y = Float(j)
        let swapSignSin = UInt32(bitPattern: j & 4) << 29
        let polyMask = (j & 2) == 0
        x = x.addingProduct(y, minusDP1)  // fused (the three reduction steps)
        x = x.addingProduct(y, minusDP2)
        x = x.addingProduct(y, minusDP3)
        let signCos = UInt32(bitPattern: ~(j &- 2) & 4) << 29
        signSin ^= swapSignSin
        let z = x * x
        var c = cosP[0]
        c = cosP[1].addingProduct(c, z)  // fused
        c = cosP[2].addingProduct(c, z)  // fused
        c = c * z
        c = (-(z * 0.5)).addingProduct(c, z)  // fused: c·z − (z·0.5)
        c = c + 1
        var s = sinP[0]
        s = sinP[1].addingProduct(s, z)  // fused
        s = sinP[2].addingProduct(s, z)  // fused
        s = s * z
        s = x.addingProduct(s, x)  // fused: s·x + x
        let ySin2: Float = polyMask ? s : 0
        let ySin1: Float = polyMask ? 0 : c
        s = s - ySin2
        c = c - ySin1
        let sinValue = ySin1 + ySin2
        let cosValue = c + s
        return (Float(bitPattern: sinValue.bitPattern ^ signSin), Float(bitPattern: cosValue.bitPattern ^ signCos))
    }

    /// `normal_fill_16_AVX2` with mean 0 and std 1 (its final `fmadd(n, 1, 0)` is `n + 0`).
    static func boxMuller16(_ data: UnsafeMutableBufferPointer<Float>, at start: Int) {
        for j in 0..<8 {
            let u1 = 1 - data[start + j]
            let u2 = data[start + j + 8]
            let radius = (-2 * log(u1)).squareRoot()
            let theta = twoPi * u2
            let (sinTheta, cosTheta) = sincos(theta)
            data[start + j] = radius * cosTheta + 0
            data[start + j + 8] = radius * sinTheta + 0
        }
    }
}
