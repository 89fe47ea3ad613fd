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

    /// An image at `size` as diffusers' `VaeImageProcessor.resize` makes it for PIL input (`resize_mode="default"`:
    /// `image.resize((width, height), resample=PIL.Image.LANCZOS)`, bit for bit; the same size: unchanged).
    /// The alpha channel, which the pipeline does not use, is dropped.
    static func resized(_ image: RGBImage, to size: ImageSize) throws -> RGBImage {
        if image.width == size.width && image.height == size.height { return image }
        return try RGBImage(width: size.width, height: size.height, pixels: pilResize(
            image.pixels, channels: 3, width: image.width, height: image.height,
            toWidth: size.width, toHeight: size.height, filter: .lanczos))
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
        let resized = pilResize(image.pixels, channels: 3, width: w, height: h, toWidth: nw, toHeight: nh, filter: .bicubic)
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
}
