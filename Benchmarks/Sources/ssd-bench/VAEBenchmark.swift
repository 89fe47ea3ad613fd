import Foundation
import SSDModels
import SSDTensor

/// `ssd-bench vae`: one VAE decode of a random `B × size/8 × size/8 × 4` latent per backend: time,
/// GFLOP/s (direct-convolution FLOPs, as diffusers does them), the backend's live bytes before and
/// at the peak of the decode (what the decode adds), and RSS; `--torch` times diffusers' fp32 decode
/// (`Benchmarks/diffusers_bench.py --vae-only`) of the same latents on the same folder, prints the
/// ratio and each backend's relative error against diffusers' image. `--tiling`: both sides decode in
/// tiles (`VAETiling()`, diffusers `enable_tiling()`).
func runVAEBenchmark(_ args: Arguments) throws {
    guard let model = args.values["model"] else { throw BenchError.failed("vae: --model DIR is required") }
    let size = args.int("size", 1024), batch = args.int("batch", 1), runs = args.int("runs", 1)
    let threads = args.int("threads", Parallel.threadCount)
    let backends = args.string("backend", "cpu").split(separator: ",").map(String.init)
    let tiling = args.flags.contains("tiling") ? VAETiling() : nil
    let peak = MachinePeak.measure(threads: threads)
    print("machine: \(threads) threads, \(peak.isa); peak fp32 \(fmt(peak.f32)) GFLOP/s")
    let lat = size / 8
    let latents = randomFloats(batch * lat * lat * 4, seed: 4)  // NHWC
    var torchSeconds: Double? = nil
    var torchImage: [Float]? = nil  // NCHW
    if args.flags.contains("torch") {
        let latentPath = "/tmp/ssd-bench-vae-latents-\(getpid()).f32", imagePath = "/tmp/ssd-bench-vae-image-\(getpid()).f32"
        defer { unlink(latentPath); unlink(imagePath) }
        var nchw = [Float](repeating: 0, count: latents.count)
        for bi in 0..<batch { for y in 0..<lat { for x in 0..<lat { for c in 0..<4 {
            nchw[((bi * 4 + c) * lat + y) * lat + x] = latents[((bi * lat + y) * lat + x) * 4 + c]
        } } } }
        try nchw.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: latentPath)) }
        let report = try runDiffusersBench(["--model", model, "--size", String(size), "--batch", String(batch), "--threads", String(threads),
                                 "--iterations", String(runs), "--vae-only", "--latents", latentPath, "--save-image", imagePath]
                                            + (tiling == nil ? [] : ["--vae-tiling"]))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: imagePath))
        torchImage = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        torchSeconds = report.batches[String(batch)]?["vae_decode_seconds"] as? Double
    }
    var rows: [[String]] = []
    for name in backends {
        let backend = CountingBackend(try makeBackend(name, threads: threads), profiling: args.flags.contains("profile"))
        let vae = try AutoencoderKL.load(componentDirectory: model + "/vae", backend: backend)
        let z = try backend.upload(latents, shape: [batch, lat, lat, 4])
        var seconds = Double.infinity, added = 0, error: Double? = nil
        var rssAdded = 0
        for _ in 0..<max(1, runs) {
            let before = backend.memoryStatistics().currentBytes
            backend.resetPeakMemory()
            resetPeakResidentMemory()
            let rssBefore = residentMemory().current
            backend.reset()
            let clock = ContinuousClock(), start = clock.now
            let image = try vae.decode(z, tiling: tiling)
            let d = clock.now - start
            if let torchImage {
                // Ours NHWC → NCHW, then ‖ours − diffusers‖ / ‖diffusers‖.
                let ours = try backend.download(image)
                let (h, w, c) = (image.shape[1], image.shape[2], image.shape[3])
                var diff = 0.0, norm = 0.0
                for bi in 0..<batch { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                    let a = Double(ours[((bi * h + y) * w + x) * c + ch]), t = Double(torchImage[((bi * c + ch) * h + y) * w + x])
                    diff += (a - t) * (a - t)
                    norm += t * t
                } } } }
                error = (diff / max(norm, 1e-30)).squareRoot()
            }
            seconds = min(seconds, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
            added = max(added, backend.memoryStatistics().peakBytes - before)
            rssAdded = max(rssAdded, residentMemory().peak - rssBefore)
        }
        printProfile(backend, "\(name) VAE decode, batch \(batch)", seconds, runs: 1)
        let g = backend.flops / seconds / 1e9
        rows.append([name, String(batch), fmt(seconds, 2), fmt(backend.flops / 1e9, 0), fmt(g), fmt(100 * g / peak.f32),
                     String(added >> 20), String(rssAdded >> 20), torchSeconds.map { fmt(seconds / $0, 2) } ?? "-",
                     error.map { String(format: "%.1e", $0) } ?? "-"])
    }
    printTable(["backend", "batch", "decode s", "GFLOP", "GFLOP/s", "% peak", "live MiB added", "RSS MiB added", "× diffusers", "err vs diffusers"], rows)
    if let torchSeconds { print("(diffusers fp32 decode \(fmt(torchSeconds, 2)) s; × diffusers = our time / diffusers time)") }
}
