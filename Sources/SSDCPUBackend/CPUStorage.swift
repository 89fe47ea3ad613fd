import SSDTensor
import Synchronization

/// Bytes held by one `CPUBackend`, updated as buffers come and go.
final class MemoryCounter: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    func allocated(_ bytes: Int) {
        let now = current.wrappingAdd(bytes, ordering: .relaxed).newValue
        _ = peak.max(now, ordering: .relaxed)
    }

    func freed(_ bytes: Int) { _ = current.wrappingSubtract(bytes, ordering: .relaxed) }

    var statistics: BackendMemoryStatistics {
        BackendMemoryStatistics(currentBytes: current.load(ordering: .relaxed), peakBytes: peak.load(ordering: .relaxed))
    }

    func resetPeak() { peak.store(current.load(ordering: .relaxed), ordering: .relaxed) }
}

/// Host memory owned by a `CPUBackend` (64-byte aligned), counted in its memory statistics.
final class CPUBuffer: TensorStorage, @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    let counter: MemoryCounter

    init(byteCount: Int, counter: MemoryCounter) {
        self.byteCount = byteCount
        self.counter = counter
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
        counter.allocated(byteCount)
    }

    deinit {
        pointer.deallocate()
        counter.freed(byteCount)
    }

    var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
}

extension Tensor {
    /// The host buffer behind an activation tensor of this backend.
    func cpuBuffer(_ op: String) throws -> CPUBuffer {
        guard let buffer = storage as? CPUBuffer else {
            throw TensorError.foreignTensor(op: op, backend: "cpu")
        }
        return buffer
    }

    /// Read-only Float elements of an f32 activation.
    func cpuFloats(_ op: String) throws -> UnsafePointer<Float> {
        guard dtype == .f32 else { throw TensorError.unsupportedDType(op: op, dtype: dtype) }
        return UnsafePointer(try cpuBuffer(op).floats)
    }
}

/// A raw pointer that may cross into the worker threads (the caller keeps the memory alive).
struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ p: UnsafeMutablePointer<T>) { pointer = p }
    init(_ p: UnsafePointer<T>) { pointer = UnsafeMutablePointer(mutating: p) }
}
