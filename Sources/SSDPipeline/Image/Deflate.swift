/// Appends bits least-significant first, as DEFLATE packs them.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var count = 0

    @inline(__always)
    mutating func write(_ bits: UInt32, _ n: Int) {
        buffer |= UInt64(bits) << UInt64(count)
        count += n
        while count >= 8 {
            bytes.append(UInt8(truncatingIfNeeded: buffer))
            buffer >>= 8
            count -= 8
        }
    }

    /// Pads with zero bits to the next byte boundary.
    mutating func alignToByte() {
        if count > 0 { write(0, 8 - count) }
    }

    mutating func appendBytes<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }
}

/// A DEFLATE (RFC 1951) compressor: LZ77 over a 32 KiB window with hash chains and one-step lazy
/// matching (as zlib's default level), then per block the smallest of a dynamic Huffman, fixed
/// Huffman or stored encoding.
enum Deflate {
    private static let windowSize = 32768
    private static let hashBits = 15
    private static let maxChain = 128
    private static let minMatch = 3
    private static let maxMatch = 258
    /// Symbols per block before the Huffman codes are rebuilt.
    private static let blockSymbols = 16384

    /// A literal byte (`< 256`) or a match (`0x8000_0000 | length << 16 | distance`).
    private typealias Token = UInt32

    static func compress(_ input: [UInt8]) -> [UInt8] {
        var writer = BitWriter()
        var tokens: [Token] = []
        tokens.reserveCapacity(blockSymbols)
        var blockStart = 0
        input.withUnsafeBufferPointer { data in
            let n = data.count
            var head = [Int32](repeating: -1, count: 1 << hashBits)
            var prev = [Int32](repeating: -1, count: windowSize)
            func hash(_ i: Int) -> Int {
                let v = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16
                return Int((v &* 2_654_435_761) >> UInt32(32 - hashBits))
            }
            func insert(_ i: Int) {
                guard i + minMatch <= n else { return }
                let h = hash(i)
                prev[i & (windowSize - 1)] = head[h]
                head[h] = Int32(i)
            }
            /// Longest earlier match for position i (not yet inserted): (length, distance).
            func longestMatch(_ i: Int) -> (Int, Int) {
                guard i + minMatch <= n else { return (0, 0) }
                let limit = min(maxMatch, n - i)
                var best = minMatch - 1, bestDistance = 0
                var candidate = Int(head[hash(i)])
                var chain = maxChain
                while candidate >= 0 && chain > 0 {
                    let distance = i - candidate
                    if distance > windowSize - 262 { break }
                    if data[candidate + best] == data[i + best] {
                        var len = 0
                        while len < limit && data[candidate + len] == data[i + len] { len += 1 }
                        if len > best {
                            best = len
                            bestDistance = distance
                            if len == limit { break }
                        }
                    }
                    let next = Int(prev[candidate & (windowSize - 1)])
                    if next >= candidate { break }  // the slot was reused by a newer position
                    candidate = next
                    chain -= 1
                }
                return best >= minMatch ? (best, bestDistance) : (0, 0)
            }

            var i = 0
            var pending: (Int, Int)? = nil  // the match found at i, carried over by lazy evaluation
            while i < n {
                let (len, distance) = pending ?? longestMatch(i)
                pending = nil
                if len >= minMatch {
                    insert(i)
                    // Lazy: a longer match one byte later wins over this one.
                    if len < 32 && i + 1 < n {
                        let next = longestMatch(i + 1)
                        if next.0 > len {
                            tokens.append(Token(data[i]))
                            i += 1
                            pending = next
                            flushIfFull(&tokens, &blockStart, end: i, data, &writer)
                            continue
                        }
                    }
                    tokens.append(0x8000_0000 | Token(len) << 16 | Token(distance))
                    for k in 1..<len { insert(i + k) }
                    i += len
                } else {
                    insert(i)
                    tokens.append(Token(data[i]))
                    i += 1
                }
                flushIfFull(&tokens, &blockStart, end: i, data, &writer)
            }
            writeBlock(tokens, data[blockStart..<n], final: true, &writer)
        }
        writer.alignToByte()
        return writer.bytes
    }

    private static func flushIfFull(_ tokens: inout [Token], _ blockStart: inout Int, end: Int,
                                    _ data: UnsafeBufferPointer<UInt8>, _ writer: inout BitWriter) {
        guard tokens.count >= blockSymbols else { return }
        writeBlock(tokens, data[blockStart..<end], final: false, &writer)
        tokens.removeAll(keepingCapacity: true)
        blockStart = end
    }

