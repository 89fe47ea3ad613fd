extension RGBImage {
    /// Decodes a PNG (ISO/IEC 15948) of any standard kind: greyscale at 1, 2, 4, 8 or 16 bits,
    /// grey + alpha, RGB, RGBA (8 or 16 bits), palette (1, 2, 4 or 8 bits), interlaced (Adam7) or not.
    /// Pixels become 8-bit RGB: low bit depths are scaled (×255/(2ⁿ−1), as PIL), 16-bit samples keep
    /// their high byte (as PIL for RGB/RGBA and libpng's `png_set_strip_16`; PIL clips 16-bit grey
    /// instead). An alpha channel, or a tRNS chunk applied as libpng's `png_set_tRNS_to_alpha`,
    /// gives `alpha`. Anything else — bad signature or CRC, damaged zlib data, a truncated file, an
    /// unknown critical chunk, more than `maxPixels` pixels — throws `ImageError`.
    public init(pngData: [UInt8], maxPixels: Int = 1 << 26) throws(ImageError) {
        self = try PNGDecoder.decode(pngData, maxPixels: maxPixels)
    }

    /// The tEXt and iTXt (uncompressed) chunks of a PNG as `(keyword, text)` pairs, in file order
    /// (tEXt is Latin-1, iTXt UTF-8). Checks signature and CRCs; does not decode the pixels.
    public static func pngTextChunks(_ data: [UInt8]) throws(ImageError) -> [(String, String)] {
        var texts: [(String, String)] = []
        try PNGDecoder.forEachChunk(data) { (type, body) throws(ImageError) in
            guard type == "tEXt" || type == "iTXt", let nul = body.firstIndex(of: 0) else { return true }
            let key = String(body[body.startIndex..<nul].map { Character(Unicode.Scalar($0)) })
            if type == "tEXt" {
                texts.append((key, String(body[(nul + 1)...].map { Character(Unicode.Scalar($0)) })))
            } else {
                // compression flag, method, language tag NUL, translated keyword NUL, text.
                let rest = body[(nul + 1)...]
                guard rest.count >= 2, rest[rest.startIndex] == 0 else { return true }  // compressed iTXt is skipped
                var i = rest.startIndex + 2
                for _ in 0..<2 {
                    guard let z = rest[i...].firstIndex(of: 0) else { return true }
                    i = z + 1
                }
                texts.append((key, String(decoding: rest[i...], as: UTF8.self)))
            }
            return true
        }
        return texts
    }
}

/// PNG reading: chunk walk, IHDR/PLTE/tRNS validation, zlib inflate, unfiltering, Adam7, colour conversion.
enum PNGDecoder {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// Adam7 passes: first column, first row, column step, row step.
    static let adam7: [(Int, Int, Int, Int)] = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

    struct Header {
        var width = 0, height = 0, bitDepth = 0, colorType = 0, interlaced = false
        var channels: Int {
            switch colorType {
            case 2: return 3
            case 4: return 2
            case 6: return 4
            default: return 1
            }
        }
        func rowBytes(_ w: Int) -> Int { (w * channels * bitDepth + 7) / 8 }
    }

