#if canImport(Glibc)
import Foundation
import SSDTensor
import Testing

/// The whole CUDA backend without a GPU, in child processes because the library loader keeps its
/// first answer per process. On the emulated driver (Scripts/null-cuda/emulated.c: host memory,
/// kernels through the CPU emulator, cuBLASLt and cuDNN as loops, graphs recorded and replayed): op
/// parity, the tiny pipeline against diffusers (eager, and with CUDA graphs), graph replay of the
/// tiny UNet against eager calls. On the null driver (every entry point a no-op that succeeds): `ssd1b generate --backend cuda` on the tiny pipeline, eager and with CUDA
/// graphs, and `ssd-cuda-check graphs` (capture, replay, memory over replays of the unet-like block).
/// Values are all zeros there; what is checked is that every op, plan cache, allocation and graph
/// path runs through. Needs `cc` and the built executables; skipped without them unless
/// `SSD_CUDA_REQUIRE_EMULATOR=1`.
@Suite(.serialized) struct NullDriverTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A new folder with the null libraries, or with `emulated` the computing ones (the caller removes
    /// it), or nil when no C compiler built it.
    static func buildLibraries(emulated: Bool = false) -> String? {
        let dir = NSTemporaryDirectory() + "ssd-null-cuda-\(getpid())-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let sources = root + "/Scripts/null-cuda/"
        let arguments = ["-O2", "-shared", "-fPIC", "-I", root + "/Sources/CCUDA/include", "-o", dir + "/libnullcuda.so"]
            + (emulated ? ["-DEMULATOR_HEADER=\"\(sources)emulator.h\"", sources + "stubs.c", sources + "emulated.c", "-lm", "-ldl"]
                        : [sources + "stubs.c", sources + "special.c"])
        guard ["cc", "clang", "gcc"].contains(where: { run("/usr/bin/env", [$0] + arguments, environment: [:]).status == 0 }) else {
            try? FileManager.default.removeItem(atPath: dir)
            return nil
        }
        for name in ["libcuda.so.1", "libcublasLt.so.13", "libcudnn.so.9", "libnvrtc.so.13"] {
            try? FileManager.default.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: "libnullcuda.so")
        }
        return dir
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String],
                    timeout: TimeInterval = 180) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // No kernel disk cache unless a test asks for one (never the user's ~/.cache).
        process.environment = ProcessInfo.processInfo.environment.merging(["SSD_CUDA_KERNEL_CACHE": "off"]) { $1 }
            .merging(environment) { $1 }
        let log = NSTemporaryDirectory() + "ssd-null-cuda-log-\(getpid())-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        guard let handle = FileHandle(forWritingAtPath: log) else { return (-1, "cannot write \(log)") }
        process.standardOutput = handle
        process.standardError = handle
        do { try process.run() } catch { return (-1, "\(error)") }
        // A child that hangs is stopped after `timeout` seconds (and reported by its status).
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        let timedOut = process.isRunning
        if timedOut { process.terminate() }
        process.waitUntilExit()
        try? handle.close()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return (timedOut ? -2 : process.terminationStatus, timedOut ? "timed out after \(Int(timeout)) s\n" + output : output)
    }

    /// The executable `name` of this build (next to the test runner, else under .build/debug or
    /// .build/release), or nil (recorded as a failure when required).
    func executable(_ name: String) -> String? {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        var folders = [runner]
        // On Linux the runner may sit inside a `.xctest` bundle folder.
        if runner.hasSuffix(".xctest") { folders.append(URL(fileURLWithPath: runner).deletingLastPathComponent().path) }
        folders += ["debug", "release"].map { Self.root + "/.build/" + $0 }
        for folder in folders where access(folder + "/" + name, X_OK) == 0 { return folder + "/" + name }
        required("\(name) is not built next to the test runner (\(runner)) nor under .build/debug or .build/release")
        return nil
    }

    func required(_ message: String) {
        if ProcessInfo.processInfo.environment["SSD_CUDA_REQUIRE_EMULATOR"] == "1" { Issue.record(Comment(rawValue: message)) }
    }

    @Test(arguments: ["0", "1"])
    func tinyPipelineRunsOnTheNullDriver(graphs: String) throws {
        guard let ssd1b = executable("ssd1b") else { return }
        guard let libraries = Self.buildLibraries() else { required("cc could not build the null CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let image = NSTemporaryDirectory() + "ssd-null-cuda-\(getpid())-\(graphs).png"
        let (status, output) = Self.run(ssd1b, [
            "generate", "--model", Self.root + "/Tests/Fixtures/pipeline/tiny-ssd1b", "--prompt", "a photo of a cat",
            "--negative-prompt", "blurry", "--width", "64", "--height", "64", "--steps", "3", "--images", "2",
            "--backend", "cuda", "--report-memory", "--report-backend", "--output", image,
        ], environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "SSD_CUDA_GRAPHS": graphs])
        #expect(status == 0, "\(output)")
        #expect(output.contains("memory peak"), "\(output)")
        #expect(output.contains("activations: f16"), "\(output)")
        // The backend's report: the device line, and with graphs on the UNet's region replayed.
        #expect(output.contains("backend: null CUDA device"), "\(output)")
        if graphs == "1" { #expect(output.contains("CUDA graph: ") && output.contains("replaying"), "\(output)") }
        // stdout names the images written (two: one per image of the prompt).
        let written = output.split(separator: "\n").filter { $0.hasSuffix(".png") }.map(String.init)
        #expect(written.count == 2, "\(output)")
        for path in written {
            #expect(FileManager.default.fileExists(atPath: path))
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// `--precision bf16` on CUDA is refused with the reason (no bf16 activation path), not run in fp16.
    @Test func bf16IsRefusedOnCUDA() throws {
        guard let ssd1b = executable("ssd1b") else { return }
        guard let libraries = Self.buildLibraries() else { required("cc could not build the null CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let (status, output) = Self.run(ssd1b, [
            "generate", "--model", Self.root + "/Tests/Fixtures/pipeline/tiny-ssd1b", "--prompt", "a cat", "--width", "64", "--height", "64",
            "--steps", "1", "--backend", "cuda", "--precision", "bf16", "--output", libraries + "/x.png",
        ], environment: ["SSD_CUDA_LIBRARY_PATH": libraries])
        #expect(status == 1 && output.contains("bf16 is not supported on the CUDA backend"), "\(output)")
    }

    /// Every op on the emulated driver against `ReferenceBackend` (`ssd-cuda-check parity`: GEMM
    /// layouts, cuDNN descriptors, kernels, casts; the default kernels, im2col convolutions, fused
    /// convolutions with and without autotune, the 32-row attention).
    @Test func opParityOnTheEmulatedDriver() throws {
        guard let check = executable("ssd-cuda-check") else { return }
        guard let libraries = Self.buildLibraries(emulated: true) else { required("cc could not build the emulated CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let (status, output) = Self.run(check, ["parity"],
                                        environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "TMPDIR": libraries], timeout: 600)
        // The summary line, "PARITY <passed>/<count> passed in … s[; failed: …]" (other PARITY lines are reports).
        let summary = output.split(separator: "\n").first { $0.hasPrefix("PARITY ") && $0.contains(" passed in ") }.map(String.init) ?? ""
        #expect(status == 0 && summary.contains("passed") && !summary.contains("failed"), "\(summary)\n\(output.suffix(3000))")
        // One line per mode, which the GPU visit's script reads to leave a failing mode's switches out.
        for mode in ["default", "im2col", "fused", "autotune+fused", "graph", "autotune+graph", "rows32"] {
            let line = output.split(separator: "\n").first { $0.hasPrefix("PARITY MODE \(mode): ") }.map(String.init) ?? ""
            let counts = line.firstMatch(of: /: (\d+)\/(\d+) passed$/)
            #expect(counts.map { $0.1 == $0.2 && (Int($0.2) ?? 0) > 0 } == true, "mode \(mode): \(line)")
        }
        // cuDNN's graph API really ran the fp16 convolutions and attentions (none fell back).
        for label in ["graph", "autotune+graph"] {
            let report = output.split(separator: "\n").first { $0.hasPrefix("PARITY \(label): ") }.map(String.init) ?? ""
            for name in ["conv graph API", "cuDNN attention"] {
                let part = report.range(of: name + ": ").map { String(report[$0.lowerBound...]) } ?? ""
                let counts = part.firstMatch(of: /: (\d+) shapes planned, (\d+) runs, (\d+) refused/)
                #expect(counts.map { (Int($0.2) ?? 0) > 0 && $0.3 == "0" } == true, "\(label) \(name): \(report)")
            }
        }
    }

    /// The tiny SSD-1B pipeline on `--backend cuda` over the emulated driver against diffusers'
    /// fp32 latents (the GPU visit's check: 2.3e-3 and 1.9e-3 on an H200); the second case with CUDA
    /// graphs, the convolutions and the UNet's attention on cuDNN's graph API (recorded in the capture,
    /// replayed).
    /// The last cases: a T2I-Adapter (feature maps as inputs of the recorded graph, a rank-6 permute) and
    /// perturbed-attention guidance (a three-part batch split in the perturbed layers).
    @Test(arguments: [
        (fixture: "euler_force_zeros", graphs: "0", arguments: ["--prompt", "a photo of a cat", "--guidance", "9", "--seed", "0", "--steps", "4"],
         tolerance: 5e-3),
        (fixture: "euler_negative", graphs: "1", arguments: ["--prompt", "an astronaut riding a horse!", "--negative-prompt", "ugly, blurry",
                                                             "--guidance", "7.5", "--seed", "1", "--steps", "4"], tolerance: 5e-3),
        // fp32 activations on the GPU (`--precision fp32`): 2.0e-6 from diffusers' fp32 (fp16: 2.8e-3).
        (fixture: "euler_force_zeros", graphs: "1", arguments: ["--prompt", "a photo of a cat", "--guidance", "9", "--seed", "0", "--steps", "4",
                                                                "--precision", "fp32"], tolerance: 1e-4),
        (fixture: "t2i_basic", graphs: "1", arguments: ["--prompt", "a house by a lake", "--negative-prompt", "blurry", "--guidance", "7",
                                                        "--seed", "10", "--steps", "3", "--t2i-adapter", NullDriverTests.root + "/Tests/Fixtures/pipeline/t2i-adapter/xl",
                                                        "--adapter-image", NullDriverTests.root + "/Tests/Fixtures/pipeline/t2i_sketch.png", "--adapter-scale", "0.8"],
         tolerance: 5e-3),
        (fixture: "pag_basic", graphs: "1", arguments: ["--prompt", "a photo of a cat", "--negative-prompt", "blurry", "--guidance", "7",
                                                        "--seed", "20", "--steps", "3", "--pag-scale", "3", "--pag-layer", "down_blocks.2"],
         tolerance: 5e-3),
        // A ControlNet Union with one condition (its attention block runs across the batch rows), on the backend's
        // defaults (graphs, autotune, fused convolutions, cuDNN's composite attention: no switch set).
        (fixture: "union_single", graphs: "default", arguments: ["--prompt", "a photo of a cat", "--negative-prompt", "blurry",
                                                                 "--guidance", "7", "--seed", "50", "--steps", "3",
                                                                 "--controlnet", NullDriverTests.root + "/Tests/Fixtures/pipeline/tiny-controlnet-union",
                                                                 "--control-image", NullDriverTests.root + "/Tests/Fixtures/pipeline/control.png",
                                                                 "--control-mode", "3", "--control-scale", "0.8"],
         tolerance: 5e-3),
        // Latents of 6 × 10 → 3 × 5 → 2 × 3: upsampling to odd skip sizes (a cropped ×2 before the convolution), the
        // adapter's ceil-mode pooling. (240 noise values: a multiple of 16, so torch's fp16 draw equals the fp32 one.)
        (fixture: "t2i_odd_size", graphs: "1", arguments: ["--prompt", "a ship", "--guidance", "6", "--seed", "15", "--steps", "3",
                                                           "--width", "80", "--height", "48",
                                                           "--t2i-adapter", NullDriverTests.root + "/Tests/Fixtures/pipeline/t2i-adapter/xl",
                                                           "--adapter-image", NullDriverTests.root + "/Tests/Fixtures/pipeline/t2i_sketch_wide.png"],
         tolerance: 5e-3),
    ])
    func tinyPipelineOnTheEmulatedDriverMatchesDiffusers(_ c: (fixture: String, graphs: String, arguments: [String], tolerance: Double)) throws {
        guard let ssd1b = executable("ssd1b") else { return }
        guard let libraries = Self.buildLibraries(emulated: true) else { required("cc could not build the emulated CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let fixtures = Self.root + "/Tests/Fixtures/pipeline/"
        let latents = libraries + "/latents.safetensors"
        let (status, output) = Self.run(ssd1b, ["generate", "--model", fixtures + "tiny-ssd1b", "--width", "64", "--height", "64",
                                                "--backend", "cuda", "--quiet", "--output", libraries + "/image.png",
                                                "--save-latents", latents] + c.arguments,
                                        environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "TMPDIR": libraries]
                                            .merging(c.graphs == "default" ? [:] : ["SSD_CUDA_GRAPHS": c.graphs, "SSD_CUDA_CONV_GRAPH": c.graphs,
                                                                                    "SSD_CUDA_CUDNN_ATTENTION": c.graphs]) { $1 },
                                        timeout: 600)
        #expect(status == 0, "\(output)")
        guard status == 0 else { return }
        let ours = try SafetensorsFile(path: latents).view("latents")
        let theirs = try SafetensorsFile(path: fixtures + c.fixture + ".safetensors").view("latents")
        #expect(ours.shape == theirs.shape)
        func values(_ v: HostTensorView) -> [Float] {
            var out = [Float](repeating: 0, count: v.count)
            out.withUnsafeMutableBufferPointer { v.convertToFloat(into: $0.baseAddress!) }
            return out
        }
        let a = values(ours), b = values(theirs)
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
        let error = (num / max(den, 1e-30)).squareRoot()
        #expect(error < c.tolerance, "\(c.fixture) \(c.arguments): relative error \(error)")
    }

    /// The kernel disk cache (`SSD_CUDA_KERNEL_CACHE`) on the emulated driver, whose "CUBIN" names the
    /// shared library the emulator compiled: a second process loads every kernel group from the cache
    /// instead of compiling; when the driver refuses a stored image (its library gone) or a file is
    /// truncated, the group is compiled again and the file replaced; the latents stay bitwise the same.
    @Test func kernelDiskCacheIsReusedAndRebuilt() throws {
        guard let ssd1b = executable("ssd1b") else { return }
        guard let libraries = Self.buildLibraries(emulated: true) else { required("cc could not build the emulated CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let cache = libraries + "/kernel-cache"
        var reference: Data?
        /// One generation with the emulator's libraries under `tmp`: (groups compiled, groups loaded).
        func generate(_ tmp: String, _ label: String) throws -> (Int, Int)? {
            try FileManager.default.createDirectory(atPath: libraries + "/" + tmp, withIntermediateDirectories: true)
            let latents = libraries + "/latents-\(label).safetensors"
            let (status, output) = Self.run(ssd1b, [
                "generate", "--model", Self.root + "/Tests/Fixtures/pipeline/tiny-ssd1b", "--prompt", "a photo of a cat",
                "--width", "64", "--height", "64", "--steps", "2", "--seed", "3", "--backend", "cuda", "--quiet", "--report-backend",
                "--output", libraries + "/image.png", "--save-latents", latents,
            ], environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "TMPDIR": libraries + "/" + tmp, "SSD_CUDA_KERNEL_CACHE": cache],
               timeout: 600)
            #expect(status == 0, "\(label): \(output)")
            let data = try Data(contentsOf: URL(fileURLWithPath: latents))
            if let reference { #expect(data == reference, "\(label): latents differ from the first run's") } else { reference = data }
            let counts = output.firstMatch(of: /kernels: (\d+) groups compiled by NVRTC, (\d+) loaded from the kernel cache/)
            #expect(counts != nil, "\(label): \(output)")
            return counts.map { (Int($0.1) ?? -1, Int($0.2) ?? -1) }
        }
        guard let first = try generate("tmp1", "first") else { return }
        #expect(first.0 > 0 && first.1 == 0, "first run: \(first)")
        let files = try FileManager.default.contentsOfDirectory(atPath: cache).filter { $0.hasSuffix(".ssdk") }
        #expect(files.count == first.0, "\(files)")
        // A second process loads every group.
        let second = try generate("tmp1", "second")
        #expect(second.map { $0 == (0, first.0) } == true, "second run: \(String(describing: second))")
        // The images' libraries are gone: the driver refuses them, the groups are compiled again.
        try FileManager.default.removeItem(atPath: libraries + "/tmp1")
        let third = try generate("tmp2", "refused")
        #expect(third.map { $0 == (first.0, 0) } == true, "after the images' libraries went: \(String(describing: third))")
        // Truncated files are ignored and replaced.
        for file in files {
            let path = cache + "/" + file
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        }
        let fourth = try generate("tmp2", "truncated")
        #expect(fourth.map { $0 == (first.0, 0) } == true, "after truncating: \(String(describing: fourth))")
        let fifth = try generate("tmp2", "rewritten")
        #expect(fifth.map { $0 == (0, first.0) } == true, "after rewriting: \(String(describing: fifth))")
    }

    /// CUDA graphs of the whole (tiny) UNet on the emulated driver, where a replay computes: the
    /// capture call and replays with the first and a second input equal eager calls bitwise, memory
    /// is stable over replays (`ssd-cuda-check graphs --model`).
    @Test func graphReplayOnTheEmulatedDriverEqualsEager() throws {
        guard let check = executable("ssd-cuda-check") else { return }
        guard let libraries = Self.buildLibraries(emulated: true) else { required("cc could not build the emulated CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let (status, output) = Self.run(check, ["graphs", "--model", Self.root + "/Tests/Fixtures/pipeline/tiny-ssd1b", "--size", "64",
                                                "--batches", "2", "--replays", "2", "--block", "0", "--timed", "1"],
                                        environment: ["SSD_CUDA_LIBRARY_PATH": libraries, "TMPDIR": libraries], timeout: 600)
        #expect(status == 0 && output.contains("GRAPHS all checks passed"), "\(output.suffix(3000))")
        #expect(output.contains(": replaying, 2 calls, 1 replays"), "\(output.suffix(3000))")
    }

    /// The per-operation profile (CUDA events around every kernel, GEMM and convolution, read when
    /// the profile is asked for) runs through on the unet-like block.
    @Test func profileRunsOnTheNullDriver() throws {
        guard let check = executable("ssd-cuda-check") else { return }
        guard let libraries = Self.buildLibraries() else { required("cc could not build the null CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let (status, output) = Self.run(check, ["profile", "--top", "5"], environment: ["SSD_CUDA_LIBRARY_PATH": libraries])
        #expect(status == 0, "\(output)")
        let summary = output.split(separator: "\n").first { $0.contains("operations on the GPU (CUDA events)") }.map(String.init) ?? ""
        let calls = summary.firstMatch(of: /in (\d+) calls/).flatMap { Int($0.1) } ?? 0
        #expect(calls > 10, "\(output)")
        // Every event pair was read: the null driver says 1 ms for each.
        let milliseconds = summary.firstMatch(of: /\(CUDA events\) ([\d.]+) ms/).flatMap { Double($0.1) } ?? 0
        #expect(milliseconds == Double(calls), "\(summary)")
        #expect(output.contains("gemm") && output.contains("attention"), "\(output)")
    }

    @Test func graphCaptureAndReplayRunOnTheNullDriver() throws {
        guard let check = executable("ssd-cuda-check") else { return }
        guard let libraries = Self.buildLibraries() else { required("cc could not build the null CUDA library"); return }
        defer { try? FileManager.default.removeItem(atPath: libraries) }
        let (_, output) = Self.run(check, ["graphs", "--replays", "3"], environment: ["SSD_CUDA_LIBRARY_PATH": libraries])
        #expect(output.contains("CUDA: available: null CUDA device"), "\(output)")
        #expect(output.contains(": replaying, 2 calls, 1 replays"), "\(output)")
        #expect(output.contains("-> stable"), "\(output)")
        #expect(!output.contains("CAPTURE REFUSED"), "\(output)")
    }
}
#endif
