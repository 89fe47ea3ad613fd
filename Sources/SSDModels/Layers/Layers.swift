import SSDTensor

/// `nn.Linear`: `y = x·Wᵀ + b`, weight `[out, in]`.
struct Linear: Sendable {
    let weight: Tensor
    let bias: Tensor?

    init(_ scope: ParameterScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        weight = try scope.parameter("weight", shape: [outFeatures, inFeatures], role: .linear)
        self.bias = bias ? try scope.parameter("bias", shape: [outFeatures], role: .vector) : nil
    }

    /// A linear layer from weights loaded under other names (`nn.MultiheadAttention`'s packed `in_proj_weight`).
    init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// A 1×1 `nn.Conv2d` (weight `[out, in, 1, 1]`) applied to NHWC activations as a linear layer.
    init(pointwiseConv scope: ParameterScope, in inFeatures: Int, out outFeatures: Int) throws {
        weight = try scope.parameter("weight", shape: [outFeatures, inFeatures, 1, 1], role: .linear,
                                     preparedShape: [outFeatures, inFeatures])
        bias = try scope.parameter("bias", shape: [outFeatures], role: .vector)
    }

    /// A bias-free `nn.Conv2d` of kernel = stride = `kernel` (a ViT's patch embedding, weight
    /// `[out, in, k, k]`) applied as a linear layer to patches flattened in (channel, row, column) order.
    init(patchConv scope: ParameterScope, in inChannels: Int, out outFeatures: Int, kernel k: Int) throws {
        weight = try scope.parameter("weight", shape: [outFeatures, inChannels, k, k], role: .linear,
                                     preparedShape: [outFeatures, inChannels * k * k])
        bias = nil
    }

    /// Output width (the prepared weight is `[out, in]`).
    var outFeatures: Int { weight.shape[0] }

    /// `x·Wᵀ + b (+ residual)`.
    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend, residual: Tensor? = nil) throws -> Tensor {
        try b.linear(x, weight: weight, bias: bias, residual: residual)
    }
}

/// `nn.Conv2d` with square kernel and symmetric padding, on NHWC activations.
struct Conv2d: Sendable {
    let weight: Tensor
    let bias: Tensor?
    let stride: Int
    let padding: Int

    init(_ scope: ParameterScope, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
         role: WeightRole = .conv2d) throws {
        weight = try scope.parameter("weight", shape: [outChannels, inChannels, kernel, kernel], role: role)
        bias = try scope.parameter("bias", shape: [outChannels], role: .vector)
        self.stride = stride
        self.padding = padding ?? (kernel - 1) / 2
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend, residual: Tensor? = nil) throws -> Tensor {
        try b.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual)
    }
}

/// `nn.GroupNorm` (affine) over NHWC or `[B, N, C]` activations.
struct GroupNorm: Sendable {
    let weight: Tensor
    let bias: Tensor
    let groups: Int
    let epsilon: Float

    init(_ scope: ParameterScope, groups: Int, channels: Int, epsilon: Double) throws {
        weight = try scope.parameter("weight", shape: [channels], role: .vector)
        bias = try scope.parameter("bias", shape: [channels], role: .vector)
        self.groups = groups
        self.epsilon = Float(epsilon)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        try b.groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon)
    }

    /// Group norm followed by SiLU (fused where the backend has it).
    func silu(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        try b.groupNormSiLU(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon)
    }

    /// `conv(silu(norm(x))) (+ residual)`, stride 1: the backend may normalise while the convolution
    /// reads, never storing the normalised tensor.
    func siluConv(_ x: Tensor, _ conv: Conv2d, _ b: any ComputeBackend, residual: Tensor? = nil) throws -> Tensor {
        try b.groupNormSiLUConv2d(x, groups: groups, normWeight: weight, normBias: bias, epsilon: epsilon,
                                  weight: conv.weight, bias: conv.bias, padding: conv.padding, residual: residual)
    }
}

/// `nn.LayerNorm` (affine) over the last axis.
struct LayerNorm: Sendable {
    let weight: Tensor
    let bias: Tensor
    let epsilon: Float

    init(_ scope: ParameterScope, dim: Int, epsilon: Double) throws {
        weight = try scope.parameter("weight", shape: [dim], role: .vector)
        bias = try scope.parameter("bias", shape: [dim], role: .vector)
        self.epsilon = Float(epsilon)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        try b.layerNorm(x, weight: weight, bias: bias, epsilon: epsilon)
    }
}

/// Activation names of diffusers' `get_activation` and transformers' `ACT2FN` that the backends provide.
enum ActivationName {
    /// Maps a config string to an `Activation`, or throws `unsupportedConfig` naming `field`.
    static func resolve(_ name: String, model: String, field: String) throws -> Activation {
        switch name {
        case "silu", "swish": return .silu
        case "gelu": return .gelu
        case "quick_gelu": return .quickGELU
        default: throw ModelError.unsupportedConfig(model: model, field: field, value: "\"\(name)\"")
        }
    }
}
