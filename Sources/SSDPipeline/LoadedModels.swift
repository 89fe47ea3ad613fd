import SSDModels
import SSDTensor

/// The four networks of a pipeline on one backend.
final class LoadedModels {
    var textEncoder: CLIPTextModel?
    var textEncoder2: CLIPTextModel?
    let unet: UNet2DConditionModel
    let vae: AutoencoderKL
    /// TAESD for step previews, if configured.
    let previewDecoder: AutoencoderTiny?
    /// The ControlNets, in the configuration's order.
    let controlNets: [ControlNetModel]
    /// The IP-Adapters, in the configuration's order, and the image encoder they share.
    let ipAdapters: [IPAdapterModel]
    private(set) var imageEncoder: CLIPVisionModel?
    /// The T2I-Adapters, in the configuration's order.
    let t2iAdapters: [T2IAdapterModel]
    /// The single-file checkpoint the weights come from, if the configuration names one.
    private let checkpoint: SingleFileCheckpoint?
    /// The LoRAs fused into the weights (none: nil).
    let loras: LoRASet?
    /// What each LoRA changed, per network (the text encoders' entries are replaced when they reload).
    private var loraReportsByNetwork: [SingleFileNames.Component: [LoRAReport]] = [:]
    /// What each LoRA changed.
    var loraReports: [LoRAReport] {
        LoRASet.merge([SingleFileNames.Component.unet, .textEncoder, .textEncoder2].flatMap { loraReportsByNetwork[$0] ?? [] })
    }

    init(folder: PipelineFolder, backend: any ComputeBackend, configuration: PipelineConfiguration) throws {
        checkpoint = try configuration.singleFileCheckpoint.map { try SingleFileCheckpoint(path: $0) }
        loras = configuration.loras.isEmpty ? nil : try LoRASet(configuration.loras)
        let unetDirectory = try folder.componentDirectory("unet")
        let unetConfig = try ConfigFile.load(UNet2DConditionConfig.self, path: unetDirectory + "/config.json")
        var unetWeights = try Self.weights(.unet, directory: unetDirectory, baseNames: ["diffusion_pytorch_model"],
                                           checkpoint: checkpoint, configuration: configuration, unet: unetConfig)
        if let loras {
            (unetWeights, loraReportsByNetwork[.unet]) = try loras.apply(
                to: unetWeights, component: .unet, specs: try UNet2DConditionModel.parameterSpecs(config: unetConfig), unet: unetConfig)
        }
        unet = try UNet2DConditionModel(config: unetConfig, weights: unetWeights, backend: backend)
        let vaeDirectory = try folder.componentDirectory("vae")
        let vaeConfig = try ConfigFile.load(AutoencoderKLConfig.self, path: vaeDirectory + "/config.json")
        vae = try AutoencoderKL(
            config: vaeConfig,
            weights: try Self.weights(.vae, directory: vaeDirectory, baseNames: ["diffusion_pytorch_model"], checkpoint: checkpoint,
                                      configuration: configuration, vae: vaeConfig),
            backend: backend)
        previewDecoder = try configuration.previewDecoder.map {
            try AutoencoderTiny.load(componentDirectory: $0, backend: backend, variant: configuration.variant)
        }
        controlNets = try configuration.controlNets.map {
            try ControlNetModel.load(componentDirectory: $0, backend: backend, variant: configuration.variant)
        }
        (ipAdapters, imageEncoder) = try Self.loadIPAdapters(configuration, unet: unet, backend: backend)
        t2iAdapters = try configuration.t2iAdapters.map {
            try T2IAdapterModel.load(componentDirectory: $0, backend: backend, variant: configuration.variant)
        }
        for (i, adapter) in t2iAdapters.enumerated().dropFirst() {
            // (diffusers' MultiAdapter refuses adapters that downscale differently, and adds the maps index by index)
            let first = t2iAdapters[0], side = 64 * first.downscaleFactor
            guard adapter.downscaleFactor == first.downscaleFactor,
                  adapter.featureShapes(height: side, width: side) == first.featureShapes(height: side, width: side) else {
                throw PipelineError.invalidArgument(
                    name: "t2iAdapters[\(i)]",
                    message: "gives feature maps \(adapter.featureShapes(height: side, width: side)) (downscale \(adapter.downscaleFactor)) for a \(side)² image, t2iAdapters[0] \(first.featureShapes(height: side, width: side)) (downscale \(first.downscaleFactor)): several adapters must agree")
            }
        }
        try reloadTextEncodersIfNeeded(folder: folder, backend: backend, configuration: configuration)
        try LoRASet.checkEveryLoRAApplies(loraReports)  // (the files' pages went after text encoder 2 loaded)
    }

