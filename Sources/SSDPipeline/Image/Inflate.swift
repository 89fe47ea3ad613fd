/// A DEFLATE (RFC 1951) decompressor: stored, fixed and dynamic Huffman blocks, with the checks
/// zlib's inflate makes (over-subscribed or incomplete codes, bad lengths, distances too far back).
/// Output is capped at `limit` bytes so that a small file cannot expand without bound.
enum Inflate {
    /// Decompresses the raw DEFLATE stream at the start of `input`; returns the output and how
    /// many input bytes the stream used (up to its final byte).
    static func decompress(_ input: ArraySlice<UInt8>, limit: Int) throws(ImageError) -> (output: [UInt8], consumed: Int) {
        var reader = BitReader(input)
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, 1 << 26))
        var final = false
        while !final {
            final = try reader.bits(1) == 1
            switch try reader.bits(2) {
            case 0:
                reader.alignToByte()
                let len = try reader.bits(16), nlen = try reader.bits(16)
                guard len == ~nlen & 0xFFFF else { throw .corrupt("deflate: stored block length check failed") }
                guard out.count + len <= limit else { throw .corrupt("deflate: more data than the image needs") }
                try reader.copyBytes(len, into: &out)
            case 1:
                try inflateBlock(&reader, &out, limit: limit, literals: fixedTables.literals, distances: fixedTables.distances)
            case 2:
                let (literals, distances) = try readDynamicTables(&reader)
                try inflateBlock(&reader, &out, limit: limit, literals: literals, distances: distances)
            default:
                throw .corrupt("deflate: invalid block type 3")
            }
        }
        return (out, reader.bytesConsumed)
    }

    private static let fixedTables: (literals: DecodeTable, distances: DecodeTable) = {
        // The fixed codes are complete by construction (32 distance codes, of which 30 and 31 are
        // invalid when met); `try?` only satisfies the type checker.
        let lit = (try? DecodeTable(lengths: DeflateTables.fixedLiteralLengths, kind: .symbols)) ?? DecodeTable()
        let dist = (try? DecodeTable(lengths: [UInt8](repeating: 5, count: 32), kind: .symbols)) ?? DecodeTable()
        return (lit, dist)
    }()

    private static func readDynamicTables(_ r: inout BitReader) throws(ImageError) -> (DecodeTable, DecodeTable) {
        let hlit = try r.bits(5) + 257, hdist = try r.bits(5) + 1, hclen = try r.bits(4) + 4
        guard hlit <= 286, hdist <= 30 else { throw .corrupt("deflate: too many length or distance symbols") }
        var clLengths = [UInt8](repeating: 0, count: 19)
        for k in 0..<hclen { clLengths[DeflateTables.codeLengthOrder[k]] = UInt8(try r.bits(3)) }
        let clTable = try DecodeTable(lengths: clLengths, kind: .codeLengths)
        var lengths: [UInt8] = []
        lengths.reserveCapacity(hlit + hdist)
        while lengths.count < hlit + hdist {
            let sym = try clTable.decode(&r)
            let value: UInt8, repeats: Int
            switch sym {
            case 0...15: value = UInt8(sym); repeats = 1
            case 16:
                guard let last = lengths.last else { throw .corrupt("deflate: repeat with no previous length") }
                value = last; repeats = 3 + (try r.bits(2))
            case 17: value = 0; repeats = 3 + (try r.bits(3))
            default: value = 0; repeats = 11 + (try r.bits(7))
            }
            guard lengths.count + repeats <= hlit + hdist else { throw .corrupt("deflate: too many code lengths") }
            lengths.append(contentsOf: repeatElement(value, count: repeats))
        }
        guard lengths[256] > 0 else { throw .corrupt("deflate: missing end-of-block code") }
        let literals = try DecodeTable(lengths: Array(lengths[0..<hlit]), kind: .symbols)
        let distances = try DecodeTable(lengths: Array(lengths[hlit...]), kind: .symbols)
        return (literals, distances)
    }

    private static func inflateBlock(_ r: inout BitReader, _ out: inout [UInt8], limit: Int,
                                     literals: DecodeTable, distances: DecodeTable) throws(ImageError) {
        while true {
            let sym = try literals.decode(&r)
            if sym < 256 {
                guard out.count < limit else { throw .corrupt("deflate: more data than the image needs") }
                out.append(UInt8(sym))
                continue
            }
            if sym == 256 { return }
            let lc = sym - 257
            guard lc < 29 else { throw .corrupt("deflate: invalid length symbol \(sym)") }
            let length = DeflateTables.lengthBase[lc] + (try r.bits(DeflateTables.lengthExtra[lc]))
            let dc = try distances.decode(&r)
            guard dc < 30 else { throw .corrupt("deflate: invalid distance symbol \(dc)") }
            let distance = DeflateTables.distanceBase[dc] + (try r.bits(DeflateTables.distanceExtra[dc]))
            guard distance <= out.count else { throw .corrupt("deflate: distance \(distance) too far back") }
            guard out.count + length <= limit else { throw .corrupt("deflate: more data than the image needs") }
            var from = out.count - distance
            for _ in 0..<length {
                out.append(out[from])
                from += 1
            }
        }
    }
}

/// Reads bits least-significant first from a byte slice.
struct BitReader {
    private let data: ArraySlice<UInt8>
    private var position: Int
    private var buffer: UInt64 = 0
    private var count = 0

    init(_ data: ArraySlice<UInt8>) {
        self.data = data
        position = data.startIndex
    }

    /// Bytes used so far, counting a partly used byte as used.
    var bytesConsumed: Int { position - data.startIndex - count / 8 }

