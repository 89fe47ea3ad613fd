import Foundation
import SSDCPUBackend
import SSDModels
import SSDSchedulers
import SSDTensor

/// Current and peak resident set size of this process (`/proc/self/status` VmRSS, VmHWM), read
/// with stdio (procfs files report size 0, which some whole-file readers trip over).
func residentMemory() -> (current: Int, peak: Int) {
    guard let f = fopen("/proc/self/status", "r") else { return (0, 0) }
    defer { fclose(f) }
    var current = 0, peak = 0
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), f) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // "VmHWM:\t 9371234 kB", but "VmHWM:\t10485760 kB" from 10 GiB on: split on tabs too.
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        let kib = (Int(fields.dropFirst().first ?? "0") ?? 0) * 1024
        if text.hasPrefix("VmRSS:") { current = kib } else if text.hasPrefix("VmHWM:") { peak = kib }
    }
    return (current, peak)
}

/// Minor page faults and CPU seconds spent in the kernel by this process so far.
func processUsage() -> (minorFaults: Int, systemSeconds: Double) {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return (Int(usage.ru_minflt), Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6)
}

/// Prints the per-op profile of the last `runs` runs (default: warm-up + timed) when profiling.
func printProfile(_ backend: CountingBackend, _ title: String, _ seconds: Double, runs: Int = 2) {
    guard backend.profiling else { return }
    let rows = backend.profileRows
    let n = Double(runs)
    let total = rows.map(\.seconds).reduce(0, +) / n
    print("profile \(title) (per run; ops \(fmt(total, 2)) s, timed run \(fmt(seconds, 2)) s):")
    printTable(["op", "calls", "s", "%", "GFLOP/s"], rows.map { r in
        [r.op, String(r.calls / runs), fmt(r.seconds / n, 3), fmt(100 * r.seconds / n / max(total, 1e-9)),
         r.flops > 0 ? fmt(r.flops / r.seconds / 1e9) : "-"]
    })
}

/// Resets the process's peak RSS (VmHWM) so each backend's peak is measured on its own
/// (`echo 5 > /proc/self/clear_refs`, Linux).
func resetPeakResidentMemory() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

/// Makes the backend a `--backend` name selects: cpu, cpu-direct, cpu-f16w, cpu-bf16, cpu-bf16-direct, cpu-openblas, reference.
func makeBackend(_ name: String, threads: Int) throws -> any ComputeBackend {
    var o = CPUBackendOptions(threads: threads)
    if ProcessInfo.processInfo.environment["SSD_CPU_WINOGRAD"] == "0" { o.winograd = false }
    switch name {
    case "cpu": break
    case "cpu-direct": o.winograd = false  // 3×3 convolutions by implicit GEMM only (no Winograd)
    case "cpu-high": o.float32MatmulPrecision = .high  // fp32 linears as bf16×3 on AMX (torch's "high")
    case "cpu-f16w": o.weightStorage = .f16
    case "cpu-bf16": o.weightStorage = .bf16; o.bf16Compute = true
    case "cpu-bf16-direct": o.weightStorage = .bf16; o.bf16Compute = true; o.winograd = false  // no Winograd F(2×2, 3×3)
    case "cpu-openblas": o.gemm = .openBLAS
    case "reference": return ReferenceBackend()
    default: throw BenchError.failed("backend \(name): not one of cpu, cpu-high, cpu-direct, cpu-f16w, cpu-bf16, cpu-bf16-direct, cpu-openblas, reference")
    }
    return try CPUBackend(options: o)
}

