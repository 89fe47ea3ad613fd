import Synchronization

/// The BPE model of the tokenizers library as transformers' `CLIPTokenizer` configures it
/// (tokenizers `models/bpe`: `BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
/// fuse_unk=False, unk_token="<|endoftext|>")`), over byte-level words: each UTF-8 byte of a word starts as
/// the vocabulary symbol of its GPT-2 byte character, the last one with `</w>` appended; then merges are
/// applied lowest rank first (leftmost first among equal ranks) exactly as `Word::merge_all` does.
final class BytePairEncoder: Sendable {
    /// Vocabulary id of each byte's symbol, and of the symbol with `</w>`; -1 where the vocabulary lacks it.
    private let byteSymbols: [Int32]
    private let finalByteSymbols: [Int32]
    private let unknownID: Int32?
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// Word → ids. Keys are the words' text: hashing a String (short ones are stored inline) is much faster
    /// than hashing a byte array element by element.
    private let cache = Mutex<[String: [Int32]]>([:])
    private static let cacheLimit = 65_536
    private static let cacheableLength = 128

    /// GPT-2's reversible map from bytes to printable characters (also used by CLIP).
    static let byteCharacters: [Character] = {
        var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var characters = [Character](repeating: " ", count: 256)
        for byte in printable { characters[byte] = Character(Unicode.Scalar(UInt8(byte))) }
        var next = 256
        for byte in 0..<256 where !printable.contains(byte) {
            characters[byte] = Character(Unicode.Scalar(UInt32(next))!)
            next += 1
            printable.append(byte)
        }
        return characters
    }()

    /// - Parameters:
    ///   - vocabulary: token → id.
    ///   - merges: the merge list in rank order.
    ///   - unknownToken: the token for symbols the vocabulary lacks.
    ///   - source: the file named in errors.
    init(vocabulary: [String: Int32], merges: [(String, String)], unknownToken: String?, source: String) throws(TokenizerError) {
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let leftID = vocabulary[left], let rightID = vocabulary[right] else {
                let missing = vocabulary[left] == nil ? left : right
                throw .invalidContent(path: source, reason: "merge \(rank + 1) (\"\(left) \(right)\") uses \"\(missing)\", which is not in the vocabulary")
            }
            guard let mergedID = vocabulary[left + right] else {
                throw .invalidContent(path: source, reason: "merge \(rank + 1) (\"\(left) \(right)\") makes \"\(left + right)\", which is not in the vocabulary")
            }
            table[UInt64(UInt32(bitPattern: leftID)) << 32 | UInt64(UInt32(bitPattern: rightID))] =
                UInt64(rank) << 32 | UInt64(UInt32(bitPattern: mergedID))
        }
        self.merges = table
        self.byteSymbols = Self.byteCharacters.map { vocabulary[String($0)] ?? -1 }
        self.finalByteSymbols = Self.byteCharacters.map { vocabulary[String($0) + "</w>"] ?? -1 }
        self.unknownID = unknownToken.flatMap { vocabulary[$0] }
        if unknownID == nil, let byte = (0..<256).first(where: { byteSymbols[$0] < 0 || finalByteSymbols[$0] < 0 }) {
            throw .invalidContent(path: source, reason: "the vocabulary lacks the symbol of byte \(byte) and has no unknown token")
        }
    }

    /// Appends the ids of one byte-level word.
    func encode(_ word: ArraySlice<UInt8>, into ids: inout [Int32]) {
        let cacheable = word.count <= Self.cacheableLength
        let key = cacheable ? String(decoding: word, as: UTF8.self) : ""
        if cacheable, let cached = cache.withLock({ $0[key] }) {
            ids.append(contentsOf: cached)
            return
        }
        let result = merge(word)
        ids.append(contentsOf: result)
        if cacheable {
            cache.withLock { cache in
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[key] = result
            }
        }
    }

    private struct Candidate {
        var rank: UInt32
        var position: Int32
        var mergedID: Int32
        @inline(__always) func precedes(_ other: Candidate) -> Bool {
            rank != other.rank ? rank < other.rank : position < other.position
        }
    }

    @inline(__always) private func lookup(_ left: Int32, _ right: Int32) -> (rank: UInt32, mergedID: Int32)? {
        guard let value = merges[UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))] else { return nil }
        return (UInt32(value >> 32), Int32(bitPattern: UInt32(truncatingIfNeeded: value)))
    }

    /// `Word::merge_word` + `Word::merge_all` of the tokenizers library, without dropout.
    private func merge(_ word: ArraySlice<UInt8>) -> [Int32] {
        // Initial symbols; a symbol missing from the vocabulary becomes the unknown token (never fused).
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        for (offset, byte) in word.enumerated() {
            let id = offset == word.count - 1 ? finalByteSymbols[Int(byte)] : byteSymbols[Int(byte)]
            if id >= 0 { symbols.append(id) } else if let unknownID { symbols.append(unknownID) }
        }
        let count = symbols.count
        guard count > 1 else { return symbols }
        var previous = (0..<count).map { Int32($0) - 1 }
        var next = (0..<count).map { $0 + 1 < count ? Int32($0 + 1) : -1 }
        var removed = [Bool](repeating: false, count: count)

        var heap: [Candidate] = []
        heap.reserveCapacity(count)
        for position in 0..<(count - 1) {
            if let (rank, mergedID) = lookup(symbols[position], symbols[position + 1]) {
                push(Candidate(rank: rank, position: Int32(position), mergedID: mergedID), into: &heap)
            }
        }
        while let top = pop(&heap) {
            let position = Int(top.position)
            if removed[position] || next[position] < 0 { continue }
            let right = Int(next[position])
            // Skip entries made stale by earlier merges.
            guard let current = lookup(symbols[position], symbols[right]), current.mergedID == top.mergedID else { continue }
            symbols[position] = top.mergedID
            removed[right] = true
            next[position] = next[right]
            if next[right] >= 0 { previous[Int(next[right])] = Int32(position) }
            if previous[position] >= 0, let (rank, mergedID) = lookup(symbols[Int(previous[position])], symbols[position]) {
                push(Candidate(rank: rank, position: previous[position], mergedID: mergedID), into: &heap)
            }
            if next[position] >= 0, let (rank, mergedID) = lookup(symbols[position], symbols[Int(next[position])]) {
                push(Candidate(rank: rank, position: Int32(position), mergedID: mergedID), into: &heap)
            }
        }
        var result: [Int32] = []
        result.reserveCapacity(count)
        for index in 0..<count where !removed[index] { result.append(symbols[index]) }
        return result
    }

    // A binary min-heap ordered by (rank, position).
    private func push(_ candidate: Candidate, into heap: inout [Candidate]) {
        heap.append(candidate)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func pop(_ heap: inout [Candidate]) -> Candidate? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if heap.isEmpty { return first }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < heap.count && heap[left].precedes(heap[best]) { best = left }
            if right < heap.count && heap[right].precedes(heap[best]) { best = right }
            if best == parent { break }
            heap.swapAt(parent, best)
            parent = best
        }
        return first
    }
}
