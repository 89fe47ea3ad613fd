import Testing
import SSDTensor
import CSSDKernels
@testable import SSDCPUBackend

/// Deterministic pseudo-random values in [-1, 1).
func values(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Float(state >> 40) / Float(1 << 23) - 1) * scale
    }
}

/// ‖a − b‖₂ / ‖b‖₂ (DESIGN.md §7).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var diff = 0.0, norm = 0.0
    for (x, y) in zip(a, b) { diff += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
    return (diff / max(norm, 1e-30)).squareRoot()
}

let reference = ReferenceBackend()

/// Runs `body` on the CPU backend and on the reference and returns the relative error.
func parity(_ cpu: CPUBackend, _ body: (any ComputeBackend) throws -> Tensor) throws -> Double {
    let got = try cpu.download(body(cpu))
    let want = try reference.download(body(reference))
    return relativeError(got, want)
}

func weight(_ b: any ComputeBackend, _ shape: [Int], seed: UInt64, role: WeightRole) throws -> Tensor {
    try b.prepareWeight(HostBuffer.view(of: values(shape.reduce(1, *), seed: seed), shape: shape), role: role, activationDType: .f32)
}

func input(_ b: any ComputeBackend, _ shape: [Int], seed: UInt64, scale: Float = 1) throws -> Tensor {
    try b.upload(values(shape.reduce(1, *), seed: seed, scale: scale), shape: shape)
}

/// Backend variants: fp32, fp32 with matmul precision "high" (bf16×3 on AMX), fp16-resident
/// weights, bf16 compute, OpenBLAS (when it loads).
enum Variant: String, CaseIterable, CustomTestStringConvertible {
    case f32, f32High, f16Weights, bf16, openBLAS
    var testDescription: String { rawValue }
    var tolerance: Double { self == .bf16 || self == .f16Weights ? 2e-2 : 1e-4 }
    func backend() throws -> CPUBackend? {
        switch self {
        case .f32: return try CPUBackend()
        case .f32High:
            var o = CPUBackendOptions()
            o.float32MatmulPrecision = .high
            return try CPUBackend(options: o)
        case .f16Weights: return try CPUBackend(options: CPUBackendOptions(weightStorage: .f16))
        case .bf16: return try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
        case .openBLAS: return try? CPUBackend(options: CPUBackendOptions(gemm: .openBLAS))
        }
    }
}

@Suite struct GEMMParityTests {
    @Test(arguments: Variant.allCases)
    func linearOddSizesWithBiasAndResidual(_ variant: Variant) throws {
        guard let cpu = try variant.backend() else { return }
        for (m, k, n) in [(13, 37, 70), (1, 300, 129), (50, 8, 64), (7, 1, 3)] {
            let err = try parity(cpu) { b in
                try b.linear(input(b, [m, k], seed: 1), weight: weight(b, [n, k], seed: 2, role: .linear),
                             bias: input(b, [n], seed: 3), residual: input(b, [m, n], seed: 4))
            }
            #expect(err < variant.tolerance, "linear \(m)x\(k)x\(n): \(err)")
        }
    }

