/// Inpainting around the mask only (diffusers `padding_mask_crop` of `StableDiffusionXLInpaintPipeline` and
/// `StableDiffusionXLControlNetInpaintPipeline`): the image, mask and control images are cropped to the mask's
/// padded bounding box widened to the output's aspect ratio (`VaeImageProcessor.get_crop_region`), each
/// resized into the output size keeping its aspect ratio (`resize_mode="fill"`), and the generated image is
/// pasted back into the original through the mask (`VaeImageProcessor.apply_overlay`). Every step is PIL's,
/// bit for bit (`image_processor.py`, Pillow's `Resample.c`, `Paste.c`, `Convert.c`, `AlphaComposite.c`).

/// A rectangle of the mask, `x1 ..< x2` × `y1 ..< y2` (diffusers' `crops_coords` `(x1, y1, x2, y2)`).
struct CropRegion: Sendable, Equatable {
    var x1: Int, y1: Int, x2: Int, y2: Int
    var width: Int { x2 - x1 }
    var height: Int { y2 - y1 }
}

extension ImageProcessing {
    /// diffusers `VaeImageProcessor.get_crop_region(mask, width, height, pad)`: the bounding box of the mask's
    /// nonzero pixels after `convert("L")` (not of the binarised mask), grown by `pad` on each side (within
    /// the mask), then grown (or, at the mask's edges, shifted) to the aspect ratio `width / height`.
    /// nil for a mask without a nonzero pixel (diffusers divides by zero or crops an arbitrary region).
    static func cropRegion(mask: RGBImage, width: Int, height: Int, pad: Int) -> CropRegion? {
        let grey = mask.greyscale(), w = mask.width, h = mask.height
        var left = w, right = -1, top = h, bottom = -1
        for y in 0..<h {
            for x in 0..<w where grey[y * w + x] != 0 {
                left = min(left, x); right = max(right, x); top = min(top, y); bottom = max(bottom, y)
            }
        }
        guard right >= 0 else { return nil }
        let pad = min(pad, max(w, h))  // (a larger padding gives the same region; keeps the sums exact)
        // crop_left … crop_bottom count the zero columns / rows on each side
        var x1 = max(left - pad, 0), y1 = max(top - pad, 0)
        var x2 = min(right + 1 + pad, w), y2 = min(bottom + 1 + pad, h)
        let ratioCrop = Double(x2 - x1) / Double(y2 - y1)
        let ratioProcessing = Double(width) / Double(height)
        /// Widens `[lo, hi)` by `diff` (half each side, floor first), shifted back inside `[0, limit)`.
        func grow(_ lo: inout Int, _ hi: inout Int, by diff: Int, limit: Int) {
            lo -= floorDivide(diff, 2)
            hi += diff - floorDivide(diff, 2)
            if hi >= limit {
                let over = hi - limit
                hi -= over
                lo -= over
            }
            if lo < 0 {
                hi -= lo
                lo = 0
            }
            if hi >= limit { hi = limit }
        }
        if ratioCrop > ratioProcessing {
            grow(&y1, &y2, by: Int(Double(x2 - x1) / ratioProcessing - Double(y2 - y1)), limit: h)
        } else {
            grow(&x1, &x2, by: Int(Double(y2 - y1) * ratioProcessing - Double(x2 - x1)), limit: w)
        }
        return CropRegion(x1: x1, y1: y1, x2: x2, y2: y2)
    }

