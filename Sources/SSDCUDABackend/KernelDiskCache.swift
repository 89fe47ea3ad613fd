#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// NVRTC's output kept on disk between processes, so that a new process loads each kernel group's
/// image instead of compiling it again (seconds per process; PyTorch's and Triton's kernel caches do
/// the same). One file per kernel group and architecture, named by a hash of everything the image
/// depends on: the source, the name expressions, the compile options and NVRTC's version.
///
/// `SSD_CUDA_KERNEL_CACHE`: a folder, or `off` (`0`); unset or `1`/`on`: `$XDG_CACHE_HOME/ssd-cuda-kernels`,
/// else `$HOME/.cache/ssd-cuda-kernels` (off when neither is set). Each group keeps its newest
/// `keptPerGroup` images (several checkouts or NVRTC versions may share the folder). Files are written whole under a temporary
/// name and renamed into place, so a reader sees a whole file or none; a file that does not decode
/// whole with its checksum, or whose image the driver refuses, is ignored and replaced after compiling.
/// A folder that cannot be written only costs the compile: the cache never fails a call.
struct KernelDiskCache: Sendable {
    /// The folder, or nil when the cache is off.
    let directory: String?

    /// The folder from `SSD_CUDA_KERNEL_CACHE`, `XDG_CACHE_HOME` or `HOME` (see the type).
    static func fromEnvironment() -> KernelDiskCache {
        if let value = environment("SSD_CUDA_KERNEL_CACHE"), !value.isEmpty,
           !["1", "on", "true", "yes"].contains(value.lowercased()) {
            return KernelDiskCache(directory: ["off", "0", "none", "false", "no"].contains(value.lowercased()) ? nil : value)
        }
        if let xdg = environment("XDG_CACHE_HOME"), xdg.hasPrefix("/") { return KernelDiskCache(directory: xdg + "/ssd-cuda-kernels") }
        if let home = environment("HOME"), home.hasPrefix("/") { return KernelDiskCache(directory: home + "/.cache/ssd-cuda-kernels") }
        return KernelDiskCache(directory: nil)
    }

    /// The file name for a group's image: `<group>-sm<cc>-<hash>.ssdk`.
    static func fileName(group: String, computeCapability: Int, source: String, nameExpressions: [String],
                         options: [String], compilerVersion: String) -> String {
        var hash = Hash128()
        for part in [source, nameExpressions.joined(separator: "\n"), options.joined(separator: " "), compilerVersion] {
            hash.add(Array(part.utf8))
            hash.add([0xFF])  // separator that UTF-8 never contains
        }
        return "\(group)-sm\(computeCapability)-\(hash.hex).ssdk"
    }

    /// The image stored as `file`, or nil (absent, unreadable, truncated or corrupt). A file read is
    /// touched, so that the retention keeps the images in use rather than the last stored.
    func load(_ file: String) -> NVRTCCompiler.Output? {
        guard let directory, let bytes = Self.readFile(directory + "/" + file), let output = Self.decode(bytes) else { return nil }
        _ = utimensat(AT_FDCWD, directory + "/" + file, nil, 0)
        return output
    }

    /// How many images of one group and architecture stay (the newest; older sources go).
    static let keptPerGroup = 4

