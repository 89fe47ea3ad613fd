import SSDTensor

/// What `ssd1b info` reports for one component folder.
public struct ComponentInfo: Sendable, Equatable {
    /// Folder name (`unet`, `text_encoder_2`, …).
    public let name: String
    /// Class from `model_index.json`.
    public let className: String
    /// Parameters the config implies (0 for components without weights).
    public let parameters: Int
    /// Element type of the weight file (`float16`, `float32`, `bfloat16`, or `mixed(…)`); nil without weights.
    public let dtype: String?
    /// Bytes of tensor data in the weight file(s).
    public let bytes: Int
    /// The config in brief.
    public let summary: String
}

extension PipelineFolder {
    /// Describes every component: parameters from its config, dtype and bytes from the weight
    /// files that `variant` selects (as the model loaders would pick them).
    public func inspect(variant: String? = nil) throws -> [ComponentInfo] {
        try componentNames.map { name in
            let entry = modelIndex.components[name]!
            let directory = try componentDirectory(name)
            let configPath = directory + "/config.json"
            switch entry.className {
            case "UNet2DConditionModel":
                let config = try ConfigFile.load(UNet2DConditionConfig.self, path: configPath)
                let specs = try UNet2DConditionModel.parameterSpecs(config: config)
                let weights = try WeightFiles.locate(in: directory, baseNames: ["diffusion_pytorch_model"], variant: variant)
                return ComponentInfo(name: name, className: entry.className, parameters: Self.total(specs),
                                     dtype: Self.dtypeName(weights), bytes: weights.dataBytes, summary: try Self.summary(config))
            case "AutoencoderKL":
                let config = try ConfigFile.load(AutoencoderKLConfig.self, path: configPath)
                let specs = try AutoencoderKL.parameterSpecs(config: config)
                let weights = try WeightFiles.locate(in: directory, baseNames: ["diffusion_pytorch_model"], variant: variant)
                let summary = "block_out_channels \(config.blockOutChannels), latent_channels \(config.latentChannels), "
                    + "scaling_factor \(config.scalingFactor), force_upcast \(config.forceUpcast)"
                return ComponentInfo(name: name, className: entry.className, parameters: Self.total(specs),
                                     dtype: Self.dtypeName(weights), bytes: weights.dataBytes, summary: summary)
            case "CLIPTextModel", "CLIPTextModelWithProjection":
                let config = try ConfigFile.load(CLIPTextConfig.self, path: configPath)
                let projection = entry.className == "CLIPTextModelWithProjection"
                let specs = try CLIPTextModel.parameterSpecs(config: config, withProjection: projection)
                let weights = try WeightFiles.locate(in: directory, baseNames: ["model"], variant: variant)
                let summary = "hidden_size \(config.hiddenSize), layers \(config.numHiddenLayers), heads \(config.numAttentionHeads), "
                    + "hidden_act \(config.hiddenAct)" + (projection ? ", projection_dim \(config.projectionDim)" : "")
                return ComponentInfo(name: name, className: entry.className, parameters: Self.total(specs),
                                     dtype: Self.dtypeName(weights), bytes: weights.dataBytes, summary: summary)
            default:
                return ComponentInfo(name: name, className: entry.className, parameters: 0, dtype: nil, bytes: 0,
                                     summary: entry.library)
            }
        }
    }

    private static func total(_ specs: [ParameterSpec]) -> Int { specs.reduce(0) { $0 + $1.count } }

    private static func dtypeName(_ weights: WeightFiles) -> String {
        func torchName(_ dtype: DType) -> String {
            switch dtype {
            case .f32: return "float32"
            case .f16: return "float16"
            case .bf16: return "bfloat16"
            case .i32: return "int32"
            case .i64: return "int64"
            }
        }
        let used = weights.bytesByDType.keys.map(torchName).sorted()
        return used.count == 1 ? used[0] : "mixed(\(used.joined(separator: ",")))"
    }

    private static func summary(_ config: UNet2DConditionConfig) throws -> String {
        let loader = ParameterLoader(describing: UNetNetwork.model, family: .unet)
        let network = try UNetNetwork(config: config, scope: loader.root)
        let down = network.downBlocks.map { $0.attentions.map(\.blocks.count) }
        let up = network.upBlocks.map { $0.attentions.map(\.blocks.count) }
        let mid: String
        switch network.midBlock {
        case let .crossAttention(block)?: mid = "cross-attention \(block.attentions.map(\.blocks.count))"
        case .resnetOnly?: mid = "resnet only"
        case nil: mid = "none"
        }
        return "block_out_channels \(config.blockOutChannels), transformer depths down \(down) mid \(mid) up \(up), "
            + "cross_attention_dim \(config.crossAttentionDim)"
            + (config.timeCondProjDim.map { ", time_cond_proj_dim \($0)" } ?? "")
    }
}
