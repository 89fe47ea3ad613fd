// ssd-cuda-check: runs every ComputeBackend op on the GPU and on ReferenceBackend (parity), then
// micro-benchmarks. Usage: ssd-cuda-check [parity] [parity-legacy] [bench] [unet-like] [memory]
// (default: parity, bench, memory).
//   parity         every op with the default kernels (fast unless SSD_CUDA_LEGACY_KERNELS=1 /
//                  SSD_CUDA_LEGACY_ATTENTION=1), plus the im2col convolutions, plus GEMMs and
//                  convolutions with fused convolutions on, without and with autotune, plus cuDNN's
//                  graph API (convolutions and attention), without and with autotune, plus the
//                  attention with 32 query rows per warp (`--quick 1`: the default backend only;
//                  `--only TEXT`: the checks whose label contains TEXT)
//   parity-legacy  the same with the first (legacy) kernels
//   bench          GEMM / attention / convolution TFLOP/s, memory-bound GB/s; fast and legacy kernels
//   unet-like      one resnet + transformer block at 64² × 640, batch 2, 8, 16, 32, fast and legacy (ms)
//   profile        that block at batch 32 with every kernel / GEMM / convolution's GPU time, or with
//                  --model DIR the whole UNet at --size (1024)² for UNet batches --batches (2,32),
//                  grouped by category with TFLOP/s (see Profile.swift)
//   graphs         CUDA graph replay vs eager: the unet-like block, and with --model DIR (a full-size
//                  folder) the UNet at --size (1024)² for UNet batches --batches (2,8); outputs, it/s,
//                  memory over --replays (20) replays (see Graphs.swift); --block 0 skips the block;
//                  --timed N calls timed per mode (20)
//   vae            with --model DIR: the VAE with fp16-resident weights vs fp32-resident (pixels, bytes)
// Exit status 0 when every parity check passes, 1 otherwise, 2 when CUDA is unavailable.
import SSDCUDABackend
import SSDTensor
#if canImport(Glibc)
import Glibc
#endif

/// `--name value` options, and the rest (the modes).
var options: [String: String] = [:]
var modes: [String] = []
do {
    var rest = Array(CommandLine.arguments.dropFirst())[...]
    while let argument = rest.popFirst() {
        if argument.hasPrefix("--") {
            guard let value = rest.popFirst() else {
                printError("ssd-cuda-check: \(argument) needs a value")
                exit(1)
            }
            options[String(argument.dropFirst(2))] = value
        } else {
            modes.append(argument)
        }
    }
}
let arguments = Set(modes)
let all = arguments.isEmpty
let availability = CUDABackend.availability()
print("CUDA: \(availability.isAvailable ? "available" : "unavailable"): \(availability.description)")
guard availability.isAvailable else { exit(2) }

