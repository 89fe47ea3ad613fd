/// Everything that can go wrong reading or writing a safetensors file. Every case names the file,
/// and the tensor where one is involved. Matches the checks of the Rust `safetensors` crate
/// (`safetensors/src/tensor.rs`, `SafeTensorError`), plus strict JSON (no duplicate keys).
public enum SafetensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened, inspected or mapped (`reason` is the system's message).
    case cannotOpen(file: String, reason: String)
    /// The file is shorter than the 8-byte header length (an empty file included).
    case fileTooSmall(file: String, byteCount: Int)
    /// The declared JSON header length is over the 100 MB limit (the Rust crate's `HeaderTooLarge`).
    case headerTooLarge(file: String, headerLength: UInt64)
    /// The declared JSON header runs past the end of the file.
    case headerPastEnd(file: String, headerLength: UInt64, fileSize: Int)
    /// The header is not valid UTF-8, not valid JSON, or not a JSON object; `offset` is the byte
    /// offset inside the JSON header.
    case malformedHeader(file: String, offset: Int, reason: String)
    /// Two tensors have the same name (or names equal under Unicode canonical equivalence).
    case duplicateName(file: String, tensor: String)
    /// `__metadata__` is not an object of strings to strings.
    case invalidMetadata(file: String, reason: String)
    /// A tensor's header entry is not `{"dtype": …, "shape": […], "data_offsets": [begin, end]}`
    /// with non-negative integers, or has a key twice.
    case invalidEntry(file: String, tensor: String, reason: String)
    /// A dtype this library does not read (it reads F32, F16, BF16, I32 and I64).
    case unknownDType(file: String, tensor: String, dtype: String)
    /// A tensor's data reaches past the end of the file.
    case offsetsOutOfRange(file: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    /// Sorted by offset, the tensors must tile the data section: this one overlaps the previous
    /// tensor, leaves a gap before it, or ends before it begins.
    case offsetsNotContiguous(file: String, tensor: String, begin: Int, end: Int, expectedBegin: Int)
    /// shape × dtype size differs from the tensor's byte range (or overflows).
    case sizeMismatch(file: String, tensor: String, dtype: DType, shape: [Int], byteCount: Int)
    /// Bytes after the last tensor's data (the Rust crate's `MetadataIncompleteBuffer`).
    case trailingBytes(file: String, dataEnd: Int, dataSize: Int)
    /// `view(_:)` asked for a name the file does not have.
    case tensorNotFound(file: String, tensor: String)
    /// The writer was given a tensor it cannot store (reserved or repeated name, negative dimension).
    case invalidTensor(file: String, tensor: String, reason: String)
    /// Writing failed; nothing was left at the destination path.
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open safetensors file: \(reason)"
        case let .fileTooSmall(file, byteCount):
            return "\(file): \(byteCount == 0 ? "file is empty" : "file is only \(byteCount) bytes"); a safetensors file starts with an 8-byte header length"
        case let .headerTooLarge(file, headerLength):
            return "\(file): header length \(headerLength) is over the 100000000-byte limit"
        case let .headerPastEnd(file, headerLength, fileSize):
            return "\(file): header of \(headerLength) bytes runs past the end of the \(fileSize)-byte file"
        case let .malformedHeader(file, offset, reason):
            return "\(file): malformed JSON header at byte \(offset): \(reason)"
        case let .duplicateName(file, tensor):
            return "\(file): tensor '\(tensor)' appears twice in the header"
        case let .invalidMetadata(file, reason):
            return "\(file): invalid __metadata__: \(reason)"
        case let .invalidEntry(file, tensor, reason):
            return "\(file): tensor '\(tensor)': \(reason)"
        case let .unknownDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)': unsupported dtype '\(dtype)' (supported: F32, F16, BF16, I32, I64)"
        case let .offsetsOutOfRange(file, tensor, begin, end, dataSize):
            return "\(file): tensor '\(tensor)': data offsets [\(begin), \(end)] reach past the \(dataSize)-byte data section"
        case let .offsetsNotContiguous(file, tensor, begin, end, expectedBegin):
            let what = end < begin ? "end before their begin" : begin < expectedBegin ? "overlap the previous tensor" : "leave a gap after the previous tensor"
            return "\(file): tensor '\(tensor)': data offsets [\(begin), \(end)] \(what) (expected to begin at \(expectedBegin))"
        case let .sizeMismatch(file, tensor, dtype, shape, byteCount):
            return "\(file): tensor '\(tensor)': shape \(shape) of \(dtype.safetensorsName) does not fill its \(byteCount)-byte range"
        case let .trailingBytes(file, dataEnd, dataSize):
            return "\(file): \(dataSize - dataEnd) bytes after the last tensor (data ends at \(dataEnd) of \(dataSize))"
        case let .tensorNotFound(file, tensor):
            return "\(file): no tensor named '\(tensor)'"
        case let .invalidTensor(file, tensor, reason):
            return "\(file): cannot write tensor '\(tensor)': \(reason)"
        case let .writeFailed(file, reason):
            return "\(file): write failed: \(reason)"
        }
    }
}
