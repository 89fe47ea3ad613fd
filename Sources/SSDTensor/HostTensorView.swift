#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// Read-only host memory seen as a tensor: a safetensors entry mapped from disk, or an array
/// the caller keeps alive through `owner`. This is what backends upload or prepare weights from.
public struct HostTensorView: @unchecked Sendable {
    /// Name for error messages (the safetensors key, or a description).
    public let name: String
    /// Logical shape.
    public let shape: [Int]
    /// Element type of the bytes at `pointer`.
    public let dtype: DType
    /// First byte; valid for `count × dtype.byteSize` bytes while `owner` lives.
    public let pointer: UnsafeRawPointer
    /// Keeps the memory alive (a memory map, a buffer).
    public let owner: AnyObject?

    /// Wraps memory kept alive by `owner`.
    public init(name: String, shape: [Int], dtype: DType, pointer: UnsafeRawPointer, owner: AnyObject?) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.pointer = pointer
        self.owner = owner
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Size in bytes.
    public var byteCount: Int { count * dtype.byteSize }

    /// Element `i` converted to Float (integers are converted by value).
    @inline(__always)
    public func float(at i: Int) -> Float {
        switch dtype {
        case .f32: return pointer.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        case .f16: return HalfConversion.floatFromF16(pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .bf16: return HalfConversion.floatFromBF16(pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .i32: return Float(pointer.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .i64: return Float(pointer.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        }
    }

    /// All elements converted to Float.
    public func floats() -> [Float] {
        let n = count
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            convertToFloat(into: buf.baseAddress!)
            initialized = n
        }
    }

    /// Converts every element to Float into `destination` (room for `count` floats).
    public func convertToFloat(into destination: UnsafeMutablePointer<Float>) {
        let n = count
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: pointer, byteCount: n * 4)
        case .f16:
            for i in 0..<n { destination[i] = HalfConversion.floatFromF16(pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
        case .bf16:
            for i in 0..<n { destination[i] = HalfConversion.floatFromBF16(pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
        case .i32, .i64:
            for i in 0..<n { destination[i] = float(at: i) }
        }
    }
}

/// An owned host buffer that can back a `HostTensorView` (arrays the caller builds).
public final class HostBuffer: TensorStorage, @unchecked Sendable {
    /// Start of the allocation (64-byte aligned).
    public let pointer: UnsafeMutableRawPointer
    /// Size of the allocation in bytes.
    public let byteCount: Int

    /// Whether `pointer` is an anonymous page mapping (unmapped on release) rather than a heap block.
    private let isPageMapped: Bool

    /// Allocates `byteCount` uninitialised bytes, 64-byte aligned. Buffers of 1 MiB or more are page
    /// mappings, returned to the system when released: large short-lived buffers from the heap raise
    /// glibc's mmap threshold and stay in the process's resident set after they are freed (a loader
    /// making one per weight grew the peak RSS by gigabytes).
    public init(byteCount: Int) {
        self.byteCount = byteCount
        if byteCount >= 1 << 20,
           let p = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
           p != UnsafeMutableRawPointer(bitPattern: -1) {
            pointer = p
            isPageMapped = true
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            isPageMapped = false
        }
    }

    /// Copies `values` into a new buffer.
    public convenience init(floats values: [Float]) {
        self.init(byteCount: values.count * 4)
        values.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    deinit {
        if isPageMapped { munmap(pointer, byteCount) } else { pointer.deallocate() }
    }

    /// Views the buffer as a tensor of `shape` and `dtype`. The shape must fit in the buffer (checked:
    /// a view past the end is a programming error, like an array index out of range).
    public func view(name: String, shape: [Int], dtype: DType) -> HostTensorView {
        var bytes = dtype.byteSize, overflow = false
        for d in shape where !overflow {
            (bytes, overflow) = bytes.multipliedReportingOverflow(by: max(d, 0))
        }
        precondition(shape.allSatisfy { $0 >= 0 } && !overflow && bytes <= byteCount,
                     "HostBuffer.view(\(name)): shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes, the buffer has \(byteCount)")
        return HostTensorView(name: name, shape: shape, dtype: dtype, pointer: UnsafeRawPointer(pointer), owner: self)
    }

    /// A host view of Float values (a convenience for tests and small inputs); `values.count` must
    /// be the shape's element count (checked).
    public static func view(of values: [Float], shape: [Int], name: String = "array") -> HostTensorView {
        precondition(shape.reduce(1, *) == values.count, "HostBuffer.view(of:): \(values.count) values for shape \(shape)")
        return HostBuffer(floats: values).view(name: name, shape: shape, dtype: .f32)
    }
}
