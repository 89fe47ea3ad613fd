#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's header entry: its dtype, shape and byte range inside the data section
/// (the bytes after the header; the Rust crate's `TensorInfo`).
public struct SafetensorsEntry: Sendable, Hashable {
    /// The tensor's key in the header.
    public let name: String
    /// Element type.
    public let dtype: DType
    /// Shape, outermost first (`[]` for a scalar).
    public let shape: [Int]
    /// `data_offsets` from the header: a byte range relative to the start of the data section.
    public let dataRange: Range<Int>

    /// An entry of the header: tensor `name` of `dtype` and `shape` at `dataRange` of the data section.
    public init(name: String, dtype: DType, shape: [Int], dataRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
    }
}

/// A safetensors file mapped read-only into memory, its header fully validated at `init`
/// (the checks of the Rust crate's `SafeTensors::read_metadata` and `Metadata::validate`, with strict
/// JSON). Tensors are viewed in place without copying; each view keeps the mapping alive, so views
/// outlive this object.
///
/// What is accepted:
/// - 8-byte little-endian header length N ≤ 100 000 000, then N bytes of UTF-8 JSON (surrounding
///   whitespace allowed, as the space padding writers add), then the data section.
/// - The header is a JSON object without duplicate keys at any depth. `__metadata__` is optional
///   (or null) and maps strings to strings. Every other key is a tensor:
///   `{"dtype": "F32"|"F16"|"BF16"|"I32"|"I64", "shape": [d0, …], "data_offsets": [begin, end]}`
///   with non-negative integers written as plain digits; other keys in an entry are ignored (as serde does).
/// - Sorted by `(begin, end)`, the entries tile the data section exactly: the first begins at 0,
///   each begins where the previous one ends, the last ends at the end of the file. The order of
///   entries in the JSON text does not matter; zero-size tensors are allowed.
/// - `(end − begin)` equals the element count × dtype size.
///
/// The file must not be truncated by another process while mapped (that would raise SIGBUS, as with
/// any memory map); files replaced by `SafetensorsWriter` (rename) are safe.
public final class SafetensorsFile: @unchecked Sendable {
    /// The path given at `init` (names the file in errors).
    public let path: String
    /// The `__metadata__` strings (empty when absent).
    public let metadata: [String: String]
    /// Every tensor by name.
    public let entries: [String: SafetensorsEntry]
    /// Length of the JSON header in bytes (the data section starts at `8 + headerLength`).
    public let headerLength: Int
    /// Size of the whole file in bytes.
    public var fileSize: Int { storage.byteCount }

    let storage: SafetensorsStorage
    private let sortedNames: [String]

    /// Tensor names, sorted.
    public var names: [String] { sortedNames }

    /// Maps and validates the file at `path`; throws `SafetensorsError`.
    public convenience init(path: String) throws {
        try self.init(storage: SafetensorsStorage(mapping: path), path: path)
    }

    /// Parses an in-memory copy of a safetensors file (`path` names it in errors); throws `SafetensorsError`.
    public convenience init(bytes: [UInt8], path: String = "<memory>") throws {
        try self.init(storage: SafetensorsStorage(copying: bytes), path: path)
    }

    private init(storage: SafetensorsStorage, path: String) throws(SafetensorsError) {
        let header = try SafetensorsHeader.parse(UnsafeRawBufferPointer(start: storage.base, count: storage.byteCount), path: path)
        self.path = path
        self.storage = storage
        self.metadata = header.metadata
        self.entries = header.entries
        self.headerLength = header.headerLength
        self.sortedNames = header.entries.keys.sorted()
    }

    /// True when the file has a tensor of that name.
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// The tensor's bytes seen in place (zero-copy); the view keeps the mapping alive. The pointer is
    /// aligned to the element size for files written by `SafetensorsWriter` or Python's `safetensors`
    /// (8-byte padded header, tensors ordered by alignment); other files may give unaligned views.
    public func view(_ name: String) throws -> HostTensorView {
        guard let entry = entries[name] else { throw SafetensorsError.tensorNotFound(file: path, tensor: name) }
        let pointer = storage.base + (8 + headerLength + entry.dataRange.lowerBound)
        return HostTensorView(name: name, shape: entry.shape, dtype: entry.dtype, pointer: pointer, owner: storage)
    }

    /// Views of every tensor, in name order.
    public func views() throws -> [HostTensorView] { try sortedNames.map { try view($0) } }

    /// Tells the system that tensor `name`'s pages are not needed for now (after a backend has copied
    /// them): they leave this process's resident set and are read from the file again if a view is
    /// used later. Loading a model this way holds about one tensor of file pages at a time besides
    /// the prepared copies. No effect on an in-memory copy or an unknown name.
    public func evictPages(of name: String) {
        guard let entry = entries[name] else { return }
        storage.evict(offset: 8 + headerLength + entry.dataRange.lowerBound, count: entry.dataRange.count)
    }
}

