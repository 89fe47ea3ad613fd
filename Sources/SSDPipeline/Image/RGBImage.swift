/// An 8-bit RGB image, row-major from the top-left pixel, 3 bytes per pixel: what the pipeline
/// returns (diffusers' `numpy_to_pil` output) and what it takes as an init image or mask.
public struct RGBImage: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// `width × height × 3` bytes: R, G, B of each pixel.
    public let pixels: [UInt8]
    /// Optional per-pixel alpha (`width × height` bytes): set by the PNG decoder when the file has
    /// an alpha channel or a tRNS chunk; nil for opaque images. The encoder writes RGBA when present.
    public let alpha: [UInt8]?

    /// Wraps pixel bytes; throws `ImageError.invalidImage` when the sizes do not agree.
    public init(width: Int, height: Int, pixels: [UInt8], alpha: [UInt8]? = nil) throws(ImageError) {
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max) else {
            throw .invalidImage("size \(width)×\(height) is not positive")
        }
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, count <= Int.max / 3, pixels.count == count * 3 else {
            throw .invalidImage("\(pixels.count) pixel bytes do not make a \(width)×\(height) RGB image")
        }
        guard alpha == nil || alpha?.count == count else {
            throw .invalidImage("\(alpha?.count ?? 0) alpha bytes for \(count) pixels")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
        self.alpha = alpha
    }

    /// R, G, B of the pixel at column `x`, row `y` (no bounds check beyond the array's).
    public func pixel(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        let i = 3 * (y * width + x)
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// Luminance per pixel exactly as PIL's `Image.convert("L")` computes it from RGB
    /// (`(R·19595 + G·38470 + B·7471 + 0x8000) >> 16`, Pillow's `Convert.c`), which is what
    /// diffusers' `VaeImageProcessor` uses for inpainting masks. Grey images give back their grey values.
    public func greyscale() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: width * height)
        for i in 0..<out.count {
            let r = UInt32(pixels[3 * i]), g = UInt32(pixels[3 * i + 1]), b = UInt32(pixels[3 * i + 2])
            out[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        return out
    }

    /// The alpha channel, or all 255 when the image has none.
    public func alphaChannel() -> [UInt8] {
        alpha ?? [UInt8](repeating: 255, count: width * height)
    }
}

/// Why an image could not be decoded or built.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data does not start with the PNG signature.
    case notPNG
    /// The data ends before the PNG (or its compressed stream) does; says where.
    case truncated(String)
    /// A chunk's CRC-32 does not match its contents.
    case badCRC(chunk: String)
    /// IHDR, PLTE or tRNS break the PNG specification.
    case invalidHeader(String)
    /// A valid PNG feature this decoder does not read (e.g. an unknown critical chunk).
    case unsupported(String)
    /// The compressed stream or the filtered rows are damaged.
    case corrupt(String)
    /// The image is larger than the decoder's pixel limit.
    case tooLarge(width: Int, height: Int, maxPixels: Int)
    /// Pixel arrays that do not fit the stated size.
    case invalidImage(String)

    public var description: String {
        switch self {
        case .notPNG: return "PNG: not a PNG file (bad signature)"
        case let .truncated(s): return "PNG: truncated: \(s)"
        case let .badCRC(chunk): return "PNG: CRC mismatch in chunk \(chunk)"
        case let .invalidHeader(s): return "PNG: invalid header: \(s)"
        case let .unsupported(s): return "PNG: unsupported: \(s)"
        case let .corrupt(s): return "PNG: corrupt data: \(s)"
        case let .tooLarge(w, h, maxPixels): return "PNG: \(w)×\(h) image exceeds the limit of \(maxPixels) pixels"
        case let .invalidImage(s): return "image: \(s)"
        }
    }
}
