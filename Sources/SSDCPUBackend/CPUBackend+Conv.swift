import SSDTensor

extension CPUBackend {
    /// Implicit-GEMM convolution (diffusers `nn.Conv2d` on NHWC): each output pixel reads its `kh`
    /// input rows of `kw·Cin` contiguous floats in place; blocks that touch the image border read a
    /// small band of input rows assembled with zeros (no padded copy of the input); bias and
    /// residual are added in the GEMM epilogue.
    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        try convolution(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual, op: "conv2d") { _ in nil }
    }

    /// `conv2d(silu(groupNorm(x)))` with the group norm and SiLU applied as the convolution reads
    /// its input (diffusers `ResnetBlock2D`'s `norm → nonlinearity → conv`): the normalised tensor
    /// is never stored, so the block holds one activation less.
    public func groupNormSiLUConv2d(_ x: Tensor, groups: Int, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                    weight: Tensor, bias: Tensor?, padding: Int, residual: Tensor?) throws -> Tensor {
        let op = "groupNormSiLUConv2d"
        let coefficients = try groupNormCoefficients(x, groups: groups, weight: normWeight, bias: normBias, epsilon: epsilon, op: op)
        return try convolution(x, weight: weight, bias: bias, stride: 1, padding: padding, residual: residual, op: op) { _ in
            ConvPrologue(scale: coefficients.scale, shift: coefficients.shift, silu: true)
        }
    }

    /// The shared body of `conv2d` and `groupNormSiLUConv2d`; `prologue` is asked once the shapes are checked.
    private func convolution(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?,
                             op: String, prologue: (ConvGeometry) -> ConvPrologue?) throws -> Tensor {
        let xp = try x.cpuFloats(op)
        guard x.rank == 4, weight.rank == 4 else {
            throw TensorError.shapeMismatch(op: op, expected: [-1, -1, -1, -1], actual: x.rank == 4 ? weight.shape : x.shape)
        }
        guard stride >= 1, padding >= 0 else {
            throw TensorError.invalidArgument(op: op, message: "stride \(stride) and padding \(padding) must be ≥ 1 and ≥ 0")
        }
        let (b, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let w = try packedWeight(weight, op: op, kernel: (weight.shape[0], weight.shape[2], weight.shape[3]))
        guard w.inChannels == cin else { throw TensorError.shapeMismatch(op: op, expected: [w.n, cin, w.kernelH, w.kernelW], actual: weight.shape) }
        let (kh, kw) = (w.kernelH, w.kernelW)
        let hp = h + 2 * padding, wp = wd + 2 * padding
        guard hp >= kh, wp >= kw else { throw TensorError.invalidArgument(op: op, message: "input \(x.shape) smaller than the kernel") }
        let ho = (hp - kh) / stride + 1, wo = (wp - kw) / stride + 1
        let outShape = [b, ho, wo, w.n]
        let ep = try epilogue(op, bias: bias, n: w.n, residual: residual, shape: outShape)
        let out = allocate(outShape)
        let y = try out.cpuBuffer(op).floats
        let m = b * ho * wo
        let geometry = ConvGeometry(batch: b, h: h, w: wd, cin: cin, ho: ho, wo: wo, stride: stride,
                                    padTop: padding, padLeft: padding, kh: kh, kw: kw)
        let pro = prologue(geometry)
        if kh == 1, kw == 1, padding == 0, stride == 1, pro == nil {
            runGEMM(rows: .dense(xp, lda: cin), m: m, weight: w, c: y, epilogue: ep)
            return out
        }
        if kh == 3, kw == 3, stride == 1, padding == 1,
           winogradBF16Conv2d(xp, batch: b, height: h, width: wd, weight: w, bias: ep.bias, residual: ep.residual, prologue: pro, output: y)
            || winogradConv2d(xp, batch: b, height: h, width: wd, weight: w, bias: ep.bias, residual: ep.residual, prologue: pro, output: y) {
            return out
        }
        runGEMM(rows: .conv(xp, geometry, prologue: pro), m: m, weight: w, c: y, epilogue: ep)
        return out
    }

    /// diffusers `Upsample2D` (nearest ×2, then 3×3 convolution, padding 1) without the upsampled
    /// tensor: output pixel `(2i + py, 2j + px)` is a 2×2 convolution of the input around `(i, j)`
    /// with the phase kernel `(py, px)` (the 3×3 taps that land on the same input pixel, summed at
    /// load time), so each phase is an implicit GEMM with 4/9 of the multiplications, written
    /// straight into every other pixel of the output.
    public func upsampleNearest2xConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        let op = "upsampleNearest2xConv2d"
        guard let phases = weight.storage as? UpsampleConvWeight else {
            return try conv2d(upsampleNearest2x(x), weight: weight, bias: bias, stride: 1, padding: 1, residual: nil)
        }
        let xp = try x.cpuFloats(op)
        guard x.rank == 4, x.shape[3] == phases.inChannels else {
            throw TensorError.shapeMismatch(op: op, expected: [-1, -1, -1, phases.inChannels], actual: x.shape)
        }
        let (b, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let n = phases.outChannels
        let ep = try epilogue(op, bias: bias, n: n, residual: nil, shape: [b, 2 * h, 2 * wd, n])
        let out = allocate([b, 2 * h, 2 * wd, n])
        let y = try out.cpuBuffer(op).floats
        for py in 0..<2 {
            for px in 0..<2 {
                let geometry = ConvGeometry(batch: b, h: h, w: wd, cin: cin, ho: h, wo: wd, stride: 1,
                                            padTop: 1 - py, padLeft: 1 - px, kh: 2, kw: 2)
                // Input pixel (i, j) of image row line `bi·h + i` → output pixel (2i + py, 2j + px).
                let output = GEMMOutput(c: y + (py * 2 * wd + px) * n, ldc: 2 * n, lineLength: wd, lineStride: 4 * wd * n)
                runGEMM(rows: .conv(xp, geometry, prologue: nil), m: b * h * wd, weight: phases.phase(py, px), output: output, epilogue: ep)
            }
        }
        return out
    }
}