var ok = true
do {
    let start = now()
    let cuda = try CUDABackend()
    print("backend created in \(format(now() - start, "%.2f")) s")
    let plain = try? CUDABackend(useCuDNN: false)
    if all || arguments.contains("parity") {
        let t0 = now()
        ParityCheck.only = options["only"]
        let parity = ParityCheck(cuda: cuda)
        parity.run(convolutionLabel: "default")
        var failures = parity.failures
        var count = parity.count
        // One line per mode (`PARITY MODE label: passed/checked`), read by Scripts/gpu/compare_profiles.py
        // to leave a failing mode's switches out of the measured settings.
        func tally(_ label: String, _ check: ParityCheck, counted: [String]) {
            print("PARITY MODE \(label): \(check.count - counted.count)/\(check.count) passed"
                  + (counted.isEmpty ? "" : "; failed: \(counted)"))
        }
        tally("default", parity, counted: parity.failures)
        // `--quick 1`: the default backend only (the emulated driver's CI run).
        let quick = options["quick"] == "1"
        if !quick, let plain {
            let p2 = ParityCheck(cuda: plain)
            p2.run(convolutionLabel: "im2col")
            let counted = p2.failures.filter { $0.contains("conv2d") }
            failures += counted
            count += p2.count
            tally("im2col", p2, counted: counted)
        }
        // Every speed switch off (the defaults before the fifteenth session's GPU visit): cuDNN's
        // heuristic algorithms, separate bias passes, our flash-attention kernels.
        if !quick, let untuned = try? CUDABackend(autotune: false, fusedConvolutions: false, cudnnAttention: .off) {
            let p1 = ParityCheck(cuda: untuned)
            p1.run(convolutionLabel: "untuned")
            failures += p1.failures
            count += p1.count
            tally("untuned", p1, counted: p1.failures)
        }
        // The fused convolution (SSD_CUDA_FUSED_CONV) on the heuristic algorithms, then with autotuned
        // GEMMs and convolutions (SSD_CUDA_AUTOTUNE); the report says how many calls were fused.
        for (autotune, label) in quick ? [] : [(false, "fused"), (true, "autotune+fused")] {
            guard let tuned = try? CUDABackend(autotune: autotune, fusedConvolutions: true) else { continue }
            let p3 = ParityCheck(cuda: tuned)
            p3.run(convolutionLabel: label)
            let counted = p3.failures.filter { $0.contains("conv2d") || $0.contains("linear") || $0.contains("matmul") }
            failures += counted
            count += p3.count
            tally(label, p3, counted: counted)
            print("PARITY \(label): \(tuned.tuningReport)")
        }
        // cuDNN's graph API: fp16 convolutions (SSD_CUDA_CONV_GRAPH) and fused attention
        // (SSD_CUDA_CUDNN_ATTENTION), without and with autotune.
        // (the attention as cuDNN's SDPA operation where cuDNN has it, then as the composite graph).
        for (autotune, attention, label) in quick ? [] : [(false, CUDNNAttention.on, "graph"), (true, .composite, "autotune+graph")] {
            guard let graphs = try? CUDABackend(autotune: autotune, convolutionGraphs: true, cudnnAttention: attention) else { continue }
            let p5 = ParityCheck(cuda: graphs)
            p5.run(convolutionLabel: label)
            let counted = p5.failures.filter { $0.contains("conv2d") || $0.contains("attention") }
            failures += counted
            count += p5.count
            tally(label, p5, counted: counted)
            print("PARITY \(label): \(graphs.tuningReport)")
        }
        // The fast attention with 32 query rows per warp (SSD_CUDA_ATTENTION_ROWS=32).
        if !quick, let rows32 = try? CUDABackend(attentionRowsPerWarp: 32, cudnnAttention: .off) {
            let p4 = ParityCheck(cuda: rows32)
            p4.run(convolutionLabel: "rows32")
            let counted = p4.failures.filter { $0.contains("attention") }
            failures += counted
            count += p4.count
            tally("rows32", p4, counted: counted)
        }
        print("PARITY \(count - failures.count)/\(count) passed in \(format(now() - t0, "%.1f")) s\(failures.isEmpty ? "" : "; failed: \(failures)")")
        if count == 0 { print("PARITY: no check matched --only \(options["only"] ?? "")") }
        ok = ok && failures.isEmpty && count > 0
    }
    let legacy = cuda.usesFastKernels || cuda.usesFastAttention ? try? CUDABackend(legacyKernels: true, legacyAttention: true) : nil
    if arguments.contains("parity-legacy"), let legacy {
        let t0 = now()
        let parity = ParityCheck(cuda: legacy)
        parity.run(convolutionLabel: "legacy")
        print("PARITY-LEGACY \(parity.count - parity.failures.count)/\(parity.count) passed in \(format(now() - t0, "%.1f")) s\(parity.failures.isEmpty ? "" : "; failed: \(parity.failures)")")
        ok = ok && parity.failures.isEmpty
    }
    if all || arguments.contains("bench") {
        var bench = Benchmark(cuda: cuda)
        try bench.run(im2col: plain, legacy: legacy)
    }
    if arguments.contains("unet-like") {
        var bench = Benchmark(cuda: cuda)
        for batch in [2, 8, 16, 32] { try bench.unetLike(batch: batch, legacy: legacy) }
    }
    if arguments.contains("profile") {
        let batches = (options["batches"] ?? "2,32").split(separator: ",").compactMap { Int($0) }
        var check = ProfileCheck(cuda: cuda)
        check.eagerOnly = options["eager-only"] == "1"
        try check.run(modelDirectory: options["model"], batches: batches, size: Int(options["size"] ?? "") ?? 1024,
                      top: Int(options["top"] ?? "") ?? 30)
    }
    if arguments.contains("graphs") {
        let batches = (options["batches"] ?? "2,8").split(separator: ",").compactMap { Int($0) }
        var check = GraphCheck(cuda: cuda)
        check.timedCalls = max(1, Int(options["timed"] ?? "") ?? 20)
        check.run(modelDirectory: options["model"], batches: batches, size: Int(options["size"] ?? "") ?? 1024,
                  replays: Int(options["replays"] ?? "") ?? 20, block: options["block"] != "0")
        print("GRAPHS tuning: \(cuda.tuningReport)")
        print("GRAPHS \(check.failures.isEmpty ? "all checks passed" : "FAILED: \(check.failures)")")
        ok = ok && check.failures.isEmpty
    }
    if arguments.contains("vae") {
        guard let model = options["model"] else {
            printError("ssd-cuda-check vae needs --model DIR")
            exit(1)
        }
        var check = VAECheck()
        check.run(modelDirectory: model)
        ok = ok && check.failures.isEmpty
    }
    if all || arguments.contains("memory") {
        var bench = Benchmark(cuda: cuda)
        ok = try bench.memoryStability() && ok
    }
    let stats = cuda.memoryStatistics()
    print("peak bytes \(stats.peakBytes), pool reserved \(cuda.poolReservedBytes)")
} catch {
    printError("ssd-cuda-check: \(error)")
    exit(1)
}
exit(ok ? 0 : 1)
