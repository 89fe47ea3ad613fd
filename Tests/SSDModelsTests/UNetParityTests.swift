import SSDTensor
import Testing
@testable import SSDModels

/// Reference backend vs diffusers on tiny random UNets (relative error ≤ 1e-4).
@Suite struct UNetParityTests {
    @Test(arguments: ["unet_asym", "unet_crossmid", "unet_lcm"])
    func matchesDiffusers(_ name: String) throws {
        let backend = ReferenceBackend()
        let unet = try UNet2DConditionModel.load(componentDirectory: Fixtures.models(name), backend: backend)
        let io = try Fixtures.io(name)
        let trace = ForwardTrace()
        let batch = io.shape("sample")[0]
        let output = try unet.forward(
            sample: io.upload("sample", to: backend), timesteps: io.floats("timesteps"),
            encoderHiddenStates: io.upload("encoder_hidden_states", to: backend),
            textEmbeds: io.entries["text_embeds"] == nil ? nil : io.upload("text_embeds", to: backend),
            timeIDs: io.entries["time_ids"] == nil ? nil : io.floats("time_ids"),
            timestepCond: io.entries["timestep_cond"] == nil ? nil : io.floats("timestep_cond"), trace: trace)
        #expect(output.shape == io.shape("output"))
        #expect(output.shape[0] == batch)
        let error = relativeError(try backend.download(output), try io.floats("output"))
        #expect(error <= 1e-4, "\(name) output relative error \(error)")
        for (key, tensor) in trace.tensors.sorted(by: { $0.key < $1.key }) where io.entries[key] != nil {
            #expect(tensor.shape == io.shape(key), "\(name) \(key) shape")
            let e = relativeError(try backend.download(tensor), try io.floats(key))
            #expect(e <= 1e-4, "\(name) \(key) relative error \(e)")
        }
        #expect(io.entries["emb"] != nil && trace.tensors["emb"] != nil)
        // The public call (through `runReplayable`) computes the same.
        let direct = try unet(
            sample: io.upload("sample", to: backend), timesteps: io.floats("timesteps"),
            encoderHiddenStates: io.upload("encoder_hidden_states", to: backend),
            textEmbeds: io.entries["text_embeds"] == nil ? nil : io.upload("text_embeds", to: backend),
            timeIDs: io.entries["time_ids"] == nil ? nil : io.floats("time_ids"),
            timestepCond: io.entries["timestep_cond"] == nil ? nil : io.floats("timestep_cond"))
        #expect(try backend.download(direct) == backend.download(output))
    }

    /// Keys and values projected once (`textConditioning`) give the per-call result bit for bit,
    /// whole or partly cached, and the cached tensors are what the layers read.
    @Test(arguments: ["unet_asym", "unet_crossmid"])
    func cachedCrossAttentionMatchesPerCall(_ name: String) throws {
        let backend = ReferenceBackend()
        let unet = try UNet2DConditionModel.load(componentDirectory: Fixtures.models(name), backend: backend)
        let io = try Fixtures.io(name)
        let states = try io.upload("encoder_hidden_states", to: backend)
        func run(_ conditioning: UNetTextConditioning?) throws -> [Float] {
            let sample = try io.upload("sample", to: backend)
            let text = io.entries["text_embeds"] == nil ? nil : try io.upload("text_embeds", to: backend)
            let ids = io.entries["time_ids"] == nil ? nil : try io.floats("time_ids")
            if let conditioning {
                return try backend.download(unet(sample: sample, timesteps: io.floats("timesteps"), conditioning: conditioning,
                                                 textEmbeds: text, timeIDs: ids))
            }
            return try backend.download(unet(sample: sample, timesteps: io.floats("timesteps"), encoderHiddenStates: states,
                                             textEmbeds: text, timeIDs: ids))
        }
        let perCall = try run(nil)
        let layers = unet.network.crossAttentions
        #expect(layers.count >= 2)
        let full = try unet.textConditioning(encoderHiddenStates: states)
        #expect(full.cachedLayerCount == layers.count)
        #expect(try run(full) == perCall)
        // A limit that holds exactly the first layer, and none.
        let one = try unet.textConditioning(encoderHiddenStates: states, cacheLimitBytes: full.cachedBytes / layers.count * 2 - 1)
        #expect(one.cachedLayerCount >= 1 && one.cachedLayerCount < layers.count)
        #expect(try run(one) == perCall)
        let none = try unet.textConditioning(encoderHiddenStates: states, cacheLimitBytes: 0)
        #expect(none.cachedLayerCount == 0 && none.cachedBytes == 0)
        #expect(try run(none) == perCall)
        // Tampered cached values change the output: the layers read the cache.
        var tampered = full.context
        let first = layers[0].name
        let kv = try #require(tampered.cached[first])
        tampered.cached[first] = CrossAttentionKV(key: kv.key, value: try backend.affine(kv.value, scale: 0, shift: 1))
        let changed = UNetTextConditioning(cachedBytes: full.cachedBytes, context: tampered, unetKey: full.unetKey)
        #expect(try run(changed) != perCall)
        // Conditioning of another UNet instance is refused.
        let other = try UNet2DConditionModel.load(componentDirectory: Fixtures.models(name), backend: backend)
        #expect(throws: ModelError.self) {
            try other(sample: io.upload("sample", to: backend), timesteps: io.floats("timesteps"), conditioning: full,
                      textEmbeds: nil, timeIDs: nil)
        }
    }

    /// Latent sizes that are not multiples of the total downscale run as in diffusers (`forward_upsample_size`:
    /// the up blocks upsample to the skips' sizes; parity at such sizes: the pipeline cases `*_odd_size`); an
    /// empty one is a typed error.
    @Test func latentSizesThatDoNotDivideRunAndEmptyOnesAreRefused() throws {
        let backend = ReferenceBackend()
        let unet = try UNet2DConditionModel.load(componentDirectory: Fixtures.models("unet_crossmid"), backend: backend)
        let context = try backend.upload([Float](repeating: 0, count: 7 * 16), shape: [1, 7, 16])
        for (h, w) in [(6, 8), (5, 7), (3, 1)] {
            let sample = try backend.upload((0..<(h * w * 4)).map { Float($0 % 7) / 7 }, shape: [1, h, w, 4])
            let output = try unet(sample: sample, timesteps: [1], encoderHiddenStates: context, textEmbeds: nil, timeIDs: nil)
            #expect(output.shape == [1, h, w, 4])
            #expect(try backend.download(output).allSatisfy(\.isFinite))
        }
        let empty = try backend.upload([], shape: [1, 0, 8, 4])
        #expect(throws: ModelError.self) {
            try unet(sample: empty, timesteps: [1], encoderHiddenStates: context, textEmbeds: nil, timeIDs: nil)
        }
    }
}
