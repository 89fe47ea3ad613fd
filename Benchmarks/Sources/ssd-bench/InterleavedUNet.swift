import Foundation
import SSDModels
import SSDSchedulers
import SSDTensor

/// A running `Benchmarks/diffusers_bench.py --serve`: diffusers' model loaded and warmed up in its
/// own process, one timed iteration per `iteration()`.
final class DiffusersServer {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var pending: [UInt8] = []
    /// The `{"ready": …}` object (versions, dtype, memory).
    private(set) var ready: [String: Any] = [:]

    init(_ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: pythonExecutable)
        process.arguments = [benchmarksDirectory + "/diffusers_bench.py"] + args + ["--serve"]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        while true {
            guard let line = nextLine() else { throw BenchError.failed("diffusers_bench.py --serve exited before it was ready") }
            if let object = Self.object(line), object["ready"] != nil {
                ready = object
                return
            }
            print(line)
        }
    }

    /// The seconds of one diffusers iteration, run now.
    func iteration() throws -> Double {
        input.fileHandleForWriting.write(Data("run\n".utf8))
        guard let line = nextLine(), let seconds = Self.object(line)?["seconds"] as? Double else {
            throw BenchError.failed("diffusers_bench.py --serve gave no time")
        }
        return seconds
    }

    /// Ends the process (its model's memory goes with it).
    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    private func nextLine() -> String? {
        while true {
            if let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            pending.append(contentsOf: chunk)
        }
    }

    private static func object(_ line: String) -> [String: Any]? {
        guard line.hasPrefix("{") else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }
}

/// One backend and batch of `ssd-bench unet --interleave N`: each side's iteration times in the
/// order they ran, and our time over diffusers' per pair.
struct InterleavedResult: Codable {
    var backend: String
    var batch: Int
    var ours: [Double]
    var diffusers: [Double]
    var ratios: [Double]
    var ratioMedian: Double
    var ratioQuartiles: [Double]
    var bestOverBest: Double
}

/// `ssd-bench unet --torch --interleave N`: diffusers stays loaded in its own process and the two
/// sides alternate single iterations N times (which goes first alternates too), so each pair ran
/// within the same few seconds. This machine's speed changes between stretches of seconds (the
/// AMX probe reads 2–5 TFLOP/s; L1-resident kernels slow down too), which makes best-against-best
/// ratios from separate runs a lottery; the median of the per-pair ratios is the figure to quote.
func runInterleavedUNet(_ args: Arguments, rounds: Int) throws {
    guard let model = args.values["model"] else { throw BenchError.failed("unet: --model DIR is required") }
    let size = args.int("size", 512), batches = args.ints("batch", [1])
    let threads = args.int("threads", Parallel.threadCount)
    let backends = args.string("backend", "cpu-bf16").split(separator: ",").map(String.init)
    let schedulerConfig = try SchedulerConfiguration(contentsOf: model + "/scheduler/scheduler_config.json")
    var results: [InterleavedResult] = []
    for name in backends {
        let dtype = name.hasPrefix("cpu-bf16") ? "bf16" : "fp32"
        for b in batches {
            let server = try DiffusersServer(["--model", model, "--size", String(size), "--batch", String(b),
                                              "--threads", String(threads), "--dtype", dtype])
            defer { server.stop() }
            let versions = [server.ready["torch"], server.ready["diffusers"]].compactMap { $0 as? String }
            print("diffusers \(versions.last ?? "?") on torch \(versions.first ?? "?"), \(dtype), loaded in its own process")
            let backend = try makeBackend(name, threads: threads)
            let unet = try UNet2DConditionModel.load(componentDirectory: model + "/unet", backend: backend)
            let (iteration, conditioningLine) = try makeUNetIteration(unet: unet, backend: backend, schedulerConfig: schedulerConfig,
                                                                      size: size, batch: b, perCallKV: args.flags.contains("per-call-kv"))
            if let conditioningLine { print("\(name) batch \(b): \(conditioningLine)") }
            try iteration()  // warm-up (diffusers warmed up before it said it was ready)
            let clock = ContinuousClock()
            func ours() throws -> Double {
                let d = try clock.measure(iteration)
                return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            }
            var mine: [Double] = [], theirs: [Double] = []
            for round in 0..<rounds {
                if round % 2 == 0 {
                    mine.append(try ours())
                    theirs.append(try server.iteration())
                } else {
                    theirs.append(try server.iteration())
                    mine.append(try ours())
                }
                print("\(name) batch \(b) pair \(round + 1): ours \(fmt(mine[round], 3)) s, diffusers \(fmt(theirs[round], 3)) s, "
                      + "× \(fmt(mine[round] / theirs[round], 2))")
            }
            let ratios = zip(mine, theirs).map { $0 / $1 }
            let result = InterleavedResult(backend: name, batch: b, ours: mine, diffusers: theirs, ratios: ratios,
                                           ratioMedian: quantile(ratios, 0.5), ratioQuartiles: [quantile(ratios, 0.25), quantile(ratios, 0.75)],
                                           bestOverBest: (mine.min() ?? 0) / (theirs.min() ?? 1))
            results.append(result)
        }
    }
    printTable(["backend", "batch", "pairs", "our best s", "diffusers best s", "× median", "× quartiles", "best / best"],
               results.map { r in
                   [r.backend, String(r.batch), String(r.ratios.count), fmt(r.ours.min() ?? 0, 3), fmt(r.diffusers.min() ?? 0, 3),
                    fmt(r.ratioMedian, 2), "\(fmt(r.ratioQuartiles[0], 2))–\(fmt(r.ratioQuartiles[1], 2))", fmt(r.bestOverBest, 2)]
               })
    print("(× = our iteration time over diffusers' in the same pair; cpu-bf16 against diffusers with bf16 weights)")
    if let path = args.values["json"] { try writeJSON(results, to: path) }
}

