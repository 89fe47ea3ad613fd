#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Error writing or reading a file.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file.
    public var path: String
    /// What went wrong (the C library's message).
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Whole-file reads and atomic writes without Foundation.
public enum FileIO {
    /// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: readers see the old
    /// file or the complete new one, never a half-written file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".partial-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FileError(path: path, message: String(cString: strerror(errno))) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let message = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw FileError(path: path, message: message)
            }
            offset += n
        }
        guard close(fd) == 0, rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw FileError(path: path, message: message)
        }
    }

    /// Reads a whole file.
    public static func readAll(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, message: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            result += chunk[0..<n]
        }
        return result
    }
}

/// The `parameters` text stored in PNGs, in the layout other Stable Diffusion tools write.
public enum GenerationMetadata {
    /// `prompt`, `Negative prompt: …`, then `Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH, Model: …`.
    public static func parameters(request: GenerationRequest, seed: UInt64, sampler: String, model: String) -> String {
        var lines = [request.prompt]
        if let negative = request.negativePrompt, !negative.isEmpty { lines.append("Negative prompt: \(negative)") }
        var fields = ["Steps: \(request.steps)", "Sampler: \(sampler)", "CFG scale: \(request.guidanceScale)",
                      "Seed: \(seed)", "Size: \(request.size)", "Model: \(model)"]
        if request.guidanceRescale > 0 { fields.append("CFG rescale: \(request.guidanceRescale)") }
        if let clipSkip = request.clipSkip { fields.append("Clip skip: \(clipSkip)") }
        if let strength = request.initialImage?.strength { fields.append("Denoising strength: \(strength)") }
        lines.append(fields.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
