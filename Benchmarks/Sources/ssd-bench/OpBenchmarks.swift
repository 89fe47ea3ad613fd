import Foundation
import SSDCPUBackend
import SSDTensor

/// One op-level case: a label, its FLOPs, and the parameters the torch script needs.
struct OpCase: Codable {
    var label: String
    var params: [Int]
    var flops: Double
}

/// One measured row of an op benchmark.
struct OpResult: Codable {
    var op: String
    var label: String
    var variant: String
    var seconds: Double
    var gflops: Double
    var percentOfPeak: Double
    /// ‖out − out_own-f32‖ / ‖out_own-f32‖ (nil for own-f32 and torch).
    var relativeErrorVsF32: Double?
}

/// The backend variants an op benchmark compares.
func benchVariants(_ args: Arguments, directConv: Bool = false) -> [(String, CPUBackend, Bool)] {
    var list: [(String, CPUBackend, Bool)] = []
    let threads = args.int("threads", Parallel.threadCount)
    func add(_ name: String, _ o: CPUBackendOptions, bf16: Bool = false) {
        var o = o
        o.threads = threads
        let bl = args.ints("blocking", [])
        if bl.count == 3 { o.blocking = (mc: bl[0], nc: bl[1], kc: bl[2]) }
        if ProcessInfo.processInfo.environment["SSD_CPU_WINOGRAD"] == "0" { o.winograd = false }
        if let only = args.values["variants"], !only.split(separator: ",").contains(Substring(name)) { return }
        if let b = try? CPUBackend(options: o) { list.append((name, b, bf16)) }
    }
    if !args.flags.contains("openblas-only") {
        add("own-f32", CPUBackendOptions())
        if directConv {
            // The implicit GEMM for 3×3 convolutions too (Winograd off), its error against own-f32.
            var o = CPUBackendOptions()
            o.winograd = false
            add("own-f32-direct", o)
        }
        var high = CPUBackendOptions()
        high.float32MatmulPrecision = .high  // bf16×3 on AMX (linears and 1×1 convolutions)
        add("own-f32-high", high)
        add("own-f16w", CPUBackendOptions(weightStorage: .f16))
        add("own-bf16", CPUBackendOptions(weightStorage: .bf16, bf16Compute: true), bf16: true)
    }
    if !args.flags.contains("no-openblas") { add("openblas", CPUBackendOptions(gemm: .openBLAS)) }
    return list
}