    /// Loads whole bytes until at least `n` bits are buffered or the input ends.
    @inline(__always)
    private mutating func fill(_ n: Int) {
        while count < n && position < data.endIndex {
            buffer |= UInt64(data[position]) << UInt64(count)
            position += 1
            count += 8
        }
    }

    @inline(__always)
    mutating func bits(_ n: Int) throws(ImageError) -> Int {
        if n == 0 { return 0 }
        fill(n)
        guard count >= n else { throw .truncated("deflate stream ends early") }
        let v = Int(buffer & ((1 << UInt64(n)) - 1))
        buffer >>= UInt64(n)
        count -= n
        return v
    }

    /// Up to `n` bits without consuming them (missing bits past the end read as zero), and how many are real.
    @inline(__always)
    mutating func peek(_ n: Int) -> (value: Int, available: Int) {
        fill(n)
        return (Int(buffer & ((1 << UInt64(n)) - 1)), count)
    }

    @inline(__always)
    mutating func skip(_ n: Int) {
        buffer >>= UInt64(n)
        count -= n
    }

    mutating func alignToByte() { skip(count % 8) }

    /// Copies `n` bytes (after `alignToByte`).
    mutating func copyBytes(_ n: Int, into out: inout [UInt8]) throws(ImageError) {
        var left = n
        while left > 0 && count >= 8 {
            out.append(UInt8(truncatingIfNeeded: buffer))
            skip(8)
            left -= 1
        }
        guard data.endIndex - position >= left else { throw .truncated("deflate stored block ends early") }
        out.append(contentsOf: data[position..<(position + left)])
        position += left
    }
}

/// A table-driven canonical Huffman decoder indexed by the next `bits` input bits.
struct DecodeTable {
    enum Kind { case symbols, codeLengths }
    /// `symbol << 4 | length`, 0 where no code matches.
    private var entries: [UInt32] = [0, 0]
    private var bits = 1

    init() {}

    /// Builds the table; rejects over-subscribed codes, and incomplete ones except a single code
    /// of length 1 (as zlib's `inflate_table`); all-zero lengths give a table that decodes nothing.
    init(lengths: [UInt8], kind: Kind) throws(ImageError) {
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[Int(l)] += 1 }
        let maxLength = (1...15).last { count[$0] > 0 } ?? 0
        var left = 1
        for len in 1...15 {
            left <<= 1
            left -= count[len]
            guard left >= 0 else { throw .corrupt("deflate: over-subscribed Huffman code") }
        }
        if left > 0 && maxLength > 0 && (kind == .codeLengths || maxLength != 1) {
            throw .corrupt("deflate: incomplete Huffman code")
        }
        bits = max(maxLength, 1)
        entries = [UInt32](repeating: 0, count: 1 << bits)
        let codes = Huffman.canonicalCodes(lengths)
        for (symbol, l) in lengths.enumerated() where l > 0 {
            let reversed = Int(Huffman.reverse(codes[symbol], Int(l)))
            for index in stride(from: reversed, to: 1 << bits, by: 1 << Int(l)) {
                entries[index] = UInt32(symbol) << 4 | UInt32(l)
            }
        }
    }

    @inline(__always)
    func decode(_ r: inout BitReader) throws(ImageError) -> Int {
        let (value, available) = r.peek(bits)
        let entry = entries[value]
        let length = Int(entry & 15)
        guard length > 0 else {
            if available < bits { throw .truncated("deflate stream ends early") }
            throw .corrupt("deflate: invalid Huffman code")
        }
        guard length <= available else { throw .truncated("deflate stream ends early") }
        r.skip(length)
        return Int(entry >> 4)
    }
}

/// The zlib wrapper (RFC 1950) around DEFLATE, with its Adler-32 checksum.
enum Zlib {
    /// A zlib stream (CMF 0x78: deflate with a 32 KiB window; FLG for the default level).
    static func compress(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x9C]
        out += Deflate.compress(data)
        let a = Checksum.adler32(data)
        out += [UInt8(a >> 24), UInt8((a >> 16) & 0xFF), UInt8((a >> 8) & 0xFF), UInt8(a & 0xFF)]
        return out
    }

    /// Decompresses a zlib stream, checking its header and Adler-32; bytes after it are ignored.
    static func decompress(_ data: [UInt8], limit: Int) throws(ImageError) -> [UInt8] {
        guard data.count >= 2 else { throw .truncated("zlib stream ends early") }
        let cmf = Int(data[0]), flg = Int(data[1])
        guard cmf & 0x0F == 8, cmf >> 4 <= 7 else { throw .corrupt("zlib: unknown compression method") }
        guard (cmf << 8 | flg) % 31 == 0 else { throw .corrupt("zlib: header check failed") }
        guard flg & 0x20 == 0 else { throw .unsupported("zlib: preset dictionary") }
        let (out, used) = try Inflate.decompress(data[2...], limit: limit)
        let end = 2 + used
        guard data.count >= end + 4 else { throw .truncated("zlib checksum missing") }
        let stored = UInt32(data[end]) << 24 | UInt32(data[end + 1]) << 16 | UInt32(data[end + 2]) << 8 | UInt32(data[end + 3])
        guard stored == Checksum.adler32(out) else { throw .corrupt("zlib: Adler-32 checksum mismatch") }
        return out
    }
}

/// CRC-32 (PNG chunks, ISO 3309) and Adler-32 (zlib).
enum Checksum {
    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        var c = ~initial
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < bytes.count {
            let end = min(i + 5552, bytes.count)  // largest run before the sums can overflow
            while i < end {
                a += UInt32(bytes[i])
                b += a
                i += 1
            }
            a %= 65521
            b %= 65521
        }
        return b << 16 | a
    }
}
