import SSDCUDABackend
import SSDTensor

/// Micro-benchmarks of the ops the UNet spends its time in (fp16), in TFLOP/s or GB/s.
struct Benchmark {
    let cuda: CUDABackend
    var random = Random(state: 7)

    init(cuda: CUDABackend) { self.cuda = cuda }

    mutating func tensor(_ shape: [Int], _ dtype: DType = .f16, scale: Float = 1) throws -> Tensor {
        try cuda.upload(random.normal(shape.reduce(1, *), scale: scale), shape: shape, as: dtype)
    }

    /// Like `tensor`, but at most 2^20 random values repeated (cheap host-side set-up for large inputs).
    mutating func tiledTensor(_ shape: [Int], _ dtype: DType = .f16) throws -> Tensor {
        let count = shape.reduce(1, *)
        let pattern = random.normal(min(count, 1 << 20))
        var values = [Float](repeating: 0, count: count)
        for i in 0..<count { values[i] = pattern[i % pattern.count] }
        return try cuda.upload(values, shape: shape, as: dtype)
    }

    mutating func weight(_ shape: [Int], _ role: WeightRole, _ dtype: DType = .f16) throws -> Tensor {
        try cuda.prepareWeight(HostBuffer.view(of: random.normal(shape.reduce(1, *), scale: 0.05), shape: shape), role: role, activationDType: dtype)
    }

    /// Mean seconds per call after warm-up (the first call also compiles kernels and picks algorithms).
    func time(_ iterations: Int = 20, _ body: () throws -> Tensor) throws -> Double {
        for _ in 0..<3 { _ = try body() }
        try cuda.synchronize()
        let start = now()
        for _ in 0..<iterations { _ = try body() }
        try cuda.synchronize()
        return (now() - start) / Double(iterations)
    }

    func report(_ name: String, seconds: Double, flops: Double? = nil, bytes: Double? = nil) {
        var line = "BENCH \(name.padding(62)) \(format(seconds * 1e3, "%8.3f")) ms"
        if let flops { line += "  \(format(flops / seconds / 1e12, "%7.1f")) TFLOP/s" }
        if let bytes { line += "  \(format(bytes / seconds / 1e9, "%7.0f")) GB/s" }
        print(line)
    }

    /// Times `body` on this backend and, when given, on `legacy` (the first kernels) with its own copies of the inputs.
    mutating func compare(_ name: String, legacy: CUDABackend?, flops: Double? = nil, bytes: Double? = nil,
                          _ body: (inout Benchmark) throws -> () throws -> Tensor) throws {
        let fast = try body(&self)
        report(name + " [fast]", seconds: try time(20, fast), flops: flops, bytes: bytes)
        if let legacy {
            var other = Benchmark(cuda: legacy)
            let old = try body(&other)
            report(name + " [legacy]", seconds: try other.time(20, old), flops: flops, bytes: bytes)
        }
    }

