#if canImport(Glibc)
import Foundation
@testable import SSDCUDABackend
import Testing

/// The kernel disk cache's file format and folder handling (no GPU, no NVRTC): a stored image reads
/// back exactly; a file cut anywhere or changed in any byte reads as absent; the file name changes
/// with everything the image depends on; storing keeps the group's newest few files.
@Suite struct KernelDiskCacheTests {
    let output = NVRTCCompiler.Output(image: Array(0..<200).map { UInt8($0 & 0xFF) }, isCUBIN: true,
                                      loweredNames: ["binary_kernel<1>": "_Z13binary_kernelILi1EEvv", "copy": "copy"],
                                      log: "warning: nothing")

    @Test func encodedOutputDecodesExactly() throws {
        let bytes = KernelDiskCache.encode(output)
        let decoded = try #require(KernelDiskCache.decode(bytes))
        #expect(decoded.image == output.image && decoded.isCUBIN && decoded.loweredNames == output.loweredNames && decoded.log == output.log)
        // Deterministic (names sorted), so equal outputs give equal files.
        #expect(KernelDiskCache.encode(output) == bytes)
    }

    @Test func damagedFilesReadAsAbsent() {
        let bytes = KernelDiskCache.encode(output)
        for length in 0..<bytes.count { #expect(KernelDiskCache.decode(Array(bytes.prefix(length))) == nil, "cut at \(length)") }
        for index in stride(from: 0, to: bytes.count, by: 7) {
            var changed = bytes
            changed[index] ^= 0x20
            #expect(KernelDiskCache.decode(changed) == nil, "byte \(index) changed")
        }
        #expect(KernelDiskCache.decode(bytes + [0]) == nil)
    }

    @Test func fileNameDependsOnEverythingTheImageDependsOn() {
        func name(_ source: String = "s", _ names: [String] = ["k"], _ options: [String] = ["-a"], _ version: String = "13.0", cc: Int = 90) -> String {
            KernelDiskCache.fileName(group: "fast", computeCapability: cc, source: source, nameExpressions: names, options: options, compilerVersion: version)
        }
        let base = name()
        #expect(base.hasPrefix("fast-sm90-") && base.hasSuffix(".ssdk"))
        #expect(Set([base, name("t"), name("s", ["k", "l"]), name("s", ["k"], ["-b"]), name("s", ["k"], ["-a"], "13.1"), name(cc: 100)]).count == 6)
        // Parts are separated: moving text from one part to the next changes the name.
        #expect(name("ab", ["c"]) != name("a", ["bc"]))
    }

    @Test func storeWritesWholeFilesAndReplacesOlderSources() throws {
        let top = NSTemporaryDirectory() + "ssd-kernel-cache-\(getpid())-\(UUID().uuidString)"
        let folder = top + "/nested/kernels"
        defer { try? FileManager.default.removeItem(atPath: top) }
        let cache = KernelDiskCache(directory: folder)
        #expect(cache.load("fast-sm90-00.ssdk") == nil)
        #expect(cache.store(output, as: "fast-sm90-00.ssdk"))
        #expect(cache.store(output, as: "attention-sm90-00.ssdk"))
        #expect(cache.load("fast-sm90-00.ssdk")?.image == output.image)
        // Files of other sources of the group, written behind the cache's back: all kept up to a store,
        // which keeps the newest `keptPerGroup` (its own included) and removes the rest at once.
        let now = Date()
        for (index, name) in ["fast-sm90-01.ssdk", "fast-sm90-02.ssdk", "fast-sm90-03.ssdk", "fast-sm90-04.ssdk"].enumerated() {
            try Data(KernelDiskCache.encode(output)).write(to: URL(fileURLWithPath: folder + "/" + name))
            try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(Double(index - 10) * 60)],
                                                  ofItemAtPath: folder + "/" + name)
        }
        try FileManager.default.setAttributes([.modificationDate: now.addingTimeInterval(-3600)], ofItemAtPath: folder + "/fast-sm90-00.ssdk")
        // Reading a file marks it as in use: 01 (the oldest of the four) survives because it is read.
        #expect(cache.load("fast-sm90-01.ssdk") != nil)
        #expect(cache.store(output, as: "fast-sm90-11.ssdk"))
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files == ["attention-sm90-00.ssdk", "fast-sm90-01.ssdk", "fast-sm90-03.ssdk", "fast-sm90-04.ssdk", "fast-sm90-11.ssdk"],
                "\(files)")
        // A folder that cannot be made: nothing stored, nothing thrown.
        let blocked = KernelDiskCache(directory: folder + "/fast-sm90-11.ssdk/below")
        #expect(!blocked.store(output, as: "x-sm90-00.ssdk"))
        #expect(KernelDiskCache(directory: nil).load("fast-sm90-11.ssdk") == nil)
    }
}
#endif
