import CSSDKernels
import Foundation
import SSDCPUBackend
import SSDTensor

/// Command-line options `--name value` and flags `--name`.
struct Arguments {
    var values: [String: String] = [:]
    var flags: Set<String> = []

    init(_ args: ArraySlice<String>) {
        var it = args.makeIterator()
        while let a = it.next() {
            guard a.hasPrefix("--") else { continue }
            let key = String(a.dropFirst(2))
            if let eq = key.firstIndex(of: "=") {
                values[String(key[..<eq])] = String(key[key.index(after: eq)...])
            } else if ["torch", "openblas-only", "no-openblas", "quick", "vae", "profile", "profile-shapes", "cold", "per-call-kv", "tiling"].contains(key) {
                flags.insert(key)
            } else if let v = it.next() {
                values[key] = v
            }
        }
    }

    func int(_ k: String, _ d: Int) -> Int { values[k].flatMap(Int.init) ?? d }
    func ints(_ k: String, _ d: [Int]) -> [Int] { values[k].map { $0.split(separator: ",").compactMap { Int($0) } } ?? d }
    func string(_ k: String, _ d: String) -> String { values[k] ?? d }
}

/// Seconds of the fastest of several runs (at least `minRuns`, until `budget` seconds are spent).
func timeBest(minRuns: Int = 3, budget: Double = 1.0, _ body: () throws -> Void) rethrows -> Double {
    try body()  // warm-up
    var best = Double.infinity, spent = 0.0, runs = 0
    let clock = ContinuousClock()
    while runs < minRuns || (spent < budget && runs < 50) {
        let d = try clock.measure(body)
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        best = min(best, s)
        spent += s
        runs += 1
    }
    return best
}

/// The machine's measured peak (GFLOP/s over all worker threads) for fp32 FMA and bf16 dot products.
struct MachinePeak: Codable {
    var f32: Double
    var bf16: Double
    var threads: Int
    var isa: String

    /// The best of a few short probes on one thread, times the threads (other processes on a
    /// shared machine only ever lower a measurement), next to an all-threads probe.
    static func measure(threads: Int) -> MachinePeak {
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        func probe(_ f: @escaping @Sendable (Int) -> Double) -> Double {
            let iters = 2_000_000
            let clock = ContinuousClock()
            var single = 0.0, flops = 0.0
            for _ in 0..<5 {
                let d = clock.measure { flops = f(iters) }
                single = max(single, flops / seconds(d) / 1e9)
            }
            let d = clock.measure { DispatchQueue.concurrentPerform(iterations: threads) { _ in _ = f(iters) } }
            let all = flops * Double(threads) / seconds(d) / 1e9
            return max(all, single * Double(threads))
        }
        return MachinePeak(f32: probe { ssd_peak_probe_f32($0) }, bf16: probe { ssd_peak_probe_bf16($0) },
                           threads: threads, isa: CPUBackend.instructionSet)
    }
}

/// Random values in [-1, 1) from a fixed seed (SplitMix64).
func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed &+ 0x9E37_79B9_7F4A_7C15
    return (0..<n).map { _ in
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 23) - 1
    }
}

/// Prints a table with a header row, columns padded to their widest cell.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { i in ([header] + rows).map { $0.count > i ? $0[i].count : 0 }.max() ?? 0 }
    func line(_ r: [String]) -> String {
        r.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ")
    }
    print(line(header))
    print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    rows.forEach { print(line($0)) }
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }

/// Runs a Python script with /work/venv (or $SSD_PYTHON) and returns its stdout.
func runPython(_ script: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: pythonExecutable)
    p.arguments = [script] + args
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw BenchError.failed("\(script) exited with \(p.terminationStatus)") }
    return String(decoding: data, as: UTF8.self)
}

/// What `Benchmarks/diffusers_bench.py` printed: its first line (the torch and diffusers versions),
/// and its last line decoded as a JSON object (with the per-batch entries as `batches`).
struct DiffusersReport {
    var versionLine: String
    var object: [String: Any]
    var batches: [String: [String: Any]] { object["batches"] as? [String: [String: Any]] ?? [:] }
}

/// Runs `Benchmarks/diffusers_bench.py` with `args`, echoes every line but the JSON one, and
/// returns the report.
func runDiffusersBench(_ args: [String]) throws -> DiffusersReport {
    let lines = try runPython(benchmarksDirectory + "/diffusers_bench.py", args).split(separator: "\n")
    print(lines.dropLast().joined(separator: "\n"))
    let object = try lines.last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    guard let object else { throw BenchError.failed("diffusers_bench.py printed no JSON report") }
    return DiffusersReport(versionLine: lines.first.map(String.init) ?? "", object: object)
}

/// The Python with torch and diffusers: `SSD_PYTHON`, else /work/venv/bin/python.
let pythonExecutable = ProcessInfo.processInfo.environment["SSD_PYTHON"] ?? "/work/venv/bin/python"

/// The Benchmarks/ folder (next to this source tree).
let benchmarksDirectory: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

enum BenchError: Error, CustomStringConvertible {
    case failed(String)
    var description: String { if case .failed(let s) = self { return s }; return "" }
}

/// Writes an Encodable value as pretty JSON.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    try enc.encode(value).write(to: URL(fileURLWithPath: path))
}
