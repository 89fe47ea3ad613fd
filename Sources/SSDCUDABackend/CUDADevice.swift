import CCUDA
import SSDTensor
import Synchronization

/// One GPU: the libraries, the primary context, one stream that every op is enqueued on, the
/// stream-ordered memory pool and the compiled kernel modules.
///
/// All work runs on `stream`, so memory freed with `cuMemFreeAsync` is safe to reuse by the next
/// op on that stream; the pool keeps freed memory (release threshold = ∞), so repeated generations
/// do not go back to the driver.
final class CUDADevice: KernelLauncher, @unchecked Sendable {
    let driver: CCUDADriverAPI
    let lt: CCUDACublasLtAPI
    /// cuDNN, when libcudnn.so.9 was found (convolutions fall back to im2col + cuBLASLt otherwise).
    let cudnn: CCUDACudnnAPI?
    let compiler: NVRTCCompiler
    /// NVRTC's version and its library file's size and time (part of the kernel cache's key, so that a
    /// patch release of the same major.minor also gets its own images).
    let compilerIdentity: String
    let libraryPaths: [String: String]
    let device: CUdevice
    let context: CUcontext
    let stream: CUstream
    let pool: CUmemoryPool
    let ltHandle: cublasLtHandle_t
    let cudnnHandle: cudnnHandle_t?
    let name: String
    /// Compute capability as major·10 + minor (90 on Hopper).
    let computeCapability: Int
    let multiprocessors: Int

    /// cuDNN's measured algorithm search and fused convolution + bias (+ residual), when cuDNN has them.
    let cudnnExtra: CCUDACudnnExtraAPI?
    /// cuDNN's graph (backend) API, when cuDNN has it (`SSD_CUDA_CONV_GRAPH=1`; the attention unless `SSD_CUDA_CUDNN_ATTENTION=0`).
    let cudnnGraph: CCUDACudnnGraphAPI?
    /// The driver's CUDA graph entry points, or nil (then `graphsUnavailableReason` says why).
    let graphs: CCUDAGraphAPI?
    let graphsUnavailableReason: String?

    /// What happens while the stream is being captured into a graph (`beginCapture`…`endCapture`).
    struct CaptureState {
        let id: Int
        /// Buffers made before the capture that captured work used: the graph keeps them alive.
        var retained: [ObjectIdentifier: DeviceBuffer] = [:]
        /// Pre-capture allocations released during the capture: freed when it ends, outside the graph.
        var deferredFrees: [(pointer: CUdeviceptr, bytes: Int)] = []
        /// Bytes allocated inside the capture (graph memory nodes) not yet freed inside it, and their peak.
        var liveBytes = 0
        var peakBytes = 0
        var allocations = 0
    }

    private struct State {
        var current = 0
        var peak = 0
        /// Highest `current` since `measureWorkingBytes` started.
        var regionPeak = 0
        var capture: CaptureState?
        var nextCaptureID = 1
        var modules: [KernelGroup: (CUmodule, [String: String])] = [:]
        var functions: [String: CUfunction] = [:]
        /// Kernel groups compiled by NVRTC, and loaded from the disk cache, by this device.
        var groupsCompiled = 0, groupsFromDisk = 0
        var profile: [String: CUDAProfileEntry] = [:]
        /// Profiled operations whose event pair the GPU has not been asked about yet.
        var pendingTimings: [PendingTiming] = []
        /// Timing events to reuse.
        var spareEvents: [CUevent] = []
    }
    /// One profiled operation: CUDA events recorded on the stream before and after it.
    private struct PendingTiming {
        let name: String
        let flops: Double
        let start: CUevent
        let end: CUevent
    }
    /// When true every kernel, GEMM and convolution is timed on the GPU by a pair of CUDA events
    /// around it (read when the profile is asked for): a per-kernel profile for diagnosis; the
    /// operations still run back to back, as in a normal call, but CUDA graphs are not recorded.
    var profiling: Bool {
        get { profilingFlag.load(ordering: .relaxed) }
        set { profilingFlag.store(newValue, ordering: .relaxed) }
    }
    private let profilingFlag = Atomic<Bool>(false)
    private let state = Locked(State())
    /// NVRTC output per kernel group and architecture, shared by every device of the process.
    private static let compiled = Locked([String: NVRTCCompiler.Output]())
    /// NVRTC output kept between processes (`SSD_CUDA_KERNEL_CACHE`).
    let kernelCache = KernelDiskCache.fromEnvironment()

