#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PIL's resampling filters (`PIL.Image.Resampling`), for `ImageProcessing.pilResize`.
enum PILFilter: Sendable, CaseIterable {
    case nearest, box, bilinear, hamming, bicubic, lanczos
}

/// The source rectangle of a resize (PIL `Image.resize(size, filter, box=(x0, y0, x1, y1))`), in source pixels;
/// single-precision floats as PIL keeps them.
struct PILBox: Sendable, Equatable {
    var x0: Float, y0: Float, x1: Float, y1: Float
}

extension ImageProcessing {
    /// PIL's `Image.resize((toWidth, toHeight), filter)` (Pillow 13, `Image.py` and `libImaging/Resample.c`,
    /// `Geometry.c` for NEAREST) of an 8-bit image with `channels` interleaved channels (1: mode "L",
    /// 3: "RGB"; every channel is resampled alone, as PIL does for images without alpha), bit for bit.
    /// See `pilResize(_:channels:width:height:toWidth:toHeight:box:filter:)`.
    static func pilResize(_ pixels: [UInt8], channels: Int, width: Int, height: Int, toWidth: Int, toHeight: Int,
                          filter: PILFilter) -> [UInt8] {
        pilResize(pixels, channels: channels, width: width, height: height, toWidth: toWidth, toHeight: toHeight,
                  box: PILBox(x0: 0, y0: 0, x1: Float(width), y1: Float(height)), filter: filter)
    }

    /// PIL's `Image.resize((toWidth, toHeight), filter, box)` of an 8-bit image, bit for bit:
    /// - the same size and the whole image: a copy; an integer box of the output's size: a crop;
    /// - NEAREST: the affine scale of `Geometry.c` (`ImagingScaleAffine`: source coordinates accumulated
    ///   in doubles from the pixel centres, truncated);
    /// - the other filters: `Resample.c`'s separable passes, the horizontal one first (over the rows the
    ///   vertical one reads) into 8-bit rows, then the vertical one (the other way round when the height
    ///   loses more than twice as many pixels as the width); an axis whose size is unchanged and
    ///   whose box covers it is not resampled. Each output pixel's weights are the filter (widened by the
    ///   scale when shrinking) at the source pixel centres, normalised in doubles, then rounded to 22-bit
    ///   fixed point; sums start at one half and are shifted down and clipped to 0…255.
    /// Pillow 13.0 (the reference of the fixtures) is matched; Pillow 12 always resamples horizontally first
    /// and differs in the last bit where 13 goes vertically first.
    static func pilResize(_ pixels: [UInt8], channels: Int, width: Int, height: Int, toWidth: Int, toHeight: Int,
                          box: PILBox, filter: PILFilter) -> [UInt8] {
        precondition(channels > 0 && width > 0 && height > 0 && toWidth > 0 && toHeight > 0
                     && pixels.count == width * height * channels, "pilResize: sizes do not match the pixels")
        precondition(box.x0 >= 0 && box.y0 >= 0 && box.x1 <= Float(width) && box.y1 <= Float(height)
                     && box.x1 >= box.x0 && box.y1 >= box.y0, "pilResize: the box must lie in the image")
        let image = PlanarImage(pixels: pixels, width: width, height: height, channels: channels)
        // Image.resize: nothing to do
        if toWidth == width, toHeight == height, box == PILBox(x0: 0, y0: 0, x1: Float(width), y1: Float(height)) {
            return pixels
        }
        // _imaging.c `_resize`: an integer box of the requested size is a crop
        if box.x0 == box.x0.rounded(.towardZero), box.x1 - box.x0 == Float(toWidth),
           box.y0 == box.y0.rounded(.towardZero), box.y1 - box.y0 == Float(toHeight) {
            return image.cropped(x0: Int(box.x0), y0: Int(box.y0), width: toWidth, height: toHeight).pixels
        }
        if filter == .nearest {
            return image.nearest(toWidth: toWidth, toHeight: toHeight, box: box).pixels
        }
        return image.resampled(toWidth: toWidth, toHeight: toHeight, box: box, filter: filter).pixels
    }
}

/// An 8-bit interleaved image being resized.
private struct PlanarImage {
    var pixels: [UInt8]
    let width: Int, height: Int, channels: Int

