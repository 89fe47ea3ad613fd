import SSDTensor

/// diffusers `ResnetBlock2D` (`models/resnet.py`) with `time_embedding_norm="default"` and SiLU:
/// `out = (shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x))) + proj(silu(temb)))))) / scale`.
struct ResnetBlock2D: Sendable {
    let norm1: GroupNorm
    let conv1: Conv2d
    let timeEmbeddingProjection: Linear?
    let norm2: GroupNorm
    let conv2: Conv2d
    let convShortcut: Conv2d?
    let outputScaleFactor: Float

    init(_ scope: ParameterScope, inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?,
         groups: Int, epsilon: Double, outputScaleFactor: Double = 1) throws {
        norm1 = try GroupNorm(scope("norm1"), groups: groups, channels: inChannels, epsilon: epsilon)
        conv1 = try Conv2d(scope("conv1"), in: inChannels, out: outChannels, kernel: 3)
        timeEmbeddingProjection = try timeEmbeddingChannels.map {
            try Linear(scope("time_emb_proj"), in: $0, out: outChannels)
        }
        norm2 = try GroupNorm(scope("norm2"), groups: groups, channels: outChannels, epsilon: epsilon)
        conv2 = try Conv2d(scope("conv2"), in: outChannels, out: outChannels, kernel: 3)
        convShortcut = inChannels != outChannels
            ? try Conv2d(scope("conv_shortcut"), in: inChannels, out: outChannels, kernel: 1) : nil
        self.outputScaleFactor = Float(outputScaleFactor)
    }

    /// `x` NHWC; `activatedTimeEmbedding` is `silu(temb)` `[B, tembChannels]` (shared by all blocks), or nil.
    /// `x` is consumed: it is released as soon as its last use is done. `lateShortcut`, when given,
    /// computes the shortcut branch in place of `convShortcut(x)` after `x` is gone (the VAE decoder
    /// folds it into the previous upsampler, `UpDecoderBlock2D`).
    func callAsFunction(_ x: consuming Tensor, activatedTimeEmbedding: Tensor?, _ b: any ComputeBackend,
                        lateShortcut: (() throws -> Tensor)? = nil) throws -> Tensor {
        var h = try norm1.siluConv(x, conv1, b)
        if let timeEmbeddingProjection, let temb = activatedTimeEmbedding {
            let t = try timeEmbeddingProjection(temb, b)
            h = try b.binary(h, t.reshaped([t.shape[0], 1, 1, t.shape[1]]), .add)
        }
        let shortcut: Tensor
        if let lateShortcut {
            _ = consume x
            shortcut = try lateShortcut()
        } else if let convShortcut {
            shortcut = try convShortcut(x, b)
            _ = consume x
        } else {
            shortcut = x
        }
        let sum = try norm2.siluConv(h, conv2, b, residual: shortcut)
        return outputScaleFactor == 1 ? sum : try b.affine(sum, scale: 1 / outputScaleFactor, shift: 0)
    }
}