    @inline(__always)
    static func be32(_ d: [UInt8], _ i: Int) -> Int {
        Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3])
    }

    /// Checks the signature, then calls `body` with each chunk's type and data (CRC verified) until
    /// it returns false or IEND; throws if the file ends before IEND.
    static func forEachChunk(_ data: [UInt8], _ body: (String, ArraySlice<UInt8>) throws(ImageError) -> Bool) throws(ImageError) {
        let prefix = min(8, data.count)
        guard Array(data[0..<prefix]) == Array(signature[0..<prefix]) else { throw .notPNG }
        guard data.count >= 8 else { throw .truncated("file ends inside the signature") }
        var pos = 8
        while true {
            guard data.count - pos >= 12 else { throw .truncated("file ends before IEND (at byte \(pos))") }
            let length = be32(data, pos)
            let typeBytes = data[(pos + 4)..<(pos + 8)]
            guard typeBytes.allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A }) else {
                throw .corrupt("invalid chunk type at byte \(pos + 4)")
            }
            let type = String(decoding: typeBytes, as: UTF8.self)
            guard length <= 0x7FFF_FFFF else { throw .corrupt("chunk \(type) length \(length) is too large") }
            guard data.count - pos - 12 >= length else { throw .truncated("chunk \(type) ends early") }
            let chunkData = data[(pos + 8)..<(pos + 8 + length)]
            let crc = UInt32(be32(data, pos + 8 + length))
            guard Checksum.crc32(chunkData, initial: Checksum.crc32(typeBytes)) == crc else { throw .badCRC(chunk: type) }
            if type == "IEND" { return }
            guard try body(type, chunkData) else { return }
            pos += 12 + length
        }
    }

    static func decode(_ data: [UInt8], maxPixels: Int) throws(ImageError) -> RGBImage {
        var header: Header?
        var palette: [UInt8]?
        var transparency: ArraySlice<UInt8>?
        var compressed: [UInt8] = []
        try forEachChunk(data) { (type, body) throws(ImageError) in
            if header == nil && type != "IHDR" { throw .invalidHeader("the first chunk is \(type), not IHDR") }
            switch type {
            case "IHDR":
                guard header == nil else { throw .invalidHeader("second IHDR") }
                header = try parseHeader(body, maxPixels: maxPixels)
            case "PLTE":
                guard palette == nil, compressed.isEmpty else { throw .invalidHeader("PLTE repeated or after IDAT") }
                guard body.count % 3 == 0, (3...768).contains(body.count) else {
                    throw .invalidHeader("PLTE length \(body.count) is not 3 to 768 and a multiple of 3")
                }
                palette = Array(body)
            case "tRNS":
                transparency = body
            case "IDAT":
                compressed.append(contentsOf: body)
            default:
                // Ancillary chunks (lower-case first letter) are skipped; unknown critical ones cannot be.
                if type.utf8.first.map({ $0 & 0x20 == 0 }) ?? false {
                    throw .unsupported("critical chunk \(type)")
                }
            }
            return true
        }
        guard let header else { throw .invalidHeader("no IHDR") }
        if header.colorType == 3 && palette == nil { throw .invalidHeader("palette image without PLTE") }
        guard !compressed.isEmpty else { throw .truncated("no IDAT chunk") }

        // Geometry of each pass and the size of the filtered data.
        let passes = header.interlaced ? adam7 : [(0, 0, 1, 1)]
        var geometry: [(x0: Int, y0: Int, dx: Int, dy: Int, w: Int, h: Int, offset: Int)] = []
        var rawSize = 0
        for (x0, y0, dx, dy) in passes {
            let w = header.width > x0 ? (header.width - x0 + dx - 1) / dx : 0
            let h = header.height > y0 ? (header.height - y0 + dy - 1) / dy : 0
            geometry.append((x0, y0, dx, dy, w, h, rawSize))
            if w > 0 && h > 0 { rawSize += h * (header.rowBytes(w) + 1) }
        }
        var raw = try Zlib.decompress(compressed, limit: rawSize)
        guard raw.count == rawSize else { throw .truncated("image data is \(raw.count) of \(rawSize) bytes") }

        let pixelCount = header.width * header.height
        var rgb = [UInt8](repeating: 0, count: pixelCount * 3)
        let converter = try PixelConverter(header: header, palette: palette, transparency: transparency)
        var alpha = converter.hasAlpha ? [UInt8](repeating: 255, count: pixelCount) : nil
        let bpp = max(1, header.channels * header.bitDepth / 8)
        try raw.withUnsafeMutableBufferPointer { (buf) throws(ImageError) in
            for g in geometry where g.w > 0 && g.h > 0 {
                let stride = header.rowBytes(g.w) + 1
                for r in 0..<g.h {
                    let start = g.offset + r * stride
                    try PNGFilter.undo(buf[start], buf, row: start + 1, previous: r > 0 ? start + 1 - stride : nil, count: stride - 1, bpp: bpp)
                    let y = g.y0 + r * g.dy
                    for i in 0..<g.w {
                        let p = y * header.width + g.x0 + i * g.dx
                        try converter.convert(buf, rowStart: start + 1, index: i, into: &rgb, pixel: p, alpha: &alpha)
                    }
                }
            }
        }
        return try RGBImage(width: header.width, height: header.height, pixels: rgb, alpha: alpha)
    }

    private static func parseHeader(_ body: ArraySlice<UInt8>, maxPixels: Int) throws(ImageError) -> Header {
        guard body.count == 13 else { throw .invalidHeader("IHDR length \(body.count), not 13") }
        let b = Array(body)
        var h = Header()
        h.width = be32(b, 0)
        h.height = be32(b, 4)
        h.bitDepth = Int(b[8])
        h.colorType = Int(b[9])
        guard h.width > 0, h.height > 0, h.width <= 0x7FFF_FFFF, h.height <= 0x7FFF_FFFF else {
            throw .invalidHeader("size \(h.width)×\(h.height)")
        }
        let allowed: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
        guard let depths = allowed[h.colorType] else { throw .invalidHeader("colour type \(h.colorType)") }
        guard depths.contains(h.bitDepth) else { throw .invalidHeader("bit depth \(h.bitDepth) with colour type \(h.colorType)") }
        guard b[10] == 0 else { throw .unsupported("compression method \(b[10])") }
        guard b[11] == 0 else { throw .unsupported("filter method \(b[11])") }
        guard b[12] <= 1 else { throw .unsupported("interlace method \(b[12])") }
        h.interlaced = b[12] == 1
        let (pixels, overflow) = h.width.multipliedReportingOverflow(by: h.height)
        guard !overflow, pixels <= maxPixels else { throw .tooLarge(width: h.width, height: h.height, maxPixels: maxPixels) }
        return h
    }
}

