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

/// Tiled decoding and encoding (`enable_tiling()`) against diffusers: tiles of 8 latents / 32 pixels
/// (the fixture's `sample_size`), partial last tiles both ways, and 16-pixel tiles set by attribute.
@Suite struct VAETilingTests {
    let backend = ReferenceBackend()

    func load() throws -> (AutoencoderKL, SafetensorsFile) {
        (try AutoencoderKL.load(componentDirectory: Fixtures.models("vae"), backend: backend), try Fixtures.io("vae"))
    }

    @Test func tiledDecodeMatchesDiffusers() throws {
        let (vae, io) = try load()
        let latents = try io.upload("tiled_latents", to: backend)
        for (tiling, key) in [(VAETiling(), "tiled_decoded"), (VAETiling(tileSampleSize: 16), "tiled16_decoded")] {
            let decoded = try vae.decode(latents, tiling: tiling)
            #expect(decoded.shape == io.shape(key))
            let error = relativeError(try backend.download(decoded), try io.floats(key))
            #expect(error <= 1e-4, "\(key): \(error)")
        }
        // The untiled decode is far from it: the tiles were taken.
        let whole = relativeError(try backend.download(vae.decode(latents)), try io.floats("tiled_decoded"))
        #expect(whole > 1e-2, "untiled vs tiled: \(whole)")
    }

    @Test func tiledEncodeMatchesDiffusers() throws {
        let (vae, io) = try load()
        let image = try io.upload("tiled_image", to: backend)
        let (mean, logVariance) = try vae.encode(image, tiling: VAETiling())
        #expect(mean.shape == io.shape("tiled_mean") && logVariance.shape == io.shape("tiled_logvar"))
        let meanError = relativeError(try backend.download(mean), try io.floats("tiled_mean"))
        let logVarianceError = relativeError(try backend.download(logVariance), try io.floats("tiled_logvar"))
        #expect(meanError <= 1e-4, "mean: \(meanError)")
        #expect(logVarianceError <= 1e-4, "logvar: \(logVarianceError)")
        let small = try vae.encode(image, tiling: VAETiling(tileSampleSize: 16)).mean
        let smallError = relativeError(try backend.download(small), try io.floats("tiled16_mean"))
        #expect(smallError <= 1e-4, "16-pixel tiles: \(smallError)")
        let whole = relativeError(try backend.download(vae.encode(image).mean), try io.floats("tiled_mean"))
        #expect(whole > 1e-2, "untiled vs tiled: \(whole)")
    }

    @Test func imagesWithinOneTileAreNotTiled() throws {
        let (vae, io) = try load()
        let latents = try io.upload("latents", to: backend)  // 6 × 4 latents: within one 8-latent tile
        let tiled = try backend.download(vae.decode(latents, tiling: VAETiling()))
        #expect(tiled == (try backend.download(vae.decode(latents))))
        // Tiles that would not line up are no error when nothing is tiled (diffusers never looks at them).
        let misaligned = VAETiling(tileSampleSize: 40)
        #expect(try backend.download(vae.decode(latents, tiling: misaligned)) == tiled)
        try misaligned.validate(for: vae.config, width: 16, height: 24)
        #expect(throws: ModelError.self) { try misaligned.validate(for: vae.config, width: 64, height: 24) }
    }

    @Test(arguments: [
        (VAETiling(tileSampleSize: 20), "keeps"),        // 5-latent tiles every 3 latents, 15 pixels kept of 20
        (VAETiling(tileSampleSize: 2), "between"),       // below the downsampling factor
        (VAETiling(overlapFactor: 1), "overlap factor"),
        (VAETiling(overlapFactor: .nan), "overlap factor"),
    ])
    func misalignedTilingsAreRefused(tiling: VAETiling, phrase: String) throws {
        let (vae, io) = try load()
        let latents = try io.upload("tiled_latents", to: backend)
        #expect {
            try vae.decode(latents, tiling: tiling)
        } throws: { error in
            guard case ModelError.invalidInput(_, let argument, let message) = error else { return false }
            return argument == "tiling" && message.contains(phrase)
        }
    }
}

/// TAESD (`AutoencoderTiny`) against diffusers on a small random one of the same architecture.
@Suite struct AutoencoderTinyTests {
    @Test func decoderAndEncoderMatchDiffusers() throws {
        let backend = ReferenceBackend()
        let taesd = try AutoencoderTiny.load(componentDirectory: Fixtures.models("taesd"), backend: backend)
        let io = try Fixtures.io("taesd")
        let decoded = try taesd.decode(io.upload("latents", to: backend))
        #expect(decoded.shape == io.shape("decoded"))
        let decodeError = relativeError(try backend.download(decoded), try io.floats("decoded"))
        #expect(decodeError <= 1e-4, "decoded: \(decodeError)")
        let encoded = try taesd.encode(io.upload("image", to: backend))
        #expect(encoded.shape == io.shape("encoded"))
        let encodeError = relativeError(try backend.download(encoded), try io.floats("encoded"))
        #expect(encodeError <= 1e-4, "encoded: \(encodeError)")
    }

    @Test func unsupportedConfigsAreNamed() throws {
        var config = AutoencoderTinyConfig()
        config.actFn = "gelu"
        let weights = try WeightFiles.locate(in: Fixtures.models("taesd"), baseNames: ["diffusion_pytorch_model"], variant: nil)
        #expect {
            _ = try AutoencoderTiny(config: config, weights: weights, backend: ReferenceBackend())
        } throws: { error in
            guard case let ModelError.unsupportedConfig(_, field, _) = error else { return false }
            return field == "act_fn"
        }
    }
}
