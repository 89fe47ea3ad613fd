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

    mutating func run(im2col: CUDABackend?) throws {
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
        for (n, nk, heads) in [(4096, 4096, 10), (1024, 1024, 20), (4096, 77, 10), (1024, 77, 20)] {
            let q = try tensor([2, n, heads * 64]), k = try tensor([2, nk, heads * 64]), v = try tensor([2, nk, heads * 64])
            let t = try time { try cuda.attention(query: q, key: k, value: v, heads: heads, scale: 0.125, causal: false) }
            report("flash attention B=2 Nq=\(n) Nk=\(nk) H=\(heads) D=64", seconds: t, flops: 4 * 2 * Double(heads * n * nk * 64))
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
        // Memory-bound ops
        do {
            let x = try tensor([2, 128, 128, 320]), w = try weight([320], .vector), b = try weight([320], .vector)
            let t = try time { try cuda.groupNormSiLU(x, groups: 32, weight: w, bias: b, epsilon: 1e-5) }
            report("groupNormSiLU [2,128,128,320]", seconds: t, bytes: Double(x.count * 2 * 3))
            let g = try tensor([8192, 10240])
            let t2 = try time { try cuda.geglu(g) }
            report("geglu [8192,10240]", seconds: t2, bytes: Double(g.count * 2 * 3 / 2))
            let h = try tensor([2, 64, 64, 640]), temb = try tensor([2, 1, 1, 640])
            let t3 = try time { try cuda.binary(h, temb, .add) }
            report("binary add broadcast [2,64,64,640]+[2,1,1,640]", seconds: t3, bytes: Double(h.count * 2 * 2))
            let t4 = try time { try cuda.concat([h, h], axis: 3) }
            report("concat channels 2x[2,64,64,640]", seconds: t4, bytes: Double(h.count * 2 * 4))
            let t5 = try time { try cuda.layerNorm(h, weight: w.count == 640 ? w : try weight([640], .vector), bias: try weight([640], .vector), epsilon: 1e-5) }
            report("layerNorm [8192,640]", seconds: t5, bytes: Double(h.count * 2 * 3))
        }
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
