/// Classifier-free guidance on host arrays (diffusers `StableDiffusionXLPipeline.__call__` and
/// `rescale_noise_cfg`), in fp32 with the same operation order as torch.
enum Guidance {
    /// `uncond + scale · (cond − uncond)` for a UNet output laid out `[uncond × n, cond × n]`.
    static func combine(_ output: [Float], scale: Float) -> (guided: [Float], conditional: ArraySlice<Float>) {
        let half = output.count / 2
        let uncond = output[0..<half]
        let cond = output[half...]
        var guided = [Float](repeating: 0, count: half)
        for i in 0..<half {
            let u = uncond[i]
            guided[i] = u + scale * (cond[half + i] - u)
        }
        return (guided, cond)
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

/// NCHW (torch, host) ⇄ NHWC (backend) layout changes of small host arrays.
enum Layout {
    /// `[B, C, H, W]` → `[B, H, W, C]`.
    static func nchwToNHWC(_ x: [Float], _ b: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        for n in 0..<b {
            for ch in 0..<c {
                for y in 0..<h {
                    for xx in 0..<w {
                        out[((n * h + y) * w + xx) * c + ch] = x[((n * c + ch) * h + y) * w + xx]
                    }
                }
            }
        }
        return out
    }

    /// `[B, H, W, C]` → `[B, C, H, W]`.
    static func nhwcToNCHW(_ x: [Float], _ b: Int, _ c: Int, _ h: Int, _ w: Int) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        for n in 0..<b {
            for y in 0..<h {
                for xx in 0..<w {
                    for ch in 0..<c {
                        out[((n * c + ch) * h + y) * w + xx] = x[((n * h + y) * w + xx) * c + ch]
                    }
                }
            }
        }
        return out
    }
}
