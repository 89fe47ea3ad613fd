import SSDTensor

/// A stream of standard-normal numbers, the randomness of the initial latents and of the
/// ancestral/SDE samplers (diffusers `utils/torch_utils.py` `randn_tensor`).
///
/// Value semantics: copying a source copies its position in the stream. Each call continues the
/// stream, as consecutive `torch.randn(..., generator=g)` calls continue `g`.
public protocol RandomSource: Sendable {
    /// The next `count` values of the stream, as `torch.randn(count, generator=g)` in float32 (any
    /// shape with `count` elements gives the same numbers in row-major order).
    mutating func normal(count: Int) -> [Float]

    /// The next `count` values as `torch.randn(count, generator=g, dtype=dtype)`: each value is
    /// exactly representable in `dtype` (returned widened to Float). diffusers draws initial latents
    /// in the pipeline's dtype, so an fp16 pipeline's seed gives `dtype: .f16` numbers. The default
    /// rounds `normal(count:)`; `TorchCPUGenerator` reproduces torch's own reduced-precision path.
    mutating func normal(count: Int, dtype: DType) -> [Float]
}

extension RandomSource {
    /// `count` standard-normal values drawn as torch draws them in `dtype`.
    public mutating func normal(count: Int, dtype: DType) -> [Float] {
        roundedToDType(normal(count: count), dtype)
    }
}

/// Rounds float32 values to `dtype` (round to nearest even, as `Tensor.to(dtype)`), kept as Float.
func roundedToDType(_ values: [Float], _ dtype: DType) -> [Float] {
    switch dtype {
    case .f16: return values.map { HalfConversion.floatFromF16(HalfConversion.f16FromFloat($0)) }
    case .bf16: return values.map { HalfConversion.floatFromBF16(HalfConversion.bf16FromFloat($0)) }
    default: return values
    }
}
