#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files laid out as the Rust crate's `serialize` does (the Python
/// `safetensors.torch.save_file`): tensors ordered by dtype alignment (I64, F32, I32, BF16, F16),
/// then by name; `__metadata__` first with sorted keys; compact JSON padded with spaces to a
/// multiple of 8 bytes. For the same tensors and metadata the bytes equal Python's.
public enum SafetensorsWriter {
    /// Writes `tensors` (named by their `name`) and `metadata` to `path` atomically: the bytes go
    /// to a temporary file in the same directory, which is synced and then renamed over `path`,
    /// so `path` is never half-written and views of an older file at `path` stay valid.
    /// Throws `SafetensorsError` (`invalidTensor`, `writeFailed`).
    public static func write(_ tensors: [HostTensorView], metadata: [String: String] = [:], to path: String) throws {
        let (header, ordered) = try layout(tensors, metadata: metadata, path: path)
        let (directory, base) = split(path)
        var suffix = SystemRandomNumberGenerator()
        let temporary = "\(directory)/.\(base).\(getpid()).\(String(suffix.next() as UInt64, radix: 16)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SafetensorsError.writeFailed(file: path, reason: "cannot create \(temporary): \(SafetensorsStorage.errnoText())") }
        var closed = false
        do {
            try header.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                try writeAll(fd, base, raw.count, path: path)
            }
            for t in ordered { try writeAll(fd, t.pointer, t.byteCount, path: path) }
            guard fsync(fd) == 0 else { throw SafetensorsError.writeFailed(file: path, reason: "fsync: \(SafetensorsStorage.errnoText())") }
            closed = true
            guard close(fd) == 0 else { throw SafetensorsError.writeFailed(file: path, reason: "close: \(SafetensorsStorage.errnoText())") }
            guard rename(temporary, path) == 0 else {
                throw SafetensorsError.writeFailed(file: path, reason: "rename: \(SafetensorsStorage.errnoText())")
            }
        } catch {
            if !closed { close(fd) }
            unlink(temporary)
            throw error
        }
        // Make the rename durable; a failure here leaves a complete file, so it is not reported.
        let dfd = open(directory, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    /// The whole file as bytes (the same layout `write` produces). Throws `SafetensorsError`.
    public static func serialize(_ tensors: [HostTensorView], metadata: [String: String] = [:]) throws -> [UInt8] {
        let (header, ordered) = try layout(tensors, metadata: metadata, path: "<memory>")
        var out = header
        out.reserveCapacity(header.count + ordered.reduce(0) { $0 + $1.byteCount })
        for t in ordered { out.append(contentsOf: UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount)) }
        return out
    }

    /// The 8-byte length plus padded JSON header, and the tensors in data order.
    static func layout(_ tensors: [HostTensorView], metadata: [String: String], path: String) throws(SafetensorsError)
        -> (header: [UInt8], ordered: [HostTensorView])
    {
        var names = Set<String>()
        for t in tensors {
            guard t.name != "__metadata__" else { throw .invalidTensor(file: path, tensor: t.name, reason: "the name is reserved") }
            guard names.insert(t.name).inserted else { throw .invalidTensor(file: path, tensor: t.name, reason: "the name is used twice") }
            guard SafetensorsHeader.byteCount(shape: t.shape, dtype: t.dtype) != nil else {
                throw .invalidTensor(file: path, tensor: t.name, reason: "shape \(t.shape) has a negative dimension or overflows")
            }
        }
        let ordered = tensors.sorted { a, b in
            let (ra, rb) = (alignmentRank(a.dtype), alignmentRank(b.dtype))
            return ra != rb ? ra > rb : a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func separator() {
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
        }
        if !metadata.isEmpty {
            separator()
            JSONWriter.appendString("__metadata__", to: &json)
            json.append(contentsOf: Array(":{".utf8))
            let keys = metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, k) in keys.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(k, to: &json)
                json.append(UInt8(ascii: ":"))
                JSONWriter.appendString(metadata[k] ?? "", to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for t in ordered {
            separator()
            JSONWriter.appendString(t.name, to: &json)
            json.append(contentsOf: Array(":{\"dtype\":".utf8))
            JSONWriter.appendString(t.dtype.safetensorsName, to: &json)
            json.append(contentsOf: Array(",\"shape\":[".utf8))
            for (i, d) in t.shape.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                JSONWriter.appendInt(d, to: &json)
            }
            json.append(contentsOf: Array("],\"data_offsets\":[".utf8))
            JSONWriter.appendInt(offset, to: &json)
            json.append(UInt8(ascii: ","))
            offset += t.byteCount
            JSONWriter.appendInt(offset, to: &json)
            json.append(contentsOf: Array("]}".utf8))
        }
        json.append(UInt8(ascii: "}"))
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8))
        var header: [UInt8] = []
        header.reserveCapacity(8 + json.count)
        let n = UInt64(json.count)
        for k in 0..<8 { header.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(k)))) }
        header.append(contentsOf: json)
        return (header, ordered)
    }

    /// Position of the dtype in the Rust crate's `Dtype` enum, whose order is by alignment.
    private static func alignmentRank(_ d: DType) -> Int {
        switch d {
        case .f16: return 0
        case .bf16: return 1
        case .i32: return 2
        case .f32: return 3
        case .i64: return 4
        }
    }

    private static func split(_ path: String) -> (directory: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    private static func writeAll(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int, path: String) throws(SafetensorsError) {
        var done = 0
        while done < count {
            let r = posixWrite(fd, pointer + done, min(count - done, 1 << 30))
            if r < 0 {
                if errno == EINTR { continue }
                throw .writeFailed(file: path, reason: SafetensorsStorage.errnoText())
            }
            guard r > 0 else { throw .writeFailed(file: path, reason: "no progress writing") }
            done += r
        }
    }
}

private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