/// The `q` quantile of `values` (linear between order statistics).
func quantile(_ values: [Double], _ q: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let position = q * Double(sorted.count - 1)
    let low = Int(position.rounded(.down)), high = min(sorted.count - 1, low + 1)
    return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
}

/// `ssd-bench unet --backend A,B,… --alternate N`: every backend's UNet loaded in this process, one
/// iteration of each in turn (the order rotating) N times; prints each backend's time over the first
/// one's within each round and the median: our own before/after at the precision this machine's
/// swings allow (e.g. `cpu,cpu-direct`: Winograd on and off).
func runAlternatingUNet(_ args: Arguments, rounds: Int) throws {
    guard let model = args.values["model"] else { throw BenchError.failed("unet: --model DIR is required") }
    let size = args.int("size", 512), b = args.ints("batch", [1]).first ?? 1
    let threads = args.int("threads", Parallel.threadCount)
    let names = args.string("backend", "cpu-bf16").split(separator: ",").map(String.init)
    let schedulerConfig = try SchedulerConfiguration(contentsOf: model + "/scheduler/scheduler_config.json")
    var iterations: [() throws -> Void] = []
    // Each backend's UNet output (noise prediction, both guidance halves) from its warm-up, so that
    // the others' relative error against the first is reported.
    let outputs = OutputSink()
    for name in names {
        let backend = try makeBackend(name, threads: threads)
        let unet = try UNet2DConditionModel.load(componentDirectory: model + "/unet", backend: backend)
        let (iteration, _) = try makeUNetIteration(unet: unet, backend: backend, schedulerConfig: schedulerConfig,
                                                   size: size, batch: b, perCallKV: args.flags.contains("per-call-kv"),
                                                   record: { outputs.keep(name, $0) })
        try iteration()  // warm-up
        iterations.append(iteration)
    }
    if let first = outputs.first(names[0]) {
        for name in names.dropFirst() {
            if let o = outputs.first(name) {
                print("UNet output of \(name) against \(names[0]): relative error \(String(format: "%.2e", relativeError(o, first)))")
            }
        }
    }
    let clock = ContinuousClock()
    var times = [[Double]](repeating: [], count: names.count)
    for round in 0..<rounds {
        for step in 0..<names.count {
            let i = (step + round) % names.count
            let d = try clock.measure(iterations[i])
            times[i].append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        }
        print("round \(round + 1): " + names.indices.map { "\(names[$0]) \(fmt(times[$0][round], 3)) s" }.joined(separator: ", "))
    }
    printTable(["backend", "best s", "median s", "× \(names[0]) (median of rounds)", "quartiles"], names.indices.map { i in
        let ratios = zip(times[i], times[0]).map { $0 / $1 }
        return [names[i], fmt(times[i].min() ?? 0, 3), fmt(quantile(times[i], 0.5), 3), fmt(quantile(ratios, 0.5), 3),
                "\(fmt(quantile(ratios, 0.25), 3))–\(fmt(quantile(ratios, 0.75), 3))"]
    })
}

/// The first UNet output each backend produced (`runAlternatingUNet`).
final class OutputSink: @unchecked Sendable {
    private let lock = NSLock()
    private var outputs: [String: [Float]] = [:]
    func keep(_ name: String, _ values: [Float]) {
        lock.lock(); defer { lock.unlock() }
        if outputs[name] == nil { outputs[name] = values }
    }
    func first(_ name: String) -> [Float]? {
        lock.lock(); defer { lock.unlock() }
        return outputs[name]
    }
}