    mutating func run(im2col: CUDABackend?, legacy: CUDABackend? = nil) throws {
        // GEMMs
        do {
            let x = try tensor([8192, 1280]), w = try weight([10240, 1280], .linear), b = try weight([10240], .vector)
            let t = try time { try cuda.linear(x, weight: w, bias: b) }
            report("linear 8192x1280 -> 10240 (+bias) [GEGLU proj]", seconds: t, flops: 2 * 8192 * 1280 * 10240)
            let w2 = try weight([1280, 5120], .linear), x2 = try tensor([8192, 5120]), r = try tensor([8192, 1280])
            let t2 = try time { try cuda.linear(x2, weight: w2, bias: b.count == 1280 ? b : nil, residual: r) }
            report("linear 8192x5120 -> 1280 (+residual) [FF out]", seconds: t2, flops: 2 * 8192 * 5120 * 1280)
            let a = try tensor([8192, 8192]), c = try tensor([8192, 8192])
            let t3 = try time(10) { try cuda.matmul(a, c, transposeA: false, transposeB: false, alpha: 1) }
            report("matmul 8192^3", seconds: t3, flops: 2 * 8192 * 8192 * 8192)
        }
        // Attention
        let variants: [(String, CUDABackend?)] = cuda.usesFastAttention ? [
            ("fast, 4 warps", try? CUDABackend(attentionWarps: 4, cudnnAttention: .off)),
            ("fast, 32 rows per warp, 4 warps", try? CUDABackend(attentionWarps: 4, attentionRowsPerWarp: 32, cudnnAttention: .off)),
            ("fast, 32 rows per warp, 8 warps", try? CUDABackend(attentionWarps: 8, attentionRowsPerWarp: 32, cudnnAttention: .off)),
        ] : []
        for (n, nk, heads) in [(4096, 4096, 10), (1024, 1024, 20), (4096, 77, 10), (1024, 77, 20)] {
            for case let (label, backend?) in variants {
                var other = Benchmark(cuda: backend)
                let q = try other.tensor([2, n, heads * 64]), k = try other.tensor([2, nk, heads * 64]), v = try other.tensor([2, nk, heads * 64])
                let t = try other.time { try backend.attention(query: q, key: k, value: v, heads: heads, scale: 0.125, causal: false) }
                report("flash attention B=2 Nq=\(n) Nk=\(nk) H=\(heads) D=64 [\(label)]", seconds: t, flops: 4 * 2 * Double(heads * n * nk * 64))
            }
            try compare("flash attention B=2 Nq=\(n) Nk=\(nk) H=\(heads) D=64", legacy: legacy, flops: 4 * 2 * Double(heads * n * nk * 64)) { bench in
                let q = try bench.tensor([2, n, heads * 64]), k = try bench.tensor([2, nk, heads * 64]), v = try bench.tensor([2, nk, heads * 64])
                let backend = bench.cuda
                return { try backend.attention(query: q, key: k, value: v, heads: heads, scale: 0.125, causal: false) }
            }
        }
        // Convolutions
        for (hw, c) in [(128, 320), (64, 640), (32, 1280)] {
            let x = try tensor([2, hw, hw, c]), w = try weight([c, c, 3, 3], .conv2d), b = try weight([c], .vector)
            let flops = 2 * 2 * Double(hw * hw * c * c * 9)
            let t = try time { try cuda.conv2d(x, weight: w, bias: b, stride: 1, padding: 1) }
            report("conv3x3 B=2 \(hw)x\(hw) \(c)->\(c) (+bias) default", seconds: t, flops: flops)
            if let im2col {
                var r2 = Benchmark(cuda: im2col)
                let x2 = try r2.tensor([2, hw, hw, c]), w2 = try r2.weight([c, c, 3, 3], .conv2d), b2 = try r2.weight([c], .vector)
                let t2 = try r2.time { try im2col.conv2d(x2, weight: w2, bias: b2, stride: 1, padding: 1) }
                report("conv3x3 B=2 \(hw)x\(hw) \(c)->\(c) (+bias) im2col", seconds: t2, flops: flops)
            }
        }
        // Memory-bound ops (fast and legacy kernels)
        let hc = [2, 64, 64, 640]
        try compare("groupNormSiLU [2,128,128,320]", legacy: legacy, bytes: Double(2 * 128 * 128 * 320 * 2 * 3)) { bench in
            let x = try bench.tensor([2, 128, 128, 320]), w = try bench.weight([320], .vector), b = try bench.weight([320], .vector)
            let backend = bench.cuda
            return { try backend.groupNormSiLU(x, groups: 32, weight: w, bias: b, epsilon: 1e-5) }
        }
        try compare("geglu [8192,10240]", legacy: legacy, bytes: Double(8192 * 10240 * 2 * 3 / 2)) { bench in
            let g = try bench.tensor([8192, 10240])
            let backend = bench.cuda
            return { try backend.geglu(g) }
        }
        try compare("binary add broadcast [2,64,64,640]+[2,1,1,640]", legacy: legacy, bytes: Double(hc.reduce(1, *) * 2 * 2)) { bench in
            let h = try bench.tensor(hc), temb = try bench.tensor([2, 1, 1, 640])
            let backend = bench.cuda
            return { try backend.binary(h, temb, .add) }
        }
        try compare("concat channels 2x[2,64,64,640]", legacy: nil, bytes: Double(hc.reduce(1, *) * 2 * 4)) { bench in
            let h = try bench.tensor(hc)
            let backend = bench.cuda
            return { try backend.concat([h, h], axis: 3) }
        }
        try compare("layerNorm [8192,640]", legacy: legacy, bytes: Double(hc.reduce(1, *) * 2 * 2)) { bench in
            let h = try bench.tensor([8192, 640]), w = try bench.weight([640], .vector), b = try bench.weight([640], .vector)
            let backend = bench.cuda
            return { try backend.layerNorm(h, weight: w, bias: b, epsilon: 1e-5) }
        }
        try compare("conv3x3 64x64 640 +bias+residual (epilogue)", legacy: legacy, flops: 2 * 2 * Double(64 * 64 * 640 * 640 * 9)) { bench in
            let x = try bench.tensor(hc), w = try bench.weight([640, 640, 3, 3], .conv2d), b = try bench.weight([640], .vector)
            let backend = bench.cuda
            return { try backend.conv2d(x, weight: w, bias: b, stride: 1, padding: 1, residual: x) }
        }
    }

    /// One SSD-1B resnet block and one transformer block at the 64² level (640 channels, 10 heads),
    /// batch `batch` (2·K with guidance), on this backend and on `legacy`; ms per pass.
    mutating func unetLike(batch: Int, legacy: CUDABackend?) throws {
        try compare("unet-like resnet+transformer block 64x64x640 batch \(batch)", legacy: legacy) { bench in
            try bench.unetBlock(batch: batch)
        }
    }

