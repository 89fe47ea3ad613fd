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
}
