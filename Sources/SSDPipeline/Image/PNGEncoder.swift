/// PNG writing (ISO/IEC 15948): 8-bit RGB (or RGBA when the image has alpha), not interlaced,
/// each row filtered with the filter whose output has the smallest sum of absolute values
/// (the spec's recommended heuristic, as libpng), zlib/DEFLATE compressed with dynamic Huffman codes.
extension RGBImage {
    /// The image as a PNG file. Each `(keyword, text)` pair becomes a tEXt chunk (an iTXt chunk in
    /// UTF-8 when the text is not Latin-1, as PIL's `PngInfo.add_text` does), e.g. the `parameters`
    /// chunk Stable Diffusion tools write. Keywords are made valid: characters outside printable
    /// Latin-1 become `_`, spaces are trimmed and collapsed, the length is capped at 79 (empty → `Comment`).
    public func pngData(textChunks: [(String, String)] = []) -> [UInt8] {
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        let channels = alpha == nil ? 3 : 4
        var ihdr: [UInt8] = []
        ihdr.appendBigEndian(UInt32(width))
        ihdr.appendBigEndian(UInt32(height))
        ihdr += [8, channels == 3 ? 2 : 6, 0, 0, 0]
        PNGChunk.append("IHDR", ihdr, to: &out)
        for (keyword, text) in textChunks {
            let key = PNGChunk.validKeyword(keyword)
            if let latin1 = PNGChunk.latin1(text) {
                PNGChunk.append("tEXt", key + [0] + latin1, to: &out)
            } else {
                // keyword, NUL, compression flag 0, method 0, empty language tag, empty translated keyword.
                PNGChunk.append("iTXt", key + [0, 0, 0, 0, 0] + Array(text.utf8), to: &out)
            }
        }
        let compressed = Zlib.compress(filteredRows(channels: channels))
        var start = 0
        repeat {  // IDAT chunks of at most 1 MiB
            let end = min(start + (1 << 20), compressed.count)
            PNGChunk.append("IDAT", compressed[start..<end], to: &out)
            start = end
        } while start < compressed.count
        PNGChunk.append("IEND", [], to: &out)
        return out
    }

    /// Scanlines, each prefixed with its filter type.
    private func filteredRows(channels: Int) -> [UInt8] {
        let stride = width * channels
        var raw = [UInt8](repeating: 0, count: stride * height)
        for p in 0..<(width * height) {
            raw[p * channels] = pixels[3 * p]
            raw[p * channels + 1] = pixels[3 * p + 1]
            raw[p * channels + 2] = pixels[3 * p + 2]
            if channels == 4, let alpha { raw[p * channels + 3] = alpha[p] }
        }
        var out: [UInt8] = []
        out.reserveCapacity((stride + 1) * height)
        let zeros = [UInt8](repeating: 0, count: stride)
        var candidate = [UInt8](repeating: 0, count: stride)
        var best = [UInt8](repeating: 0, count: stride)
        raw.withUnsafeBufferPointer { raw in
            zeros.withUnsafeBufferPointer { zeros in
                for y in 0..<height {
                    let row = UnsafeBufferPointer(rebasing: raw[(y * stride)..<((y + 1) * stride)])
                    let up = y == 0 ? zeros : UnsafeBufferPointer(rebasing: raw[((y - 1) * stride)..<(y * stride)])
                    var bestType: UInt8 = 0, bestCost = Int.max
                    for type: UInt8 in 0...4 {
                        PNGFilter.apply(type, row: row, previous: up, bpp: channels, into: &candidate)
                        var cost = 0
                        for b in candidate { cost += b < 128 ? Int(b) : 256 - Int(b) }
                        if cost < bestCost {
                            bestCost = cost
                            bestType = type
                            swap(&best, &candidate)
                        }
                    }
                    out.append(bestType)
                    out.append(contentsOf: best)
                }
            }
        }
        return out
    }
}