    /// Stores `output` as `file` (whole or not at all) and removes the group's oldest files beyond
    /// `keptPerGroup`; false when the folder cannot be written.
    @discardableResult
    func store(_ output: NVRTCCompiler.Output, as file: String) -> Bool {
        guard let directory, Self.makeDirectory(directory) else { return false }
        let path = directory + "/" + file
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let bytes = Self.encode(output)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { return false }
        var written = 0
        let complete = bytes.withUnsafeBytes { buffer -> Bool in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n <= 0 { return false }
                written += n
            }
            return true
        }
        guard close(fd) == 0, complete, rename(temporary, path) == 0 else {
            unlink(temporary)
            return false
        }
        // The group's images for other sources or compilers (this file's name up to the hash), oldest
        // first beyond the newest few.
        if let dash = file.lastIndex(of: "-") {
            let prefix = String(file[...dash])
            let others = Self.listDirectory(directory).filter { $0.hasPrefix(prefix) && $0 != file && $0.hasSuffix(".ssdk") }
            let newestFirst = others.map { ($0, Self.modificationTime(directory + "/" + $0)) }.sorted { $0.1 > $1.1 }
            for (other, _) in newestFirst.dropFirst(Self.keptPerGroup - 1) { unlink(directory + "/" + other) }
        }
        return true
    }

    // MARK: File format

    private static let magic = Array("SSDKERNEL1\n".utf8)

    /// magic, isCUBIN (1 byte), lowered-name count, (expression, symbol) pairs, log, image, then a
    /// 16-byte checksum of everything before it; integers little-endian UInt32, strings length-prefixed.
    static func encode(_ output: NVRTCCompiler.Output) -> [UInt8] {
        var bytes = magic
        bytes.append(output.isCUBIN ? 1 : 0)
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { bytes.append(contentsOf: $0) } }
        func blob(_ b: [UInt8]) { u32(b.count); bytes.append(contentsOf: b) }
        let names = output.loweredNames.sorted { $0.key < $1.key }
        u32(names.count)
        for (expression, symbol) in names { blob(Array(expression.utf8)); blob(Array(symbol.utf8)) }
        blob(Array(output.log.utf8))
        blob(output.image)
        var hash = Hash128()
        hash.add(bytes)
        bytes.append(contentsOf: hash.bytes)
        return bytes
    }

    /// The output `encode` wrote, or nil when the bytes are not exactly such a file.
    static func decode(_ bytes: [UInt8]) -> NVRTCCompiler.Output? {
        guard bytes.count >= magic.count + 1 + 4 + 16, Array(bytes.prefix(magic.count)) == magic else { return nil }
        let body = bytes.count - 16
        var hash = Hash128()
        hash.add(Array(bytes[..<body]))
        guard Array(bytes[body...]) == hash.bytes else { return nil }
        var at = magic.count
        let isCUBIN = bytes[at] == 1
        at += 1
        func u32() -> Int? {
            guard at + 4 <= body else { return nil }
            let v = Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
            at += 4
            return v
        }
        func blob() -> [UInt8]? {
            guard let n = u32(), n <= body - at else { return nil }
            defer { at += n }
            return Array(bytes[at..<(at + n)])
        }
        guard let count = u32(), count <= body else { return nil }
        var lowered: [String: String] = [:]
        for _ in 0..<count {
            guard let e = blob(), let s = blob() else { return nil }
            lowered[String(decoding: e, as: UTF8.self)] = String(decoding: s, as: UTF8.self)
        }
        guard let log = blob(), let image = blob(), at == body, !image.isEmpty else { return nil }
        return NVRTCCompiler.Output(image: image, isCUBIN: isCUBIN, loweredNames: lowered, log: String(decoding: log, as: UTF8.self))
    }

    // MARK: Files

    private static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A regular file of a plausible size only (not a FIFO or device someone put there).
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= 256 << 20 else { return nil }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { return nil }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[..<n])
            if bytes.count > 256 << 20 { return nil }  // no kernel image is this large
        }
    }

    /// `mkdir -p` (mode 0700 for folders it makes); true when the folder exists afterwards.
    private static func makeDirectory(_ path: String) -> Bool {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { return false }
        }
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    private static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            // `d_name` is NUL-terminated within the record (which may be shorter than the array).
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `path`'s size and modification time ("" when it cannot be read), to tell library builds apart.
    static func fileIdentity(_ path: String) -> String {
        var info = stat()
        guard !path.isEmpty, stat(path, &info) == 0 else { return "" }
        return "\(info.st_size)@\(seconds(info))"
    }

    private static func modificationTime(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? seconds(info) : 0
    }

    private static func seconds(_ info: stat) -> Int {
        #if canImport(Darwin)
        Int(info.st_mtimespec.tv_sec)
        #else
        Int(info.st_mtim.tv_sec)
        #endif
    }
}

/// Two independent 64-bit FNV-1a hashes (different offset bases), for file names and checksums: not
/// cryptographic, only to tell sources apart and to catch truncated or damaged files.
struct Hash128 {
    private var a: UInt64 = 0xcbf2_9ce4_8422_2325
    private var b: UInt64 = 0x6c62_272e_07bb_0142
    private static let prime: UInt64 = 0x0000_0100_0000_01b3

    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes {
            a = (a ^ UInt64(byte)) &* Self.prime
            b = (b ^ UInt64(byte ^ 0x5c)) &* Self.prime
        }
    }

    var bytes: [UInt8] { withUnsafeBytes(of: (a.littleEndian, b.littleEndian)) { Array($0) } }
    var hex: String {
        bytes.map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined()
    }
}
