import CCUDA
import SSDTensor

/// One GPU: the libraries, the primary context, one stream that every op is enqueued on, the
/// stream-ordered memory pool and the compiled kernel modules.
///
/// All work runs on `stream`, so memory freed with `cuMemFreeAsync` is safe to reuse by the next
/// op on that stream; the pool keeps freed memory (release threshold = ∞), so repeated generations
/// do not go back to the driver.
final class CUDADevice: @unchecked Sendable {
    let driver: CCUDADriverAPI
    let lt: CCUDACublasLtAPI
    /// cuDNN, when libcudnn.so.9 was found (convolutions fall back to im2col + cuBLASLt otherwise).
    let cudnn: CCUDACudnnAPI?
    let compiler: NVRTCCompiler
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

    private struct State {
        var current = 0
        var peak = 0
        var modules: [KernelGroup: (CUmodule, [String: String])] = [:]
        var functions: [String: CUfunction] = [:]
    }
    private let state = Locked(State())
    /// NVRTC output per kernel group and architecture, shared by every device of the process.
    private static let compiled = Locked([String: NVRTCCompiler.Output]())

    /// Opens the libraries and device `ordinal`; throws `backendUnavailable` naming what is missing.
    /// `useCuDNN: false` (or `SSD_CUDA_CONV=im2col`) leaves cuDNN closed.
    init(ordinal: Int = 0, useCuDNN: Bool = true) throws {
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
        libraryPaths = paths
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

    /// A new stream-ordered allocation of `bytes` (at least 1) from the pool.
    func allocate(_ bytes: Int) throws -> DeviceBuffer {
        try makeCurrent()
        var pointer: CUdeviceptr = 0
        let result = driver.cuMemAllocAsync!(&pointer, max(bytes, 1), stream)
        guard result == Int32(CCUDA_SUCCESS) else {
            if result == 2 { throw TensorError.outOfMemory(backend: "cuda", bytes: bytes) }  // CUDA_ERROR_OUT_OF_MEMORY
            try check(result, "cuMemAllocAsync(\(bytes))")
            throw TensorError.outOfMemory(backend: "cuda", bytes: bytes)
        }
        state.withLock {
            $0.current += bytes
            $0.peak = max($0.peak, $0.current)
        }
        return DeviceBuffer(device: self, pointer: pointer, byteCount: bytes)
    }

    /// Returns an allocation to the pool (stream-ordered after the work already enqueued).
    func release(_ pointer: CUdeviceptr, bytes: Int) {
        _ = driver.cuCtxSetCurrent!(context)
        _ = driver.cuMemFreeAsync!(pointer, stream)
        state.withLock { $0.current -= bytes }
    }

    var memoryStatistics: BackendMemoryStatistics {
        state.withLock { BackendMemoryStatistics(currentBytes: $0.current, peakBytes: $0.peak) }
    }

    func resetPeak() { state.withLock { $0.peak = $0.current } }

    /// Bytes the pool holds from the driver (live and cached).
    var poolReservedBytes: Int {
        var value: UInt64 = 0
        _ = driver.cuMemPoolGetAttribute!(pool, Int32(CCUDA_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), &value)
        return Int(value)
    }

    func copyToDevice(_ destination: CUdeviceptr, from source: UnsafeRawPointer, bytes: Int) throws {
        guard bytes > 0 else { return }
        try makeCurrent()
        try check(driver.cuMemcpyHtoDAsync!(destination, source, bytes, stream), "cuMemcpyHtoDAsync(\(bytes))")
    }

    /// Copies to the host and waits for the stream.
    func copyToHost(_ destination: UnsafeMutableRawPointer, from source: CUdeviceptr, bytes: Int) throws {
        try makeCurrent()
        if bytes > 0 { try check(driver.cuMemcpyDtoHAsync!(destination, source, bytes, stream), "cuMemcpyDtoHAsync(\(bytes))") }
        try synchronize()
    }

    func copyOnDevice(_ destination: CUdeviceptr, from source: CUdeviceptr, bytes: Int) throws {
        guard bytes > 0 else { return }
        try check(driver.cuMemcpyDtoDAsync!(destination, source, bytes, stream), "cuMemcpyDtoDAsync(\(bytes))")
    }

    func synchronize() throws {
        try makeCurrent()
        try check(driver.cuStreamSynchronize!(stream), "cuStreamSynchronize")
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
            let output: NVRTCCompiler.Output
            if let cached = CUDADevice.compiled.withLock({ $0[cacheKey] }) {
                output = cached
            } else {
                output = try compiler.compile(
                    source: group.source, name: "\(group.rawValue).cu", computeCapability: computeCapability,
                    nameExpressions: group.nameExpressions)
                CUDADevice.compiled.withLock { $0[cacheKey] = output }
            }
            var m: CUmodule?
            var image = output.image
            if !output.isCUBIN && image.last != 0 { image.append(0) }
            try check(image.withUnsafeBytes { driver.cuModuleLoadData!(&m, $0.baseAddress!) }, "cuModuleLoadData(\(group.rawValue))")
            guard let m else { throw TensorError.deviceFailure(backend: "cuda", message: "cuModuleLoadData returned no module") }
            module = m
            lowered = output.loweredNames
            state.withLock { $0.modules[group] = (m, output.loweredNames) }
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

    /// Launches `group`'s kernel `name` with `arguments` on the stream.
    func launch(_ group: KernelGroup, _ name: String, grid: (Int, Int, Int), block: Int, sharedBytes: Int = 0,
                _ arguments: [KernelArgument]) throws {
        let f = try function(group, name)
        guard grid.0 > 0, grid.1 > 0, grid.2 > 0 else { return }
        try makeCurrent()
        try KernelArgument.withParameterPointers(arguments) { params in
            try check(
                driver.cuLaunchKernel!(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), 1, 1,
                                       UInt32(sharedBytes), stream, params, nil), "cuLaunchKernel(\(name))")
        }
    }

    /// Launches a grid-stride elementwise kernel over `count` items.
    func launchElementwise(_ group: KernelGroup, _ name: String, count: Int, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        let block = 256
        let blocks = min((count + block - 1) / block, multiprocessors * 32)
        try launch(group, name, grid: (blocks, 1, 1), block: block, arguments)
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
    var layout: Layout = .plain

    init(device: CUDADevice, pointer: CUdeviceptr, byteCount: Int) {
        self.device = device
        self.pointer = pointer
        self.byteCount = byteCount
    }

    deinit { device.release(pointer, bytes: byteCount) }
}