/// The five PNG filter types (ISO/IEC 15948 §9).
enum PNGFilter {
    /// Filters `row` against the previous row (zeros for the first) into `out`.
    static func apply(_ type: UInt8, row: UnsafeBufferPointer<UInt8>, previous: UnsafeBufferPointer<UInt8>, bpp: Int, into out: inout [UInt8]) {
        for i in 0..<row.count {
            let a = i >= bpp ? row[i - bpp] : 0, b = previous[i], c = i >= bpp ? previous[i - bpp] : 0
            let predictor: UInt8
            switch type {
            case 0: predictor = 0
            case 1: predictor = a
            case 2: predictor = b
            case 3: predictor = UInt8((Int(a) + Int(b)) / 2)
            default: predictor = paeth(a, b, c)
            }
            out[i] = row[i] &- predictor
        }
    }

    /// Undoes filter `type` in place on the `n` bytes at `row` in `buf`, given the already
    /// reconstructed previous row of the same pass at `previous` (nil for a pass's first row).
    static func undo(_ type: UInt8, _ buf: UnsafeMutableBufferPointer<UInt8>, row: Int, previous: Int?, count n: Int, bpp: Int) throws(ImageError) {
        switch type {
        case 0:
            return
        case 1:
            var i = bpp
            while i < n { buf[row + i] &+= buf[row + i - bpp]; i += 1 }
        case 2:
            guard let p = previous else { return }
            for i in 0..<n { buf[row + i] &+= buf[p + i] }
        case 3:
            for i in 0..<n {
                let a = i >= bpp ? Int(buf[row + i - bpp]) : 0
                let b = previous.map { Int(buf[$0 + i]) } ?? 0
                buf[row + i] &+= UInt8((a + b) / 2)
            }
        case 4:
            for i in 0..<n {
                let a = i >= bpp ? buf[row + i - bpp] : 0
                let b = previous.map { buf[$0 + i] } ?? 0
                let c = i >= bpp ? (previous.map { buf[$0 + i - bpp] } ?? 0) : 0
                buf[row + i] &+= paeth(a, b, c)
            }
        default:
            throw .corrupt("unknown filter type \(type)")
        }
    }

    @inline(__always)
    static func paeth(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> UInt8 {
        let p = Int(a) + Int(b) - Int(c)
        let pa = abs(p - Int(a)), pb = abs(p - Int(b)), pc = abs(p - Int(c))
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    }
}

/// PNG chunk framing.
enum PNGChunk {
    static func append<C: Collection>(_ type: String, _ data: C, to out: inout [UInt8]) where C.Element == UInt8 {
        out.appendBigEndian(UInt32(data.count))
        let typeBytes = Array(type.utf8)
        out += typeBytes
        out += data
        out.appendBigEndian(Checksum.crc32(data, initial: Checksum.crc32(typeBytes)))
    }

    /// The text as Latin-1 bytes, nil if some character is outside Latin-1.
    static func latin1(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in s.unicodeScalars {
            guard u.value < 256 else { return nil }
            out.append(UInt8(u.value))
        }
        return out
    }

    /// A keyword PNG accepts: 1–79 printable Latin-1 characters, no leading, trailing or double spaces.
    static func validKeyword(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        for u in s.unicodeScalars {
            let v = u.value
            let byte: UInt8 = (v >= 32 && v <= 126) || (v >= 161 && v <= 255) ? UInt8(v) : UInt8(ascii: "_")
            if byte == 32 && (out.isEmpty || out.last == 32) { continue }
            out.append(byte)
        }
        while out.last == 32 { out.removeLast() }
        if out.count > 79 { out = Array(out.prefix(79)) }
        while out.last == 32 { out.removeLast() }
        return out.isEmpty ? Array("Comment".utf8) : out
    }
}

extension [UInt8] {
    mutating func appendBigEndian(_ v: UInt32) {
        append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)])
    }
}
