import SSDTensor

/// `config.json` of a T2I-Adapter (diffusers `models/adapter.py`, `T2IAdapter`).
public struct T2IAdapterConfig: Codable, Sendable {
    /// Channels of the adapter's image (`in_channels`: 3 for RGB, 1 for sketches / greyscale).
    public var inChannels: Int
    /// Output width of each block (`channels`; one feature map per block).
    public var channels: [Int]
    /// Resnet blocks per block (`num_res_blocks`).
    public var numResBlocks: Int
    /// The pixel-unshuffle factor at the input (`downscale_factor`; 16 for SDXL adapters).
    public var downscaleFactor: Int
    /// `full_adapter` (SD 1.x/2.x), `full_adapter_xl` (SDXL) or `light_adapter`.
    public var adapterType: String

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", channels, numResBlocks = "num_res_blocks"
        case downscaleFactor = "downscale_factor", adapterType = "adapter_type"
    }

    /// diffusers' defaults for absent keys.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? 3
        channels = try c.decodeIfPresent([Int].self, forKey: .channels) ?? [320, 640, 1280, 1280]
        numResBlocks = try c.decodeIfPresent(Int.self, forKey: .numResBlocks) ?? 2
        downscaleFactor = try c.decodeIfPresent(Int.self, forKey: .downscaleFactor) ?? 8
        adapterType = try c.decodeIfPresent(String.self, forKey: .adapterType) ?? "full_adapter"
    }

    /// A configuration from its fields (defaults: diffusers' `T2IAdapter.__init__`; SDXL adapters use
    /// `downscaleFactor: 16, adapterType: "full_adapter_xl"`).
    public init(inChannels: Int = 3, channels: [Int] = [320, 640, 1280, 1280], numResBlocks: Int = 2,
                downscaleFactor: Int = 8, adapterType: String = "full_adapter") {
        self.inChannels = inChannels
        self.channels = channels
        self.numResBlocks = numResBlocks
        self.downscaleFactor = downscaleFactor
        self.adapterType = adapterType
    }
}

/// diffusers `AdapterResnetBlock` (3×3 conv, ReLU, 1×1 conv, plus the input) and `LightAdapterResnetBlock`
/// (the second convolution 3×3).
struct AdapterResnetBlock: Sendable {
    let block1: Conv2d
    let block2: Conv2d

    init(_ scope: ParameterScope, channels: Int, secondKernel: Int) throws {
        block1 = try Conv2d(scope("block1"), in: channels, out: channels, kernel: 3)
        block2 = try Conv2d(scope("block2"), in: channels, out: channels, kernel: secondKernel)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        try block2(b.activation(block1(x, b), .relu), b, residual: x)
    }
}

/// diffusers `AdapterBlock` (optional 2×2 average pooling, a 1×1 `in_conv` where the width changes, resnets)
/// and `LightAdapterBlock` (pooling, `in_conv` to a quarter of the width, resnets, `out_conv`).
struct AdapterBlock: Sendable {
    let downsample: Bool
    let inConv: Conv2d?
    let resnets: [AdapterResnetBlock]
    let outConv: Conv2d?

    init(_ scope: ParameterScope, in inChannels: Int, out outChannels: Int, resnets count: Int, down: Bool) throws {
        downsample = down
        inConv = inChannels == outChannels ? nil : try Conv2d(scope("in_conv"), in: inChannels, out: outChannels, kernel: 1)
        resnets = try (0..<count).map { try AdapterResnetBlock(scope("resnets", $0), channels: outChannels, secondKernel: 1) }
        outConv = nil
    }