/// Turns unfiltered samples of one colour type and bit depth into RGB8 and alpha.
struct PixelConverter {
    let header: PNGDecoder.Header
    let palette: [UInt8]
    /// Alpha per palette index (255 past the tRNS entries).
    let paletteAlpha: [UInt8]
    /// tRNS colour key for grey (one sample) or RGB (three), at the image's bit depth.
    let key: [Int]?
    let hasAlpha: Bool

    init(header: PNGDecoder.Header, palette: [UInt8]?, transparency: ArraySlice<UInt8>?) throws(ImageError) {
        let entries = (palette?.count ?? 0) / 3
        var paletteAlpha = [UInt8](repeating: 255, count: 256)
        var key: [Int]?
        var hasAlpha = header.colorType == 4 || header.colorType == 6
        // A tRNS chunk of the wrong size is ignored, as libpng does (with a warning).
        if let t = transparency.map(Array.init) {
            switch header.colorType {
            case 0 where t.count == 2:
                key = [Int(t[0]) << 8 | Int(t[1])]
            case 2 where t.count == 6:
                key = [0, 2, 4].map { Int(t[$0]) << 8 | Int(t[$0 + 1]) }
            case 3 where t.count <= entries:
                for (i, a) in t.enumerated() { paletteAlpha[i] = a }
                hasAlpha = true
            default:
                break
            }
            hasAlpha = hasAlpha || key != nil
        }
        self.header = header
        self.palette = palette ?? []
        self.paletteAlpha = paletteAlpha
        self.key = key
        self.hasAlpha = hasAlpha
    }

    /// Sample `k` of the row starting at `rowStart`, at the image's bit depth.
    @inline(__always)
    private func sample(_ buf: UnsafeMutableBufferPointer<UInt8>, _ rowStart: Int, _ k: Int) -> Int {
        switch header.bitDepth {
        case 8: return Int(buf[rowStart + k])
        case 16: return Int(buf[rowStart + 2 * k]) << 8 | Int(buf[rowStart + 2 * k + 1])
        default:
            let bit = k * header.bitDepth
            let shift = 8 - header.bitDepth - bit % 8
            return Int(buf[rowStart + bit / 8] >> UInt8(shift)) & ((1 << header.bitDepth) - 1)
        }
    }

    /// A sample scaled to 8 bits.
    @inline(__always)
    private func to8(_ v: Int) -> UInt8 {
        switch header.bitDepth {
        case 16: return UInt8(v >> 8)
        case 8: return UInt8(v)
        default: return UInt8(v * 255 / ((1 << header.bitDepth) - 1))
        }
    }

    @inline(__always)
    func convert(_ buf: UnsafeMutableBufferPointer<UInt8>, rowStart: Int, index i: Int,
                 into rgb: inout [UInt8], pixel p: Int, alpha: inout [UInt8]?) throws(ImageError) {
        let c = header.channels
        switch header.colorType {
        case 0:
            let g = sample(buf, rowStart, i)
            let v = to8(g)
            rgb[3 * p] = v; rgb[3 * p + 1] = v; rgb[3 * p + 2] = v
            if let key, g == key[0] { alpha?[p] = 0 }
        case 2:
            let r = sample(buf, rowStart, 3 * i), g = sample(buf, rowStart, 3 * i + 1), b = sample(buf, rowStart, 3 * i + 2)
            rgb[3 * p] = to8(r); rgb[3 * p + 1] = to8(g); rgb[3 * p + 2] = to8(b)
            if let key, r == key[0], g == key[1], b == key[2] { alpha?[p] = 0 }
        case 3:
            let index = sample(buf, rowStart, i)
            guard 3 * index + 2 < palette.count else { throw .corrupt("palette index \(index) past the \(palette.count / 3)-entry PLTE") }
            rgb[3 * p] = palette[3 * index]; rgb[3 * p + 1] = palette[3 * index + 1]; rgb[3 * p + 2] = palette[3 * index + 2]
            alpha?[p] = paletteAlpha[index]
        default:  // 4: grey + alpha, 6: RGBA
            if c == 2 {
                let v = to8(sample(buf, rowStart, 2 * i))
                rgb[3 * p] = v; rgb[3 * p + 1] = v; rgb[3 * p + 2] = v
            } else {
                for k in 0..<3 { rgb[3 * p + k] = to8(sample(buf, rowStart, 4 * i + k)) }
            }
            alpha?[p] = to8(sample(buf, rowStart, c * i + c - 1))
        }
    }
}
