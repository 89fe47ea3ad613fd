#if canImport(Glibc)
import Foundation
import Testing

/// The whole host side of the CUDA backend on the null CUDA driver (Scripts/null-cuda: every entry
/// point a no-op that succeeds), in child processes because the library loader keeps its first
/// answer per process: `ssd1b generate --backend cuda` on the tiny pipeline, eager and with CUDA
/// graphs, and `ssd-cuda-check graphs` (capture, replay, memory over replays of the unet-like block).
/// Values are all zeros there; what is checked is that every op, plan cache, allocation and graph
/// path runs through. Needs `cc` and the built executables; skipped without them unless
/// `SSD_CUDA_REQUIRE_EMULATOR=1`.
@Suite(.serialized) struct NullDriverTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The folder with the null libraries, built once per process.
    static let libraries: String? = {
        let dir = NSTemporaryDirectory() + "ssd-null-cuda-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let arguments = ["-O1", "-shared", "-fPIC", "-I", root + "/Sources/CCUDA/include", "-o", dir + "/libnullcuda.so",
                         root + "/Scripts/null-cuda/stubs.c", root + "/Scripts/null-cuda/special.c"]
        guard ["cc", "clang", "gcc"].contains(where: { run("/usr/bin/env", [$0] + arguments, environment: [:]).status == 0 }) else { return nil }
        for name in ["libcuda.so.1", "libcublasLt.so.13", "libcudnn.so.9", "libnvrtc.so.13"] {
            try? FileManager.default.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: "libnullcuda.so")
        }
        return dir
    }()

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let log = NSTemporaryDirectory() + "ssd-null-cuda-log-\(getpid())-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        guard let handle = FileHandle(forWritingAtPath: log) else { return (-1, "cannot write \(log)") }
        process.standardOutput = handle
        process.standardError = handle
        do { try process.run() } catch { return (-1, "\(error)") }
        process.waitUntilExit()
        try? handle.close()
        return (process.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// The executable `name` of this build, or nil (recorded as a failure when required).
    func executable(_ name: String) -> String? {
        for configuration in ["debug", "release"] {
            let path = Self.root + "/.build/\(configuration)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        required("\(name) is not built under .build/debug or .build/release")
        return nil
    }

    func required(_ message: String) {
        if ProcessInfo.processInfo.environment["SSD_CUDA_REQUIRE_EMULATOR"] == "1" { Issue.record(Comment(rawValue: message)) }
    }

    @Test(arguments: ["0", "1"])
    func tinyPipelineRunsOnTheNullDriver(graphs: String) throws {
        guard let libraries = Self.libraries else { required("cc could not build the null CUDA library"); return }
        guard let ssd1b = executable("ssd1b") else { return }
        let image = NSTemporaryDirectory() + "ssd-null-cuda-\(getpid())-\(graphs).png"
        let (status, output) = Self.run(ssd1b, [
            "generate", "--model", Self.root + "/Tests/Fixtures/pipeline/tiny-ssd1b", "--prompt", "a photo of a cat",
            "--negative-prompt", "blurry", "--width", "64", "--height", "64", "--steps", "3", "--images", "2",
            "--backend", "cuda", "--report-memory", "--output", image,
        ], environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "SSD_CUDA_GRAPHS": graphs])
        #expect(status == 0, "\(output)")
        #expect(output.contains("memory peak"), "\(output)")
        // stdout names the images written (two: one per image of the prompt).
        let written = output.split(separator: "\n").filter { $0.hasSuffix(".png") }.map(String.init)
        #expect(written.count == 2, "\(output)")
        for path in written {
            #expect(FileManager.default.fileExists(atPath: path))
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    @Test func graphCaptureAndReplayRunOnTheNullDriver() throws {
        guard let libraries = Self.libraries else { required("cc could not build the null CUDA library"); return }
        guard let check = executable("ssd-cuda-check") else { return }
        let (_, output) = Self.run(check, ["graphs", "--replays", "3"], environment: ["SSD_CUDA_LIBRARY_PATH": libraries])
        #expect(output.contains("CUDA: available: null CUDA device"), "\(output)")
        #expect(output.contains(": replaying, 2 calls, 1 replays"), "\(output)")
        #expect(output.contains("-> stable"), "\(output)")
        #expect(!output.contains("CAPTURE REFUSED"), "\(output)")
    }
}
#endif