/// The bytes of a safetensors file: a read-only private memory map, or an owned copy.
/// Unmaps / frees when the last view and file object release it.
final class SafetensorsStorage: @unchecked Sendable {
    /// First byte.
    let base: UnsafeRawPointer
    let byteCount: Int
    private let isMapped: Bool

    init(mapping path: String) throws(SafetensorsError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(file: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .cannotOpen(file: path, reason: Self.errnoText()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .cannotOpen(file: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        // mmap cannot map zero bytes; a file this short is rejected before mapping anyway.
        guard size >= 8 else { throw .fileTooSmall(file: path, byteCount: size) }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw .cannotOpen(file: path, reason: "mmap failed: " + Self.errnoText())
        }
        base = UnsafeRawPointer(p)
        byteCount = size
        isMapped = true
    }

    init(copying bytes: [UInt8]) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(p), byteCount: bytes.count) }
        base = UnsafeRawPointer(p)
        byteCount = bytes.count
        isMapped = false
    }

    /// `madvise(MADV_DONTNEED)` over the whole pages inside `offset..<offset+count` (mapped files only;
    /// the mapping is read-only and private, so the pages come back from the file when touched).
    func evict(offset: Int, count: Int) {
        guard isMapped, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page
        let end = (offset + count) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), byteCount)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    static func errnoText() -> String {
        guard let s = strerror(errno) else { return "errno \(errno)" }
        return String(cString: s)
    }
}

/// Header parsing and validation, separate from the storage so it can run on any bytes.
enum SafetensorsHeader {
    /// The Rust crate's `MAX_HEADER_SIZE`.
    static let maxHeaderLength: UInt64 = 100_000_000

    struct Parsed {
        var headerLength: Int
        var metadata: [String: String]
        var entries: [String: SafetensorsEntry]
    }

