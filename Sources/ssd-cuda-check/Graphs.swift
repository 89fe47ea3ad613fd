import SSDCUDABackend
import SSDModels
import SSDTensor

/// `ssd-cuda-check graphs [--model DIR] [--batches 2,8] [--size 1024] [--replays 20]`: CUDA graph
/// replay (`runReplayable`) against eager execution, on the same backend and weights.
///
/// 1. the unet-like block (no model needed), batch 2;
/// 2. with `--model` (a full-size folder, e.g. `Scripts/make_fixtures.py full-size --out DIR`): the
///    whole UNet at `size`² for each UNet batch (2 = one image with guidance, 8 = four).
///
/// Per case: eager outputs for two inputs (timestep 999 then 500 for the UNet: the second must not
/// replay a baked-in timestep), then graphs on: warm-up call, capture call (compared with the
/// first eager output), replay with the second input (compared with the second); calls/s eager
/// and replayed; live + graph memory and the pool before and after `replays` more replays (must be
/// equal). A refused capture prints the reason and fails the case; nothing aborts the run.
struct GraphCheck {
    let cuda: CUDABackend
    var random = Random(state: 11)
    var failures: [String] = []
    /// Calls timed per mode (`--timed`, default 20).
    var timedCalls = 20

    init(cuda: CUDABackend) { self.cuda = cuda }

    /// Graphs on, other settings from the environment (SSD_CUDA_GRAPH_CAPTURE_MODE, …).
    static var graphsOn: CUDAGraphOptions {
        var options = CUDAGraphOptions.fromEnvironment().options
        options.enabled = true
        options.maxWorkingBytes = Int.max >> 1  // measure every case; the default limit is for pipelines
        return options
    }

    mutating func run(modelDirectory: String?, batches: [Int], size: Int, replays: Int, block: Bool = true) {
        print("GRAPHS device: \(cuda.deviceDescription)")
        if let reason = cuda.graphsUnavailableReason {
            print("GRAPHS UNAVAILABLE: \(reason)")
            failures.append("graphs unavailable")
            return
        }
        if block { do {
            var bench = Benchmark(cuda: cuda)
            let (inputs, body) = try bench.unetBlockParts(batch: 2)
            let other = [try bench.tiledTensor(inputs[0].shape), inputs[1], inputs[2]]
            let backend = cuda
            // The block's ops are not wrapped in a region of their own: wrap them here.
            try compare(label: "unet-like block batch 2", replays: replays) { which in
                try backend.runReplayable(key: "unet-like block", inputs: which == 0 ? inputs : other) { [try body($0)] }[0]
            }
        } catch {
            print("GRAPHS unet-like block: error \(error)")
            failures.append("unet-like block: \(error)")
        } }
        guard let modelDirectory else {
            print("GRAPHS no --model DIR given: the full UNet check is skipped")
            return
        }
        let unet: UNet2DConditionModel
        do {
            let start = now()
            cuda.graphOptions = .disabled
            unet = try UNet2DConditionModel.load(componentDirectory: modelDirectory + "/unet", backend: cuda)
            try cuda.synchronize()
            print("GRAPHS UNet loaded from \(modelDirectory)/unet in \(format(now() - start, "%.1f")) s; live \(mib(cuda.memoryStatistics().currentBytes)) MiB")
        } catch {
            print("GRAPHS cannot load the UNet from \(modelDirectory)/unet: \(error)")
            failures.append("UNet load")
            return
        }
        for batch in batches {
            do {
                try checkUNet(unet, batch: batch, size: size, replays: replays)
            } catch {
                print("GRAPHS UNet batch \(batch): error \(error)")
                failures.append("UNet batch \(batch): \(error)")
            }
        }
        cuda.releaseGraphs()
        print("GRAPHS after releaseGraphs: live+graph \(mib(cuda.memoryStatistics().currentBytes)) MiB, graph reserved \(mib(cuda.graphReservedBytes)) MiB, pool reserved \(mib(cuda.poolReservedBytes)) MiB")
    }

