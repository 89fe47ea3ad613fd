#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CCUDA
import SSDTensor

/// Compiles CUDA C source to a CUBIN (or PTX) for one GPU architecture with NVRTC.
struct NVRTCCompiler: Sendable {
    /// The compiled image and the mangled name of every requested name expression.
    struct Output: Sendable {
        /// CUBIN bytes when `architecture` is a real GPU (`sm_XY`), else NUL-terminated PTX.
        let image: [UInt8]
        let isCUBIN: Bool
        /// Name expression (`"binary_kernel<1>"`) → lowered symbol for `cuModuleGetFunction`.
        let loweredNames: [String: String]
        /// Compiler log (warnings).
        let log: String
    }

    let nvrtc: CUDALibrary<CCUDANvrtcAPI>

    /// Opens libnvrtc (see `ccuda_load`).
    init() throws {
        nvrtc = try CUDALibrary.load(CCUDA_LIBRARY_NVRTC, as: CCUDANvrtcAPI.self)
    }

    /// NVRTC's version, "major.minor".
    var version: String {
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtc.api.nvrtcVersion!(&major, &minor)
        return "\(major).\(minor)"
    }

    /// The compile options for `sm_<computeCapability>` (part of the kernel cache's key).
    static func options(computeCapability: Int) -> [String] {
        ["--gpu-architecture=sm_\(computeCapability)", "--std=c++17", "-default-device", "--fmad=true"]
    }

    /// Compiles `source` named `name` for `sm_<computeCapability>` (e.g. 90), registering `nameExpressions`.
    func compile(source: String, name: String, computeCapability: Int, nameExpressions: [String]) throws -> Output {
        let api = nvrtc.api
        var program: nvrtcProgram?
        try check(api.nvrtcCreateProgram!(&program, source, name, 0, nil, nil), "nvrtcCreateProgram(\(name))")
        defer { _ = api.nvrtcDestroyProgram!(&program) }
        for expression in nameExpressions {
            try check(api.nvrtcAddNameExpression!(program, expression), "nvrtcAddNameExpression(\(expression))")
        }
        let options = Self.options(computeCapability: computeCapability)
        var cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let result = cOptions.withUnsafeMutableBufferPointer { buffer -> nvrtcResult in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                api.nvrtcCompileProgram!(program, Int32(buffer.count), $0)
            }
        }
        var logSize = 0
        _ = api.nvrtcGetProgramLogSize!(program, &logSize)
        var logBuffer = [CChar](repeating: 0, count: max(logSize, 1))
        _ = api.nvrtcGetProgramLog!(program, &logBuffer)
        let log = string(logBuffer)
        guard result == 0 else {
            throw TensorError.deviceFailure(
                backend: "cuda", message: "NVRTC could not compile \(name) for sm_\(computeCapability): \(errorString(result))\n\(log)")
        }
        var size = 0
        var image: [UInt8]
        var isCUBIN = true
        if api.nvrtcGetCUBINSize!(program, &size) == 0, size > 0 {
            image = [UInt8](repeating: 0, count: size)
            try image.withUnsafeMutableBytes { try check(api.nvrtcGetCUBIN!(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN") }
        } else {
            isCUBIN = false
            try check(api.nvrtcGetPTXSize!(program, &size), "nvrtcGetPTXSize")
            image = [UInt8](repeating: 0, count: size)
            try image.withUnsafeMutableBytes { try check(api.nvrtcGetPTX!(program, $0.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetPTX") }
        }
        var lowered: [String: String] = [:]
        for expression in nameExpressions {
            var symbol: UnsafePointer<CChar>?
            try check(api.nvrtcGetLoweredName!(program, expression, &symbol), "nvrtcGetLoweredName(\(expression))")
            lowered[expression] = string(symbol)
        }
        return Output(image: image, isCUBIN: isCUBIN, loweredNames: lowered, log: log)
    }

    private func errorString(_ result: nvrtcResult) -> String {
        string(nvrtc.api.nvrtcGetErrorString!(result))
    }

    private func check(_ result: nvrtcResult, _ what: String) throws {
        guard result == 0 else {
            throw TensorError.deviceFailure(backend: "cuda", message: "\(what) failed: \(errorString(result))")
        }
    }
}