    init(light scope: ParameterScope, in inChannels: Int, out outChannels: Int, resnets count: Int, down: Bool) throws {
        let middle = outChannels / 4
        downsample = down
        inConv = try Conv2d(scope("in_conv"), in: inChannels, out: middle, kernel: 1)
        resnets = try (0..<count).map { try AdapterResnetBlock(scope("resnets", $0), channels: middle, secondKernel: 3) }
        outConv = try Conv2d(scope("out_conv"), in: middle, out: outChannels, kernel: 1)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        var h = downsample ? try T2IAdapterModel.averagePool2x2(x, b) : x
        if let inConv { h = try inConv(h, b) }
        for resnet in resnets { h = try resnet(h, b) }
        if let outConv { h = try outConv(h, b) }
        return h
    }
}

/// A T2I-Adapter (diffusers `models/adapter.py`, `T2IAdapter` with `FullAdapter`, `FullAdapterXL` or
/// `LightAdapter`): a small convolutional network that turns a control image (sketch, depth, pose…) into
/// one feature map per block, which the UNet adds inside its down blocks
/// (`UNet2DConditionModel.callAsFunction(…intrablockResiduals:)`, diffusers
/// `down_intrablock_additional_residuals`). Activations are NHWC.
public final class T2IAdapterModel: Sendable {
    static let model = "T2IAdapter"

    /// The decoded `config.json`.
    public let config: T2IAdapterConfig
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    let convIn: Conv2d?
    let body: [AdapterBlock]

