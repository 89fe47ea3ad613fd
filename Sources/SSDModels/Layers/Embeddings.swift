#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SSDTensor

/// Sinusoidal timestep features, computed on the host in fp32 exactly as diffusers'
/// `get_timestep_embedding` (diffusers `models/embeddings.py`): row-major `[timesteps.count, dim]`.
func timestepSinusoids(_ timesteps: [Float], dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float,
                       scale: Float = 1, maxPeriod: Float = 10000) -> [Float] {
    let half = dim / 2
    // exponent = -ln(max_period) · arange(half) / (half − shift), all in fp32 as torch computes it.
    let negLog = Float(-log(Double(maxPeriod)))
    let frequencies = (0..<half).map { i in expf((negLog * Float(i)) / (Float(half) - downscaleFreqShift)) }
    var out = [Float](repeating: 0, count: timesteps.count * dim)
    for (row, t) in timesteps.enumerated() {
        for i in 0..<half {
            let argument = scale * (t * frequencies[i])
            let (first, second) = flipSinToCos ? (cosf(argument), sinf(argument)) : (sinf(argument), cosf(argument))
            out[row * dim + i] = first
            out[row * dim + half + i] = second
        }
        // An odd `dim` leaves the last column zero (diffusers pads it).
    }
    return out
}

/// diffusers `TimestepEmbedding`: `linear_2(act(linear_1(sample + cond_proj(condition))))`, with an
/// optional post activation.
struct TimestepEmbedding: Sendable {
    let linear1: Linear
    let linear2: Linear
    let activation: Activation
    let conditionProjection: Linear?
    let postActivation: Activation?

    init(_ scope: ParameterScope, inChannels: Int, timeEmbedDim: Int, activation: Activation,
         postActivation: Activation?, conditionDim: Int?) throws {
        linear1 = try Linear(scope("linear_1"), in: inChannels, out: timeEmbedDim)
        linear2 = try Linear(scope("linear_2"), in: timeEmbedDim, out: timeEmbedDim)
        conditionProjection = try conditionDim.map { try Linear(scope("cond_proj"), in: $0, out: inChannels, bias: false) }
        self.activation = activation
        self.postActivation = postActivation
    }

    /// `residual` is added to the output (after the post activation, if any).
    func callAsFunction(_ sample: Tensor, condition: Tensor? = nil, residual: Tensor? = nil,
                        _ b: any ComputeBackend) throws -> Tensor {
        var x = sample
        if let conditionProjection, let condition {
            x = try conditionProjection(condition, b, residual: x)
        }
        x = try b.activation(linear1(x, b), activation)
        guard let postActivation else { return try linear2(x, b, residual: residual) }
        x = try b.activation(linear2(x, b), postActivation)
        return try residual.map { try b.binary(x, $0, .add) } ?? x
    }
}