/// An `Upsample2D` convolution weight prepared as four 2×2 phase kernels (role `.upsampleConv2d`), and as a
/// plain 3×3 kernel for `conv2d` after an upsampling that is cropped (a UNet input that is not a multiple of
/// its total downscale: diffusers' `upsample_size`).
final class UpsampleConvWeight: TensorStorage, @unchecked Sendable {
    /// Phase `(py, px)` at index `2·py + px`.
    let phases: [PackedWeight]
    let outChannels: Int
    let inChannels: Int
    /// The 3×3 kernel as `conv2d` takes it.
    var plain: PackedWeight?

    var byteCount: Int { phases.reduce(0) { $0 + $1.byteCount } + (plain?.byteCount ?? 0) }

    func phase(_ py: Int, _ px: Int) -> PackedWeight { phases[2 * py + px] }

    /// `source` is `[Cout, Cin, 3, 3]` (PyTorch order) in fp32.
    init(source: UnsafePointer<Float>, outChannels n: Int, inChannels cin: Int, layout: PackedWeight.Layout, counter: MemoryCounter) {
        // Output row 2i + py reads upsampled rows 2i + py − 1 … 2i + py + 1, i.e. input rows
        // i + py − 1 + a for a ∈ {0, 1}; `taps[py][a]` lists the kernel rows that land on input row a.
        let taps = [[[0], [1, 2]], [[0, 1], [2]]]
        var built: [PackedWeight] = []
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n * 4 * cin))
        defer { rows.deallocate() }
        for py in 0..<2 {
            for px in 0..<2 {
                // [n, a, b, ci] (the NHWC (ky, kx, ci) order the packing expects).
                Parallel.forEach(n) { o in
                    for a in 0..<2 { for bx in 0..<2 {
                        let dst = rows + ((o * 2 + a) * 2 + bx) * cin
                        for ci in 0..<cin {
                            var sum: Float = 0
                            for ky in taps[py][a] { for kx in taps[px][bx] { sum += source[((o * cin + ci) * 3 + ky) * 3 + kx] } }
                            dst[ci] = sum
                        }
                    } }
                }
                built.append(PackedWeight(fromRows: rows, n: n, kernelH: 2, kernelW: 2, inChannels: cin, layout: layout, counter: counter))
            }
        }
        phases = built
        outChannels = n
        inChannels = cin
    }
}
