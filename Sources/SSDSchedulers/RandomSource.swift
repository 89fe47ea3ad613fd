/// A stream of standard-normal float32 numbers, the randomness of the initial latents and of the
/// ancestral/SDE samplers (diffusers `utils/torch_utils.py` `randn_tensor`).
///
/// Value semantics: copying a source copies its position in the stream. Each call continues the
/// stream, as consecutive `torch.randn(..., generator=g)` calls continue `g`.
public protocol RandomSource: Sendable {
    /// The next `count` values of the stream, as `torch.randn(count, generator=g)` (any shape with
    /// `count` elements gives the same numbers in row-major order).
    mutating func normal(count: Int) -> [Float]
}
