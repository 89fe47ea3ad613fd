import Dispatch

/// Host-side threading used by the CPU backends.
public enum Parallel {
    /// Number of worker threads (the online cores).
    public static let threadCount: Int = max(1, activeProcessorCount())

    /// Runs `body(i)` for every `i` in `0..<count`, spread over the cores; returns when all are done.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendableClosure(body)
            DispatchQueue.concurrentPerform(iterations: count) { box.closure($0) }
        }
    }

    /// Splits `0..<count` into about `threadCount × 4` contiguous chunks and runs `body` on each.
    public static func forEachChunk(_ count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let chunks = max(1, min(threadCount * 4, count / max(1, minimumChunk)))
        let size = (count + chunks - 1) / chunks
        let n = (count + size - 1) / size
        forEach(n) { c in body((c * size)..<min(count, (c + 1) * size)) }
    }
}

private struct UnsafeSendableClosure: @unchecked Sendable {
    let closure: (Int) -> Void
    init(_ c: @escaping (Int) -> Void) { closure = c }
}

#if canImport(Glibc)
import Glibc
private func activeProcessorCount() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
#elseif canImport(Darwin)
import Darwin
private func activeProcessorCount() -> Int { Int(sysconf(_SC_NPROCESSORS_ONLN)) }
#else
private func activeProcessorCount() -> Int { 1 }
#endif
