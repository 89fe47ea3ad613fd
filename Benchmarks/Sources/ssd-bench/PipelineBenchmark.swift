import Foundation
import SSDPipeline
import SSDTensor

/// One row of the whole-generation table (Segmind's table shape: it/s and memory per batch size).
struct PipelineResult: Codable {
    var backend: String
    var batch: Int
    var steps: Int
    /// Denoising steps per second, over the steps after the first.
    var iterationsPerSecond: Double
    /// The whole `generate` call: prompt encoding, the denoising loop, VAE decode.
    var generationSeconds: Double
    /// RSS with every component loaded, before any generation.
    var memoryIdleBytes: Int
    /// Peak RSS during this batch's generation (VmHWM, reset before it).
    var memoryPeakBytes: Int
    /// The backend's own count: weights plus live activations, idle and at the peak.
    var backendIdleBytes: Int
    var backendPeakBytes: Int
    var torchIterationsPerSecond: Double?
    var torchGenerationSeconds: Double?
    var torchMemoryIdleBytes: Int?
    var torchMemoryPeakBytes: Int?
}

/// Collects step times from the progress callback (called on the pipeline's executor).
private final class StepTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Double] = []
    func append(_ s: Double) { lock.lock(); values.append(s); lock.unlock() }
    var all: [Double] { lock.lock(); defer { lock.unlock() }; return values }
}

/// The backend and precision a `--backend` name selects for a whole pipeline.
private func pipelineConfiguration(_ name: String) throws -> PipelineConfiguration {
    var c = PipelineConfiguration()
    switch name {
    case "cpu": c.backend = .cpu; c.precision = .fp32
    case "cpu-high": c.backend = .cpu; c.precision = .fp32High
    case "cpu-f16w": c.backend = .cpu; c.precision = .fp16
    case "cpu-bf16": c.backend = .cpu; c.precision = .bf16
    case "cuda": c.backend = .cuda; c.precision = .fp16
    case "reference": c.backend = .reference; c.precision = .fp32
    default: throw BenchError.failed("backend \(name): not one of cpu, cpu-high, cpu-f16w, cpu-bf16, cuda, reference")
    }
    return c
}

/// Steps per second over the steps after the first (the first also fills caches and pools);
/// over all of them when there is only one.
private func stepsPerSecond(_ times: [Double]) -> Double {
    let counted = times.count > 1 ? Array(times.dropFirst()) : times
    let total = counted.reduce(0, +)
    return total > 0 ? Double(counted.count) / total : 0
}

