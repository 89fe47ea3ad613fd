import SSDCUDABackend
import SSDTensor

/// Runs every op on the CUDA backend and on `ReferenceBackend` with the same (dtype-rounded)
/// random inputs and prints ‖cuda − reference‖ / ‖reference‖ against the tolerance of DESIGN.md §7.
final class ParityCheck {
    let cuda: CUDABackend
    let reference = ReferenceBackend()
    var random = Random(state: 2024)
    var failures: [String] = []
    var count = 0
    /// The mode being checked, prefixed to each failure (`graph: attention self N=200 [f16]`).
    var mode = "default"
    /// Only the checks whose label contains this (`ssd-cuda-check parity --only TEXT`), when set.
    nonisolated(unsafe) static var only: String?

    init(cuda: CUDABackend) { self.cuda = cuda }

    /// The same values on both backends: CUDA in `dtype`, the reference in f32 holding the rounded values.
    struct Pair { let cuda: Tensor; let reference: Tensor }

    func input(_ shape: [Int], _ dtype: DType, scale: Float = 1) throws -> Pair {
        let values = random.normal(shape.reduce(1, *), scale: scale)
        let c = try cuda.upload(values, shape: shape, as: dtype)
        let rounded = try cuda.download(c)
        return Pair(cuda: c, reference: try reference.upload(rounded, shape: shape, as: .f32))
    }

    func weight(_ shape: [Int], _ role: WeightRole, _ dtype: DType, scale: Float = 0.1, offset: Float = 0) throws -> Pair {
        let values = random.normal(shape.reduce(1, *), scale: scale).map { $0 + offset }
        let rounded: [Float] = switch dtype {
        case .f16: values.map { HalfConversion.floatFromF16(HalfConversion.f16FromFloat($0)) }
        case .bf16: values.map { HalfConversion.floatFromBF16(HalfConversion.bf16FromFloat($0)) }
        default: values
        }
        let c = try cuda.prepareWeight(HostBuffer.view(of: values, shape: shape), role: role, activationDType: dtype)
        let r = try reference.prepareWeight(HostBuffer.view(of: rounded, shape: shape), role: role, activationDType: .f32)
        return Pair(cuda: c, reference: r)
    }

    /// Compares one op's outputs.
    func check(_ name: String, _ dtype: DType, _ body: () throws -> (Tensor, Tensor)) {
        let label = "\(name) [\(dtype.rawValue)]"
        if let only = Self.only, !label.contains(only) { return }
        count += 1
        do {
            let (c, r) = try body()
            let a = try cuda.download(c), b = try reference.download(r)
            let tolerance = dtype == .f32 ? 1e-4 : 2e-2
            let error = c.shape == r.shape ? relativeError(a, b) : .infinity
            let ok = error <= tolerance && !error.isNaN
            if !ok { failures.append("\(mode): \(label)") }
            print("\(ok ? "PASS" : "FAIL")  \("\(mode): \(label)".padding(76))  rel err \(format(error))  (tol \(format(tolerance, "%.0e")))  shape \(c.shape)")
        } catch {
            failures.append("\(mode): \(label)")
            print("FAIL  \("\(mode): \(label)".padding(76))  error: \(error)")
        }
    }