/// One denoising iteration as `ssd-bench unet` times it (the UNet on the guidance-doubled batch
/// with random latents, text states and pooled embeddings, guidance, one Euler step), and what
/// preparing the cross-attention keys and values once per generation took (nil with `perCallKV`).
func makeUNetIteration(unet: UNet2DConditionModel, backend: any ComputeBackend, schedulerConfig: SchedulerConfiguration,
                       size: Int, batch b: Int, perCallKV: Bool,
                       record: (@Sendable ([Float]) -> Void)? = nil) throws -> (() throws -> Void, String?) {
    let lat = size / 8
    var scheduler = try EulerScheduler(configuration: schedulerConfig)
    try scheduler.setTimesteps(4, strength: nil)
    let latents = randomFloats(b * lat * lat * 4, seed: 1)
    let ctx = try backend.upload(randomFloats(2 * b * 77 * 2048, seed: 2), shape: [2 * b, 77, 2048])
    let pooled = try backend.upload(randomFloats(2 * b * 1280, seed: 3), shape: [2 * b, 1280])
    let fs = Float(size)
    let oneRow: [Float] = [fs, fs, 0, 0, fs, fs]
    let timeIDs: [Float] = Array((0..<(2 * b)).map { _ in oneRow }.joined())
    let t = Float(scheduler.timesteps[0])
    // As the pipeline does: the cross-attention keys and values projected once per generation
    // (timed apart), unless per call.
    var conditioning: UNetTextConditioning? = nil
    var line: String? = nil
    if !perCallKV {
        let prep = try timeBest(minRuns: 1, budget: 0) { conditioning = try unet.textConditioning(encoderHiddenStates: ctx) }
        line = "text conditioning \(fmt(prep, 3)) s once per generation " +
            "(\(conditioning?.cachedLayerCount ?? 0) layers' keys and values, \(fmt(Double(conditioning?.cachedBytes ?? 0) / 1e6, 1)) MB)"
    }
    let fixedScheduler = scheduler, fixedConditioning = conditioning
    func iteration() throws {
        var s = fixedScheduler
        let scaled = try s.scaleModelInput(latents, timestepIndex: 0)
        let x = try backend.upload(scaled + scaled, shape: [2 * b, lat, lat, 4])
        let output = try fixedConditioning.map { try unet(sample: x, timesteps: [t], conditioning: $0, textEmbeds: pooled, timeIDs: timeIDs) }
            ?? unet(sample: x, timesteps: [t], encoderHiddenStates: ctx, textEmbeds: pooled, timeIDs: timeIDs)
        let eps = try backend.download(output)
        record?(eps)
        let n = eps.count / 2
        var guided = [Float](repeating: 0, count: n)
        for i in 0..<n { guided[i] = eps[i] + 5 * (eps[n + i] - eps[i]) }
        _ = try s.step(modelOutput: guided, sample: latents)
    }
    return (iteration, line)
}

/// One row of the UNet table.
struct UNetResult: Codable {
    var backend: String
    var batch: Int
    var secondsPerIteration: Double
    var iterationsPerSecond: Double
    var gflop: Double
    var gflopsPerSecond: Double
    var percentOfPeak: Double
    var vaeDecodeSeconds: Double?
    var memoryIdleBytes: Int
    var memoryPeakBytes: Int
    var torchSecondsPerIteration: Double?
    var torchVAEDecodeSeconds: Double?
    /// With `--repeat`: our time over diffusers' within each repeat (the two passes closest in
    /// time), and their median.
    var pairedRatios: [Double]?
    var pairedRatioMedian: Double?
}


