import SSDCUDABackend
import SSDModels
import SSDTensor

/// `ssd-cuda-check profile [--model DIR] [--batches 2,32] [--size 1024] [--top 30] [--eager-only 1]`: where the time
/// goes. Without `--model`: the unet-like block at batch 32. With it: the whole UNet at `size`² for
/// each UNet batch (2 = one image with guidance): the eager time per call (profiling off, 10 calls),
/// then one call with every operation's GPU time (CUDA events around it; the operations run back to
/// back as in the eager calls), grouped by category (GEMM, convolution, attention, normalization,
/// elementwise) with achieved TFLOP/s, then the `top` slowest entries. The sum of the operations
/// against the eager time shows what the GPU spends between them (launch gaps, host waits). `eagerOnly` stops after the eager time
/// (for comparing settings quickly).
struct ProfileCheck {
    let cuda: CUDABackend
    var eagerOnly = false
    var random = Random(state: 5)

    init(cuda: CUDABackend) { self.cuda = cuda }

    mutating func run(modelDirectory: String?, batches: [Int], size: Int, top: Int) throws {
        guard let modelDirectory else {
            var bench = Benchmark(cuda: cuda)
            let block = try bench.unetBlock(batch: 32)
            try profile(label: "unet-like block batch 32", top: top) { _ = try block() }
            return
        }
        let start = now()
        let unet = try UNet2DConditionModel.load(componentDirectory: modelDirectory + "/unet", backend: cuda)
        try cuda.synchronize()
        print("PROFILE UNet loaded from \(modelDirectory)/unet in \(format(now() - start, "%.1f")) s")
        for batch in batches {
            let h = size / 8
            let sample = try cuda.upload(random.normal(batch * h * h * 4), shape: [batch, h, h, 4], as: .f16)
            let context = try cuda.upload(random.normal(batch * 77 * 2048, scale: 0.5), shape: [batch, 77, 2048], as: .f16)
            let pooled = try cuda.upload(random.normal(batch * 1280, scale: 0.5), shape: [batch, 1280], as: .f16)
            let side = Float(size)
            let ids: [Float] = (0..<batch).flatMap { _ -> [Float] in [side, side, 0, 0, side, side] }
            try profile(label: "UNet \(size)x\(size) batch \(batch)", top: top) {
                _ = try unet(sample: sample, timesteps: [999], encoderHiddenStates: context, textEmbeds: pooled, timeIDs: ids)
            }
        }
    }

    /// Eager seconds per call, then one profiled call, printed as described on the type.
    func profile(label: String, top: Int, _ call: () throws -> Void) throws {
        cuda.profiling = false
        for _ in 0..<2 { try call() }  // kernels compiled, plans made
        try cuda.synchronize()
        let calls = 10
        let t0 = now()
        for _ in 0..<calls { try call() }
        try cuda.synchronize()
        let eager = (now() - t0) / Double(calls)
        if eagerOnly {
            print("PROFILE \(label): eager \(format(eager * 1e3, "%.2f")) ms per call (\(cuda.deviceDescription))")
            print("PROFILE \(label): \(cuda.tuningReport)")
            return
        }
        try cuda.resetProfile()
        // One call unprofiled and not waited for, so that the profiled call is enqueued while the GPU is
        // still busy: its events then time the GPU's work, not the host's enqueueing (small batches).
        try call()
        cuda.profiling = true
        defer { cuda.profiling = false }
        try call()
        let entries = try cuda.profile
        let total = entries.reduce(0) { $0 + $1.seconds }
        let flops = entries.reduce(0) { $0 + $1.flops }
        print("PROFILE \(label): eager \(format(eager * 1e3, "%.2f")) ms per call (\(format(flops / eager / 1e12, "%.0f")) TFLOP/s counted); "
              + "operations on the GPU (CUDA events) \(format(total * 1e3, "%.2f")) ms in \(entries.reduce(0) { $0 + $1.calls }) calls")
        for g in summarize(entries) {
            print("PROFILE \(label): \(g.name + String(repeating: " ", count: max(0, 13 - g.name.count))) \(format(g.seconds * 1e3, "%8.2f")) ms "
                  + "\(format(100 * g.seconds / max(total, 1e-12), "%5.1f")) %  \(g.calls) calls"
                  + (g.flops > 0 ? "  \(format(g.flops / 1e12, "%.3f")) TFLOP  \(format(g.flopsPerSecond / 1e12, "%.0f")) TFLOP/s" : ""))
        }
        for e in entries.prefix(top) {
            print("PROFILE \(label): \(format(e.seconds * 1e3, "%8.3f")) ms \(format(100 * e.seconds / max(total, 1e-12), "%5.1f")) %  "
                  + "\(e.calls)x  \(e.name)" + (e.flops > 0 ? "  \(format(e.flopsPerSecond / 1e12, "%.0f")) TFLOP/s" : ""))
        }
    }
}