    /// `ImagingCrop` of a region inside the image.
    func cropped(x0: Int, y0: Int, width w: Int, height h: Int) -> PlanarImage {
        var out = [UInt8](repeating: 0, count: w * h * channels)
        for y in 0..<h {
            let sy = y0 + y
            guard sy >= 0, sy < height else { continue }
            for x in 0..<w {
                let sx = x0 + x
                guard sx >= 0, sx < width else { continue }
                for c in 0..<channels { out[(y * w + x) * channels + c] = pixels[(sy * width + sx) * channels + c] }
            }
        }
        return PlanarImage(pixels: out, width: w, height: h, channels: channels)
    }

    /// `Geometry.c` `ImagingScaleAffine` with `a = [sx, 0, x0, 0, sy, y0]` (NEAREST), out-of-range pixels 0.
    func nearest(toWidth: Int, toHeight: Int, box: PILBox) -> PlanarImage {
        func coord(_ v: Double) -> Int { v < 0 ? -1 : Int(v) }
        let a0 = Double(box.x1 - box.x0) / Double(toWidth), a2 = Double(box.x0)
        let a4 = Double(box.y1 - box.y0) / Double(toHeight), a5 = Double(box.y0)
        var table = [Int](repeating: 0, count: toWidth)
        var xmin = toWidth, xmax = 0
        var xo = a2 + a0 * 0.5
        for x in 0..<toWidth {
            let xin = coord(xo)
            if xin >= 0 && xin < width {
                xmax = x + 1
                if x < xmin { xmin = x }
                table[x] = xin
            }
            xo += a0
        }
        var out = [UInt8](repeating: 0, count: toWidth * toHeight * channels)
        var yo = a5 + a4 * 0.5
        for y in 0..<toHeight {
            let yi = coord(yo)
            if yi >= 0 && yi < height, xmin < xmax {
                for x in xmin..<xmax {
                    let s = (yi * width + table[x]) * channels, d = (y * toWidth + x) * channels
                    for c in 0..<channels { out[d + c] = pixels[s + c] }
                }
            }
            yo += a4
        }
        return PlanarImage(pixels: out, width: toWidth, height: toHeight, channels: channels)
    }

    /// `Resample.c` `ImagingResampleInner` for 8-bit images.
    func resampled(toWidth: Int, toHeight: Int, box: PILBox, filter: PILFilter) -> PlanarImage {
        let needHorizontal = toWidth != width || box.x0 != 0 || box.x1 != Float(toWidth)
        let needVertical = toHeight != height || box.y0 != 0 || box.y1 != Float(toHeight)
        // Pillow 13: when the height shrinks by more than twice as many pixels as the width does, the vertical
        // pass goes first (found against Pillow 13.0.0's output; the earlier releases always start horizontally).
        if needHorizontal, needVertical, toHeight < height, height - toHeight > 2 * (width - toWidth) {
            let vertical = Coefficients(inSize: height, in0: box.y0, in1: box.y1, outSize: toHeight, filter: filter)
            let horizontal = Coefficients(inSize: width, in0: box.x0, in1: box.x1, outSize: toWidth, filter: filter)
            return verticalPass(vertical).horizontalPass(horizontal, rows: 0..<toHeight)
        }
        var vertical = Coefficients(inSize: height, in0: box.y0, in1: box.y1, outSize: toHeight, filter: filter)
        let firstRow = vertical.start[0], lastRow = vertical.start[toHeight - 1] + vertical.count[toHeight - 1]
        var source = self
        if needHorizontal {
            let horizontal = Coefficients(inSize: width, in0: box.x0, in1: box.x1, outSize: toWidth, filter: filter)
            for i in 0..<toHeight { vertical.start[i] -= firstRow }
            source = horizontalPass(horizontal, rows: firstRow..<lastRow)
        }
        guard needVertical else { return source }
        return source.verticalPass(vertical)
    }

