/// Storage behind a tensor. Each backend has its own concrete class (host memory, a device
/// allocation, a pre-packed weight); a backend refuses storage it did not create.
/// Releasing the last reference returns the memory to the owning backend (pools reuse it).
public protocol TensorStorage: AnyObject, Sendable {
    /// Size of the allocation in bytes.
    var byteCount: Int { get }
}

/// An n-dimensional array: a shape, an element type and backend-owned storage.
///
/// Tensors are values: ops return new tensors and never mutate their inputs. Elements are
/// contiguous, row-major, with no offset, except prepared weights whose storage layout is
/// private to the backend (their `shape` is still the logical PyTorch shape).
/// Image activations are NHWC (`[batch, height, width, channels]`) everywhere.
public struct Tensor: Sendable {
    /// Logical shape, outermost first.
    public let shape: [Int]
    /// Element type of the storage.
    public let dtype: DType
    /// The backend-owned memory.
    public let storage: any TensorStorage

    /// Wraps storage; `storage` must hold at least `shape.product × dtype.byteSize` bytes
    /// (prepared weights may hold a different, backend-specific layout).
    public init(shape: [Int], dtype: DType, storage: any TensorStorage) {
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// The same storage seen with another shape of the same element count (no copy).
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var shape = newShape
        if let inferred = shape.firstIndex(of: -1) {
            let known = shape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            guard known > 0, count % known == 0 else {
                throw TensorError.shapeMismatch(op: "reshape", expected: newShape, actual: self.shape)
            }
            shape[inferred] = count / known
        }
        guard shape.reduce(1, *) == count, shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.shapeMismatch(op: "reshape", expected: newShape, actual: self.shape)
        }
        return Tensor(shape: shape, dtype: dtype, storage: storage)
    }
}

/// Errors raised by tensors and compute backends.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An op got a shape it cannot use.
    case shapeMismatch(op: String, expected: [Int], actual: [Int])
    /// An op got an element type it does not support.
    case unsupportedDType(op: String, dtype: DType)
    /// A tensor created by another backend was passed in.
    case foreignTensor(op: String, backend: String)
    /// A bad argument (axis, stride, group count…).
    case invalidArgument(op: String, message: String)
    /// The backend cannot run on this machine (missing library or device); the message says what is missing.
    case backendUnavailable(backend: String, reason: String)
    /// A device or library call failed.
    case deviceFailure(backend: String, message: String)
    /// Memory could not be allocated.
    case outOfMemory(backend: String, bytes: Int)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, expected, actual):
            return "\(op): shape \(actual) does not fit the expected \(expected)"
        case let .unsupportedDType(op, dtype):
            return "\(op): element type \(dtype.rawValue) is not supported"
        case let .foreignTensor(op, backend):
            return "\(op): tensor does not belong to backend \(backend)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .backendUnavailable(backend, reason):
            return "backend \(backend) is unavailable: \(reason)"
        case let .deviceFailure(backend, message):
            return "backend \(backend) failed: \(message)"
        case let .outOfMemory(backend, bytes):
            return "backend \(backend) could not allocate \(bytes) bytes"
        }
    }
}