    /// One resnet block and one transformer block of SSD-1B's 64² level, as a closure over its inputs and weights.
    mutating func unetBlock(batch: Int) throws -> () throws -> Tensor {
        let (inputs, body) = try unetBlockParts(batch: batch)
        return { try body(inputs) }
    }

    /// The unet-like block's inputs (x `[B, 64, 64, 640]`, context `[B, 77, 2048]`, temb `[B, 1280]`)
    /// and the block as a function of them (its weights captured).
    mutating func unetBlockParts(batch: Int) throws -> (inputs: [Tensor], body: ([Tensor]) throws -> Tensor) {
        let c = 640
        let inputs = [try tiledTensor([batch, 64, 64, c]), try tiledTensor([batch, 77, 2048]), try tensor([batch, 1280])]
        let gw = try weight([c], .vector), gb = try weight([c], .vector)
        let w1 = try weight([c, c, 3, 3], .conv2d), w2 = try weight([c, c, 3, 3], .conv2d)
        let tp = try weight([c, 1280], .linear)
        let wq = try weight([c, c], .linear), wk = try weight([c, c], .linear), wv = try weight([c, c], .linear)
        let wo = try weight([c, c], .linear), ck = try weight([c, 2048], .linear), cv = try weight([c, 2048], .linear)
        let ff1 = try weight([8 * c, c], .linear), ff1b = try weight([8 * c], .vector)
        let ff2 = try weight([c, 4 * c], .linear)
        let b = cuda
        return (inputs, { inputs in
            let (x, ctx, temb) = (inputs[0], inputs[1], inputs[2])
            let n = 4096
            var h = try b.conv2d(b.groupNormSiLU(x, groups: 32, weight: gw, bias: gb, epsilon: 1e-5), weight: w1, bias: gb, stride: 1, padding: 1)
            let t = try b.linear(temb, weight: tp, bias: gb)
            h = try b.binary(h, t.reshaped([batch, 1, 1, c]), .add)
            h = try b.conv2d(b.groupNormSiLU(h, groups: 32, weight: gw, bias: gb, epsilon: 1e-5), weight: w2, bias: gb, stride: 1, padding: 1, residual: x)
            let tokens = try h.reshaped([batch, n, c])
            var s = try b.linear(b.groupNorm(tokens, groups: 32, weight: gw, bias: gb, epsilon: 1e-6), weight: wq, bias: nil)
            var a = try b.layerNorm(s, weight: gw, bias: gb, epsilon: 1e-5)
            var o = try b.attention(query: b.linear(a, weight: wq, bias: nil), key: b.linear(a, weight: wk, bias: nil),
                                    value: b.linear(a, weight: wv, bias: nil), heads: 10, scale: 0.125, causal: false)
            s = try b.linear(o, weight: wo, bias: gb, residual: s)
            a = try b.layerNorm(s, weight: gw, bias: gb, epsilon: 1e-5)
            o = try b.attention(query: b.linear(a, weight: wq, bias: nil), key: b.linear(ctx, weight: ck, bias: nil),
                                value: b.linear(ctx, weight: cv, bias: nil), heads: 10, scale: 0.125, causal: false)
            s = try b.linear(o, weight: wo, bias: gb, residual: s)
            a = try b.layerNorm(s, weight: gw, bias: gb, epsilon: 1e-5)
            s = try b.linear(b.geglu(b.linear(a, weight: ff1, bias: ff1b)), weight: ff2, bias: gb, residual: s)
            return try b.linear(s, weight: wo, bias: gb, residual: tokens)
        })
    }

    /// Repeats a small UNet-like block 20 times; the live bytes must come back to the baseline and
    /// the pool must stop growing after the first pass.
    mutating func memoryStability() throws -> Bool {
        let x = try tensor([2, 64, 64, 320]), w = try weight([320, 320, 3, 3], .conv2d), b = try weight([320], .vector)
        let wq = try weight([320, 320], .linear)
        try cuda.synchronize()
        let baseline = cuda.memoryStatistics().currentBytes
        var reserved: [Int] = []
        for i in 0..<20 {
            let h = try cuda.groupNormSiLU(x, groups: 32, weight: b, bias: b, epsilon: 1e-5)
            let c = try cuda.conv2d(h, weight: w, bias: b, stride: 1, padding: 1, residual: x)
            let t = try c.reshaped([2, 4096, 320])
            let q = try cuda.linear(t, weight: wq, bias: nil)
            let a = try cuda.attention(query: q, key: q, value: q, heads: 5, scale: 0.125, causal: false)
            _ = try cuda.download(a)
            if i % 5 == 4 || i == 0 { reserved.append(cuda.poolReservedBytes) }
        }
        try cuda.synchronize()
        let current = cuda.memoryStatistics().currentBytes
        let stable = current == baseline && Set(reserved.dropFirst()).count <= 1
        print("MEMORY live bytes before \(baseline), after 20 passes \(current); pool reserved at passes 1,5,10,15,20: \(reserved) -> \(stable ? "stable" : "NOT stable")")
        return stable
    }
}
