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
        try writeAllAtomically([(path: path, bytes: bytes)])
    }

    /// Writes every file or none: each goes to a temporary file beside it, and only when all of them
    /// are complete (and no path is a folder) are they renamed into place; when one cannot be
    /// written, the temporary files are removed and no file at the given paths has changed. (A rename
    /// refused after others succeeded, which needs the folder's permissions to change meanwhile,
    /// leaves the earlier files replaced.)
    public static func writeAllAtomically(_ files: [(path: String, bytes: [UInt8])]) throws {
        var written: [(temporary: String, path: String)] = []
        do {
            for file in files { written.append((try writeTemporary(file.bytes, beside: file.path), file.path)) }
        } catch {
            for file in written { unlink(file.temporary) }
            throw error
        }
        // A folder in a file's place would stop its rename after others were done: refuse first.
        for file in written where isFolder(file.path) {
            for other in written { unlink(other.temporary) }
            throw FileError(path: file.path, message: "is a folder")
        }
        for (index, file) in written.enumerated() where rename(file.temporary, file.path) != 0 {
            let message = String(cString: strerror(errno))
            for later in written[index...] { unlink(later.temporary) }
            throw FileError(path: file.path, message: message)
        }
    }

    /// Throws unless `path`'s folder exists and is a folder and `path` itself is not a folder (check
    /// output paths before long work).
    public static func checkFolder(of path: String) throws {
        let folder = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var info = stat()
        guard stat(folder, &info) == 0 else { throw FileError(path: path, message: "folder \(folder): \(String(cString: strerror(errno)))") }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw FileError(path: path, message: "\(folder) is not a folder") }
        guard !isFolder(path) else { throw FileError(path: path, message: "is a folder") }
    }

    private static func isFolder(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Writes `bytes` to a new temporary file beside `path`; returns its path.
    private static func writeTemporary(_ bytes: [UInt8], beside path: String) throws -> String {
        // A short name in the same folder (the rename stays within one file system; a long file name
        // does not grow past the system's limit).
        let folder = path.lastIndex(of: "/").map { String(path[...$0]) } ?? ""
        let temporary = folder + ".ssd-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16)).partial"
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
        guard close(fd) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw FileError(path: path, message: message)
        }
        return temporary
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
        var fields = ["Steps: \(request.customSchedule?.stepCount ?? request.steps)", "Sampler: \(sampler)", "CFG scale: \(request.guidanceScale)",
                      "Seed: \(seed)", "Size: \(request.size)", "Model: \(model)"]
        if request.guidanceRescale > 0 { fields.append("CFG rescale: \(request.guidanceRescale)") }
        if let clipSkip = request.clipSkip { fields.append("Clip skip: \(clipSkip)") }
        if let strength = request.initialImage?.strength { fields.append("Denoising strength: \(strength)") }
        lines.append(fields.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