    @Test func linearCrossesCacheBlocks() throws {
        // Small blocking so that rows, columns and depth all span several blocks and threads.
        var o = CPUBackendOptions()
        o.blocking = (mc: 12, nc: 128, kc: 32)
        let cpu = try CPUBackend(options: o)
        let err = try parity(cpu) { b in
            try b.linear(input(b, [2, 31, 101], seed: 5), weight: weight(b, [200, 101], seed: 6, role: .linear), bias: input(b, [200], seed: 7), residual: nil)
        }
        #expect(err < 1e-4)
        let plain = try parity(cpu) { b in
            try b.linear(input(b, [9, 20], seed: 5), weight: input(b, [30, 20], seed: 8), bias: nil, residual: nil)
        }
        #expect(plain < 1e-4)
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func matmulTransposes(_ ta: Bool, _ tb: Bool) throws {
        for variant in [Variant.f32, .openBLAS] {
            guard let cpu = try variant.backend() else { continue }
            let (batch, m, k, n) = (3, 19, 70, 65)
            let err = try parity(cpu) { b in
                try b.matmul(input(b, ta ? [batch, k, m] : [batch, m, k], seed: 1), input(b, tb ? [batch, n, k] : [batch, k, n], seed: 2),
                             transposeA: ta, transposeB: tb, alpha: 0.37)
            }
            #expect(err < 1e-4, "\(variant) \(ta) \(tb): \(err)")
            let shared = try parity(cpu) { b in
                try b.matmul(input(b, [batch, m, k], seed: 1), input(b, tb ? [n, k] : [k, n], seed: 2), transposeA: false, transposeB: tb, alpha: 1)
            }
            #expect(shared < 1e-4, "\(variant) shared b: \(shared)")
        }
    }

    /// Every micro-kernel variant this CPU has (the selection is process-wide; results are the same).
    @Test func everyInstructionSet() throws {
        defer { CPUBackend.resetInstructionSet() }
        for isa in ["portable", "avx2", "avx512", "avx512-bf16", "amx-bf16", "neon"] {
            let used = CPUBackend.setInstructionSet(isa)
            for variant in [Variant.f32, .f32High, .bf16] {
                guard let cpu = try variant.backend() else { continue }
                let err = try parity(cpu) { b in
                    try b.linear(input(b, [11, 45], seed: 9), weight: weight(b, [67, 45], seed: 10, role: .linear), bias: input(b, [67], seed: 11), residual: input(b, [11, 67], seed: 12))
                }
                #expect(err < variant.tolerance, "\(used) \(variant): \(err)")
            }
            let cpu = try CPUBackend()
            for kind in Activation.allCases {
                let err = try parity(cpu) { b in try b.activation(input(b, [3, 37], seed: 13, scale: 6), kind) }
                #expect(err < 1e-5, "\(used) \(kind): \(err)")
            }
            // The other math-table kernels (vector exp / erf, row reductions, masked tails).
            let geglu = try parity(cpu) { b in try b.geglu(input(b, [3, 2 * 37], seed: 17, scale: 4)) }
            #expect(geglu < 1e-5, "\(used) geglu: \(geglu)")
            let norm = try parity(cpu) { b in
                try b.layerNorm(input(b, [4, 45], seed: 18, scale: 3), weight: input(b, [45], seed: 19), bias: input(b, [45], seed: 20), epsilon: 1e-5)
            }
            #expect(norm < 1e-5, "\(used) layer norm: \(norm)")
            for causal in [false, true] {
                let soft = try parity(cpu) { b in try b.softmax(input(b, [2, 9, 21], seed: 21, scale: 8), causal: causal) }
                #expect(soft < 1e-5, "\(used) softmax causal \(causal): \(soft)")
            }
            let gn = try parity(cpu) { b in
                try b.groupNormSiLU(input(b, [1, 3, 5, 44], seed: 22, scale: 3), groups: 4, weight: input(b, [44], seed: 23), bias: input(b, [44], seed: 24), epsilon: 1e-5)
            }
            #expect(gn < 1e-5, "\(used) group norm + SiLU: \(gn)")
            let att = try parity(cpu) { b in
                try b.attention(query: input(b, [1, 20, 32], seed: 14), key: input(b, [1, 33, 32], seed: 15), value: input(b, [1, 33, 32], seed: 16),
                                heads: 2, scale: 0.25, causal: false)
            }
            #expect(att < 1e-4, "\(used) attention: \(att)")
            // The softmax step's whole-vector, tail and causal paths, a head width with a tail
            // (12), and scores far below each row's maximum (exp under the −86.5 clamp).
            for causal in [false, true] {
                let wide = try parity(cpu) { b in
                    try b.attention(query: input(b, [2, 45, 36], seed: 25, scale: 6), key: input(b, [2, 77, 36], seed: 26, scale: 6),
                                    value: input(b, [2, 77, 36], seed: 27), heads: 3, scale: 1, causal: causal)
                }
                #expect(wide < 1e-4, "\(used) attention, 3 heads of 12, causal \(causal): \(wide)")
            }
        }
    }
}

/// f16 → f32 (f16 weight panels) gives the portable conversion's bits for all 65536 values at every
/// level (AVX-512 and F16C vcvtph2ps, scalar), NaNs included (quieted alike).
@Test func halfConversionEveryInstructionSet() {
    defer { CPUBackend.resetInstructionSet() }
    let all = (0...UInt16.max).map { $0 }
    func convert() -> [UInt32] {
        var out = [Float](repeating: 0, count: all.count)
        all.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { ssd_f16_to_f32(s.baseAddress!, $0.baseAddress!, s.count) } }
        return out.map(\.bitPattern)
    }
    CPUBackend.setInstructionSet("portable")
    let want = convert()
    for isa in ["avx2", "avx512", "neon"] {
        let used = CPUBackend.setInstructionSet(isa)
        let got = convert()
        let wrong = zip(got, want).filter { $0 != $1 }.count
        #expect(wrong == 0, "\(used): \(wrong) of 65536 conversions differ")
    }
}

