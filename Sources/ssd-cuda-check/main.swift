// ssd-cuda-check: runs every ComputeBackend op on the GPU and on ReferenceBackend (parity), then
// micro-benchmarks. Usage: ssd-cuda-check [parity] [bench] [memory]  (default: all three).
// Exit status 0 when every parity check passes, 1 otherwise, 2 when CUDA is unavailable.
import SSDCUDABackend
import SSDTensor
#if canImport(Glibc)
import Glibc
#endif

let arguments = Set(CommandLine.arguments.dropFirst())
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
        let parity = ParityCheck(cuda: cuda)
        parity.run(convolutionLabel: "default")
        var failures = parity.failures
        var count = parity.count
        if let plain {
            let p2 = ParityCheck(cuda: plain)
            p2.run(convolutionLabel: "im2col")
            failures += p2.failures.filter { $0.contains("conv2d") }
            count += p2.count
        }
        print("PARITY \(count - failures.count)/\(count) passed in \(format(now() - t0, "%.1f")) s\(failures.isEmpty ? "" : "; failed: \(failures)")")
        ok = ok && failures.isEmpty
    }
    if all || arguments.contains("bench") {
        var bench = Benchmark(cuda: cuda)
        try bench.run(im2col: plain)
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
