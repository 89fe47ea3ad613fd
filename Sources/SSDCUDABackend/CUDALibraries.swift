import CCUDA
import SSDTensor

/// The CUDA libraries opened at run time (`CCUDA`'s loader): the function tables and where they came from.
struct CUDALibrary<API>: @unchecked Sendable {
    /// The resolved entry points.
    let api: API
    /// The file that was opened.
    let path: String

    /// Opens `library` (cached per process) or throws `backendUnavailable` naming what is missing.
    /// `searching` folders are tried before `SSD_CUDA_LIBRARY_PATH`'s.
    static func load(_ library: CCUDALibrary, as: API.Type, searching: String? = nil) throws -> CUDALibrary<API> {
        var message = [CChar](repeating: 0, count: 2048)
        var path = [CChar](repeating: 0, count: 1024)
        guard let table = ccuda_load_searching(library, searching, &message, message.count, &path, path.count) else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: string(message))
        }
        return CUDALibrary(api: table.assumingMemoryBound(to: API.self).pointee, path: string(path))
    }
}

/// A NUL-terminated C buffer as a String.
func string(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// A C string pointer (possibly nil) as a String.
func string(_ pointer: UnsafePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    return String(cString: pointer)
}

/// Reads an environment variable.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// An on/off switch from the environment: `0`/`off`/`false`/`no` is off, `1`/`on`/`true`/`yes` on,
/// unset or empty the default (any other value too).
func environmentSwitch(_ name: String, default value: Bool) -> Bool {
    switch environment(name)?.trimmingWhitespace.lowercased() {
    case "0", "off", "false", "no": false
    case "1", "on", "true", "yes": true
    default: value
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
