import SSDTensor
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes held by one `CPUBackend`, updated as buffers come and go, and a pool of freed large
/// buffers by size (the same shapes recur every UNet call; reuse avoids page faults).
final class MemoryCounter: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    private struct Pool {
        var free: [Int: [UInt]] = [:]
        var bytes = 0
    }
    private let pool = Mutex(Pool())
    /// Largest total of pooled free bytes, and the smallest buffer worth pooling.
    let poolLimit: Int
    static let poolMinimum = 1 << 18
    /// Allocations at least this large evict other pooled sizes on a miss.
    static let evictingMinimum = 1 << 28

    init(poolLimit: Int = 1 << 29) { self.poolLimit = poolLimit }

    /// A 64-byte-aligned allocation of `byteCount` (rounded to 4 KiB when pooled).
    func obtain(_ byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount >= Self.poolMinimum {
            let size = Self.pooledSize(byteCount)
            let reused: UInt? = pool.withLock { p in
                guard var list = p.free[size], let a = list.popLast() else { return nil }
                p.free[size] = list.isEmpty ? nil : list
                p.bytes -= size
                return a
            }
            if let reused, let ptr = UnsafeMutableRawPointer(bitPattern: reused) { return ptr }
            // A large size the pool does not hold: give back pooled buffers of other sizes first
            // (largest first, at least `size` bytes), so that RSS stays near the live bytes when large
            // shapes change (the VAE decoder's levels). Smaller misses keep the pool: evicting there
            // made UNet steps re-fault their buffers (twice the page faults).
            guard size >= Self.evictingMinimum else { return Self.mapPages(size) }
            let evicted = pool.withLock { p -> [(UInt, Int)] in
                var out: [(UInt, Int)] = [], total = 0
                for key in p.free.keys.sorted(by: >) where total < size {
                    while total < size, var list = p.free[key], let a = list.popLast() {
                        p.free[key] = list.isEmpty ? nil : list
                        p.bytes -= key
                        total += key
                        out.append((a, key))
                    }
                }
                return out
            }
            for (a, bytes) in evicted {
                if let pointer = UnsafeMutableRawPointer(bitPattern: a) { Self.unmapPages(pointer, bytes) }
            }
            return Self.mapPages(size)
        }
        return UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
    }

    /// Returns an allocation from `obtain` (kept for reuse while the pool has room).
    func release(_ pointer: UnsafeMutableRawPointer, _ byteCount: Int) {
        if byteCount >= Self.poolMinimum {
            let size = Self.pooledSize(byteCount)
            let kept = pool.withLock { p -> Bool in
                guard p.bytes + size <= poolLimit else { return false }
                p.free[size, default: []].append(UInt(bitPattern: pointer))
                p.bytes += size
                return true
            }
            if kept { return }
            Self.unmapPages(pointer, Self.pooledSize(byteCount))
            return
        }
        pointer.deallocate()
    }

    /// Large buffers are anonymous page mappings rather than malloc blocks: freeing them returns the
    /// memory to the system at once (glibc keeps freed heap blocks, and raises its mmap threshold
    /// after the first large free, so RSS would stay at its high-water mark).
    private static func mapPages(_ size: Int) -> UnsafeMutableRawPointer {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let p, p != MAP_FAILED { return p }
        // No mapping available: fall back to the heap and remember the block.
        let block = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        heapFallbacks.withLock { _ = $0.insert(UInt(bitPattern: block)) }
        return block
    }

    private static func unmapPages(_ pointer: UnsafeMutableRawPointer, _ size: Int) {
        let wasHeap = heapFallbacks.withLock { $0.remove(UInt(bitPattern: pointer)) != nil }
        if wasHeap { pointer.deallocate() } else { munmap(pointer, size) }
    }

    private static let heapFallbacks = Mutex(Set<UInt>())

    /// Frees every pooled buffer.
    func drainPool() {
        let all = pool.withLock { p -> [(UInt, Int)] in
            let a = p.free.flatMap { size, list in list.map { ($0, size) } }
            p = Pool()
            return a
        }
        for (a, size) in all {
            if let pointer = UnsafeMutableRawPointer(bitPattern: a) { Self.unmapPages(pointer, size) }
        }
    }

    /// Bytes held in the pool of free buffers.
    var pooledBytes: Int { pool.withLock { $0.bytes } }

    private static func pooledSize(_ n: Int) -> Int { (n + 4095) / 4096 * 4096 }

    deinit { drainPool() }

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
        pointer = counter.obtain(byteCount)
        counter.allocated(byteCount)
    }

    deinit {
        counter.release(pointer, byteCount)
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
