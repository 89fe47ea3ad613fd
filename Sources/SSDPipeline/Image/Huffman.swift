/// Huffman code helpers shared by the DEFLATE compressor and decompressor (RFC 1951 §3.2.2).
enum Huffman {
    /// Code lengths for symbol frequencies, no longer than `limit` bits. Symbols with zero
    /// frequency get length 0. When fewer than two symbols are used, two get length 1 so that the
    /// code is complete (some decoders reject a one-symbol code).
    static func lengths(frequencies: [Int], limit: Int) -> [UInt8] {
        var freq = frequencies
        var used = freq.indices.filter { freq[$0] > 0 }
        if used.count < 2 {
            for s in freq.indices where !used.contains(s) && used.count < 2 { used.append(s); freq[s] = 1 }
        }
        while true {
            let result = unlimitedLengths(freq, used: used)
            if result.max() ?? 0 <= limit { return result.map { UInt8($0) } }
            // Flatten the distribution and retry; converges to a balanced code (≤ 9 bits for 286 symbols).
            for s in used { freq[s] = (freq[s] + 1) / 2 }
        }
    }

    /// Plain Huffman code lengths via the two-queue method over leaves sorted by frequency.
    private static func unlimitedLengths(_ freq: [Int], used: [Int]) -> [Int] {
        let leaves = used.sorted { (freq[$0], $0) < (freq[$1], $1) }
        let n = leaves.count
        // Nodes 0..<n are leaves (in sorted order), n..<2n-1 internal nodes.
        var weight = leaves.map { freq[$0] }
        var parent = [Int](repeating: -1, count: 2 * n - 1)
        weight.reserveCapacity(2 * n - 1)
        var nextLeaf = 0, nextInternal = n
        func takeSmallest() -> Int {
            if nextLeaf < n && (nextInternal >= weight.count || weight[nextLeaf] <= weight[nextInternal]) {
                nextLeaf += 1
                return nextLeaf - 1
            }
            nextInternal += 1
            return nextInternal - 1
        }
        for _ in 0..<(n - 1) {
            let a = takeSmallest(), b = takeSmallest()
            let node = weight.count
            weight.append(weight[a] + weight[b])
            parent[a] = node
            parent[b] = node
        }
        var depth = [Int](repeating: 0, count: 2 * n - 1)
        for node in stride(from: 2 * n - 3, through: 0, by: -1) { depth[node] = depth[parent[node]] + 1 }
        var result = [Int](repeating: 0, count: freq.count)
        for (i, s) in leaves.enumerated() { result[s] = depth[i] }
        return result
    }

    /// Canonical codes for code lengths (RFC 1951 §3.2.2), most significant bit first.
    static func canonicalCodes(_ lengths: [UInt8]) -> [UInt16] {
        var count = [Int](repeating: 0, count: 16)
        for l in lengths where l > 0 { count[Int(l)] += 1 }
        var next = [Int](repeating: 0, count: 16)
        var code = 0
        for bits in 1...15 {
            code = (code + count[bits - 1]) << 1
            next[bits] = code
        }
        var codes = [UInt16](repeating: 0, count: lengths.count)
        for (s, l) in lengths.enumerated() where l > 0 {
            codes[s] = UInt16(next[Int(l)])
            next[Int(l)] += 1
        }
        return codes
    }

    /// `code`'s low `length` bits in reverse order (DEFLATE sends Huffman codes MSB first into an LSB-first stream).
    @inline(__always)
    static func reverse(_ code: UInt16, _ length: Int) -> UInt32 {
        var v = UInt32(code), r: UInt32 = 0
        for _ in 0..<length { r = r << 1 | (v & 1); v >>= 1 }
        return r
    }
}

/// DEFLATE length and distance code tables (RFC 1951 §3.2.5).
enum DeflateTables {
    static let lengthBase: [Int] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra: [Int] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase: [Int] = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra: [Int] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    /// Order in which code-length code lengths are sent.
    static let codeLengthOrder: [Int] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    /// Length code index (0…28) for each match length 0…258.
    static let lengthCode: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 259)
        for code in 0..<29 {
            let end = code == 28 ? 259 : lengthBase[code + 1]
            for len in lengthBase[code]..<end where len < 259 { t[len] = UInt8(code) }
        }
        t[258] = 28
        return t
    }()

    /// Distance code (0…29) for a distance 1…32768.
    @inline(__always)
    static func distanceCode(_ d: Int) -> Int {
        var lo = 0, hi = 29
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if distanceBase[mid] <= d { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Code lengths of the fixed Huffman codes (RFC 1951 §3.2.6).
    static let fixedLiteralLengths: [UInt8] = (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 }
    static let fixedDistanceLengths: [UInt8] = [UInt8](repeating: 5, count: 30)
}