@Suite struct ConvParityTests {
    /// (B, H, W, Cin, Cout, k, stride, padding)
    static let cases: [[Int]] = [
        [2, 9, 7, 5, 70, 3, 1, 1], [1, 10, 11, 3, 8, 3, 2, 1], [1, 6, 6, 16, 5, 1, 1, 0],
        [1, 8, 5, 4, 66, 3, 1, 0], [2, 5, 5, 7, 9, 3, 2, 2],
    ]

    @Test(arguments: Variant.allCases)
    func conv(_ variant: Variant) throws {
        guard let cpu = try variant.backend() else { return }
        for c in Self.cases {
            let (bt, h, w, cin, cout, k, s, p) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
            let ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1
            let err = try parity(cpu) { b in
                try b.conv2d(input(b, [bt, h, w, cin], seed: 1), weight: weight(b, [cout, cin, k, k], seed: 2, role: .conv2d),
                             bias: input(b, [cout], seed: 3), stride: s, padding: p, residual: input(b, [bt, ho, wo, cout], seed: 4))
            }
            #expect(err < variant.tolerance, "conv \(c): \(err)")
            let noBias = try parity(cpu) { b in
                try b.conv2d(input(b, [bt, h, w, cin], seed: 1), weight: weight(b, [cout, cin, k, k], seed: 2, role: .conv2d),
                             bias: nil, stride: s, padding: p, residual: nil)
            }
            #expect(noBias < variant.tolerance, "conv no bias \(c): \(noBias)")
        }
    }
}

@Suite struct AttentionParityTests {
    @Test(arguments: [
        [2, 50, 50, 2, 24, 0], [1, 37, 77, 3, 40, 0], [2, 77, 77, 2, 64, 1], [1, 300, 300, 1, 8, 1], [1, 1, 5, 1, 16, 0],
        [1, 400, 270, 1, 256, 0],  // a wide head (the VAE's blocks: 192 queries × 128 keys), several of each
    ])
    func attention(_ p: [Int]) throws {
        let cpu = try CPUBackend()
        let (bt, nq, nk, heads, d, causal) = (p[0], p[1], p[2], p[3], p[4], p[5] == 1)
        let err = try parity(cpu) { b in
            try b.attention(query: input(b, [bt, nq, heads * d], seed: 1, scale: 2), key: input(b, [bt, nk, heads * d], seed: 2, scale: 2),
                            value: input(b, [bt, nk, heads * d], seed: 3), heads: heads, scale: 1 / Float(d).squareRoot(), causal: causal)
        }
        #expect(err < 1e-4, "attention \(p): \(err)")
    }

    /// A long sequence (the scores never exist as a whole).
    @Test func longSequence() throws {
        let cpu = try CPUBackend()
        let err = try parity(cpu) { b in
            try b.attention(query: input(b, [1, 1024, 16], seed: 4, scale: 3), key: input(b, [1, 1024, 16], seed: 5, scale: 3),
                            value: input(b, [1, 1024, 16], seed: 6), heads: 1, scale: 0.25, causal: false)
        }
        #expect(err < 1e-4)
    }
}
