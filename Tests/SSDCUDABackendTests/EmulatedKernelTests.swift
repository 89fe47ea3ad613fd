#if canImport(Glibc)
import Foundation
import CCUDA
import SSDTensor
import Testing
@testable import SSDCUDABackend

/// The NVRTC kernels run on the CPU emulator (`KernelEmulator`) against `ReferenceBackend`, with the
/// grids and arguments the backend launches them with. Skipped without a C++ compiler.

/// Host buffers standing in for device memory: fp16 bits or fp32 values.
final class HostBuffer {
    let bytes: UnsafeMutableRawPointer
    let count: Int
    let dtype: DType
    init(count: Int, dtype: DType) {
        self.count = count
        self.dtype = dtype
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(count * dtype.byteSize, 16), alignment: 256)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(count * dtype.byteSize, 16))
    }
    convenience init(_ values: [Float], dtype: DType) {
        self.init(count: values.count, dtype: dtype)
        for (i, v) in values.enumerated() { self[i] = v }
    }
    deinit { bytes.deallocate() }
    var pointer: KernelArgument { .pointer(rawAddress) }
    /// The buffer as a "device pointer" for `KernelCalls`.
    var address: CUdeviceptr { rawAddress }
    var rawAddress: CUdeviceptr { UInt64(UInt(bitPattern: bytes)) }
    subscript(i: Int) -> Float {
        get {
            switch dtype {
            case .f16: return Float(Float16(bitPattern: bytes.load(fromByteOffset: 2 * i, as: UInt16.self)))
            case .bf16: return Float(bitPattern: UInt32(bytes.load(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            case .i32: return Float(bytes.load(fromByteOffset: 4 * i, as: Int32.self))
            default: return bytes.load(fromByteOffset: 4 * i, as: Float.self)
            }
        }
        set {
            switch dtype {
            case .f16: bytes.storeBytes(of: Float16(newValue).bitPattern, toByteOffset: 2 * i, as: UInt16.self)
            case .bf16: bytes.storeBytes(of: UInt16(newValue.bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self)
            default: bytes.storeBytes(of: newValue, toByteOffset: 4 * i, as: Float.self)
            }
        }
    }
    var values: [Float] { (0..<count).map { self[$0] } }
}

/// Values in [-scale, scale), rounded to fp16 so that both sides see the same inputs.
func halfValues(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Float16(scale * (Float(state >> 40) / Float(1 << 24) * 2 - 1)))
    }
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return (num / max(den, 1e-30)).squareRoot()
}

/// The emulated launches of `CUDABackend`, fast (fp16 vectorised) or first kernels, or nil (and
/// the test returns) without a C++ compiler.
/// `SSD_CUDA_REQUIRE_EMULATOR=1` (set by `.ci/run`) turns a missing compiler into a failure.
func emulatedCalls(fast: Bool = true, fastAttention: Bool = true, warps: Int = 8) -> KernelCalls? {
    guard KernelEmulator.compiler != nil else {
        if ProcessInfo.processInfo.environment["SSD_CUDA_REQUIRE_EMULATOR"] == "1" {
            Issue.record("SSD_CUDA_REQUIRE_EMULATOR=1 but no C++ compiler (c++, clang++, g++) is on PATH")
        }
        return nil
    }
    return KernelCalls(launcher: EmulatedDevice(), fast: fast, fastAttention: fastAttention, attentionWarps: warps)
}

/// fp16 results against the fp32 reference on fp16-rounded inputs; fp32 results nearly exactly.
func tolerance(_ dtype: DType) -> Double { dtype == .f32 ? 2e-6 : 3e-3 }

@Suite(.serialized) struct EmulatedKernelTests {
    let reference = ReferenceBackend()

    func tensor(_ values: [Float], _ shape: [Int]) throws -> Tensor { try reference.upload(values, shape: shape) }
    func expect(_ actual: [Float], _ expected: [Float], _ dtype: DType, _ label: String) {
        let error = relativeError(actual, expected)
        #expect(actual.count == expected.count && error <= tolerance(dtype), "\(label): relative error \(error)")
    }

    /// `CUDABackend.attention`'s fp16 paths: the double-buffered `ldmatrix` kernel (4 warps, and 8
    /// from 1024 queries; 16 or 32 query rows per warp), the first flash kernel (head dim padded to 64 or 128), partial tiles,
    /// causal or not; a head dim over 128 is left to the caller.
    @Test(arguments: [
        (fastAttention: true, rows: 32, d: 64, nq: 150, nk: 77, causal: false),
        (fastAttention: true, rows: 32, d: 64, nq: 200, nk: 150, causal: true),
        (fastAttention: true, rows: 32, d: 64, nq: 1100, nk: 77, causal: false),
        (fastAttention: true, rows: 32, d: 64, nq: 1030, nk: 140, causal: true),
        (fastAttention: true, rows: 16, d: 64, nq: 150, nk: 77, causal: false),
        (fastAttention: true, rows: 16, d: 64, nq: 70, nk: 150, causal: true),
        (fastAttention: true, rows: 16, d: 64, nq: 1030, nk: 77, causal: false),
        (fastAttention: true, rows: 16, d: 64, nq: 1030, nk: 70, causal: true),
        (fastAttention: false, rows: 16, d: 64, nq: 90, nk: 77, causal: false),
        (fastAttention: true, rows: 16, d: 40, nq: 90, nk: 77, causal: false),
        (fastAttention: true, rows: 16, d: 80, nq: 70, nk: 100, causal: true),
        (fastAttention: true, rows: 16, d: 36, nq: 30, nk: 20, causal: false),
    ])
    func attention(_ c: (fastAttention: Bool, rows: Int, d: Int, nq: Int, nk: Int, causal: Bool)) throws {
        guard var calls = emulatedCalls(fastAttention: c.fastAttention) else { return }
        calls.attentionRowsPerWarp = c.rows
        let b = c.nq > 1000 ? 1 : 2, heads = 2, width = heads * c.d
        let q = halfValues(b * c.nq * width, seed: 1), k = halfValues(b * c.nk * width, seed: 2), v = halfValues(b * c.nk * width, seed: 3)
        let scale = 1 / Float(c.d).squareRoot()
        let qb = HostBuffer(q, dtype: .f16), kb = HostBuffer(k, dtype: .f16), vb = HostBuffer(v, dtype: .f16)
        let ob = HostBuffer(count: b * c.nq * width, dtype: .f16)
        let ran = try calls.flashAttention(qb.address, kb.address, vb.address, ob.address, b: b, nq: c.nq, nk: c.nk, heads: heads,
                                           headDim: c.d, scale: scale, causal: c.causal)
        #expect(ran)
        let expected = try reference.download(reference.attention(
            query: tensor(q, [b, c.nq, width]), key: tensor(k, [b, c.nk, width]), value: tensor(v, [b, c.nk, width]),
            heads: heads, scale: scale, causal: c.causal))
        expect(ob.values, expected, .f16, "attention \(c)")
    }

    @Test func attentionOverHeadDim128IsLeftToTheCaller() throws {
        guard let calls = emulatedCalls() else { return }
        let x = HostBuffer(count: 2 * 160, dtype: .f16)
        #expect(try !calls.flashAttention(x.address, x.address, x.address, x.address, b: 1, nq: 2, nk: 2, heads: 1, headDim: 160,
                                          scale: 1, causal: false))
    }

    /// Group norm (+ SiLU): vectorised fp16, first kernels fp16 and fp32; chunks of 32 rows with a
    /// partial last chunk; 2 and 10 channels per group.
    @Test(arguments: [
        (fast: true, dtype: DType.f16, b: 2, hw: 37, c: 64, groups: 32, silu: false),
        (fast: true, dtype: DType.f16, b: 2, hw: 70, c: 320, groups: 32, silu: true),
        (fast: false, dtype: DType.f16, b: 2, hw: 37, c: 64, groups: 32, silu: true),
        (fast: true, dtype: DType.f32, b: 1, hw: 45, c: 96, groups: 8, silu: false),
    ])
    func groupNorm(_ c: (fast: Bool, dtype: DType, b: Int, hw: Int, c: Int, groups: Int, silu: Bool)) throws {
        guard let calls = emulatedCalls(fast: c.fast) else { return }
        let x = halfValues(c.b * c.hw * c.c, seed: 4, scale: 3).map { $0 + 0.5 }
        let w = halfValues(c.c, seed: 5).map { Float(Float16($0 + 1)) }, bias = halfValues(c.c, seed: 6)
        let xb = HostBuffer(x, dtype: c.dtype), yb = HostBuffer(count: x.count, dtype: c.dtype)
        let wb = HostBuffer(w, dtype: c.dtype), bb = HostBuffer(bias, dtype: c.dtype)
        let scratch = KernelCalls.groupNormScratch(b: c.b, hw: c.hw, channels: c.c, groups: c.groups)
        let partial = HostBuffer(count: scratch.partial, dtype: .f32), stats = HostBuffer(count: scratch.stats, dtype: .f32)
        let code = CUDABackend.code(c.dtype)
        try calls.groupNorm(xb.address, yb.address, partial: partial.address, stats: stats.address, weight: wb.address, weightType: code,
                            bias: bb.address, biasType: code, b: c.b, hw: c.hw, channels: c.c, groups: c.groups, epsilon: 1e-5,
                            silu: c.silu, type: code)
        let xt = try tensor(x, [c.b, c.hw, c.c]), wt = try tensor(w, [c.c]), bt = try tensor(bias, [c.c])
        let expected = try reference.download(c.silu ? reference.groupNormSiLU(xt, groups: c.groups, weight: wt, bias: bt, epsilon: 1e-5)
                                                     : reference.groupNorm(xt, groups: c.groups, weight: wt, bias: bt, epsilon: 1e-5))
        expect(yb.values, expected, c.dtype, "groupNorm \(c)")
    }

    /// Layer norm: the warp-per-row fp16 kernel (C ≤ 2048, multiple of 8) and the first kernel.
    @Test(arguments: [
        (fast: true, dtype: DType.f16, rows: 19, c: 640), (fast: true, dtype: DType.f16, rows: 9, c: 2048),
        (fast: true, dtype: DType.f16, rows: 9, c: 36), (fast: false, dtype: DType.f16, rows: 9, c: 640),
        (fast: true, dtype: DType.f32, rows: 11, c: 768),
    ])
    func layerNorm(_ c: (fast: Bool, dtype: DType, rows: Int, c: Int)) throws {
        guard let calls = emulatedCalls(fast: c.fast) else { return }
        let x = halfValues(c.rows * c.c, seed: 7, scale: 2).map { $0 + 0.25 }
        let w = halfValues(c.c, seed: 8).map { Float(Float16($0 + 1)) }, bias = halfValues(c.c, seed: 9)
        let xb = HostBuffer(x, dtype: c.dtype), yb = HostBuffer(count: x.count, dtype: c.dtype)
        let wb = HostBuffer(w, dtype: c.dtype), bb = HostBuffer(bias, dtype: c.dtype)
        let code = CUDABackend.code(c.dtype)
        try calls.layerNorm(xb.address, yb.address, weight: wb.address, weightType: code, bias: bb.address, biasType: code,
                            rows: c.rows, channels: c.c, epsilon: 1e-5, type: code)
        let expected = try reference.download(reference.layerNorm(tensor(x, [c.rows, c.c]), weight: tensor(w, [c.c]),
                                                                  bias: tensor(bias, [c.c]), epsilon: 1e-5))
        expect(yb.values, expected, c.dtype, "layerNorm \(c)")
    }

    @Test(arguments: [(DType.f16, false), (DType.f16, true), (DType.f32, true)])
    func softmax(_ dtype: DType, _ causal: Bool) throws {
        guard let calls = emulatedCalls() else { return }
        let shape = [2, 3, 20, 77]
        let x = halfValues(shape.reduce(1, *), seed: 10, scale: 4)
        let xb = HostBuffer(x, dtype: dtype), yb = HostBuffer(count: x.count, dtype: dtype)
        try calls.softmax(xb.address, yb.address, rows: 2 * 3 * 20, n: 77, nq: 20, queryOffset: 0, causal: causal,
                          type: CUDABackend.code(dtype))
        let expected = try reference.download(reference.softmax(tensor(x, shape), causal: causal))
        expect(yb.values, expected, dtype, "softmax \(dtype) causal \(causal)")
    }

    @Test(arguments: [(true, DType.f16, 40), (false, DType.f16, 40), (true, DType.f16, 12), (true, DType.f32, 40)])
    func geglu(_ fast: Bool, _ dtype: DType, _ n: Int) throws {
        guard let calls = emulatedCalls(fast: fast) else { return }
        let rows = 13
        let x = halfValues(rows * 2 * n, seed: 11, scale: 3)
        let xb = HostBuffer(x, dtype: dtype), yb = HostBuffer(count: rows * n, dtype: dtype)
        try calls.geglu(xb.address, yb.address, rows: rows, n: n, type: CUDABackend.code(dtype))
        let expected = try reference.download(reference.geglu(tensor(x, [rows, 2 * n])))
        expect(yb.values, expected, dtype, "geglu fast \(fast) \(dtype) n \(n)")
    }

    /// Same-shape and `[B, P, C] ∘ [B, 1, C]` (vectorised), general broadcasting (first kernel).
    @Test(arguments: [
        (fast: true, a: [2, 5, 16], b: [2, 5, 16], op: BinaryOp.add), (fast: true, a: [2, 6, 24], b: [2, 1, 24], op: .add),
        (fast: true, a: [3, 4, 5], b: [4, 1], op: .multiply), (fast: false, a: [2, 5, 16], b: [2, 1, 16], op: .subtract),
        (fast: true, a: [2, 3, 8], b: [3, 8], op: .divide),
    ])
    func binary(_ c: (fast: Bool, a: [Int], b: [Int], op: BinaryOp)) throws {
        guard let calls = emulatedCalls(fast: c.fast) else { return }
        let a = halfValues(c.a.reduce(1, *), seed: 12), b = halfValues(c.b.reduce(1, *), seed: 13).map { Float(Float16($0 + 2)) }
        let (shape, dims) = try CUDABackend.broadcastLayout(c.a, c.b)
        let ab = HostBuffer(a, dtype: .f16), bb = HostBuffer(b, dtype: .f16), yb = HostBuffer(count: shape.reduce(1, *), dtype: .f16)
        let code: Int
        switch c.op { case .add: code = 0; case .subtract: code = 1; case .multiply: code = 2; case .divide: code = 3 }
        try calls.binary(ab.address, bb.address, yb.address, count: yb.count, type: 1, dims: dims, op: code)
        let expected = try reference.download(reference.binary(tensor(a, c.a), tensor(b, c.b), c.op))
        expect(yb.values, expected, .f16, "binary \(c)")
    }

    @Test(arguments: [(true, true, true), (true, true, false), (true, false, true), (false, true, true)])
    func biasResidual(_ fast: Bool, _ withBias: Bool, _ withResidual: Bool) throws {
        guard let calls = emulatedCalls(fast: fast) else { return }
        let rows = 7, c = 24
        let y = halfValues(rows * c, seed: 14), bias = halfValues(c, seed: 15), residual = halfValues(rows * c, seed: 16)
        let yb = HostBuffer(y, dtype: .f16), bb = HostBuffer(bias, dtype: .f16), rb = HostBuffer(residual, dtype: .f16)
        try calls.biasResidual(yb.address, bias: withBias ? bb.rawAddress : 0, residual: withResidual ? rb.rawAddress : 0,
                               rows: rows, channels: c, type: 1)
        let expected = (0..<rows * c).map { i in y[i] + (withBias ? bias[i % c] : 0) + (withResidual ? residual[i] : 0) }
        expect(yb.values, expected, .f16, "biasResidual fast \(fast) bias \(withBias) residual \(withResidual)")
    }

    @Test func convertActivationAffine() throws {
        guard let calls = emulatedCalls() else { return }
        let x = halfValues(300, seed: 17, scale: 5)
        let f32 = HostBuffer(x, dtype: .f32), f16 = HostBuffer(count: 300, dtype: .f16), bf16 = HostBuffer(count: 300, dtype: .bf16)
        let back = HostBuffer(count: 300, dtype: .f32)
        try calls.convert(f32.address, f16.address, count: 300, from: 0, to: 1)
        expect(f16.values, x, .f32, "convert f32 → f16 (values already fp16)")
        try calls.convert(f32.address, bf16.address, count: 300, from: 0, to: 2)
        expect(bf16.values, x.map { Float(bitPattern: (($0.bitPattern &+ 0x7fff &+ (($0.bitPattern >> 16) & 1)) >> 16) << 16) }, .f32,
               "convert f32 → bf16 (nearest even)")
        try calls.convert(f16.address, back.address, count: 300, from: 1, to: 0)
        expect(back.values, x, .f32, "convert f16 → f32")
        let xt = try tensor(x, [300])
        for (kind, activation) in [(0, Activation.silu), (1, .gelu), (2, .quickGELU), (3, .relu), (4, .tanh)] {
            let y = HostBuffer(count: 300, dtype: .f32)
            try calls.activation(f32.address, y.address, count: 300, type: 0, kind: kind)
            expect(y.values, try reference.download(reference.activation(xt, activation)), .f32, "activation \(activation)")
        }
        let y = HostBuffer(count: 300, dtype: .f16)
        try calls.affine(f16.address, y.address, count: 300, type: 1, scale: 0.5, shift: -1)
        expect(y.values, x.map { 0.5 * $0 - 1 }, .f16, "affine")
    }

    /// Row copies (concat and slice), permutations, nearest 2× upsampling and embeddings move bytes exactly.
    @Test func dataMovement() throws {
        guard let calls = emulatedCalls() else { return }
        let x = halfValues(2 * 3 * 4 * 5, seed: 18)
        let xb = HostBuffer(x, dtype: .f16)
        // copy2d: columns 1..<3 of each 5-wide row into a 2-wide destination.
        let sliced = HostBuffer(count: 24 * 2, dtype: .f16)
        try calls.copy2d(from: xb.rawAddress, to: sliced.rawAddress, rows: 24, cols: 2, sourceStride: 5, sourceOffset: 1,
                         destinationStride: 2, destinationOffset: 0, elementSize: 2)
        let slicedExpected: [Float] = (0..<24).flatMap { (r: Int) -> [Float] in [x[r * 5 + 1], x[r * 5 + 2]] }
        #expect(sliced.values == slicedExpected)
        for dims in [[0, 2, 1, 3], [3, 1, 0, 2], [0, 1, 3, 2]] {
            let (shape, strides) = CUDABackend.permuteLayout([2, 3, 4, 5], dims)
            let y = HostBuffer(count: x.count, dtype: .f16)
            try calls.permute(xb.address, y.address, count: x.count, elementSize: 2, shape: shape, strides: strides)
            let expected = try reference.download(reference.permute(tensor(x, [2, 3, 4, 5]), dims))
            #expect(y.values == expected, "permute \(dims)")
        }
        let up = HostBuffer(count: x.count * 4, dtype: .f16)
        try calls.upsample2x(xb.address, up.address, b: 2, h: 3, w: 4, channels: 5, elementSize: 2)
        let upExpected = try reference.download(reference.upsampleNearest2x(tensor(x, [2, 3, 4, 5])))
        #expect(up.values == upExpected)
        let ids: [Int32] = [3, 0, 5, 3]
        let idBuffer = HostBuffer(count: ids.count, dtype: .i32)
        for (i, id) in ids.enumerated() { idBuffer.bytes.storeBytes(of: id, toByteOffset: 4 * i, as: Int32.self) }
        let rows = HostBuffer(count: ids.count * 20, dtype: .f32)
        try calls.embedding(xb.address, tableType: 1, ids: idBuffer.rawAddress, rows.address, outputType: 0, count: ids.count, dim: 20)
        let gathered: [Float] = ids.flatMap { (id: Int32) -> [Float] in Array(x[Int(id) * 20 ..< Int(id) * 20 + 20]) }
        #expect(rows.values == gathered)
    }

    /// The im2col rows of the no-cuDNN convolution path, padding and stride included, against a
    /// direct gather; a window of rows.
    @Test func im2col() throws {
        guard let calls = emulatedCalls() else { return }
        let (b, h, w, c, k, stride, padding) = (2, 5, 6, 8, 3, 2, 1)
        let oh = (h + 2 * padding - k) / stride + 1, ow = (w + 2 * padding - k) / stride + 1
        let x = halfValues(b * h * w * c, seed: 19)
        let xb = HostBuffer(x, dtype: .f16)
        let r0 = 3, rows = b * oh * ow - 4
        let col = HostBuffer(count: rows * k * k * c, dtype: .f16)
        try calls.im2col(xb.address, col.address, unit: 16, height: h, width: w, channelUnits: c * 2 / 16, kernelHeight: k,
                         kernelWidth: k, stride: stride, padding: padding, outHeight: oh, outWidth: ow, firstRow: r0, rows: rows)
        var expected: [Float] = []
        for row in r0..<(r0 + rows) {
            let n = row / (oh * ow), oy = row / ow % oh, ox = row % ow
            for ky in 0..<k { for kx in 0..<k { for ch in 0..<c {
                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                expected.append(iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((n * h + iy) * w + ix) * c + ch] : 0)
            } } }
        }
        #expect(col.values == expected)
    }
}
#endif
