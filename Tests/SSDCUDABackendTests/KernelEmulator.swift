#if canImport(Glibc)
import Foundation
import Glibc
@testable import SSDCUDABackend

/// Runs the NVRTC kernel sources on the CPU, so that what they compute is tested without a GPU.
///
/// Each kernel group's source (the same text NVRTC compiles) is compiled by the system C++ compiler
/// with `-DSSD_EMULATION` and the header below, which supplies CUDA's built-ins: every CUDA thread of
/// a block is a fiber (`ucontext`), scheduled cooperatively on one OS thread; `__syncthreads`,
/// `__shfl_xor_sync` and the warp-wide tensor-core instructions (`ldmatrix`, `mma.sync.m16n8k16`, with
/// the fragment layouts of the PTX ISA) are barriers over the block or the warp with an exchange area;
/// `cp.async` copies at once; `__shared__` variables are function statics (blocks run one at a time).
/// A launch table maps every NVRTC name expression of the group to its function, so a test launches
/// a kernel by name with the same grid, block and `KernelArgument`s as `CUDADevice.launch`; device
/// pointers are host addresses. The emulator's state is global per compiled group, so launches must
/// not overlap (`EmulatedKernelTests` is serialized; the compile cache is locked). Numbers can differ from the GPU's in the last bit (host `expf`,
/// `erff`, fp32 summation order inside `mma`), never in layout or indexing.
/// A `KernelLauncher` running every group on the emulator, as an H100-sized device (132 SMs) would
/// be given grids; `KernelCalls` on it launches exactly what `CUDABackend` launches on a GPU.
struct EmulatedDevice: KernelLauncher {
    var multiprocessors: Int { 132 }
    func launch(_ group: KernelGroup, _ name: String, grid: (Int, Int, Int), block: Int, sharedBytes: Int, flops: Double,
                _ arguments: [KernelArgument]) throws {
        guard grid.0 > 0, grid.1 > 0, grid.2 > 0 else { return }
        try KernelEmulator.load(group).launch(name, grid: grid, block: block, arguments)
    }
}

final class KernelEmulator: @unchecked Sendable {
    enum Failure: Error, CustomStringConvertible {
        case noCompiler
        case compile(String)
        case load(String)
        case launch(String, Int32)
        var description: String {
            switch self {
            case .noCompiler: return "no C++ compiler (c++, clang++ or g++) on PATH"
            case let .compile(log): return "the emulated kernels do not compile: \(log)"
            case let .load(message): return "cannot load the emulated kernels: \(message)"
            case let .launch(name, code): return "launch of \(name) failed with \(code) (-1 unknown kernel, -2 barrier deadlock)"
            }
        }
    }

    private typealias LaunchFunction = @convention(c) (
        UnsafePointer<CChar>?, UInt32, UInt32, UInt32, UInt32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    private let handle: UnsafeMutableRawPointer
    private let entry: LaunchFunction
    let group: KernelGroup

    /// The C++ compiler on PATH, if any.
    static let compiler: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for name in ["c++", "clang++", "g++"] {
            for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        }
        return nil
    }()

    /// Compiled groups, one per process (compiling takes a few seconds).
    private static let cache = Locked([KernelGroup: Result<KernelEmulator, Failure>]())

    /// The emulator for `group`, compiled on first use.
    static func load(_ group: KernelGroup) throws -> KernelEmulator {
        try cache.withLock { cache in
            if let made = cache[group] { return try made.get() }
            let made = Result { try KernelEmulator(group: group) }.mapError { $0 as? Failure ?? .load("\($0)") }
            cache[group] = made
            return try made.get()
        }
    }

    private init(group: KernelGroup) throws {
        guard let compiler = KernelEmulator.compiler else { throw Failure.noCompiler }
        self.group = group
        let dir = NSTemporaryDirectory() + "ssd-kernel-emulator-\(getpid())-\(group.rawValue)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = dir + "/kernels.cpp", library = dir + "/kernels.so", log = dir + "/log.txt"
        var text = "#define SSD_EMULATION 1\n" + (try KernelEmulator.header) + group.source + "\n"
        text += "extern \"C\" int ssd_emu_launch(const char *name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, void **p) {\n"
        for name in group.nameExpressions {
            text += "    if (!strcmp(name, \"\(name)\")) return emu::launch(&\(name), gx, gy, gz, bx, p);\n"
        }
        text += "    return -1;\n}\n"
        try text.write(toFile: source, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler)
        process.arguments = ["-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-o", library, source]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardError = logHandle
        process.standardOutput = logHandle
        try process.run()
        process.waitUntilExit()
        try? logHandle.close()
        guard process.terminationStatus == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw Failure.compile(String(output.prefix(4000)))
        }
        guard let h = dlopen(library, RTLD_NOW | RTLD_LOCAL) else { throw Failure.load(String(cString: dlerror())) }
        guard let symbol = dlsym(h, "ssd_emu_launch") else { throw Failure.load("ssd_emu_launch missing") }
        handle = h
        entry = unsafeBitCast(symbol, to: LaunchFunction.self)
    }

    /// Runs kernel `name` (an NVRTC name expression of the group) on a `grid` of blocks of `block` threads.
    func launch(_ name: String, grid: (Int, Int, Int), block: Int, _ arguments: [KernelArgument]) throws {
        let code = KernelArgument.withParameterPointers(arguments) { params in
            name.withCString { entry($0, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), params) }
        }
        guard code == 0 else { throw Failure.launch(name, code) }
    }


    /// The CUDA built-ins the kernel sources use, for the host compiler (Scripts/null-cuda/emulator.h).
    static var header: String {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            return try String(contentsOf: root.appendingPathComponent("Scripts/null-cuda/emulator.h"), encoding: .utf8)
        }
    }
}
#endif
