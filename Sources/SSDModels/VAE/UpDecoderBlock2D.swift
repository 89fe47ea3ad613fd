import SSDTensor

/// diffusers `UpDecoderBlock2D` (`models/unets/unet_2d_blocks.py`): resnets without time
/// embedding, then an optional `Upsample2D`.
///
/// Memory: when the previous block ends with an upsampler and `resnets[0]` changes the channel
/// count, its 1×1 shortcut is folded into that upsampler's 3×3 convolution at load time
/// (`shortcut(conv(up(y))) = conv'(up(y))`, exact up to rounding), so the shortcut is computed
/// from the small pre-upsampling input after the large upsampled tensor is released: at 1024²
/// the decoder then peaks at 1.75 GiB of activations instead of 2 GiB or more.
struct UpDecoderBlock2D: Sendable {
    let resnets: [ResnetBlock2D]
    let upsampler: Upsample2D?
    /// `resnets[0].convShortcut ∘ previous upsampler conv`, prepared as `.upsampleConv2d`.
    let foldedShortcut: (weight: Tensor, bias: Tensor)?

    /// `previousUpsampler` is the scope of the previous block's `upsamplers.0` (nil for the first block).
    init(_ scope: ParameterScope, inChannels: Int, outChannels: Int, layers: Int, groups: Int, epsilon: Double,
         addUpsample: Bool, previousUpsampler: ParameterScope?) throws {
        let resnets = try (0..<layers).map {
            try ResnetBlock2D(scope("resnets", $0), inChannels: $0 == 0 ? inChannels : outChannels, outChannels: outChannels,
                              timeEmbeddingChannels: nil, groups: groups, epsilon: epsilon)
        }
        self.resnets = resnets
        upsampler = addUpsample ? try Upsample2D(scope("upsamplers.0"), channels: outChannels) : nil
        foldedShortcut = try previousUpsampler.flatMap { previous in
            guard resnets.first?.convShortcut != nil else { return nil }
            return try Self.foldShortcut(scope("resnets.0.conv_shortcut"), upsamplerConv: previous("conv"),
                                         inChannels: inChannels, outChannels: outChannels)
        }
    }

    /// `W'[o, i, ky, kx] = Σ_c Ws[o, c]·Wu[c, i, ky, kx]`, `b' = Σ_c Ws[o, c]·bu[c] + bs[o]` (in Double).
    private static func foldShortcut(_ shortcut: ParameterScope, upsamplerConv: ParameterScope,
                                     inChannels c: Int, outChannels n: Int) throws -> (weight: Tensor, bias: Tensor)? {
        guard let ws = try shortcut.hostValues("weight", shape: [n, c, 1, 1]), let bs = try shortcut.hostValues("bias", shape: [n]),
              let wu = try upsamplerConv.hostValues("weight", shape: [c, c, 3, 3]), let bu = try upsamplerConv.hostValues("bias", shape: [c])
        else { return nil }
        // One output channel per task (its own rows of `weight` and entry of `bias`), spread over the cores.
        let width = c * 9
        var weight = [Float](repeating: 0, count: n * width)
        var bias = [Float](repeating: 0, count: n)
        weight.withUnsafeMutableBufferPointer { weightOut in
            bias.withUnsafeMutableBufferPointer { biasOut in
                ws.withUnsafeBufferPointer { ws in
                    wu.withUnsafeBufferPointer { wu in
                        let out = FoldOutput(weight: weightOut.baseAddress!, bias: biasOut.baseAddress!)
                        Parallel.forEach(n) { o in
                            var row = [Double](repeating: 0, count: width)
                            var b = Double(bs[o])
                            row.withUnsafeMutableBufferPointer { row in
                                for ch in 0..<c {
                                    let s = Double(ws[o * c + ch])
                                    b += s * Double(bu[ch])
                                    let source = wu.baseAddress! + ch * width
                                    for k in 0..<width { row[k] += s * Double(source[k]) }
                                }
                                for k in 0..<width { out.weight[o * width + k] = Float(row[k]) }
                            }
                            out.bias[o] = Float(b)
                        }
                    }
                }
            }
        }
        guard let w = try shortcut.derivedParameter("folded_weight", values: weight, shape: [n, c, 3, 3], role: .upsampleConv2d),
              let bt = try shortcut.derivedParameter("folded_bias", values: bias, shape: [n], role: .vector)
        else { return nil }
        return (w, bt)
    }

    /// Runs the block on `x` (consumed). `beforeUpsample` is the input of the previous block's
    /// upsampler, used by the folded shortcut. Returns the output and, when this block upsamples,
    /// its own pre-upsampling tensor for the next block.
    func callAsFunction(_ x: consuming Tensor, beforeUpsample: Tensor?, _ b: any ComputeBackend) throws -> (Tensor, Tensor?) {
        var h = consume x
        for (i, resnet) in resnets.enumerated() {
            if i == 0, let folded = foldedShortcut, let y = beforeUpsample {
                h = try resnet(consume h, activatedTimeEmbedding: nil, b) {
                    try b.upsampleNearest2xConv2d(y, weight: folded.weight, bias: folded.bias)
                }
            } else {
                h = try resnet(consume h, activatedTimeEmbedding: nil, b)
            }
        }
        guard let upsampler else { return (h, nil) }
        return (try upsampler(h, b), h)
    }
}

/// The folded shortcut's outputs, written by one task per output channel.
private struct FoldOutput: @unchecked Sendable {
    let weight: UnsafeMutablePointer<Float>
    let bias: UnsafeMutablePointer<Float>
}
