/// Conversions between images and model tensors (diffusers `image_processor.VaeImageProcessor`).
enum ImageProcessing {
    /// VAE output NHWC `[B, H, W, 3]` in about [-1, 1] → 8-bit RGB images:
    /// `(x / 2 + 0.5).clamp(0, 1)`, `× 255`, round half to even (`postprocess` + `numpy_to_pil`).
    static func images(fromDecoded values: [Float], batch: Int, height: Int, width: Int) throws -> [RGBImage] {
        let perImage = height * width * 3
        return try (0..<batch).map { b in
            var pixels = [UInt8](repeating: 0, count: perImage)
            for i in 0..<perImage {
                var v = values[b * perImage + i] / 2 + 0.5
                v = v.isNaN ? 0 : min(max(v, 0), 1)  // (callers reject NaN first; never trap here)
                pixels[i] = UInt8((v * 255).rounded(.toNearestOrEven))
            }
            return try RGBImage(width: width, height: height, pixels: pixels)
        }
    }

    /// RGB8 image → NHWC floats in [-1, 1] (`pil_to_numpy` then `normalize`: `2 · x/255 − 1`).
    static func normalizedPixels(_ image: RGBImage) -> [Float] {
        image.pixels.map { 2 * (Float($0) / 255) - 1 }
    }

    /// Inpainting mask → one value per pixel, 0 (keep) or 1 (repaint): grey conversion, `/255`,
    /// binarised at 0.5 (`VaeImageProcessor(do_binarize=True, do_convert_grayscale=True)`).
    static func binaryMask(_ image: RGBImage) -> [Float] {
        image.greyscale().map { Float($0) / 255 < 0.5 ? 0 : 1 }
    }

    /// Nearest-neighbour downsampling of a `[H, W]` mask to `[H/f, W/f]` (`F.interpolate(mode="nearest")`).
    static func downsampleMask(_ mask: [Float], height: Int, width: Int, factor: Int) -> [Float] {
        let h = height / factor, w = width / factor
        var out = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            for x in 0..<w { out[y * w + x] = mask[(y * factor) * width + x * factor] }
        }
        return out
    }

    /// Bilinear resize (for init images and masks not of the request's size; parity with diffusers,
    /// which uses PIL's Lanczos, is promised only at equal sizes).
    static func resized(_ image: RGBImage, to size: ImageSize) throws -> RGBImage {
        if image.width == size.width && image.height == size.height { return image }
        var pixels = [UInt8](repeating: 0, count: size.width * size.height * 3)
        let sx = Double(image.width) / Double(size.width)
        let sy = Double(image.height) / Double(size.height)
        for y in 0..<size.height {
            let fy = max(0, (Double(y) + 0.5) * sy - 0.5)
            let y0 = min(Int(fy), image.height - 1), y1 = min(y0 + 1, image.height - 1)
            let wy = fy - Double(y0)
            for x in 0..<size.width {
                let fx = max(0, (Double(x) + 0.5) * sx - 0.5)
                let x0 = min(Int(fx), image.width - 1), x1 = min(x0 + 1, image.width - 1)
                let wx = fx - Double(x0)
                for c in 0..<3 {
                    func p(_ yy: Int, _ xx: Int) -> Double { Double(image.pixels[(yy * image.width + xx) * 3 + c]) }
                    let top = p(y0, x0) * (1 - wx) + p(y0, x1) * wx
                    let bottom = p(y1, x0) * (1 - wx) + p(y1, x1) * wx
                    pixels[(y * size.width + x) * 3 + c] = UInt8(min(255, max(0, (top * (1 - wy) + bottom * wy).rounded())))
                }
            }
        }
        return try RGBImage(width: size.width, height: size.height, pixels: pixels)
    }

    /// OpenAI CLIP's normalisation (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`).
    static let clipMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    static let clipStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// transformers `CLIPImageProcessor` (the PIL path) as diffusers' IP-Adapter pipelines use it: the
    /// shortest edge resized to `size` with PIL's bicubic filter, the long edge to `int(size · long /
    /// short)`, a centre crop of `size`², `/255`, then `(x − mean) / std` per channel in fp32.
    /// Returns NHWC `[size, size, 3]`.
    static func clipPixels(_ image: RGBImage, size: Int = 224) -> [Float] {
        let w = image.width, h = image.height
        let newLong = Int(Double(size * max(w, h)) / Double(min(w, h)))
        let (nw, nh) = w <= h ? (size, newLong) : (newLong, size)
        let resized = pilBicubicResize(image.pixels, width: w, height: h, toWidth: nw, toHeight: nh)
        let top = (nh - size) / 2, left = (nw - size) / 2
        var out = [Float](repeating: 0, count: size * size * 3)
        for y in 0..<size {
            for x in 0..<size {
                for c in 0..<3 {
                    let v = Float(resized[((top + y) * nw + left + x) * 3 + c]) / 255
                    out[(y * size + x) * 3 + c] = (v - clipMean[c]) / clipStd[c]
                }
            }
        }
        return out
    }

    /// PIL's `Image.resize(size, BICUBIC)` of an 8-bit RGB image, bit for bit (`libImaging/Resample.c`:
    /// a = −0.5 cubic widened by the scale when shrinking, 22-bit fixed-point coefficients, the horizontal
    /// pass first into 8-bit rows, then the vertical one; an axis of unchanged size is not resampled).
    static func pilBicubicResize(_ pixels: [UInt8], width w: Int, height h: Int, toWidth nw: Int, toHeight nh: Int) -> [UInt8] {
        func cubic(_ x: Double) -> Double {
            let a = -0.5, t = abs(x)
            if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
            if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
            return 0
        }
        func coefficients(_ inSize: Int, _ outSize: Int) -> [(start: Int, k: [Int])] {
            let scale = Double(inSize) / Double(outSize)
            let filterScale = max(scale, 1), support = 2 * filterScale, inverse = 1 / filterScale
            return (0..<outSize).map { o in
                let center = (Double(o) + 0.5) * scale
                let start = max(Int(center - support + 0.5), 0)
                let count = min(Int(center + support + 0.5), inSize) - start
                var weights = (0..<count).map { cubic((Double($0 + start) - center + 0.5) * inverse) }
                let total = weights.reduce(0, +)
                if total != 0 { weights = weights.map { $0 / total } }
                return (start, weights.map { $0 < 0 ? Int(-0.5 + $0 * 4_194_304) : Int(0.5 + $0 * 4_194_304) })
            }
        }
        func clip8(_ acc: Int) -> UInt8 { UInt8(min(max(acc >> 22, 0), 255)) }
        var source = pixels, width = w
        if nw != w {
            let table = coefficients(w, nw)
            var out = [UInt8](repeating: 0, count: nw * h * 3)
            for y in 0..<h {
                for (x, entry) in table.enumerated() {
                    for c in 0..<3 {
                        var acc = 1 << 21
                        for (i, k) in entry.k.enumerated() { acc += Int(source[(y * w + entry.start + i) * 3 + c]) * k }
                        out[(y * nw + x) * 3 + c] = clip8(acc)
                    }
                }
            }
            source = out
            width = nw
        }
        guard nh != h else { return source }
        let table = coefficients(h, nh)
        var out = [UInt8](repeating: 0, count: width * nh * 3)
        for (y, entry) in table.enumerated() {
            for x in 0..<width {
                for c in 0..<3 {
                    var acc = 1 << 21
                    for (i, k) in entry.k.enumerated() { acc += Int(source[((entry.start + i) * width + x) * 3 + c]) * k }
                    out[(y * width + x) * 3 + c] = clip8(acc)
                }
            }
        }
        return out
    }
}