/// `ssd-bench gemm|conv|attention`: op-level GFLOP/s per backend variant, against the measured
/// peak, OpenBLAS, and (with `--torch`) PyTorch on the same CPU.
func runOpBenchmark(_ op: String, _ args: Arguments) throws {
    let threads = args.int("threads", Parallel.threadCount)
    let peak = MachinePeak.measure(threads: threads)
    print("machine: \(threads) threads, micro-kernels \(peak.isa); measured peak fp32 \(fmt(peak.f32)) GFLOP/s, bf16 \(fmt(peak.bf16)) GFLOP/s")
    let env = ProcessInfo.processInfo.environment
    print("OPENBLAS_CORETYPE=\(env["OPENBLAS_CORETYPE"] ?? "(unset)") OPENBLAS_L2_SIZE=\(env["OPENBLAS_L2_SIZE"] ?? "(unset)")")
    var cases = opCases(op, quick: args.flags.contains("quick"))
    if op == "conv", let list = args.values["shapes"] {
        // --shapes "B,H,W,Cin,Cout[,k,stride];…" (3×3 stride 1 by default).
        cases = list.split(separator: ";").map { item in
            var p = item.split(separator: ",").compactMap { Int($0) }
            if p.count == 5 { p += [3, 1] }
            return convCase("\(p[0])x\(p[1])x\(p[2]) \(p[3])->\(p[4])\(p[5] == 3 ? "" : " \(p[5])x\(p[5])")\(p[6] == 1 ? "" : " s\(p[6])")", p)
        }
    }
    if op == "gemm", let list = args.values["shapes"] {
        // --shapes "M,N,K;…"
        cases = list.split(separator: ";").compactMap { item in
            let p = item.split(separator: ",").compactMap { Int($0) }
            guard p.count == 3 else { return nil }
            return OpCase(label: "\(p[0])x\(p[1])x\(p[2])", params: p, flops: 2.0 * Double(p[0] * p[1]) * Double(p[2]))
        }
    }
    if op == "attention", let list = args.values["shapes"] {
        // --shapes "B,Nq,Nk,heads,D[,causal];…"
        cases = list.split(separator: ";").compactMap { item in
            var p = item.split(separator: ",").compactMap { Int($0) }
            if p.count == 5 { p.append(0) }
            guard p.count == 6 else { return nil }
            let label = "\(p[5] == 1 ? "causal" : p[1] == p[2] ? "self" : "cross") \(p[1])x\(p[2]) \(p[3])x\(p[4]) b\(p[0])"
            return OpCase(label: label, params: p, flops: 4.0 * Double(p[0] * p[1] * p[2] * p[3] * p[4]) * (p[5] == 1 ? 0.5 : 1))
        }
    }
    // Attention has no weights: only fp32, fp32 "high" and bf16 compute differ.
    let variants = op == "attention" ? benchVariants(args).filter { ["own-f32", "own-f32-high", "own-bf16"].contains($0.0) } : benchVariants(args, directConv: op == "conv")
    var results: [OpResult] = []
    var torchSeconds: [Double]? = nil
    if args.flags.contains("torch") {
        let json = try JSONEncoder().encode(cases.map(\.params))
        let out = try runPython(benchmarksDirectory + "/torch_ops.py",
                                ["--op", op, "--threads", String(threads), "--cases", String(decoding: json, as: UTF8.self)])
        let lines = out.split(separator: "\n")
        print(lines.dropLast().joined(separator: "\n"))
        torchSeconds = try JSONDecoder().decode([Double].self, from: Data((lines.last ?? "[]").utf8))
    }
    var rows: [[String]] = []
    for (ci, c) in cases.enumerated() {
        var blasTime: Double? = nil
        var caseRows: [(String, Double, Bool, Double?)] = []
        var f32Output: [Float]? = nil
        for (name, backend, bf16) in variants {
            let (t, out) = try measureOp(op, c.params, backend, cold: args.flags.contains("cold"))
            if name == "own-f32" { f32Output = out }
            caseRows.append((name, t, bf16, name == "own-f32" ? nil : f32Output.map { relativeError(out, $0) }))
            if name == "openblas" { blasTime = t }
        }
        if let ts = torchSeconds, ci < ts.count { caseRows.append(("torch", ts[ci], false, nil)) }
        for (name, t, bf16, err) in caseRows {
            let g = c.flops / t / 1e9
            let pct = 100 * g / (bf16 ? peak.bf16 : peak.f32)
            results.append(OpResult(op: op, label: c.label, variant: name, seconds: t, gflops: g, percentOfPeak: pct, relativeErrorVsF32: err))
            rows.append([c.label, name, fmt(t * 1e3, 2), fmt(g), fmt(pct), err.map { String(format: "%.1e", $0) } ?? "-",
                         blasTime.map { fmt($0 / t, 2) } ?? "-",
                         torchSeconds.map { ci < $0.count ? fmt($0[ci] / t, 2) : "-" } ?? "-"])
        }
    }
    printTable(["case", "variant", "ms", "GFLOP/s", "% peak", "err vs f32", "openblas/this", "torch/this"], rows)
    print("(openblas/this, torch/this: their time over this row's time; above 1 = this row is faster)")
    if let path = args.values["json"] {
        struct Report: Codable { var peak: MachinePeak; var results: [OpResult] }
        try writeJSON(Report(peak: peak, results: results), to: path)
    }
}

/// The cases of each op benchmark: SDXL/SSD-1B shapes at 512² (batch 2 with guidance) plus squares.
func opCases(_ op: String, quick: Bool) -> [OpCase] {
    switch op {
    case "gemm":
        // [M, N, K]: x [M, K] · Wᵀ [K, N]
        let shapes: [(String, Int, Int, Int)] = quick ? [("1024^3", 1024, 1024, 1024)] : [
            ("1024^3", 1024, 1024, 1024), ("2048^3", 2048, 2048, 2048),
            ("attn-proj 2048x640x640", 2048, 640, 640), ("ff-up 2048x5120x640", 2048, 5120, 640),
            ("ff-down 2048x640x2560", 2048, 640, 2560), ("ff-up 512x10240x1280", 512, 10240, 1280),
            ("proj 512x1280x1280", 512, 1280, 1280), ("text 154x768x768", 154, 768, 768),
        ]
        return shapes.map { OpCase(label: $0.0, params: [$0.1, $0.2, $0.3], flops: 2.0 * Double($0.1 * $0.2) * Double($0.3)) }
    case "conv":
        // [B, H, W, Cin, Cout, k, stride]
        let shapes: [(String, [Int])] = quick ? [("32x32 640 3x3", [2, 32, 32, 640, 640, 3, 1])] : [
            ("64x64 320 3x3 b2", [2, 64, 64, 320, 320, 3, 1]), ("32x32 640 3x3 b2", [2, 32, 32, 640, 640, 3, 1]),
            ("16x16 1280 3x3 b2", [2, 16, 16, 1280, 1280, 3, 1]), ("64x64 320 3x3 s2 b2", [2, 64, 64, 320, 320, 3, 2]),
            ("32x32 640 1x1 b2", [2, 32, 32, 640, 1280, 1, 1]), ("vae 128x128 512 3x3", [1, 128, 128, 512, 512, 3, 1]),
            ("vae 256x256 256 3x3", [1, 256, 256, 256, 256, 3, 1]), ("conv_in 64x64 4->320", [2, 64, 64, 4, 320, 3, 1]),
        ]
        return shapes.map { convCase($0.0, $0.1) }
    default:
        // [B, Nq, Nk, heads, D, causal]
        let shapes: [(String, [Int])] = quick ? [("self 1024 10x64", [2, 1024, 1024, 10, 64, 0])] : [
            ("self 1024 10x64 b2", [2, 1024, 1024, 10, 64, 0]), ("cross 1024x77 10x64 b2", [2, 1024, 77, 10, 64, 0]),
            ("self 256 20x64 b2", [2, 256, 256, 20, 64, 0]), ("vae-mid 4096 1x512", [1, 4096, 4096, 1, 512, 0]),
            ("clip causal 77 12x64", [2, 77, 77, 12, 64, 1]), ("self 4096 5x64 b2", [2, 4096, 4096, 5, 64, 0]),
            ("vae-mid 16384 1x512", [1, 16384, 16384, 1, 512, 0]),
        ]
        return shapes.map { s in
            let p = s.1
            return OpCase(label: s.0, params: p, flops: 4.0 * Double(p[0] * p[1] * p[2] * p[3] * p[4]) * (p[5] == 1 ? 0.5 : 1))
        }
    }
}