    /// Writes one block for `tokens`, which encode exactly `raw`, choosing the cheapest encoding.
    private static func writeBlock(_ tokens: [Token], _ raw: Slice<UnsafeBufferPointer<UInt8>>, final: Bool, _ w: inout BitWriter) {
        var litFreq = [Int](repeating: 0, count: 286)
        var distFreq = [Int](repeating: 0, count: 30)
        var extraBits = 0
        for t in tokens {
            if t & 0x8000_0000 == 0 {
                litFreq[Int(t)] += 1
            } else {
                let lc = Int(DeflateTables.lengthCode[Int(t >> 16) & 0x1FF])
                let dc = DeflateTables.distanceCode(Int(t & 0xFFFF))
                litFreq[257 + lc] += 1
                distFreq[dc] += 1
                extraBits += DeflateTables.lengthExtra[lc] + DeflateTables.distanceExtra[dc]
            }
        }
        litFreq[256] = 1

        let litLengths = Huffman.lengths(frequencies: litFreq, limit: 15)
        let distLengths = Huffman.lengths(frequencies: distFreq, limit: 15)
        let header = DynamicHeader(litLengths: litLengths, distLengths: distLengths)
        func dataBits(_ lit: [UInt8], _ dist: [UInt8]) -> Int {
            var bits = extraBits
            for (s, f) in litFreq.enumerated() where f > 0 { bits += f * Int(lit[s]) }
            for (s, f) in distFreq.enumerated() where f > 0 { bits += f * Int(dist[s]) }
            return bits
        }
        let dynamicBits = 3 + header.bitCount + dataBits(litLengths, distLengths)
        let fixedBits = 3 + dataBits(DeflateTables.fixedLiteralLengths, DeflateTables.fixedDistanceLengths)
        let storedBlocks = max(1, (raw.count + 65534) / 65535)
        let storedBits = storedBlocks * (3 + 7 + 32) + raw.count * 8

        if storedBits <= min(dynamicBits, fixedBits) {
            var start = raw.startIndex
            for b in 0..<storedBlocks {
                let end = min(start + 65535, raw.endIndex)
                w.write(final && b == storedBlocks - 1 ? 1 : 0, 1)
                w.write(0, 2)
                w.alignToByte()
                let len = UInt32(end - start)
                w.write(len, 16)
                w.write(~len & 0xFFFF, 16)
                w.appendBytes(raw[start..<end])
                start = end
            }
        } else if fixedBits <= dynamicBits {
            w.write(final ? 1 : 0, 1)
            w.write(1, 2)
            writeTokens(tokens, DeflateTables.fixedLiteralLengths, DeflateTables.fixedDistanceLengths, &w)
        } else {
            w.write(final ? 1 : 0, 1)
            w.write(2, 2)
            header.write(&w)
            writeTokens(tokens, litLengths, distLengths, &w)
        }
    }

    private static func writeTokens(_ tokens: [Token], _ litLengths: [UInt8], _ distLengths: [UInt8], _ w: inout BitWriter) {
        let litCodes = zip(Huffman.canonicalCodes(litLengths), litLengths).map { Huffman.reverse($0, Int($1)) }
        let distCodes = zip(Huffman.canonicalCodes(distLengths), distLengths).map { Huffman.reverse($0, Int($1)) }
        for t in tokens {
            if t & 0x8000_0000 == 0 {
                w.write(litCodes[Int(t)], Int(litLengths[Int(t)]))
                continue
            }
            let len = Int(t >> 16) & 0x1FF, distance = Int(t & 0xFFFF)
            let lc = Int(DeflateTables.lengthCode[len])
            w.write(litCodes[257 + lc], Int(litLengths[257 + lc]))
            w.write(UInt32(len - DeflateTables.lengthBase[lc]), DeflateTables.lengthExtra[lc])
            let dc = DeflateTables.distanceCode(distance)
            w.write(distCodes[dc], Int(distLengths[dc]))
            w.write(UInt32(distance - DeflateTables.distanceBase[dc]), DeflateTables.distanceExtra[dc])
        }
        w.write(litCodes[256], Int(litLengths[256]))
    }

    /// The code-length description of a dynamic block (RFC 1951 §3.2.7), run-length coded.
    private struct DynamicHeader {
        let hlit: Int, hdist: Int, hclen: Int
        /// (symbol 0…18, extra-bit value) pairs.
        let runs: [(Int, UInt32)]
        let clLengths: [UInt8]

        init(litLengths: [UInt8], distLengths: [UInt8]) {
            hlit = max(257, (litLengths.lastIndex { $0 > 0 } ?? 0) + 1)
            hdist = max(1, (distLengths.lastIndex { $0 > 0 } ?? 0) + 1)
            let all = Array(litLengths[0..<hlit]) + Array(distLengths[0..<hdist])
            var runs: [(Int, UInt32)] = []
            var i = 0
            while i < all.count {
                let v = all[i]
                var run = 1
                while i + run < all.count && all[i + run] == v { run += 1 }
                var left = run
                if v == 0 {
                    while left >= 11 { let k = min(left, 138); runs.append((18, UInt32(k - 11))); left -= k }
                    if left >= 3 { runs.append((17, UInt32(left - 3))); left = 0 }
                } else {
                    runs.append((Int(v), 0))
                    left -= 1
                    while left >= 3 { let k = min(left, 6); runs.append((16, UInt32(k - 3))); left -= k }
                }
                for _ in 0..<left { runs.append((Int(v), 0)) }
                i += run
            }
            self.runs = runs
            var freq = [Int](repeating: 0, count: 19)
            for (s, _) in runs { freq[s] += 1 }
            let cl = Huffman.lengths(frequencies: freq, limit: 7)
            clLengths = cl
            hclen = max(4, (DeflateTables.codeLengthOrder.lastIndex { cl[$0] > 0 } ?? 0) + 1)
        }

        var bitCount: Int {
            var bits = 5 + 5 + 4 + 3 * hclen
            for (s, _) in runs { bits += Int(clLengths[s]) + (s == 16 ? 2 : s == 17 ? 3 : s == 18 ? 7 : 0) }
            return bits
        }

        func write(_ w: inout BitWriter) {
            w.write(UInt32(hlit - 257), 5)
            w.write(UInt32(hdist - 1), 5)
            w.write(UInt32(hclen - 4), 4)
            for k in 0..<hclen { w.write(UInt32(clLengths[DeflateTables.codeLengthOrder[k]]), 3) }
            let codes = zip(Huffman.canonicalCodes(clLengths), clLengths).map { Huffman.reverse($0, Int($1)) }
            for (s, extra) in runs {
                w.write(codes[s], Int(clLengths[s]))
                switch s {
                case 16: w.write(extra, 2)
                case 17: w.write(extra, 3)
                case 18: w.write(extra, 7)
                default: break
                }
            }
        }
    }
}