    mutating func checkUNet(_ unet: UNet2DConditionModel, batch: Int, size: Int, replays: Int) throws {
        // Inputs shaped by the UNet's config (SSD-1B: 4 latent channels, 2048-wide text, 1280 pooled).
        let h = size / 8
        let channels = unet.config.inChannels
        let contextWidth: Int
        switch unet.config.crossAttentionDim {
        case let .one(v): contextWidth = v
        case let .many(v): contextWidth = v.first ?? 2048
        }
        let pooledWidth = (unet.config.projectionClassEmbeddingsInputDim ?? 2816) - 6 * (unet.config.additionTimeEmbedDim ?? 256)
        let sample = try cuda.upload(random.normal(batch * h * h * channels), shape: [batch, h, h, channels], as: .f16)
        let context = try cuda.upload(random.normal(batch * 77 * contextWidth, scale: 0.5), shape: [batch, 77, contextWidth], as: .f16)
        let pooled = try cuda.upload(random.normal(batch * pooledWidth, scale: 0.5), shape: [batch, pooledWidth], as: .f16)
        let side = Float(size)
        let ids: [Float] = (0..<batch).flatMap { _ -> [Float] in [side, side, 0, 0, side, side] }
        let label = "UNet \(size)x\(size) batch \(batch)\(batch % 2 == 0 ? " (\(batch / 2) image\(batch == 2 ? "" : "s") with guidance)" : "")"
        // The second call differs in the timestep only (500 instead of 999), a host value that the
        // UNet turns into an input tensor of its region: a graph must not replay the first one.
        try compare(label: label, replays: replays) { which in
            try unet(sample: sample, timesteps: [which == 0 ? 999 : 500], encoderHiddenStates: context, textEmbeds: pooled, timeIDs: ids)
        }
    }

    /// Eager vs graph-replayed calls, as described on the type. `call(0)` and `call(1)` run the
    /// region (through `runReplayable`) with the first and the second input.
    mutating func compare(label: String, replays: Int, _ call: (Int) throws -> Tensor) throws {
        cuda.graphOptions = .disabled
        let eager1 = try cuda.download(call(0))
        let eager2 = try cuda.download(call(1))
        let eagerSeconds = try time(timedCalls) { _ = try call(0) }

        cuda.graphOptions = GraphCheck.graphsOn
        let warm = try cuda.download(call(0))
        let captureStart = now()
        let captured = try cuda.download(call(0))
        let captureSeconds = now() - captureStart
        let status = cuda.graphStatus
        for s in status { print("GRAPHS status: \(s)") }
        guard let mine = status.first, mine.state == "replaying" else {
            let reason = status.first?.reason ?? "no region recorded (graphs off?)"
            print("GRAPHS \(label): CAPTURE REFUSED: \(reason)")
            print("GRAPHS \(label): eager \(format(1 / eagerSeconds, "%.2f")) it/s")
            failures.append("\(label): capture refused")
            cuda.graphOptions = .disabled
            return
        }
        let replayed = try cuda.download(call(1))
        let replayedFirst = try cuda.download(call(0))
        let graphSeconds = try time(timedCalls) { _ = try call(0) }

        let checks = [("warm-up vs eager", warm, eager1), ("capture call vs eager", captured, eager1),
                      ("replay (second input) vs eager", replayed, eager2), ("replay (first input) vs eager", replayedFirst, eager1)]
        var ok = true
        for (name, a, b) in checks {
            let error = relativeError(a, b)
            let bitwise = a == b
            let pass = bitwise || error <= 1e-3
            ok = ok && pass
            print("GRAPHS \(label): \(name): \(bitwise ? "bitwise equal" : "relative error \(format(error))") \(pass ? "ok" : "FAIL")")
        }
        let distinct = relativeError(eager1, eager2)
        print("GRAPHS \(label): the two inputs' eager outputs differ by \(format(distinct)) (must be > 0: the second input is used)")
        if distinct == 0 { ok = false }

        try cuda.synchronize()
        let before = (cuda.memoryStatistics().currentBytes, cuda.graphReservedBytes, cuda.poolReservedBytes)
        for _ in 0..<replays { _ = try call(0) }
        try cuda.synchronize()
        let after = (cuda.memoryStatistics().currentBytes, cuda.graphReservedBytes, cuda.poolReservedBytes)
        let stable = before == after
        print("GRAPHS \(label): memory before/after \(replays) replays: live+graph \(before.0)/\(after.0), graph reserved \(before.1)/\(after.1), pool reserved \(before.2)/\(after.2) -> \(stable ? "stable" : "NOT stable")")
        print("GRAPHS \(label): eager \(format(eagerSeconds * 1e3, "%.3f")) ms (\(format(1 / eagerSeconds, "%.2f")) it/s), graph \(format(graphSeconds * 1e3, "%.3f")) ms (\(format(1 / graphSeconds, "%.2f")) it/s), \(format(eagerSeconds / graphSeconds, "%.2f"))x; capture call \(format(captureSeconds * 1e3, "%.1f")) ms")
        if !ok { failures.append("\(label): outputs differ") }
        if !stable { failures.append("\(label): memory not stable") }
        cuda.graphOptions = .disabled  // releases the graphs
    }

    /// Mean seconds per call after min(3, iterations) warm-up calls, the stream drained before and after.
    func time(_ iterations: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<min(3, iterations) { try body() }
        try cuda.synchronize()
        let start = now()
        for _ in 0..<iterations { try body() }
        try cuda.synchronize()
        return (now() - start) / Double(iterations)
    }

    func mib(_ bytes: Int) -> Int { bytes >> 20 }
}
