import SSDTensor

/// Classifier-free guidance on host arrays (diffusers `StableDiffusionXLPipeline.__call__` and
/// `rescale_noise_cfg`), in fp32 with the same operation order as torch.
enum Guidance {
    /// `uncond + scale · (cond − uncond)` for a UNet output laid out `[uncond × n, cond × n]`
    /// (elementwise, spread over the cores for large batches).
    static func combine(_ output: [Float], scale: Float) -> (guided: [Float], conditional: ArraySlice<Float>) {
        let half = output.count / 2
        guard half > 0 else { return ([], output[output.count...]) }
        let guided = [Float](unsafeUninitializedCapacity: half) { buffer, initialized in
            output.withUnsafeBufferPointer { source in
                let out = UncheckedPointer(buffer.baseAddress!), uncond = source.baseAddress!, cond = uncond + half
                Parallel.forEachChunk(half, minimumChunk: 1 << 16) { range in
                    for i in range {
                        let u = uncond[i]
                        out.pointer[i] = u + scale * (cond[i] - u)
                    }
                }
            }
            initialized = half
        }
        return (guided, output[half...])
    }

    /// Perturbed-attention guidance (diffusers `PAGMixin._apply_perturbed_attention_guidance`) for a UNet output
    /// laid out `[uncond × n, cond × n, perturbed × n]` (with `guidanceScale`) or `[cond × n, perturbed × n]`:
    /// `uncond + g · (cond − uncond) + s · (cond − perturbed)`, or `cond + s · (cond − perturbed)`; also the
    /// conditional part (for `rescale`).
    static func perturbed(_ output: [Float], guidanceScale: Float?, pagScale s: Float) -> (guided: [Float], conditional: ArraySlice<Float>) {
        let parts = guidanceScale == nil ? 2 : 3
        let n = output.count / parts
        let conditionalStart = guidanceScale == nil ? 0 : n
        var guided = [Float](repeating: 0, count: n)
        output.withUnsafeBufferPointer { source in
            let base = source.baseAddress!
            let cond = base + conditionalStart, perturbed = base + conditionalStart + n
            if let g = guidanceScale {
                for i in 0..<n {
                    let u = base[i], c = cond[i]
                    guided[i] = u + g * (c - u) + s * (c - perturbed[i])
                }
            } else {
                for i in 0..<n {
                    let c = cond[i]
                    guided[i] = c + s * (c - perturbed[i])
                }
            }
        }
        return (guided, output[conditionalStart..<(conditionalStart + n)])
    }

    /// `φ · x · std(cond)/std(x) + (1 − φ) · x`, std per batch row over all other dims (unbiased, as torch).
    static func rescale(_ guided: [Float], conditional: ArraySlice<Float>, rows: Int, factor: Float) -> [Float] {
        let perRow = guided.count / rows
        var out = guided
        let base = conditional.startIndex
        for r in 0..<rows {
            let range = (r * perRow)..<((r + 1) * perRow)
            let stdText = standardDeviation(conditional[(base + range.lowerBound)..<(base + range.upperBound)])
            let stdCFG = standardDeviation(guided[range])
            let ratio = stdText / stdCFG
            for i in range {
                let rescaled = guided[i] * ratio
                out[i] = factor * rescaled + (1 - factor) * guided[i]
            }
        }
        return out
    }

    /// Unbiased standard deviation (torch `std` default), accumulated in Double.
    static func standardDeviation(_ values: ArraySlice<Float>) -> Float {
        let n = Double(values.count)
        var mean = 0.0
        for v in values { mean += Double(v) }
        mean /= n
        var sum = 0.0
        for v in values { let d = Double(v) - mean; sum += d * d }
        return Float((sum / max(n - 1, 1)).squareRoot())
    }
}

/// NCHW (torch, host) ⇄ NHWC (backend) layout changes of host latents, spread over the cores by
/// image and channel plane.
enum Layout {
    /// `[B, C, H, W]` → `[B, H, W, C]`.
    static func nchwToNHWC(_ x: [Float], _ b: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        transpose(x, b, c, h * w, toChannelsLast: true)
    }

    /// `[B, H, W, C]` → `[B, C, H, W]`.
    static func nhwcToNCHW(_ x: [Float], _ b: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        transpose(x, b, c, h * w, toChannelsLast: false)
    }

    /// Per image, the `[C, P]` ⇄ `[P, C]` transposition of `P` pixels, in chunks of pixels (the
    /// interleaved side read or written contiguously, the C planes as C sequential streams).
    private static func transpose(_ x: [Float], _ b: Int, _ c: Int, _ pixels: Int, toChannelsLast: Bool) -> [Float] {
        precondition(x.count == b * c * pixels, "layout of \(x.count) values as \(b)×\(c)×\(pixels)")
        guard !x.isEmpty else { return [] }
        let chunk = 4096
        let chunksPerImage = (pixels + chunk - 1) / chunk
        return [Float](unsafeUninitializedCapacity: x.count) { buffer, initialized in
            x.withUnsafeBufferPointer { source in
                let out = UncheckedPointer(buffer.baseAddress!), input = source.baseAddress!
                Parallel.forEach(b * chunksPerImage) { job in
                    let image = (job / chunksPerImage) &* c &* pixels
                    let p0 = (job % chunksPerImage) &* chunk, p1 = min(pixels, p0 &+ chunk)
                    for ch in 0..<c {
                        let plane = image &+ ch &* pixels
                        if toChannelsLast {
                            for p in p0..<p1 { out.pointer[image &+ p &* c &+ ch] = input[plane &+ p] }
                        } else {
                            for p in p0..<p1 { out.pointer[plane &+ p] = input[image &+ p &* c &+ ch] }
                        }
                    }
                }
            }
            initialized = x.count
        }
    }

    /// Whether every value is finite (no NaN or infinity), checked on the bits.
    static func allFinite(_ x: [Float]) -> Bool {
        x.withUnsafeBufferPointer { values in
            var bad = UInt32(0)
            values.withMemoryRebound(to: UInt32.self) { bits in
                for v in bits { bad |= (v & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
            }
            return bad == 0
        }
    }
}

/// A mutable pointer that chunks of a parallel loop write through (each to its own elements).
struct UncheckedPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

extension PerturbedAttentionGuidance {
    /// The scale at timestep `t` (diffusers `PAGMixin._get_pag_scale`, in fp32 as torch computes it with a
    /// tensor timestep): `max(scale − adaptiveScale · (1000 − t), 0)` with adaptive scaling, else `scale`.
    func scale(at t: Float) -> Float {
        guard adaptiveScale > 0 else { return Float(scale) }
        let signal = Float(scale) - Float(adaptiveScale) * (1000 - t)
        return signal < 0 ? 0 : signal
    }
}