    static func parse(_ file: UnsafeRawBufferPointer, path: String) throws(SafetensorsError) -> Parsed {
        guard file.count >= 8 else { throw .fileTooSmall(file: path, byteCount: file.count) }
        var n: UInt64 = 0
        for k in 0..<8 { n |= UInt64(file[k]) << (8 * UInt64(k)) }
        guard n <= maxHeaderLength else { throw .headerTooLarge(file: path, headerLength: n) }
        guard n <= UInt64(file.count - 8) else { throw .headerPastEnd(file: path, headerLength: n, fileSize: file.count) }
        let headerLength = Int(n)
        let json = UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)])
        if let bad = firstInvalidUTF8(json) {
            throw .malformedHeader(file: path, offset: bad, reason: "header is not valid UTF-8")
        }
        let root: JSONValue
        do {
            root = try StrictJSONParser.parse(json)
        } catch {
            switch error {
            case let .syntax(offset, message):
                throw .malformedHeader(file: path, offset: offset, reason: message)
            case let .duplicateKey(offset, key, keyPath):
                if keyPath.isEmpty {
                    if key == "__metadata__" { throw .invalidMetadata(file: path, reason: "__metadata__ appears twice") }
                    throw .duplicateName(file: path, tensor: key)
                }
                if keyPath[0] == "__metadata__" {
                    throw .invalidMetadata(file: path, reason: "key '\(key)' appears twice")
                }
                throw .invalidEntry(file: path, tensor: keyPath[0], reason: "key '\(key)' appears twice (header byte \(offset))")
            }
        }
        guard case let .object(members) = root else {
            throw .malformedHeader(file: path, offset: 0, reason: "header is \(root.kind), not an object")
        }

        var metadata: [String: String] = [:]
        var entries: [String: SafetensorsEntry] = [:]
        for (key, value) in members {
            if key == "__metadata__" {
                metadata = try parseMetadata(value, path: path)
                continue
            }
            let entry = try parseEntry(name: key, value, path: path)
            // The parser already rejects byte-identical keys; this catches canonically equal ones.
            guard entries.updateValue(entry, forKey: key) == nil else { throw .duplicateName(file: path, tensor: key) }
        }

        // Sorted by offsets, the tensors must tile the data section (the crate's `Metadata::validate`).
        let dataSize = file.count - 8 - headerLength
        let ordered = entries.values.sorted {
            ($0.dataRange.lowerBound, $0.dataRange.upperBound, $0.name) < ($1.dataRange.lowerBound, $1.dataRange.upperBound, $1.name)
        }
        var expected = 0
        for e in ordered {
            let (begin, end) = (e.dataRange.lowerBound, e.dataRange.upperBound)
            guard begin == expected else {
                throw .offsetsNotContiguous(file: path, tensor: e.name, begin: begin, end: end, expectedBegin: expected)
            }
            guard end <= dataSize else {
                throw .offsetsOutOfRange(file: path, tensor: e.name, begin: begin, end: end, dataSize: dataSize)
            }
            guard let bytes = byteCount(shape: e.shape, dtype: e.dtype), bytes == end - begin else {
                throw .sizeMismatch(file: path, tensor: e.name, dtype: e.dtype, shape: e.shape, byteCount: end - begin)
            }
            expected = end
        }
        guard expected == dataSize else { throw .trailingBytes(file: path, dataEnd: expected, dataSize: dataSize) }
        return Parsed(headerLength: headerLength, metadata: metadata, entries: entries)
    }

    /// Element count × dtype size, nil on overflow.
    static func byteCount(shape: [Int], dtype: DType) -> Int? {
        var n = dtype.byteSize
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws(SafetensorsError) -> [String: String] {
        switch value {
        case .null:
            return [:]
        case let .object(pairs):
            var out: [String: String] = [:]
            for (k, v) in pairs {
                guard case let .string(s) = v else {
                    throw .invalidMetadata(file: path, reason: "value of '\(k)' is \(v.kind), not a string")
                }
                guard out.updateValue(s, forKey: k) == nil else {
                    throw .invalidMetadata(file: path, reason: "key '\(k)' appears twice")
                }
            }
            return out
        default:
            throw .invalidMetadata(file: path, reason: "it is \(value.kind), not an object")
        }
    }

    private static func parseEntry(name: String, _ value: JSONValue, path: String) throws(SafetensorsError) -> SafetensorsEntry {
        guard case let .object(fields) = value else {
            throw .invalidEntry(file: path, tensor: name, reason: "entry is \(value.kind), not an object")
        }
        var dtypeValue: JSONValue?, shapeValue: JSONValue?, offsetsValue: JSONValue?
        for (k, v) in fields {
            switch k {
            case "dtype": dtypeValue = v
            case "shape": shapeValue = v
            case "data_offsets": offsetsValue = v
            default: continue  // unknown fields are ignored, as serde does
            }
        }
        guard let dtypeValue else { throw .invalidEntry(file: path, tensor: name, reason: "missing 'dtype'") }
        guard let shapeValue else { throw .invalidEntry(file: path, tensor: name, reason: "missing 'shape'") }
        guard let offsetsValue else { throw .invalidEntry(file: path, tensor: name, reason: "missing 'data_offsets'") }

        guard case let .string(dtypeName) = dtypeValue else {
            throw .invalidEntry(file: path, tensor: name, reason: "'dtype' is \(dtypeValue.kind), not a string")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw .unknownDType(file: path, tensor: name, dtype: dtypeName)
        }
        guard case let .array(dims) = shapeValue else {
            throw .invalidEntry(file: path, tensor: name, reason: "'shape' is \(shapeValue.kind), not an array")
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        for d in dims {
            guard let v = d.nonNegativeInt else {
                throw .invalidEntry(file: path, tensor: name, reason: "shape dimension \(describe(d)) is not a non-negative integer")
            }
            shape.append(v)
        }
        guard case let .array(offsets) = offsetsValue, offsets.count == 2 else {
            throw .invalidEntry(file: path, tensor: name, reason: "'data_offsets' is not an array of two integers")
        }
        guard let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
            throw .invalidEntry(file: path, tensor: name, reason: "'data_offsets' \(describe(offsetsValue)) are not non-negative integers")
        }
        guard begin <= end else {
            throw .offsetsNotContiguous(file: path, tensor: name, begin: begin, end: end, expectedBegin: begin)
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    /// A short rendering of a JSON value for messages.
    private static func describe(_ v: JSONValue) -> String {
        switch v {
        case let .number(t): return t
        case let .string(s): return "\"\(s.prefix(40))\""
        case let .array(a): return "[" + a.map(describe).joined(separator: ", ") + "]"
        default: return v.kind
        }
    }

    /// Byte offset of the first invalid UTF-8 sequence, nil if the bytes are valid UTF-8.
    static func firstInvalidUTF8(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            let length: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range of the second byte
            switch b0 {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; hi = 0x9F  // no surrogates
            case 0xF0: length = 4; lo = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; hi = 0x8F  // ≤ U+10FFFF
            default: return i
            }
            guard n - i >= length, bytes[i + 1] >= lo, bytes[i + 1] <= hi else { return i }
            for k in 2..<max(length, 2) where bytes[i + k] & 0xC0 != 0x80 { return i }
            i += length
        }
        return nil
    }
}