    /// `_ImagingResampleHorizontal_8bpc` over `rows`.
    func horizontalPass(_ k: Coefficients, rows: Range<Int>) -> PlanarImage {
        let outWidth = k.start.count
        var out = [UInt8](repeating: 0, count: outWidth * rows.count * channels)
        pixels.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                for (row, y) in rows.enumerated() {
                    for x in 0..<outWidth {
                        let start = k.start[x], count = k.count[x], base = x * k.size
                        for c in 0..<channels {
                            var sum = 1 << (Coefficients.precisionBits - 1)
                            for i in 0..<count {
                                sum += Int(input[(y * width + start + i) * channels + c]) * k.weights[base + i]
                            }
                            output[(row * outWidth + x) * channels + c] = Coefficients.clip8(sum)
                        }
                    }
                }
            }
        }
        return PlanarImage(pixels: out, width: outWidth, height: rows.count, channels: channels)
    }

    /// `_ImagingResampleVertical_8bpc`.
    func verticalPass(_ k: Coefficients) -> PlanarImage {
        let outHeight = k.start.count, rowLength = width * channels
        var out = [UInt8](repeating: 0, count: rowLength * outHeight)
        pixels.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { output in
                for y in 0..<outHeight {
                    let start = k.start[y], count = k.count[y], base = y * k.size
                    for j in 0..<rowLength {
                        var sum = 1 << (Coefficients.precisionBits - 1)
                        for i in 0..<count { sum += Int(input[(start + i) * rowLength + j]) * k.weights[base + i] }
                        output[y * rowLength + j] = Coefficients.clip8(sum)
                    }
                }
            }
        }
        return PlanarImage(pixels: out, width: width, height: outHeight, channels: channels)
    }
}

/// One axis' weights (`Resample.c` `precompute_coeffs` then `normalize_coeffs_8bpc`).
private struct Coefficients {
    /// `PRECISION_BITS`: 32 − 8 − 2.
    static let precisionBits = 22
    /// First source index and number of source pixels of each output pixel.
    var start: [Int], count: [Int]
    /// `size` fixed-point weights per output pixel.
    var weights: [Int]
    let size: Int

    init(inSize: Int, in0: Float, in1: Float, outSize: Int, filter: PILFilter) {
        let (support0, function) = Self.filter(filter)
        let scale = Double(in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = support0 * filterScale
        size = Int(support.rounded(.up)) * 2 + 1
        start = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int](repeating: 0, count: outSize * size)
        let inverse = 1 / filterScale
        var k = [Double](repeating: 0, count: size)
        for o in 0..<outSize {
            let center = Double(in0) + (Double(o) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize) - xmin
            var total = 0.0
            for x in 0..<max(xmax, 0) {
                let w = function((Double(x + xmin) - center + 0.5) * inverse)
                k[x] = w
                total += w
            }
            if total != 0 { for x in 0..<max(xmax, 0) { k[x] /= total } }
            start[o] = xmin
            count[o] = max(xmax, 0)
            for x in 0..<max(xmax, 0) {
                let v = k[x] * Double(1 << Self.precisionBits)
                weights[o * size + x] = k[x] < 0 ? Int(-0.5 + v) : Int(0.5 + v)
            }
        }
    }

    static func clip8(_ sum: Int) -> UInt8 { UInt8(min(max(sum >> precisionBits, 0), 255)) }

    /// Support and function of each filter (`Resample.c`; HAMMING's 0.54 and 0.46 are C floats there).
    static func filter(_ filter: PILFilter) -> (Double, (Double) -> Double) {
        func sinc(_ x: Double) -> Double {
            if x == 0 { return 1 }
            let t = x * Double.pi
            return sin(t) / t
        }
        switch filter {
        case .nearest, .box:
            return (0.5, { x in x > -0.5 && x <= 0.5 ? 1 : 0 })
        case .bilinear:
            return (1, { x in
                let t = abs(x)
                return t < 1 ? 1 - t : 0
            })
        case .hamming:
            return (1, { x in
                let t = abs(x)
                if t == 0 { return 1 }
                if t >= 1 { return 0 }
                let p = t * Double.pi
                return sin(p) / p * (Double(Float(0.54)) + Double(Float(0.46)) * cos(p))
            })
        case .bicubic:
            return (2, { x in
                let a = -0.5, t = abs(x)
                if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
                if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
                return 0
            })
        case .lanczos:
            return (3, { x in -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0 })
        }
    }
}