    /// Opens the libraries and device `ordinal`; throws `backendUnavailable` naming what is missing.
    /// `useCuDNN: false` (or `SSD_CUDA_CONV=im2col`) leaves cuDNN closed.
    init(ordinal: Int = 0, useCuDNN: Bool = true, profiling: Bool = false) throws {
        profilingFlag.store(profiling, ordering: .relaxed)
        let driverLibrary = try CUDALibrary.load(CCUDA_LIBRARY_DRIVER, as: CCUDADriverAPI.self)
        let d = driverLibrary.api
        driver = d
        func require(_ result: CUresult, _ what: String) throws {
            guard result == Int32(CCUDA_SUCCESS) else {
                throw TensorError.backendUnavailable(backend: "cuda", reason: "\(what) failed: \(CUDADevice.describe(d, result))")
            }
        }
        try require(d.cuInit!(0), "cuInit")
        var count: Int32 = 0
        try require(d.cuDeviceGetCount!(&count), "cuDeviceGetCount")
        guard ordinal < Int(count) else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: "no CUDA device \(ordinal) (found \(count))")
        }
        var dev: CUdevice = 0
        try require(d.cuDeviceGet!(&dev, Int32(ordinal)), "cuDeviceGet")
        device = dev
        var nameBuffer = [CChar](repeating: 0, count: 256)
        _ = d.cuDeviceGetName!(&nameBuffer, 256, dev)
        name = string(nameBuffer)
        func attribute(_ a: Int32) -> Int {
            var v: Int32 = 0
            _ = d.cuDeviceGetAttribute!(&v, a, dev)
            return Int(v)
        }
        computeCapability = attribute(Int32(CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)) * 10
            + attribute(Int32(CCUDA_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
        multiprocessors = attribute(Int32(CCUDA_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT))
        guard computeCapability >= 80 else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: "\(name) has compute capability \(computeCapability); 8.0 or newer is needed")
        }
        guard attribute(Int32(CCUDA_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)) != 0 else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: "\(name) does not support stream-ordered memory pools")
        }
        let ltLibrary = try CUDALibrary.load(CCUDA_LIBRARY_CUBLASLT, as: CCUDACublasLtAPI.self)
        lt = ltLibrary.api
        compiler = try NVRTCCompiler()
        var paths = ["driver": driverLibrary.path, "cublasLt": ltLibrary.path, "nvrtc": compiler.nvrtc.path]
        let wantCuDNN = useCuDNN && environment("SSD_CUDA_CONV") != "im2col"
        let cudnnLibrary = !wantCuDNN
            ? nil : try? CUDALibrary.load(CCUDA_LIBRARY_CUDNN, as: CCUDACudnnAPI.self)

        var ctx: CUcontext?
        try require(d.cuDevicePrimaryCtxRetain!(&ctx, dev), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw TensorError.backendUnavailable(backend: "cuda", reason: "no primary context") }
        context = ctx
        try require(d.cuCtxSetCurrent!(ctx), "cuCtxSetCurrent")
        var s: CUstream?
        try require(d.cuStreamCreate!(&s, UInt32(CCUDA_STREAM_NON_BLOCKING)), "cuStreamCreate")
        guard let s else { throw TensorError.backendUnavailable(backend: "cuda", reason: "no stream") }
        stream = s
        var p: CUmemoryPool?
        try require(d.cuDeviceGetDefaultMemPool!(&p, dev), "cuDeviceGetDefaultMemPool")
        guard let p else { throw TensorError.backendUnavailable(backend: "cuda", reason: "no memory pool") }
        pool = p
        var threshold = UInt64.max
        try require(d.cuMemPoolSetAttribute!(p, Int32(CCUDA_MEMPOOL_ATTR_RELEASE_THRESHOLD), &threshold), "cuMemPoolSetAttribute")
        var handle: cublasLtHandle_t?
        guard ltLibrary.api.cublasLtCreate!(&handle) == 0, let handle else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: "cublasLtCreate failed (\(ltLibrary.path))")
        }
        ltHandle = handle
        var dnnHandle: cudnnHandle_t?
        if let cudnnLibrary, cudnnLibrary.api.cudnnCreate!(&dnnHandle) == 0, let h = dnnHandle,
           cudnnLibrary.api.cudnnSetStream!(h, s) == 0 {
            cudnn = cudnnLibrary.api
            cudnnHandle = h
            paths["cudnn"] = cudnnLibrary.path
        } else {
            cudnn = nil
            cudnnHandle = nil
            do {
                if wantCuDNN { _ = try CUDALibrary.load(CCUDA_LIBRARY_CUDNN, as: CCUDACudnnAPI.self) }
                paths["cudnn"] = wantCuDNN ? "(cudnnCreate failed)" : "(not used)"
            } catch {
                paths["cudnn"] = "(\(error))"
            }
        }
        var extraTable = CCUDACudnnExtraAPI()
        var extraMessage = [CChar](repeating: 0, count: 1024)
        cudnnExtra = cudnn != nil && ccuda_load_cudnn_extra_api(&extraTable, &extraMessage, extraMessage.count) == 1 ? extraTable : nil
        if cudnn != nil && cudnnExtra == nil { paths["cudnn-extra"] = "(\(string(extraMessage)))" }
        var graphAPITable = CCUDACudnnGraphAPI()
        cudnnGraph = cudnn != nil && ccuda_load_cudnn_graph_api(&graphAPITable, &extraMessage, extraMessage.count) == 1 ? graphAPITable : nil
        if cudnn != nil && cudnnGraph == nil { paths["cudnn-graph"] = "(\(string(extraMessage)))" }
        libraryPaths = paths
        compilerIdentity = compiler.version + " " + KernelDiskCache.fileIdentity(compiler.nvrtc.path)
        var graphTable = CCUDAGraphAPI()
        var graphMessage = [CChar](repeating: 0, count: 1024)
        if ccuda_load_graph_api(&graphTable, &graphMessage, graphMessage.count) == 1 {
            graphs = graphTable
            graphsUnavailableReason = nil
        } else {
            graphs = nil
            graphsUnavailableReason = string(graphMessage)
        }
    }

    // MARK: Errors

    static func describe(_ d: CCUDADriverAPI, _ result: CUresult) -> String {
        var namePointer: UnsafePointer<CChar>?
        var textPointer: UnsafePointer<CChar>?
        _ = d.cuGetErrorName?(result, &namePointer)
        _ = d.cuGetErrorString?(result, &textPointer)
        return "\(string(namePointer)) (\(result)): \(string(textPointer))"
    }

    /// Throws `deviceFailure` unless `result` is CUDA_SUCCESS.
    func check(_ result: CUresult, _ what: @autoclosure () -> String) throws {
        guard result == Int32(CCUDA_SUCCESS) else {
            throw TensorError.deviceFailure(backend: "cuda", message: "\(what()) failed: \(CUDADevice.describe(driver, result))")
        }
    }

    /// Makes the context current on the calling thread (cheap; every entry point calls it).
    func makeCurrent() throws {
        try check(driver.cuCtxSetCurrent!(context), "cuCtxSetCurrent")
    }

    // MARK: Memory

    /// A new stream-ordered allocation of `bytes` (at least 1) from the pool. While the stream is
    /// being captured it becomes a graph memory node (its bytes count in the capture, not in `current`).
    func allocate(_ bytes: Int) throws -> DeviceBuffer {
        try makeCurrent()
        return try state.withLock { s in
            var pointer: CUdeviceptr = 0
            let result = driver.cuMemAllocAsync!(&pointer, max(bytes, 1), stream)
            guard result == Int32(CCUDA_SUCCESS) else {
                if result == 2 { throw TensorError.outOfMemory(backend: "cuda", bytes: bytes) }  // CUDA_ERROR_OUT_OF_MEMORY
                try check(result, "cuMemAllocAsync(\(bytes))")
                throw TensorError.outOfMemory(backend: "cuda", bytes: bytes)
            }
            if let id = s.capture?.id {
                s.capture!.liveBytes += bytes
                s.capture!.peakBytes = max(s.capture!.peakBytes, s.capture!.liveBytes)
                s.capture!.allocations += 1
                return DeviceBuffer(device: self, pointer: pointer, byteCount: bytes, captureID: id)
            }
            s.current += bytes
            s.peak = max(s.peak, s.current)
            s.regionPeak = max(s.regionPeak, s.current)
            return DeviceBuffer(device: self, pointer: pointer, byteCount: bytes, captureID: 0)
        }
    }

    /// Returns an allocation to the pool (stream-ordered after the work already enqueued).
    /// During a capture: a buffer allocated in it is freed in it (a graph free node); an older one
    /// is freed when the capture ends. A buffer of an abandoned capture was never backed by memory.
    func release(_ pointer: CUdeviceptr, bytes: Int, captureID: Int) {
        _ = driver.cuCtxSetCurrent!(context)
        state.withLock { s in
            if let id = s.capture?.id {
                if captureID == id {
                    _ = driver.cuMemFreeAsync!(pointer, stream)
                    s.capture!.liveBytes -= bytes
                } else if captureID == 0 {
                    s.capture!.deferredFrees.append((pointer, bytes))
                }
                return
            }
            guard captureID == 0 else { return }
            _ = driver.cuMemFreeAsync!(pointer, stream)
            s.current -= bytes
        }
    }

    /// Live bytes plus the memory CUDA graphs hold reserved between launches, and the peak of that sum.
    var memoryStatistics: BackendMemoryStatistics {
        let graphBytes = graphReservedBytes
        return state.withLock {
            BackendMemoryStatistics(currentBytes: $0.current + graphBytes, peakBytes: max($0.peak, $0.current + graphBytes))
        }
    }

    func resetPeak() {
        let graphBytes = graphReservedBytes
        state.withLock { $0.peak = $0.current + graphBytes }
    }

    /// Bytes the driver holds for graph memory nodes (all graphs of the device), 0 without graphs.
    var graphReservedBytes: Int {
        guard let graphs else { return 0 }
        var value: UInt64 = 0
        guard graphs.cuDeviceGetGraphMemAttribute!(device, Int32(CCUDA_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT), &value) == 0 else { return 0 }
        return Int(value)
    }

    /// Counts the graph memory in the peak after a graph launch.
    func notePeakWithGraphMemory() {
        let graphBytes = graphReservedBytes
        state.withLock { $0.peak = max($0.peak, $0.current + graphBytes) }
    }

    /// Runs `body` and returns, with its result, the most memory it held above what was live at its start.
    func measureWorkingBytes<R>(_ body: () throws -> R) rethrows -> (R, Int) {
        let start = state.withLock { s -> Int in
            s.regionPeak = s.current
            return s.current
        }
        let result = try body()
        let peak = state.withLock { $0.regionPeak }
        return (result, max(0, peak - start))
    }

    /// Gives the pool's cached (freed) memory back to the driver; call after `synchronize`.
    func trimPool() {
        _ = driver.cuMemPoolTrimTo!(pool, 0)
    }

    /// Gives graph memory not used by a live graph launch back to the driver (after `synchronize`).
    func trimGraphMemory() {
        _ = graphs?.cuDeviceGraphMemTrim!(device)
    }

    // MARK: Capture

    /// Set while the stream is being captured; read on every tensor access, hence an atomic.
    let capturing = Atomic<Bool>(false)

    var isCapturing: Bool { capturing.load(ordering: .acquiring) }

    /// Starts capturing the stream (`cuStreamBeginCapture`); allocations and frees are tracked from now on.
    func beginCapture(mode: CUDAGraphOptions.CaptureMode) throws {
        guard let graphs else {
            throw TensorError.deviceFailure(backend: "cuda", message: graphsUnavailableReason ?? "CUDA graphs are unavailable")
        }
        try makeCurrent()
        let modeValue: Int32
        switch mode {
        case .global: modeValue = Int32(CCUDA_STREAM_CAPTURE_MODE_GLOBAL)
        case .threadLocal: modeValue = Int32(CCUDA_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        case .relaxed: modeValue = Int32(CCUDA_STREAM_CAPTURE_MODE_RELAXED)
        }
        try state.withLock { s in
            guard s.capture == nil else {
                throw TensorError.deviceFailure(backend: "cuda", message: "a capture is already in progress")
            }
            try check(graphs.cuStreamBeginCapture!(stream, modeValue), "cuStreamBeginCapture(\(mode.rawValue))")
            s.capture = CaptureState(id: s.nextCaptureID)
            s.nextCaptureID += 1
            capturing.store(true, ordering: .releasing)
        }
    }

    /// Ends the capture: the graph (nil when the capture failed), the driver's result and what was
    /// tracked. The stream is out of capture mode afterwards whatever happened.
    func endCapture() -> (graph: CUgraph?, result: CUresult, capture: CaptureState?) {
        _ = driver.cuCtxSetCurrent!(context)
        return state.withLock { s in
            guard let graphs, let capture = s.capture else { return (nil, Int32(CCUDA_SUCCESS), nil) }
            var graph: CUgraph?
            let result = graphs.cuStreamEndCapture!(stream, &graph)
            s.capture = nil
            capturing.store(false, ordering: .releasing)
            for free in capture.deferredFrees {
                _ = driver.cuMemFreeAsync!(free.pointer, stream)
                s.current -= free.bytes
            }
            return (graph, result, capture)
        }
    }

    /// While capturing: keeps `buffer` (made before the capture) alive as long as the graph.
    @inline(__always)
    func noteUse(_ buffer: DeviceBuffer) {
        guard capturing.load(ordering: .relaxed) else { return }
        state.withLock { s in
            guard let id = s.capture?.id, buffer.captureID != id else { return }
            s.capture!.retained[ObjectIdentifier(buffer)] = buffer
        }
    }

    /// Throws when the stream is being captured: host transfers and waits cannot be part of a graph.
    func refuseDuringCapture(_ what: @autoclosure () -> String) throws {
        guard capturing.load(ordering: .relaxed) else { return }
        throw TensorError.deviceFailure(
            backend: "cuda", message: "\(what()) inside a CUDA graph capture (host data must come in through the region's input tensors)")
    }

    /// Bytes the pool holds from the driver (live and cached).
    var poolReservedBytes: Int {
        var value: UInt64 = 0
        _ = driver.cuMemPoolGetAttribute!(pool, Int32(CCUDA_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), &value)
        return Int(value)
    }

    func copyToDevice(_ destination: CUdeviceptr, from source: UnsafeRawPointer, bytes: Int) throws {
        guard bytes > 0 else { return }
        try refuseDuringCapture("a host-to-device copy")
        try makeCurrent()
        try check(driver.cuMemcpyHtoDAsync!(destination, source, bytes, stream), "cuMemcpyHtoDAsync(\(bytes))")
    }

    /// Copies to the host and waits for the stream.
    func copyToHost(_ destination: UnsafeMutableRawPointer, from source: CUdeviceptr, bytes: Int) throws {
        try refuseDuringCapture("a device-to-host copy")
        try makeCurrent()
        if bytes > 0 { try check(driver.cuMemcpyDtoHAsync!(destination, source, bytes, stream), "cuMemcpyDtoHAsync(\(bytes))") }
        try synchronize()
    }

    func copyOnDevice(_ destination: CUdeviceptr, from source: CUdeviceptr, bytes: Int) throws {
        guard bytes > 0 else { return }
        try check(driver.cuMemcpyDtoDAsync!(destination, source, bytes, stream), "cuMemcpyDtoDAsync(\(bytes))")
    }

    func synchronize() throws {
        try refuseDuringCapture("synchronize")
        try makeCurrent()
        try check(driver.cuStreamSynchronize!(stream), "cuStreamSynchronize")
    }

    // MARK: Profile

    /// Runs `body` (which enqueues work); when profiling, records a CUDA event before and after it on
    /// the stream, whose elapsed time (the GPU's, comparable to a kernel profiler's) is added to
    /// `name`'s entry, with `flops` (2 per multiply-add), when the profile is read.
    func timed<R>(_ name: @autoclosure () -> String, flops: @autoclosure () -> Double = 0, _ body: () throws -> R) throws -> R {
        guard profiling else { return try body() }
        let start = try timingEvent(), end = try timingEvent()
        var recorded = false
        defer { if !recorded { state.withLock { $0.spareEvents += [start, end] } } }
        try check(driver.cuEventRecord!(start, stream), "cuEventRecord")
        let result = try body()
        try check(driver.cuEventRecord!(end, stream), "cuEventRecord")
        let timing = PendingTiming(name: name(), flops: flops(), start: start, end: end)
        let pending = state.withLock { s -> Int in
            s.pendingTimings.append(timing)
            return s.pendingTimings.count
        }
        recorded = true
        // Profiling a long run (SSD_CUDA_PROFILE=1 on a whole generation): fold the timings in now and then.
        if pending >= CUDADevice.pendingTimingLimit { try resolveTimings() }
        return result
    }

    /// Event pairs waiting before `timed` folds them into the profile (waiting for the stream once).
    static let pendingTimingLimit = 4096

    /// A spare timing event, or a new one.
    private func timingEvent() throws -> CUevent {
        if let spare = state.withLock({ $0.spareEvents.popLast() }) { return spare }
        var event: CUevent?
        try check(driver.cuEventCreate!(&event, 0), "cuEventCreate")
        guard let event else { throw TensorError.deviceFailure(backend: "cuda", message: "cuEventCreate gave no event") }
        return event
    }

    /// Waits for the stream and adds the GPU times of the operations profiled so far to the profile.
    private func resolveTimings() throws {
        let pending = state.withLock { s -> [PendingTiming] in
            defer { s.pendingTimings = [] }
            return s.pendingTimings
        }
        guard !pending.isEmpty else { return }
        defer { state.withLock { s in s.spareEvents += pending.flatMap { [$0.start, $0.end] } } }
        try synchronize()
        var times: [(PendingTiming, Double)] = []
        for timing in pending {
            var milliseconds: Float = 0
            try check(driver.cuEventElapsedTime!(&milliseconds, timing.start, timing.end), "cuEventElapsedTime")
            times.append((timing, Double(milliseconds) * 1e-3))
        }
        state.withLock { s in
            for (timing, seconds) in times {
                var entry = s.profile[timing.name]
                    ?? CUDAProfileEntry(name: timing.name, category: CUDAProfileCategory(entryName: timing.name), seconds: 0, calls: 0, flops: 0)
                entry.seconds += seconds
                entry.calls += 1
                entry.flops += timing.flops
                s.profile[timing.name] = entry
            }
        }
    }

    /// Seconds per call of `body` (which enqueues work) on the GPU, by events around `repeats` calls
    /// after one untimed call. Not during a capture.
    func measure(repeats: Int, _ body: () throws -> Void) throws -> Double {
        try refuseDuringCapture("measure")
        var start: CUevent?, end: CUevent?
        try check(driver.cuEventCreate!(&start, 0), "cuEventCreate")
        defer { if let start { _ = driver.cuEventDestroy!(start) } }
        try check(driver.cuEventCreate!(&end, 0), "cuEventCreate")
        defer { if let end { _ = driver.cuEventDestroy!(end) } }
        try body()
        try check(driver.cuEventRecord!(start, stream), "cuEventRecord")
        for _ in 0..<max(repeats, 1) { try body() }
        try check(driver.cuEventRecord!(end, stream), "cuEventRecord")
        try check(driver.cuEventSynchronize!(end), "cuEventSynchronize")
        var milliseconds: Float = 0
        try check(driver.cuEventElapsedTime!(&milliseconds, start, end), "cuEventElapsedTime")
        return Double(milliseconds) * 1e-3 / Double(max(repeats, 1))
    }

    /// The profile so far, largest total time first.
    var profile: [CUDAProfileEntry] {
        get throws {
            try resolveTimings()
            return state.withLock { Array($0.profile.values) }.sorted { $0.seconds > $1.seconds }
        }
    }

    /// Forgets the profile (operations still in flight are waited for and dropped).
    func resetProfile() throws {
        try resolveTimings()
        state.withLock { $0.profile = [:] }
    }

    // MARK: Kernels

    /// The kernel for NVRTC name expression `name` of `group` (compiles the group on first use).
    func function(_ group: KernelGroup, _ name: String) throws -> CUfunction {
        let key = group.rawValue + "/" + name
        if let f = state.withLock({ $0.functions[key] }) { return f }
        try makeCurrent()
        var module: CUmodule
        var lowered: [String: String]
        if let existing = state.withLock({ $0.modules[group] }) {
            (module, lowered) = existing
        } else {
            let cacheKey = "\(group.rawValue)/sm_\(computeCapability)"
            var output: NVRTCCompiler.Output
            var fromDisk = false, compiledHere = false
            let file = KernelDiskCache.fileName(
                group: group.rawValue, computeCapability: computeCapability, source: group.source,
                nameExpressions: group.nameExpressions, options: NVRTCCompiler.options(computeCapability: computeCapability),
                compilerVersion: compilerIdentity)
            if let cached = CUDADevice.compiled.withLock({ $0[cacheKey] }) {
                output = cached
            } else if let stored = kernelCache.load(file), group.nameExpressions.allSatisfy({ stored.loweredNames[$0] != nil }) {
                output = stored
                fromDisk = true
            } else {
                output = try compile(group)
                compiledHere = true
            }
            var loaded = try loadModule(output, group, refusalIsError: !fromDisk)
            if loaded == nil {
                // The driver refused the stored image (another driver, a damaged file): compile again.
                fromDisk = false
                output = try compile(group)
                compiledHere = true
                loaded = try loadModule(output, group, refusalIsError: true)
            }
            guard let m = loaded else {
                throw TensorError.deviceFailure(backend: "cuda", message: "cuModuleLoadData(\(group.rawValue)) returned no module")
            }
            // Kept on disk only once the driver has taken it.
            if compiledHere { kernelCache.store(output, as: file) }
            CUDADevice.compiled.withLock { $0[cacheKey] = output }
            module = m
            lowered = output.loweredNames
            state.withLock {
                $0.modules[group] = (m, output.loweredNames)
                if fromDisk { $0.groupsFromDisk += 1 }
            }
        }
        guard let symbol = lowered[name] else {
            throw TensorError.deviceFailure(backend: "cuda", message: "kernel \(name) is not in group \(group.rawValue)")
        }
        var f: CUfunction?
        try check(driver.cuModuleGetFunction!(&f, module, symbol), "cuModuleGetFunction(\(name))")
        guard let f else { throw TensorError.deviceFailure(backend: "cuda", message: "no function \(name)") }
        state.withLock { $0.functions[key] = f }
        return f
    }

    /// Compiles `group` with NVRTC (counted for `kernelCacheReport`).
    private func compile(_ group: KernelGroup) throws -> NVRTCCompiler.Output {
        let output = try compiler.compile(
            source: group.source, name: "\(group.rawValue).cu", computeCapability: computeCapability,
            nameExpressions: group.nameExpressions)
        state.withLock { $0.groupsCompiled += 1 }
        return output
    }

    /// Loads `output`'s image as a module; when the driver refuses it, throws (`refusalIsError`) or
    /// returns nil (an image from the disk cache: the caller compiles again).
    private func loadModule(_ output: NVRTCCompiler.Output, _ group: KernelGroup, refusalIsError: Bool) throws -> CUmodule? {
        var m: CUmodule?
        var image = output.image
        if !output.isCUBIN && image.last != 0 { image.append(0) }
        let result = image.withUnsafeBytes { driver.cuModuleLoadData!(&m, $0.baseAddress!) }
        if result != 0 && refusalIsError { try check(result, "cuModuleLoadData(\(group.rawValue))") }
        return result == 0 ? m : nil
    }

    /// Kernel groups NVRTC compiled for this device, groups loaded from the disk cache, and the cache's folder.
    var kernelCacheReport: String {
        let (compiled, fromDisk) = state.withLock { ($0.groupsCompiled, $0.groupsFromDisk) }
        return "kernels: \(compiled) groups compiled by NVRTC, \(fromDisk) loaded from the kernel cache "
            + (kernelCache.directory.map { "(\($0))" } ?? "(off)")
    }

    /// Launches `group`'s kernel `name` with `arguments` on the stream.
    /// `flops` (2 per multiply-add) is for the profile.
    func launch(_ group: KernelGroup, _ name: String, grid: (Int, Int, Int), block: Int, sharedBytes: Int,
                flops: Double, _ arguments: [KernelArgument]) throws {
        let f = try function(group, name)
        guard grid.0 > 0, grid.1 > 0, grid.2 > 0 else { return }
        try makeCurrent()
        try timed(name, flops: flops) {
            try KernelArgument.withParameterPointers(arguments) { params in
                try check(
                    driver.cuLaunchKernel!(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), 1, 1,
                                           UInt32(sharedBytes), stream, params, nil), "cuLaunchKernel(\(name))")
            }
        }
    }
}

