import SSDCUDABackend
import SSDModels
import SSDTensor

/// `ssd-cuda-check vae --model DIR`: the `force_upcast` VAE with fp16-resident weights (the default,
/// `CUDABackend.compactVAEWeights`) against the same VAE stored upcast to fp32, both computing in
/// fp32: the decoded pixels of one random latent (32×32 → 256²) must agree to 1e-6 (the fp32 weight
/// values are the same), and the weights' device bytes are printed for both.
struct VAECheck {
    var failures: [String] = []

    mutating func run(modelDirectory: String) {
        var random = Random(state: 21)
        let latent = random.normal(32 * 32 * 4)
        var outputs: [[Float]] = []
        for compact in [true, false] {
            do {
                let cuda = try CUDABackend(compactVAEWeights: compact)
                let before = cuda.memoryStatistics().currentBytes
                let vae = try AutoencoderKL.load(componentDirectory: modelDirectory + "/vae", backend: cuda)
                try cuda.synchronize()
                let weights = cuda.memoryStatistics().currentBytes - before
                let z = try cuda.upload(latent, shape: [1, 32, 32, 4], as: .f32)
                cuda.resetPeakMemory()
                let start = now()
                let pixels = try cuda.download(vae.decode(z))
                print("VAE \(compact ? "fp16-resident" : "fp32-resident") weights: \(weights >> 20) MiB on the device; "
                      + "decode 256² in \(format(now() - start, "%.3f")) s, peak \(cuda.memoryStatistics().peakBytes >> 20) MiB")
                outputs.append(pixels)
                withExtendedLifetime(vae) {}
            } catch {
                print("VAE error (compact \(compact)): \(error)")
                failures.append("VAE load or decode")
                return
            }
        }
        let error = relativeError(outputs[0], outputs[1])
        let ok = error <= 1e-6
        print("VAE fp16-resident vs fp32-resident weights: \(outputs[0] == outputs[1] ? "bitwise equal" : "relative error \(format(error))") \(ok ? "ok" : "FAIL")")
        if !ok { failures.append("VAE outputs differ") }
    }
}