/// A convolution case `[B, H, W, Cin, Cout, k, stride]` (padding k/2) with its direct-convolution FLOPs.
func convCase(_ label: String, _ p: [Int]) -> OpCase {
    let ho = (p[1] + 2 * (p[5] / 2) - p[5]) / p[6] + 1, wo = (p[2] + 2 * (p[5] / 2) - p[5]) / p[6] + 1
    return OpCase(label: label, params: p, flops: 2.0 * Double(p[0] * ho * wo * p[4]) * Double(p[3] * p[5] * p[5]))
}

/// ‖a − b‖₂ / ‖b‖₂.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var d = 0.0, n = 0.0
    for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
    return (d / max(n, 1e-30)).squareRoot()
}

/// Times one case on one backend (inputs and prepared weights made outside the timing) and
/// returns the output too.
func measureOp(_ op: String, _ p: [Int], _ backend: CPUBackend, cold: Bool = false) throws -> (Double, [Float]) {
    switch op {
    case "gemm":
        let (m, n, k) = (p[0], p[1], p[2])
        let x = try backend.upload(randomFloats(m * k, seed: 1), shape: [m, k])
        let w = try backend.prepareWeight(HostBuffer.view(of: randomFloats(n * k, seed: 2), shape: [n, k]), role: .linear, activationDType: .f32)
        var out: Tensor? = nil
        if cold {
            // As inside the UNet, every call finds its weight in memory, not in cache: copies of the
            // weight (≥ 512 MB of fp32 source in all) are used in turn; time per call, best sweep.
            let copies = max(2, (512 << 20) / max(1, n * k * 4))
            let ws = try (0..<copies).map { _ in
                try backend.prepareWeight(HostBuffer.view(of: randomFloats(n * k, seed: 2), shape: [n, k]), role: .linear, activationDType: .f32)
            }
            let t = try timeBest(minRuns: 2, budget: 2) { for wi in ws { out = try backend.linear(x, weight: wi, bias: nil) } }
            return (t / Double(copies), try out.map { try backend.download($0) } ?? [])
        }
        let t = try timeBest { out = try backend.linear(x, weight: w, bias: nil) }
        return (t, try out.map { try backend.download($0) } ?? [])
    case "conv":
        let (b, h, wd, cin, cout, ks, s) = (p[0], p[1], p[2], p[3], p[4], p[5], p[6])
        let x = try backend.upload(randomFloats(b * h * wd * cin, seed: 1), shape: [b, h, wd, cin])
        let w = try backend.prepareWeight(HostBuffer.view(of: randomFloats(cout * cin * ks * ks, seed: 2), shape: [cout, cin, ks, ks]), role: .conv2d, activationDType: .f32)
        let bias = try backend.upload(randomFloats(cout, seed: 3), shape: [cout])
        var out: Tensor? = nil
        let t = try timeBest { out = try backend.conv2d(x, weight: w, bias: bias, stride: s, padding: ks / 2) }
        return (t, try out.map { try backend.download($0) } ?? [])
    default:
        let (b, nq, nk, heads, d, causal) = (p[0], p[1], p[2], p[3], p[4], p[5] == 1)
        let q = try backend.upload(randomFloats(b * nq * heads * d, seed: 1), shape: [b, nq, heads * d])
        let k = try backend.upload(randomFloats(b * nk * heads * d, seed: 2), shape: [b, nk, heads * d])
        let v = try backend.upload(randomFloats(b * nk * heads * d, seed: 3), shape: [b, nk, heads * d])
        var out: Tensor? = nil
        let t = try timeBest {
            out = try backend.attention(query: q, key: k, value: v, heads: heads, scale: 1 / Float(d).squareRoot(), causal: causal)
        }
        return (t, try out.map { try backend.download($0) } ?? [])
    }
}