/// One kernel parameter, laid out as the C kernel expects it.
enum KernelArgument {
    case pointer(CUdeviceptr)
    case int32(Int32)
    case int64(Int64)
    case float(Float)
    /// A `Dims6` struct: up to six Int64 values, zero-padded.
    case dims([Int])

    static func int(_ value: Int) -> KernelArgument { .int64(Int64(value)) }
    static func i32(_ value: Int) -> KernelArgument { .int32(Int32(truncatingIfNeeded: value)) }

    private var size: Int {
        switch self {
        case .pointer, .int64: return 8
        case .int32, .float: return 4
        case .dims: return 48
        }
    }

    /// Calls `body` with the `void**` parameter array cuLaunchKernel takes.
    static func withParameterPointers<R>(_ arguments: [KernelArgument],
                                         _ body: (UnsafeMutablePointer<UnsafeMutableRawPointer?>) throws -> R) rethrows -> R {
        let total = arguments.reduce(0) { $0 + ($1.size + 7) / 8 * 8 }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(total, 8), alignment: 16)
        defer { storage.deallocate() }
        let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(arguments.count, 1))
        defer { pointers.deallocate() }
        var offset = 0
        for (i, argument) in arguments.enumerated() {
            let slot = storage + offset
            switch argument {
            case let .pointer(p): slot.storeBytes(of: p, as: UInt64.self)
            case let .int32(v): slot.storeBytes(of: v, as: Int32.self)
            case let .int64(v): slot.storeBytes(of: v, as: Int64.self)
            case let .float(v): slot.storeBytes(of: v, as: Float.self)
            case let .dims(values):
                for k in 0..<6 { (slot + 8 * k).storeBytes(of: Int64(k < values.count ? values[k] : 0), as: Int64.self) }
            }
            pointers[i] = slot
            offset += (argument.size + 7) / 8 * 8
        }
        return try body(pointers)
    }
}

/// Device memory behind a tensor; returns to the pool when the last tensor using it goes away.
final class DeviceBuffer: TensorStorage, @unchecked Sendable {
    /// How a prepared weight is laid out on the device.
    enum Layout: Sendable { case plain, convOHWI }

    let device: CUDADevice
    let pointer: CUdeviceptr
    let byteCount: Int
    /// Non-zero: allocated inside that graph capture (a graph memory node).
    let captureID: Int
    var layout: Layout = .plain

    init(device: CUDADevice, pointer: CUdeviceptr, byteCount: Int, captureID: Int) {
        self.device = device
        self.pointer = pointer
        self.byteCount = byteCount
        self.captureID = captureID
    }

    deinit { device.release(pointer, bytes: byteCount, captureID: captureID) }
}