    /// Runs every check; `convolutionLabel` names the mode (`default`, `graph`, …) in each failure.
    func run(convolutionLabel: String) {
        mode = convolutionLabel
        for dtype in [DType.f16, .f32] {
            check("linear x[2,77,320]·W[640,320]ᵀ+b", dtype) {
                let x = try input([2, 77, 320], dtype), w = try weight([640, 320], .linear, dtype), b = try weight([640], .vector, dtype)
                return (try cuda.linear(x.cuda, weight: w.cuda, bias: b.cuda), try reference.linear(x.reference, weight: w.reference, bias: b.reference))
            }
            check("linear +residual, no bias", dtype) {
                let x = try input([130, 96], dtype), w = try weight([48, 96], .linear, dtype), r = try input([130, 48], dtype)
                return (try cuda.linear(x.cuda, weight: w.cuda, bias: nil, residual: r.cuda),
                        try reference.linear(x.reference, weight: w.reference, bias: nil, residual: r.reference))
            }
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                check("matmul [3,..] transA=\(ta) transB=\(tb) alpha=0.5", dtype) {
                    let a = try input(ta ? [3, 40, 24] : [3, 24, 40], dtype), b = try input(tb ? [3, 56, 40] : [3, 40, 56], dtype)
                    return (try cuda.matmul(a.cuda, b.cuda, transposeA: ta, transposeB: tb, alpha: 0.5),
                            try reference.matmul(a.reference, b.reference, transposeA: ta, transposeB: tb, alpha: 0.5))
                }
            }
            check("matmul shared rank-2 b", dtype) {
                let a = try input([2, 5, 24, 40], dtype), b = try input([40, 56], dtype)
                return (try cuda.matmul(a.cuda, b.cuda, transposeA: false, transposeB: false, alpha: 1),
                        try reference.matmul(a.reference, b.reference, transposeA: false, transposeB: false, alpha: 1))
            }
            for (k, s, p, cin, cout) in [(3, 1, 1, 32, 64), (3, 2, 1, 32, 32), (1, 1, 0, 64, 32), (3, 1, 1, 4, 320), (3, 1, 1, 320, 4)] {
                check("conv2d \(convolutionLabel) \(k)x\(k) s\(s) p\(p) \(cin)->\(cout) +bias+residual", dtype) {
                    let x = try input([2, 12, 10, cin], dtype), w = try weight([cout, cin, k, k], .conv2d, dtype), b = try weight([cout], .vector, dtype)
                    let ho = (12 + 2 * p - k) / s + 1, wo = (10 + 2 * p - k) / s + 1
                    let r = try input([2, ho, wo, cout], dtype)
                    return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: b.cuda, stride: s, padding: p, residual: r.cuda),
                            try reference.conv2d(x.reference, weight: w.reference, bias: b.reference, stride: s, padding: p, residual: r.reference))
                }
            }
            check("conv2d \(convolutionLabel) 3x3 s1 p1 64->64 +bias, no residual", dtype) {
                let x = try input([2, 16, 12, 64], dtype), w = try weight([64, 64, 3, 3], .conv2d, dtype), b = try weight([64], .vector, dtype)
                return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: b.cuda, stride: 1, padding: 1),
                        try reference.conv2d(x.reference, weight: w.reference, bias: b.reference, stride: 1, padding: 1))
            }
            check("conv2d \(convolutionLabel) 3x3 s1 p1 64->32, no bias", dtype) {
                let x = try input([2, 9, 11, 64], dtype), w = try weight([32, 64, 3, 3], .conv2d, dtype)
                return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: nil, stride: 1, padding: 1),
                        try reference.conv2d(x.reference, weight: w.reference, bias: nil, stride: 1, padding: 1))
            }
            for (shape, groups) in [([2, 8, 8, 64], 32), ([1, 40, 40, 320], 32), ([2, 77, 96], 8)] {
                check("groupNorm \(shape) g\(groups)", dtype) {
                    let x = try input(shape, dtype, scale: 2), w = try weight([shape.last!], .vector, dtype, offset: 1), b = try weight([shape.last!], .vector, dtype)
                    return (try cuda.groupNorm(x.cuda, groups: groups, weight: w.cuda, bias: b.cuda, epsilon: 1e-5),
                            try reference.groupNorm(x.reference, groups: groups, weight: w.reference, bias: b.reference, epsilon: 1e-5))
                }
                check("groupNormSiLU \(shape) g\(groups)", dtype) {
                    let x = try input(shape, dtype), w = try weight([shape.last!], .vector, dtype, offset: 1), b = try weight([shape.last!], .vector, dtype)
                    return (try cuda.groupNormSiLU(x.cuda, groups: groups, weight: w.cuda, bias: b.cuda, epsilon: 1e-6),
                            try reference.groupNormSiLU(x.reference, groups: groups, weight: w.reference, bias: b.reference, epsilon: 1e-6))
                }
            }
            check("layerNorm [3,10,1280]", dtype) {
                let x = try input([3, 10, 1280], dtype, scale: 2), w = try weight([1280], .vector, dtype, offset: 1), b = try weight([1280], .vector, dtype)
                return (try cuda.layerNorm(x.cuda, weight: w.cuda, bias: b.cuda, epsilon: 1e-5),
                        try reference.layerNorm(x.reference, weight: w.reference, bias: b.reference, epsilon: 1e-5))
            }
            check("layerNorm [2,77,768]", dtype) {
                let x = try input([2, 77, 768], dtype), w = try weight([768], .vector, dtype, offset: 1), b = try weight([768], .vector, dtype)
                return (try cuda.layerNorm(x.cuda, weight: w.cuda, bias: b.cuda, epsilon: 1e-5),
                        try reference.layerNorm(x.reference, weight: w.reference, bias: b.reference, epsilon: 1e-5))
            }
            for causal in [false, true] {
                check("softmax [2,3,77,77] causal=\(causal)", dtype) {
                    let x = try input([2, 3, 77, 77], dtype, scale: 3)
                    return (try cuda.softmax(x.cuda, causal: causal), try reference.softmax(x.reference, causal: causal))
                }
            }
            let attentionCases: [(String, Int, Int, Int, Int, Bool)] = [
                ("self N=200 H=2 D=64", 200, 200, 2, 64, false),
                ("self N=600 H=2 D=64 (10 key tiles)", 600, 600, 2, 64, false),
                ("causal N=300 H=2 D=64", 300, 300, 2, 64, true),
                ("Nq=1100 Nk=300 H=2 D=64 (128-query blocks)", 1100, 300, 2, 64, false),
                ("cross Nq=1024 Nk=77 H=2 D=64 (128-query blocks)", 1024, 77, 2, 64, false),
                ("causal N=1030 H=1 D=64 (128-query blocks)", 1030, 1030, 1, 64, true),
                ("cross Nq=130 Nk=77 H=3 D=64", 130, 77, 3, 64, false),
                ("causal CLIP N=77 H=4 D=64", 77, 77, 4, 64, true),
                ("D=80 (generic) N=96", 96, 96, 2, 80, false),
                ("D=40 N=70 causal", 70, 70, 2, 40, true),
                ("D=20 unaligned N=33", 33, 50, 3, 20, false),
                ("VAE-like D=512 H=1 N=256", 256, 256, 1, 512, false),
            ]
            for (label, nq, nk, heads, d, causal) in attentionCases {
                check("attention \(label)", dtype) {
                    let q = try input([2, nq, heads * d], dtype), k = try input([2, nk, heads * d], dtype), v = try input([2, nk, heads * d], dtype)
                    let scale = 1 / Float(d).squareRoot()
                    return (try cuda.attention(query: q.cuda, key: k.cuda, value: v.cuda, heads: heads, scale: scale, causal: causal),
                            try reference.attention(query: q.reference, key: k.reference, value: v.reference, heads: heads, scale: scale, causal: causal))
                }
            }
            for kind in Activation.allCases {
                check("activation \(kind.rawValue)", dtype) {
                    let x = try input([3, 1000], dtype, scale: 3)
                    return (try cuda.activation(x.cuda, kind), try reference.activation(x.reference, kind))
                }
            }
            check("geglu [2,77,640]", dtype) {
                let x = try input([2, 77, 640], dtype)
                return (try cuda.geglu(x.cuda), try reference.geglu(x.reference))
            }
            let binaryCases: [([Int], [Int], BinaryOp)] = [
                ([2, 8, 8, 64], [2, 8, 8, 64], .add), ([2, 8, 8, 64], [2, 1, 1, 64], .add), ([4, 5, 64], [64], .multiply),
                ([4, 64], [4, 1], .subtract), ([1, 64], [4, 64], .add), ([3, 7], [3, 7], .divide),
            ]
            for (sa, sb, op) in binaryCases {
                check("binary \(op.rawValue) \(sa) \(sb)", dtype) {
                    let a = try input(sa, dtype)
                    let b = op == .divide ? try positive(sb, dtype) : try input(sb, dtype)
                    return (try cuda.binary(a.cuda, b.cuda, op), try reference.binary(a.reference, b.reference, op))
                }
            }
            check("affine 0.18215·x+0.5", dtype) {
                let x = try input([4, 33], dtype)
                return (try cuda.affine(x.cuda, scale: 0.18215, shift: 0.5), try reference.affine(x.reference, scale: 0.18215, shift: 0.5))
            }
            for axis in [1, 3] {
                check("concat axis \(axis)", dtype) {
                    let a = try input([2, 4, 4, 24], dtype), b = try input(axis == 1 ? [2, 3, 4, 24] : [2, 4, 4, 40], dtype)
                    return (try cuda.concat([a.cuda, b.cuda], axis: axis), try reference.concat([a.reference, b.reference], axis: axis))
                }
            }
            check("slice axis 2 range 3..<7", dtype) {
                let x = try input([2, 5, 9, 6], dtype)
                return (try cuda.slice(x.cuda, axis: 2, range: 3..<7), try reference.slice(x.reference, axis: 2, range: 3..<7))
            }
            check("permute [0,2,1,3]", dtype) {
                let x = try input([2, 7, 3, 5], dtype)
                return (try cuda.permute(x.cuda, [0, 2, 1, 3]), try reference.permute(x.reference, [0, 2, 1, 3]))
            }
            check("permute [3,1,0,2]", dtype) {
                let x = try input([2, 7, 3, 5], dtype)
                return (try cuda.permute(x.cuda, [3, 1, 0, 2]), try reference.permute(x.reference, [3, 1, 0, 2]))
            }
            check("upsampleNearest2x [2,5,6,12]", dtype) {
                let x = try input([2, 5, 6, 12], dtype)
                return (try cuda.upsampleNearest2x(x.cuda), try reference.upsampleNearest2x(x.reference))
            }
            // Upsample2D to an odd skip size (a UNet input that is not a multiple of 32 pixels): ×2, crop, conv.
            check("upsample ×2 cropped to 9×7 + conv 3x3 (upsampleConv2d weight)", dtype) {
                let x = try input([2, 5, 4, 32], dtype), w = try weight([32, 32, 3, 3], .upsampleConv2d, dtype), b = try weight([32], .vector, dtype)
                func run(_ backend: any ComputeBackend, _ x: Tensor, _ w: Tensor, _ b: Tensor) throws -> Tensor {
                    let up = try backend.slice(backend.slice(backend.upsampleNearest2x(x), axis: 1, range: 0..<9), axis: 2, range: 0..<7)
                    return try backend.conv2d(up, weight: w, bias: b, stride: 1, padding: 1)
                }
                return (try run(cuda, x.cuda, w.cuda, b.cuda), try run(reference, x.reference, w.reference, b.reference))
            }
            check("conv2d 3x3 s1 p1 32->32 on 9×7 (63 pixels)", dtype) {
                let x = try input([2, 9, 7, 32], dtype), w = try weight([32, 32, 3, 3], .conv2d, dtype), b = try weight([32], .vector, dtype)
                return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: b.cuda, stride: 1, padding: 1),
                        try reference.conv2d(x.reference, weight: w.reference, bias: b.reference, stride: 1, padding: 1))
            }
            check("conv2d 3x3 s2 p1 32->32 on 9×7", dtype) {
                let x = try input([2, 9, 7, 32], dtype), w = try weight([32, 32, 3, 3], .conv2d, dtype), b = try weight([32], .vector, dtype)
                return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: b.cuda, stride: 2, padding: 1),
                        try reference.conv2d(x.reference, weight: w.reference, bias: b.reference, stride: 2, padding: 1))
            }
            check("groupNormSiLU [2,9,7,32] g8", dtype) {
                let x = try input([2, 9, 7, 32], dtype), w = try weight([32], .vector, dtype, offset: 1), b = try weight([32], .vector, dtype)
                return (try cuda.groupNormSiLU(x.cuda, groups: 8, weight: w.cuda, bias: b.cuda, epsilon: 1e-5),
                        try reference.groupNormSiLU(x.reference, groups: 8, weight: w.reference, bias: b.reference, epsilon: 1e-5))
            }
            for (cin, cout) in [(4, 16), (16, 4), (48, 16), (32, 16), (16, 16)] {
                check("conv2d 3x3 s1 p1 \(cin)->\(cout) on 9×7 +residual", dtype) {
                    let x = try input([2, 9, 7, cin], dtype), w = try weight([cout, cin, 3, 3], .conv2d, dtype), b = try weight([cout], .vector, dtype)
                    let r = try input([2, 9, 7, cout], dtype)
                    return (try cuda.conv2d(x.cuda, weight: w.cuda, bias: b.cuda, stride: 1, padding: 1, residual: r.cuda),
                            try reference.conv2d(x.reference, weight: w.reference, bias: b.reference, stride: 1, padding: 1, residual: r.reference))
                }
            }
            check("groupNormSiLU [2,9,7,16] g8", dtype) {
                let x = try input([2, 9, 7, 16], dtype), w = try weight([16], .vector, dtype, offset: 1), b = try weight([16], .vector, dtype)
                return (try cuda.groupNormSiLU(x.cuda, groups: 8, weight: w.cuda, bias: b.cuda, epsilon: 1e-5),
                        try reference.groupNormSiLU(x.reference, groups: 8, weight: w.reference, bias: b.reference, epsilon: 1e-5))
            }
            check("groupNormSiLUConv2d [2,9,7,16] g8 16->16", dtype) {
                let x = try input([2, 9, 7, 16], dtype), nw = try weight([16], .vector, dtype, offset: 1), nb = try weight([16], .vector, dtype)
                let w = try weight([16, 16, 3, 3], .conv2d, dtype), b = try weight([16], .vector, dtype)
                return (try cuda.groupNormSiLUConv2d(x.cuda, groups: 8, normWeight: nw.cuda, normBias: nb.cuda, epsilon: 1e-5, weight: w.cuda, bias: b.cuda, padding: 1, residual: nil),
                        try reference.groupNormSiLUConv2d(x.reference, groups: 8, normWeight: nw.reference, normBias: nb.reference, epsilon: 1e-5, weight: w.reference, bias: b.reference, padding: 1, residual: nil))
            }
            check("concat [2,9,7,16]+[2,9,7,32] axis 3", dtype) {
                let a = try input([2, 9, 7, 16], dtype), c = try input([2, 9, 7, 32], dtype)
                return (try cuda.concat([a.cuda, c.cuda], axis: 3), try reference.concat([a.reference, c.reference], axis: 3))
            }
            check("embedding 77 ids", dtype) {
                let table = try weight([300, 64], .embedding, dtype, scale: 1)
                let ids = (0..<77).map { Int32(($0 * 37) % 300) }
                return (try cuda.embedding(table.cuda, ids: ids, outputDType: dtype), try reference.embedding(table.reference, ids: ids, outputDType: .f32))
            }
        }
        check("convert f32→f16→f32", .f16) {
            let x = try input([1000], .f32, scale: 100)
            return (try cuda.convert(cuda.convert(x.cuda, to: .f16), to: .f32), try reference.convert(reference.convert(x.reference, to: .f16), to: .f32))
        }
        check("convert f32→bf16→f32", .f16) {
            let x = try input([1000], .f32, scale: 100)
            return (try cuda.convert(cuda.convert(x.cuda, to: .bf16), to: .f32), try reference.convert(reference.convert(x.reference, to: .bf16), to: .f32))
        }
    }

    private func positive(_ shape: [Int], _ dtype: DType) throws -> Pair {
        let values = random.normal(shape.reduce(1, *)).map { abs($0) + 0.5 }
        let c = try cuda.upload(values, shape: shape, as: dtype)
        return Pair(cuda: c, reference: try reference.upload(try cuda.download(c), shape: shape, as: .f32))
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
