// ssd-bench: op-level and whole-network benchmarks of the SSD-1B backends (DESIGN.md §8).
// See Benchmarks/RESULTS.md for the commands and this machine's figures.
import Foundation

let usage = """
usage: ssd-bench gemm|conv|attention [--threads N] [--torch] [--quick] [--no-openblas] [--cold (gemm: weights from memory)] [--shapes "gemm: M,N,K;… conv: B,H,W,Cin,Cout[,k,s];… attention: B,Nq,Nk,heads,D[,causal];…"] [--variants own-f32,…] [--json out.json]
       ssd-bench unet --model DIR [--size 512] [--batch 1,4] [--backend cpu,cpu-high,cpu-f16w,cpu-bf16,…] [--torch] [--vae] [--repeat N] [--profile] [--profile-shapes] [--per-call-kv] [--json out.json]
       ssd-bench unet --model DIR --interleave N [--size 512] [--batch 1] [--backend cpu-bf16] [--json out.json]   (diffusers kept loaded; N alternating pairs)
       ssd-bench unet --model DIR --alternate N --backend cpu,cpu-direct [--size 512] [--batch 1]   (our backends alternating in one process; output errors against the first)
       ssd-bench vae --model DIR [--size 1024] [--batch 1] [--runs 1] [--backend cpu,cpu-f16w] [--torch] [--profile] [--tiling]
       ssd-bench pipeline --model DIR [--size 512] [--batch 1,4,8,16] [--steps 3] [--backend cpu,cpu-high,cpu-f16w,cpu-bf16,cuda] [--torch] [--repeat N] [--json out.json]
       ssd-bench peak [--threads N]
       ssd-bench tokenizer
"""

let argv = CommandLine.arguments
guard argv.count >= 2 else {
    print(usage)
    exit(2)
}
let command = argv[1]
let arguments = Arguments(argv.dropFirst(2))
do {
    switch command {
    case "gemm", "conv", "attention":
        try runOpBenchmark(command, arguments)
    case "peak":
        let p = MachinePeak.measure(threads: arguments.int("threads", ProcessInfo.processInfo.activeProcessorCount))
        print("peak fp32 \(fmt(p.f32)) GFLOP/s, bf16 \(fmt(p.bf16)) GFLOP/s on \(p.threads) threads (\(p.isa))")
    case "unet":
        try runUNetBenchmark(arguments)
    case "vae":
        try runVAEBenchmark(arguments)
    case "pipeline":
        try await runPipelineBenchmark(arguments)
    case "tokenizer":
        print(runTokenizerBenchmark())
    default:
        print(usage)
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("ssd-bench: \(error)\n".utf8))
    exit(1)
}
