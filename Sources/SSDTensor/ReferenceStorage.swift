import Synchronization

/// How a `ReferenceStorage` lays out its elements.
enum ReferenceLayout: Sendable, Equatable {
    /// Contiguous row-major in the tensor's logical shape (every activation).
    case rowMajor
    /// A prepared `nn.Linear` weight of logical shape `[out, in]`, stored transposed as `[in, out]`
    /// so the matmul inner loop runs over contiguous output features.
    case linearInOut(outFeatures: Int, inFeatures: Int)
    /// A prepared `nn.Conv2d` weight of logical shape `[Cout, Cin, kh, kw]`, stored as
    /// `[kh, kw, Cin, Cout]` (the im2col order of an NHWC input, output channels contiguous).
    case convHWIO(outChannels: Int, inChannels: Int, kernelHeight: Int, kernelWidth: Int)
}

/// Current and peak bytes of live `ReferenceStorage` allocations, shared by a backend and its storages.
final class ReferenceMemoryCounter: Sendable {
    private struct Counts { var current = 0; var peak = 0 }
    private let counts = Mutex(Counts())

    func allocated(_ bytes: Int) {
        counts.withLock { c in
            c.current += bytes
            c.peak = max(c.peak, c.current)
        }
    }

    func freed(_ bytes: Int) {
        counts.withLock { $0.current -= bytes }
    }

    func statistics() -> BackendMemoryStatistics {
        counts.withLock { BackendMemoryStatistics(currentBytes: $0.current, peakBytes: $0.peak) }
    }

    func resetPeak() {
        counts.withLock { $0.peak = $0.current }
    }
}

/// Host memory owned by a `ReferenceBackend`: 64-byte aligned, freed (and uncounted) when the last
/// tensor referring to it goes away.
public final class ReferenceStorage: TensorStorage, @unchecked Sendable {
    /// Start of the allocation.
    let pointer: UnsafeMutableRawPointer
    /// Size of the allocation in bytes.
    public let byteCount: Int
    let layout: ReferenceLayout
    private let counter: ReferenceMemoryCounter

    init(byteCount: Int, layout: ReferenceLayout = .rowMajor, counter: ReferenceMemoryCounter) {
        self.byteCount = byteCount
        self.layout = layout
        self.counter = counter
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        counter.allocated(byteCount)
    }

    deinit {
        pointer.deallocate()
        counter.freed(byteCount)
    }

    /// The elements as Float (only meaningful for f32 storage).
    var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
}
