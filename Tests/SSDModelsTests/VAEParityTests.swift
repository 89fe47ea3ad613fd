import SSDTensor
import Testing
@testable import SSDModels

/// Reference backend vs diffusers on a tiny random AutoencoderKL (relative error ≤ 1e-4).
@Suite struct VAEParityTests {
    @Test func decoderMatchesDiffusers() throws {
        let backend = ReferenceBackend()
        let vae = try AutoencoderKL.load(componentDirectory: Fixtures.models("vae"), backend: backend)
        #expect(vae.config.scalingFactor == 0.13025 && vae.config.forceUpcast)
        let io = try Fixtures.io("vae")
        let trace = ForwardTrace()
        let decoded = try vae.decode(io.upload("latents", to: backend), trace: trace)
        #expect(decoded.shape == io.shape("decoded"))
        let error = relativeError(try backend.download(decoded), try io.floats("decoded"))
        #expect(error <= 1e-4, "decoded: \(error)")
        #expect(trace.tensors.count == 1 + vae.config.blockOutChannels.count)
        for (key, tensor) in trace.tensors {
            let e = relativeError(try backend.download(tensor), try io.floats(key))
            #expect(e <= 1e-4, "\(key): \(e)")
        }
    }

    @Test func encoderMatchesDiffusers() throws {
        let backend = ReferenceBackend()
        let vae = try AutoencoderKL.load(componentDirectory: Fixtures.models("vae"), backend: backend)
        let io = try Fixtures.io("vae")
        let (mean, logVariance) = try vae.encode(io.upload("image", to: backend))
        #expect(mean.shape == io.shape("mean") && logVariance.shape == io.shape("logvar"))
        let meanError = relativeError(try backend.download(mean), try io.floats("mean"))
        let logVarianceError = relativeError(try backend.download(logVariance), try io.floats("logvar"))
        #expect(meanError <= 1e-4, "mean: \(meanError)")
        #expect(logVarianceError <= 1e-4, "logvar: \(logVarianceError)")
    }
}