    /// Builds the network from `config` with the weights in `weights` (names and shapes checked).
    public init(config: T2IAdapterConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        func unsupported(_ field: String, _ value: String) -> ModelError {
            .unsupportedConfig(model: Self.model, field: field, value: value)
        }
        let c = config
        guard c.inChannels > 0 else { throw unsupported("in_channels", "\(c.inChannels)") }
        guard c.downscaleFactor > 0 else { throw unsupported("downscale_factor", "\(c.downscaleFactor)") }
        guard c.numResBlocks >= 0 else { throw unsupported("num_res_blocks", "\(c.numResBlocks)") }
        guard !c.channels.isEmpty, c.channels.allSatisfy({ $0 > 0 }) else { throw unsupported("channels", "\(c.channels)") }
        let loader = ParameterLoader(model: Self.model, family: .unet, weights: weights, backend: backend, component: .unet)
        let root = loader.root("adapter")
        let unshuffled = c.inChannels * c.downscaleFactor * c.downscaleFactor
        let ch = c.channels, n = c.numResBlocks
        switch c.adapterType {
        case "full_adapter":
            convIn = try Conv2d(root("conv_in"), in: unshuffled, out: ch[0], kernel: 3)
            body = try ch.indices.map { i in
                try AdapterBlock(root("body", i), in: ch[max(i - 1, 0)], out: ch[i], resnets: n, down: i > 0)
            }
        case "full_adapter_xl":
            guard ch.count >= 3 else { throw unsupported("channels", "\(ch) (full_adapter_xl needs at least 3 entries)") }
            convIn = try Conv2d(root("conv_in"), in: unshuffled, out: ch[0], kernel: 3)
            // Block 1 widens without pooling, block 2 pools; the others keep their width.
            body = try ch.indices.map { i in
                try AdapterBlock(root("body", i), in: i == 1 || i == 2 ? ch[i - 1] : ch[i], out: ch[i], resnets: n, down: i == 2)
            }
        case "light_adapter":
            convIn = nil
            body = try (0...ch.count).map { i in
                let input = i == 0 ? unshuffled : ch[i - 1], output = i == ch.count ? ch[ch.count - 1] : ch[i]
                return try AdapterBlock(light: root("body", i), in: input, out: output, resnets: n, down: i > 0)
            }
        default:
            throw unsupported("adapter_type", "\"\(c.adapterType)\" (full_adapter, full_adapter_xl or light_adapter)")
        }
        try loader.finish()
        self.config = config
        self.backend = backend
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` from a T2I-Adapter folder
    /// (such as `TencentARC/t2i-adapter-canny-sdxl-1.0`).
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> T2IAdapterModel {
        let config = try ConfigFile.load(T2IAdapterConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["diffusion_pytorch_model"], variant: variant)
        return try T2IAdapterModel(config: config, weights: weights, backend: backend)
    }

    /// The pixel-unshuffle factor: image height and width must be multiples of it (diffusers
    /// `T2IAdapter.downscale_factor`).
    public var downscaleFactor: Int { config.downscaleFactor }

    /// The feature maps' shapes `[height, width, channels]` for an image of `height × width`, in order
    /// (each pooling rounds up, as `AvgPool2d(ceil_mode=True)`).
    public func featureShapes(height: Int, width: Int) -> [[Int]] {
        var h = height / downscaleFactor, w = width / downscaleFactor
        return body.enumerated().map { i, block in
            if block.downsample { (h, w) = ((h + 1) / 2, (w + 1) / 2) }
            let channels = i < config.channels.count ? config.channels[i] : config.channels[config.channels.count - 1]
            return [h, w, channels]
        }
    }

    /// The feature maps for `image` (diffusers `T2IAdapter.forward`).
    /// - Parameter image: NHWC `[B, H, W, in_channels]`, values in [0, 1] (diffusers' adapter pipelines
    ///   divide 8-bit pixels by 255 and do not normalise); `H` and `W` multiples of `downscaleFactor`.
    /// - Returns: one NHWC tensor per block (`featureShapes`), in the UNet's activation type.
    public func callAsFunction(_ image: Tensor) throws -> [Tensor] {
        let b = backend, r = downscaleFactor
        guard image.rank == 4, image.shape[3] == config.inChannels, image.shape[1] % r == 0, image.shape[2] % r == 0,
              image.shape[1] > 0, image.shape[2] > 0 else {
            throw ModelError.invalidInput(
                model: Self.model, argument: "image",
                message: "expected NHWC [B, H, W, \(config.inChannels)] with H and W multiples of \(r), got \(image.shape)")
        }
        let dtype = b.activationDType(for: .unet)
        var h = image.dtype == dtype ? image : try b.convert(image, to: dtype)
        // nn.PixelUnshuffle: channel c·r² + i·r + j of output pixel (y, x) is input channel c at (r·y + i, r·x + j).
        let (n, height, width, c) = (h.shape[0], h.shape[1], h.shape[2], h.shape[3])
        if r > 1 {
            h = try b.permute(h.reshaped([n, height / r, r, width / r, r, c]), [0, 1, 3, 5, 2, 4])
                .reshaped([n, height / r, width / r, c * r * r])
        }
        if let convIn { h = try convIn(h, b) }
        var features: [Tensor] = []
        for block in body {
            h = try block(h, b)
            features.append(h)
        }
        return features
    }

    /// `nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)` on NHWC activations (the four values summed, then
    /// scaled by 1/4). An odd height or width first repeats its last row or column: the edge windows then
    /// average their pixels inside the input, as ceil mode's divisor does (x + x = 2x exactly).
    static func averagePool2x2(_ input: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        var x = input
        if x.shape[1] % 2 == 1 { x = try b.concat([x, b.slice(x, axis: 1, range: (x.shape[1] - 1)..<x.shape[1])], axis: 1) }
        if x.shape[2] % 2 == 1 { x = try b.concat([x, b.slice(x, axis: 2, range: (x.shape[2] - 1)..<x.shape[2])], axis: 2) }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        // Rows: [n·h/2, 2, w·c] → the two halves added; columns: [n·h/2·w/2, 2, c] likewise.
        let rows = try x.reshaped([n * h / 2, 2, w * c])
        let rowSum = try b.binary(b.slice(rows, axis: 1, range: 0..<1), b.slice(rows, axis: 1, range: 1..<2), .add)
        let columns = try rowSum.reshaped([n * h / 2 * w / 2, 2, c])
        let sum = try b.binary(b.slice(columns, axis: 1, range: 0..<1), b.slice(columns, axis: 1, range: 1..<2), .add)
        return try b.affine(sum, scale: 0.25, shift: 0).reshaped([n, h / 2, w / 2, c])
    }
}