/// `ssd-bench unet`: denoising iterations per second (UNet on the guidance-doubled batch + Euler
/// step, DESIGN.md §8), memory idle (weights loaded) and peak, GFLOP/s against the measured peak,
/// per backend and batch; `--torch` runs Benchmarks/diffusers_bench.py on the same folder and
/// prints the ratios; `--repeat N` alternates the two sides N times and keeps each one's best.
func runUNetBenchmark(_ args: Arguments) throws {
    if let rounds = args.values["interleave"].flatMap(Int.init) { return try runInterleavedUNet(args, rounds: rounds) }
    if let rounds = args.values["alternate"].flatMap(Int.init) { return try runAlternatingUNet(args, rounds: rounds) }
    guard let model = args.values["model"] else { throw BenchError.failed("unet: --model DIR is required") }
    let size = args.int("size", 512), batches = args.ints("batch", [1])
    let threads = args.int("threads", Parallel.threadCount)
    let backends = args.string("backend", "cpu").split(separator: ",").map(String.init)
    let withVAE = args.flags.contains("vae")
    let peak = MachinePeak.measure(threads: threads)
    print("machine: \(threads) threads, \(peak.isa); peak fp32 \(fmt(peak.f32)) GFLOP/s, bf16 \(fmt(peak.bf16)) GFLOP/s")
    // diffusers runs: fp32 (with the VAE) for the fp32-compute backends and for the VAE ratios,
    // bf16 weights for cpu-bf16.
    let torchDTypes = (withVAE || backends.contains { !$0.hasPrefix("cpu-bf16") } ? ["fp32"] : []) + (backends.contains { $0.hasPrefix("cpu-bf16") } ? ["bf16"] : [])
    var torch: [String: [String: Double]] = [:]  // dtype → batch → seconds (best over the repeats)
    var torchVAE: [String: Double] = [:]
    var torchPasses: [String: [String: [Double]]] = [:]  // dtype → batch → seconds of each repeat
    var ourPasses: [String: [Double]] = [:]  // "backend batch" → seconds of each repeat
    var torchLine = ""
    var results: [UNetResult] = []
    let lat = size / 8
    // `--repeat N`: diffusers and ours alternate N times and each side keeps its best time, so a
    // burst of load from outside (this is a shared machine) cannot decide a ratio on its own.
    let repeats = max(1, args.int("repeat", 1))
    for pass in 0..<repeats {
        if repeats > 1 { print("repeat \(pass + 1) of \(repeats)") }
        if args.flags.contains("torch") {
            for dtype in torchDTypes {
                var pyArgs = ["--model", model, "--size", String(size), "--batch", batches.map(String.init).joined(separator: ","),
                              "--threads", String(threads), "--dtype", dtype]
                if withVAE && dtype == "fp32" { pyArgs.append("--vae") }
                let report = try runDiffusersBench(pyArgs)
                torchLine = report.versionLine
                for (k, v) in report.batches {
                    if let t = v["seconds"] as? Double {
                        torch[dtype, default: [:]][k] = min(t, torch[dtype]?[k] ?? .infinity)
                        torchPasses[dtype, default: [:]][k, default: []].append(t)
                    }
                    if let vs = v["vae_decode_seconds"] as? Double { torchVAE[k] = min(vs, torchVAE[k] ?? .infinity) }
                }
                if let idle = report.object["memory_idle_bytes"] as? Int, let pk = report.object["memory_peak_bytes"] as? Int {
                    print("diffusers \(dtype) memory: idle \(fmt(Double(idle) / 1e9, 2)) GB, peak \(fmt(Double(pk) / 1e9, 2)) GB")
                }
            }
        }
        for name in backends {
            resetPeakResidentMemory()
            let backend = CountingBackend(try makeBackend(name, threads: threads), profiling: args.flags.contains("profile"),
                                          profilingShapes: args.flags.contains("profile-shapes"))
            let unet = try UNet2DConditionModel.load(componentDirectory: model + "/unet", backend: backend)
            let vae = withVAE ? try AutoencoderKL.load(componentDirectory: model + "/vae", backend: backend) : nil
            let idle = residentMemory().current
            let schedulerConfig = try SchedulerConfiguration(contentsOf: model + "/scheduler/scheduler_config.json")
            for b in batches {
                let (iteration, conditioningLine) = try makeUNetIteration(unet: unet, backend: backend, schedulerConfig: schedulerConfig,
                                                                          size: size, batch: b, perCallKV: args.flags.contains("per-call-kv"))
                if let conditioningLine { print("\(name) batch \(b): \(conditioningLine)") }
                backend.reset()
                try iteration()
                let flops = backend.flops
                backend.reset()
                let usageBefore = processUsage()
                var seconds = try timeBest(minRuns: 1, budget: 0) { try iteration() }
                let usageAfter = processUsage()
                // Warm-up and timed run: two iterations between the two readings.
                print("\(name) batch \(b): \(fmt(seconds, 3)) s/it this pass (per iteration: " +
                      "\((usageAfter.minorFaults - usageBefore.minorFaults) / 2) page faults, " +
                      "\(fmt((usageAfter.systemSeconds - usageBefore.systemSeconds) / 2, 3)) s in the kernel)")
                ourPasses["\(name) \(b)", default: []].append(seconds)
                printProfile(backend, "\(name) UNet iteration, batch \(b)", seconds)
                var vaeSeconds: Double? = nil
                if let vae {
                    let z = try backend.upload(randomFloats(b * lat * lat * 4, seed: 4), shape: [b, lat, lat, 4])
                    backend.reset()
                    vaeSeconds = try timeBest(minRuns: 1, budget: 0) { _ = try vae.decode(z) }
                    printProfile(backend, "\(name) VAE decode, batch \(b)", vaeSeconds ?? 0)
                }
                let bf16 = name.hasPrefix("cpu-bf16")
                if let i = results.firstIndex(where: { $0.backend == name && $0.batch == b }) {
                    let old = results[i]
                    seconds = min(seconds, old.secondsPerIteration)
                    if let v = vaeSeconds, let o = old.vaeDecodeSeconds { vaeSeconds = min(v, o) }
                    results.remove(at: i)
                }
                let g = flops / seconds / 1e9
                results.append(UNetResult(backend: name, batch: b, secondsPerIteration: seconds, iterationsPerSecond: 1 / seconds,
                                          gflop: flops / 1e9, gflopsPerSecond: g, percentOfPeak: 100 * g / (bf16 ? peak.bf16 : peak.f32),
                                          vaeDecodeSeconds: vaeSeconds, memoryIdleBytes: idle, memoryPeakBytes: residentMemory().peak))
            }
        }
    }
    // The torch columns: the best over every repeat.
    for i in results.indices {
        let bf16 = results[i].backend.hasPrefix("cpu-bf16"), b = String(results[i].batch)
        results[i].torchSecondsPerIteration = torch[bf16 ? "bf16" : "fp32"]?[b]
        results[i].torchVAEDecodeSeconds = torchVAE[b]
        if let theirs = torchPasses[bf16 ? "bf16" : "fp32"]?[b], let ours = ourPasses["\(results[i].backend) \(b)"],
           ours.count > 1, ours.count == theirs.count {
            let ratios = zip(ours, theirs).map { $0 / $1 }
            let sorted = ratios.sorted()
            let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            results[i].pairedRatios = ratios
            results[i].pairedRatioMedian = median
            print("\(results[i].backend) batch \(b): × diffusers per repeat \(ratios.map { fmt($0, 2) }.joined(separator: ", ")); median \(fmt(median, 2))")
        }
    }
    printTable(["backend", "batch", "s/it", "it/s", "GFLOP", "GFLOP/s", "% peak", "VAE s", "idle GB", "peak GB", "× diffusers", "VAE × diffusers"],
               results.map { r in
                   [r.backend, String(r.batch), fmt(r.secondsPerIteration, 3), fmt(r.iterationsPerSecond, 3), fmt(r.gflop, 0),
                    fmt(r.gflopsPerSecond), fmt(r.percentOfPeak), r.vaeDecodeSeconds.map { fmt($0, 2) } ?? "-",
                    fmt(Double(r.memoryIdleBytes) / 1e9, 2), fmt(Double(r.memoryPeakBytes) / 1e9, 2),
                    r.torchSecondsPerIteration.map { fmt(r.secondsPerIteration / $0, 2) } ?? "-",
                    r.torchVAEDecodeSeconds.flatMap { t in r.vaeDecodeSeconds.map { fmt($0 / t, 2) } } ?? "-"]
               })
    if !torchLine.isEmpty { print("(× diffusers = our time / diffusers time, cpu-bf16 against diffusers with bf16 weights; \(torchLine))") }
    if let path = args.values["json"] {
        struct Report: Codable { var peak: MachinePeak; var size: Int; var results: [UNetResult] }
        try writeJSON(Report(peak: peak, size: size, results: results), to: path)
    }
}