    /// The IP-Adapters and their image encoder, each adapter checked against the encoder's output width
    /// (diffusers would fail at the first generation with a shape error).
    static func loadIPAdapters(_ configuration: PipelineConfiguration, unet: UNet2DConditionModel,
                               backend: any ComputeBackend) throws -> ([IPAdapterModel], CLIPVisionModel?) {
        guard !configuration.ipAdapters.isEmpty else { return ([], nil) }
        guard let encoderDirectory = configuration.imageEncoder else {
            throw PipelineError.invalidArgument(name: "imageEncoder", message: "IP-Adapters need an image encoder folder (CLIPVisionModelWithProjection)")
        }
        let encoder = try CLIPVisionModel.load(componentDirectory: encoderDirectory, backend: backend, variant: configuration.variant)
        let adapters = try configuration.ipAdapters.map { try IPAdapterModel(path: $0, unet: unet, backend: backend) }
        for (i, adapter) in adapters.enumerated() {
            let width = adapter.kind == .imageProjection ? encoder.config.projectionDim : encoder.config.hiddenSize
            guard adapter.imageEmbeddingWidth == width else {
                throw PipelineError.invalidArgument(
                    name: "ipAdapters[\(i)]", message: "\(adapter.kind) takes \(adapter.imageEmbeddingWidth)-wide image features; the image encoder gives \(width) (\(adapter.kind == .imageProjection ? "projection_dim" : "hidden_size")): another encoder is needed")
            }
        }
        return (adapters, encoder)
    }

    /// Maps the text encoders again after `releaseTextEncoders`.
    func reloadTextEncodersIfNeeded(folder: PipelineFolder, backend: any ComputeBackend, configuration: PipelineConfiguration) throws {
        func load(_ component: SingleFileNames.Component) throws -> CLIPTextModel {
            let directory = try folder.componentDirectory(component.rawValue)
            let config = try ConfigFile.load(CLIPTextConfig.self, path: directory + "/config.json")
            var weights = try Self.weights(component, directory: directory, baseNames: ["model"], checkpoint: checkpoint,
                                           configuration: configuration)
            if let loras {
                let projection = config.declaresProjection ?? (weights.entry("text_projection.weight") != nil)
                (weights, loraReportsByNetwork[component]) = try loras.apply(
                    to: weights, component: component, specs: try CLIPTextModel.parameterSpecs(config: config, withProjection: projection))
            }
            var model = try CLIPTextModel(config: config, weights: weights, backend: backend)
            // Textual inversions: their vectors after the vocabulary, in the order the tokenizers add them.
            for inversion in configuration.textualInversions {
                let file = try TextualInversionFile(inversion)
                let rows = component == .textEncoder ? file.first : file.second
                guard !rows.isEmpty else {
                    throw PipelineError.invalidArgument(
                        name: "textualInversions", message: "\(inversion.path) has no clip_l tensor for text_encoder")
                }
                do {
                    model = try model.addingTokenEmbeddings(rows)
                } catch {
                    throw PipelineError.invalidArgument(name: "textualInversions", message: "\(inversion.path) for \(component.rawValue): \(error)")
                }
            }
            return model
        }
        // (a refiner folder has text_encoder_2 only)
        if textEncoder == nil, folder.modelIndex.components["text_encoder"] != nil { textEncoder = try load(.textEncoder) }
        if textEncoder2 == nil {
            textEncoder2 = try load(.textEncoder2)
            loras?.evictPages()
        }
    }

    /// Frees the text encoders' (and the IP-Adapters' image encoder's) prepared weights.
    func releaseTextEncoders() {
        textEncoder = nil
        textEncoder2 = nil
        imageEncoder = nil
    }

    /// Maps the IP-Adapters' image encoder again after `releaseTextEncoders`.
    func reloadImageEncoderIfNeeded(backend: any ComputeBackend, configuration: PipelineConfiguration) throws {
        guard imageEncoder == nil, !ipAdapters.isEmpty, let directory = configuration.imageEncoder else { return }
        imageEncoder = try CLIPVisionModel.load(componentDirectory: directory, backend: backend, variant: configuration.variant)
    }

    /// A component's weights: from the single-file checkpoint when it holds that component, else from
    /// the component's folder (`variant` preferred).
    private static func weights(_ component: SingleFileNames.Component, directory: String, baseNames: [String],
                                checkpoint: SingleFileCheckpoint?, configuration: PipelineConfiguration,
                                unet: UNet2DConditionConfig? = nil, vae: AutoencoderKLConfig? = nil) throws -> WeightFiles {
        if let checkpoint, let weights = try checkpoint.weights(for: component, unet: unet, vae: vae) { return weights }
        do {
            return try WeightFiles.locate(in: directory, baseNames: baseNames, variant: configuration.variant)
        } catch ModelError.weightsNotFound(let folder, let tried) where checkpoint != nil {
            throw ModelError.weightsNotFound(
                directory: folder, tried: ["(\(checkpoint?.path ?? "") has no \(component.rawValue) tensors)"] + tried)
        }
    }
}
