import SSDTensor

extension CPUBackend {
    /// Implicit-GEMM convolution (diffusers `nn.Conv2d` on NHWC): each output pixel reads its `kh`
    /// input rows of `kw·Cin` contiguous floats in place; only segments that cross the image border
    /// are assembled with zeros (no padded copy of the input); bias and residual are added in the
    /// GEMM epilogue.
    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        let op = "conv2d"
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
        if kh == 1, kw == 1, padding == 0, stride == 1 {
            runGEMM(rows: .dense(xp, lda: cin), m: m, weight: w, c: y, epilogue: ep)
            return out
        }
        if kh == 3, kw == 3, stride == 1, padding == 1,
           winogradConv2d(xp, batch: b, height: h, width: wd, weight: w, bias: ep.bias, residual: ep.residual, prologue: nil, output: y) {
            return out
        }
        runGEMM(rows: .conv(xp, h: h, w: wd, cin: cin, ho: ho, wo: wo, stride: stride, padding: padding, kw: kw), m: m, weight: w, c: y, epilogue: ep)
        return out
    }
}