    /// Python's `//`.
    private static func floorDivide(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// An input image as diffusers' `VaeImageProcessor.preprocess(image, height, width, crops_coords=region,
    /// resize_mode=…)` makes it from a PIL image, before the conversion to floats: without a region, PIL's
    /// Lanczos resize to `size` (`resize_mode="default"`); with one (`padding_mask_crop`), `image.crop(region)`
    /// then `resize_mode="fill"`. For init images, masks (converted to grey afterwards, as diffusers does)
    /// and control images alike.
    static func prepared(_ image: RGBImage, to size: ImageSize, crop region: CropRegion?) throws -> RGBImage {
        guard let region else { return try resized(image, to: size) }
        return try resizedAndFilled(cropped(image, to: region), to: size)
    }

    /// PIL's `Image.crop((x1, y1, x2, y2))` (pixels outside the image are black).
    static func cropped(_ image: RGBImage, to region: CropRegion) throws -> RGBImage {
        var out = [UInt8](repeating: 0, count: region.width * region.height * 3)
        paste(image.pixels, width: image.width, height: image.height, into: &out, width: region.width,
              height: region.height, x: -region.x1, y: -region.y1)
        return try RGBImage(width: region.width, height: region.height, pixels: out)
    }

    /// diffusers `VaeImageProcessor._resize_and_fill`: the image resized (Lanczos) to fit inside `size` keeping
    /// its aspect ratio, centred on black, and the two uncovered bands filled with its first and last rows
    /// (or columns) stretched by PIL's default (bicubic) resize of an empty box.
    static func resizedAndFilled(_ image: RGBImage, to size: ImageSize) throws -> RGBImage {
        let width = size.width, height = size.height
        let ratio = Double(width) / Double(height)
        let sourceRatio = Double(image.width) / Double(image.height)
        let (sw, sh) = filledSize(width: image.width, height: image.height, in: size)
        guard sw > 0, sh > 0 else { throw ImageError.invalidImage("\(image.width)×\(image.height) fills \(size) at \(sw)×\(sh) pixels") }
        let resized = lanczos(image, width: sw, height: sh)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        paste(resized, width: sw, height: sh, into: &out, width: width, height: height, x: width / 2 - sw / 2, y: height / 2 - sh / 2)
        func band(_ box: PILBox, _ w: Int, _ h: Int) -> [UInt8] {
            pilResize(resized, channels: 3, width: sw, height: sh, toWidth: w, toHeight: h, box: box, filter: .bicubic)
        }
        if ratio < sourceRatio {
            let fill = height / 2 - sh / 2
            if fill > 0 {
                paste(band(PILBox(x0: 0, y0: 0, x1: Float(width), y1: 0), width, fill), width: width, height: fill,
                      into: &out, width: width, height: height, x: 0, y: 0)
                paste(band(PILBox(x0: 0, y0: Float(sh), x1: Float(width), y1: Float(sh)), width, fill), width: width,
                      height: fill, into: &out, width: width, height: height, x: 0, y: fill + sh)
            }
        } else if ratio > sourceRatio {
            let fill = width / 2 - sw / 2
            if fill > 0 {
                paste(band(PILBox(x0: 0, y0: 0, x1: 0, y1: Float(height)), fill, height), width: fill, height: height,
                      into: &out, width: width, height: height, x: 0, y: 0)
                paste(band(PILBox(x0: Float(sw), y0: 0, x1: Float(sw), y1: Float(height)), fill, height), width: fill,
                      height: height, into: &out, width: width, height: height, x: fill + sw, y: 0)
            }
        }
        return try RGBImage(width: width, height: height, pixels: out)
    }

    /// diffusers `VaeImageProcessor._resize_and_crop`: the image resized (Lanczos) to cover `size` keeping its
    /// aspect ratio, centred, the excess cut off.
    static func resizedAndCropped(_ image: RGBImage, to size: ImageSize) throws -> RGBImage {
        let width = size.width, height = size.height
        let ratio = Double(width) / Double(height)
        let sourceRatio = Double(image.width) / Double(image.height)
        let sw = ratio > sourceRatio ? width : image.width * height / image.height
        let sh = ratio <= sourceRatio ? height : image.height * width / image.width
        guard sw > 0, sh > 0 else { throw ImageError.invalidImage("\(image.width)×\(image.height) covers \(size) at \(sw)×\(sh) pixels") }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        paste(lanczos(image, width: sw, height: sh), width: sw, height: sh, into: &out, width: width, height: height,
              x: width / 2 - sw / 2, y: height / 2 - sh / 2)
        return try RGBImage(width: width, height: height, pixels: out)
    }

    /// diffusers `VaeImageProcessor.apply_overlay(mask, init_image, image, crop_coords)`: the generated image
    /// resized into the crop region (`resize_mode="crop"`) on black at the original's size, then the original,
    /// made transparent where the mask is white, alpha-composited over it. PIL's integer steps: the original
    /// premultiplied by its (opaque) alpha, pasted onto transparent black through `255 − L(mask)`
    /// (`Paste.c` BLEND), un-premultiplied (`Convert.c` rgba2rgbA), and `AlphaComposite.c` over the opaque
    /// generated image. The result has the original's size.
    static func overlay(mask: RGBImage, original: RGBImage, generated: RGBImage, region: CropRegion) throws -> RGBImage {
        let width = original.width, height = original.height, count = width * height
        precondition(mask.width == width && mask.height == height, "overlay: the mask must be the original's size")
        func div255(_ v: UInt32) -> UInt32 {
            let t = v + 128
            return ((t >> 8) + t) >> 8
        }
        // the generated image in the region, black elsewhere
        var base = [UInt8](repeating: 0, count: count * 3)
        let fitted = try resizedAndCropped(generated, to: ImageSize(width: region.width, height: region.height))
        paste(fitted.pixels, width: region.width, height: region.height, into: &base, width: width, height: height,
              x: region.x1, y: region.y1)
        let grey = mask.greyscale()
        var out = [UInt8](repeating: 0, count: count * 3)
        for i in 0..<count {
            // init_image_masked: RGBa pasted through the inverted mask onto zeros, then RGBa → RGBA
            let m = 255 - UInt32(grey[i])
            let alpha = div255(255 * m)
            var source = [UInt32](repeating: 0, count: 3)
            for c in 0..<3 {
                let premultiplied = div255(UInt32(original.pixels[3 * i + c]) * 255)
                let pasted = div255(premultiplied * m)
                source[c] = alpha == 0 || alpha == 255 ? pasted : min(255 * pasted / alpha, 255)
            }
            // alpha_composite(base RGBA with alpha 255, init_image_masked)
            guard alpha != 0 else {
                for c in 0..<3 { out[3 * i + c] = base[3 * i + c] }
                continue
            }
            let precision: UInt32 = 7
            let blend = 255 * (255 - alpha)
            let outA255 = alpha * 255 + blend
            let coef1 = alpha * 255 * 255 * (1 << precision) / outA255
            let coef2 = 255 * (1 << precision) - coef1
            for c in 0..<3 {
                let t = source[c] * coef1 + UInt32(base[3 * i + c]) * coef2 + (0x80 << precision)
                out[3 * i + c] = UInt8(truncatingIfNeeded: (((t >> 8) + t) >> 8) >> precision)
            }
        }
        return try RGBImage(width: width, height: height, pixels: out)
    }

    /// PIL Lanczos resize of an RGB image to `width` × `height` pixels.
    private static func lanczos(_ image: RGBImage, width: Int, height: Int) -> [UInt8] {
        pilResize(image.pixels, channels: 3, width: image.width, height: image.height, toWidth: width, toHeight: height,
                  filter: .lanczos)
    }

    /// PIL's `paste` of an opaque `sw` × `sh` RGB image at (`x`, `y`) (`Paste.c` `ImagingPaste`: clipped to
    /// the destination on every side).
    static func paste(_ source: [UInt8], width sw: Int, height sh: Int, into destination: inout [UInt8],
                      width dw: Int, height dh: Int, x: Int, y: Int) {
        let x0 = max(x, 0), y0 = max(y, 0), x1 = min(x + sw, dw), y1 = min(y + sh, dh)
        guard x0 < x1, y0 < y1 else { return }
        for row in y0..<y1 {
            let s = ((row - y) * sw + (x0 - x)) * 3, d = (row * dw + x0) * 3
            for i in 0..<((x1 - x0) * 3) { destination[d + i] = source[s + i] }
        }
    }
}

extension ImageProcessing {
    /// The size `_resize_and_fill` resizes a `width` × `height` image to inside `size` (one side exact).
    static func filledSize(width: Int, height: Int, in size: ImageSize) -> (width: Int, height: Int) {
        let ratio = Double(size.width) / Double(size.height), sourceRatio = Double(width) / Double(height)
        return (ratio < sourceRatio ? size.width : width * size.height / height,
                ratio >= sourceRatio ? size.height : height * size.width / width)
    }
}