/// `ssd-bench pipeline`: whole text-to-image generations through `SSDPipeline` (both text
/// encoders, guidance, the folder's scheduler, VAE decode) at batch sizes B, the shape of
/// Segmind's SSD-1B table: denoising it/s, RSS idle with all four components loaded and peak over
/// the whole generation, per backend. `--torch` runs diffusers' `StableDiffusionXLPipeline` on the
/// same folder (`Benchmarks/diffusers_bench.py --pipeline`: fp32 for cpu/cpu-f16w, bf16 weights for
/// cpu-bf16) and prints the ratios.
func runPipelineBenchmark(_ args: Arguments) async throws {
    guard let model = args.values["model"] else { throw BenchError.failed("pipeline: --model DIR is required") }
    let size = args.int("size", 512), batches = args.ints("batch", [1, 4, 8, 16]), steps = args.int("steps", 3)
    guard steps >= 1, size % 8 == 0 else { throw BenchError.failed("pipeline: --steps must be ≥ 1 and --size a multiple of 8") }
    let threads = args.int("threads", Parallel.threadCount)
    let backends = args.string("backend", "cpu-f16w").split(separator: ",").map(String.init)
    // `--repeat N`: diffusers and ours alternate N times; each row keeps its best it/s and time and
    // its highest peak, so a burst of outside load (a shared machine) cannot decide a ratio alone.
    let repeats = max(1, args.int("repeat", 1))
    let prompt = "a photo of an astronaut riding a horse on mars", negative = "blurry, low quality"
    print("pipeline: \(size)x\(size), \(steps) steps, guidance 9, batches \(batches.map(String.init).joined(separator: ","))")

    func torchDType(_ backend: String) -> String { backend == "cpu-bf16" ? "bf16" : (backend == "cuda" ? "fp16" : "fp32") }
    func gib(_ bytes: Int?) -> String { bytes.map { fmt(Double($0) / Double(1 << 30), 2) } ?? "-" }
    func ratio(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b, b > 0 else { return "-" }
        return fmt(a / b, 2)
    }
    /// Keeps the better of two measurements of one row.
    func merge(_ old: PipelineResult?, _ new: PipelineResult) -> PipelineResult {
        guard var best = old else { return new }
        best.iterationsPerSecond = max(best.iterationsPerSecond, new.iterationsPerSecond)
        best.generationSeconds = min(best.generationSeconds, new.generationSeconds)
        best.memoryPeakBytes = max(best.memoryPeakBytes, new.memoryPeakBytes)
        best.backendPeakBytes = max(best.backendPeakBytes, new.backendPeakBytes)
        return best
    }

    var ours: [PipelineResult] = []
    var torch: [String: [Int: PipelineResult]] = [:]  // dtype → batch → diffusers' row
    var torchLine = ""
    let clock = ContinuousClock()
    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
    for pass in 0..<repeats {
        if repeats > 1 { print("repeat \(pass + 1) of \(repeats)") }
        // diffusers: one process per dtype the chosen backends compare against.
        if args.flags.contains("torch") {
            for dtype in Set(backends.map(torchDType)).sorted() {
                let report = try runDiffusersBench(
                    ["--model", model, "--size", String(size), "--batch", batches.map(String.init).joined(separator: ","),
                     "--threads", String(threads), "--dtype", dtype, "--pipeline", "--steps", String(steps),
                     "--prompt", prompt, "--negative-prompt", negative])
                torchLine = report.versionLine
                let obj = report.object
                for b in batches {
                    guard let e = report.batches[String(b)] else { continue }
                    let row = PipelineResult(
                        backend: "diffusers-\(dtype)", batch: b, steps: steps, iterationsPerSecond: e["it_per_s"] as? Double ?? 0,
                        generationSeconds: e["generation_seconds"] as? Double ?? 0, memoryIdleBytes: obj["memory_idle_bytes"] as? Int ?? 0,
                        memoryPeakBytes: e["memory_peak_bytes"] as? Int ?? 0, backendIdleBytes: 0, backendPeakBytes: 0)
                    torch[dtype, default: [:]][b] = merge(torch[dtype]?[b], row)
                }
            }
        }
        for name in backends {
            var pipeline: DiffusionPipeline? = try await DiffusionPipeline(contentsOf: model, configuration: pipelineConfiguration(name))
            guard let loaded = pipeline else { continue }
            let idle = residentMemory().current
            let backendIdle = await loaded.memoryStatistics().currentBytes
            // Warm-up: one step at batch 1 (diffusers_bench.py does the same).
            var warm = GenerationRequest(prompt: prompt)
            warm.negativePrompt = negative
            warm.size = ImageSize(width: size, height: size)
            warm.steps = 1
            warm.seed = 1
            _ = try await loaded.generate(warm)
            for b in batches {
                var request = warm
                request.steps = steps
                request.imagesPerPrompt = b
                resetPeakResidentMemory()
                await loaded.resetPeakMemory()
                let times = StepTimes()
                let start = clock.now
                _ = try await loaded.generateResult(request) { event in
                    if case let .step(s) = event { times.append(s.seconds) }
                }
                let total = seconds(clock.now - start)
                let row = PipelineResult(
                    backend: name, batch: b, steps: steps, iterationsPerSecond: stepsPerSecond(times.all), generationSeconds: total,
                    memoryIdleBytes: idle, memoryPeakBytes: residentMemory().peak, backendIdleBytes: backendIdle,
                    backendPeakBytes: await loaded.memoryStatistics().peakBytes)
                print("\(name) batch \(b): \(fmt(row.iterationsPerSecond, 3)) it/s, generation \(fmt(total, 1)) s, RSS peak \(gib(row.memoryPeakBytes)) GiB")
                if let i = ours.firstIndex(where: { $0.backend == name && $0.batch == b }) {
                    ours[i] = merge(ours[i], row)
                } else {
                    ours.append(row)
                }
            }
            pipeline = nil
        }
    }
    for i in ours.indices {
        guard let t = torch[torchDType(ours[i].backend)]?[ours[i].batch] else { continue }
        ours[i].torchIterationsPerSecond = t.iterationsPerSecond
        ours[i].torchGenerationSeconds = t.generationSeconds
        ours[i].torchMemoryIdleBytes = t.memoryIdleBytes
        ours[i].torchMemoryPeakBytes = t.memoryPeakBytes
    }

    print("")
    printTable(["backend", "batch", "it/s", "gen s", "idle GiB", "peak GiB", "diffusers it/s", "diffusers idle", "diffusers peak",
                "it/s × diffusers", "peak × diffusers"],
               ours.map { r in
                   [r.backend, String(r.batch), fmt(r.iterationsPerSecond, 3), fmt(r.generationSeconds, 1), gib(r.memoryIdleBytes),
                    gib(r.memoryPeakBytes), r.torchIterationsPerSecond.map { fmt($0, 3) } ?? "-", gib(r.torchMemoryIdleBytes),
                    gib(r.torchMemoryPeakBytes), ratio(r.iterationsPerSecond, r.torchIterationsPerSecond),
                    ratio(Double(r.memoryPeakBytes), r.torchMemoryPeakBytes.map(Double.init))]
               })
    if !torchLine.isEmpty {
        print("(it/s × diffusers = our it/s / diffusers it/s, above 1 = faster; peak × diffusers = our peak RSS / diffusers';"
            + " cpu-bf16 against diffusers with bf16 weights, the others against fp32; \(torchLine))")
    }
    if let path = args.values["json"] {
        struct Report: Codable { var size: Int; var steps: Int; var repeats: Int; var results: [PipelineResult] }
        try writeJSON(Report(size: size, steps: steps, repeats: repeats, results: ours), to: path)
    }
}
