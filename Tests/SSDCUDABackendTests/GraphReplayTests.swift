import CCUDA
import SSDTensor
import Testing
@testable import SSDCUDABackend

// The CUDA graph switch and the warm-up / capture / replay / fallback decisions, without a GPU:
// `GraphCache.run` drives a fake recorder.

@Test func graphOptionsDefaultOn() {
    let (options, problems) = CUDAGraphOptions.parse { _ in nil }
    #expect(options == CUDAGraphOptions.enabledDefaults)
    #expect(options == CUDAGraphOptions())
    #expect(options.enabled)
    #expect(!CUDAGraphOptions.disabled.enabled)
    #expect(options.warmUpCalls == 1)
    #expect(options.captureMode == .threadLocal)
    #expect(problems.isEmpty)
}

@Test func graphOptionsFromVariables() {
    let values = ["SSD_CUDA_GRAPHS": " On ", "SSD_CUDA_GRAPH_WARMUP": "2", "SSD_CUDA_GRAPH_CAPTURE_MODE": "relaxed",
                  "SSD_CUDA_GRAPH_LIMIT": "3", "SSD_CUDA_GRAPH_MAX_WORKSPACE_MIB": "512"]
    let (options, problems) = CUDAGraphOptions.parse { values[$0] }
    #expect(problems.isEmpty)
    #expect(options == CUDAGraphOptions(enabled: true, warmUpCalls: 2, captureMode: .relaxed, maxGraphs: 3, maxWorkingBytes: 512 << 20))
    for (text, enabled) in [("1", true), ("true", true), ("0", false), ("off", false), ("", true), (" ", true)] {
        #expect(CUDAGraphOptions.parse { $0 == "SSD_CUDA_GRAPHS" ? text : nil }.options.enabled == enabled)
    }
    #expect(CUDAGraphOptions.parse { $0 == "SSD_CUDA_GRAPH_CAPTURE_MODE" ? "thread_local" : nil }.options.captureMode == .threadLocal)
    #expect(CUDAGraphOptions.parse { $0 == "SSD_CUDA_GRAPH_CAPTURE_MODE" ? "GLOBAL" : nil }.options.captureMode == .global)
}

@Test func unreadableGraphOptionsAreReported() {
    let values = ["SSD_CUDA_GRAPHS": "maybe", "SSD_CUDA_GRAPH_WARMUP": "0", "SSD_CUDA_GRAPH_CAPTURE_MODE": "eager",
                  "SSD_CUDA_GRAPH_LIMIT": "x"]
    let (options, problems) = CUDAGraphOptions.parse { values[$0] }
    #expect(!options.enabled)
    #expect(options.warmUpCalls == 1 && options.maxGraphs == 2 && options.captureMode == .threadLocal)
    #expect(problems.count == 4)
    #expect(problems.contains { $0.contains("SSD_CUDA_GRAPHS=maybe") })
    #expect(problems.contains { $0.contains("SSD_CUDA_GRAPH_WARMUP=0") })
    // Out-of-range values passed to init are clamped.
    let clamped = CUDAGraphOptions(enabled: true, warmUpCalls: 0, maxGraphs: 0, maxWorkingBytes: -1)
    #expect(clamped.warmUpCalls == 1 && clamped.maxGraphs == 1 && clamped.maxWorkingBytes == 0)
}

// MARK: Fake recorder

final class FakeStorage: TensorStorage, @unchecked Sendable {
    let byteCount: Int
    var tag: Int
    init(byteCount: Int, tag: Int) {
        self.byteCount = byteCount
        self.tag = tag
    }
}

func fakeTensor(_ shape: [Int], tag: Int = 0, _ dtype: DType = .f16) -> Tensor {
    Tensor(shape: shape, dtype: dtype, storage: FakeStorage(byteCount: shape.reduce(1, *) * dtype.byteSize, tag: tag))
}

func tag(_ t: Tensor) -> Int { (t.storage as? FakeStorage)?.tag ?? -1 }

/// Records what it is asked to do; `capture` can be made to fail, `replay` too.
final class FakeRecorder: GraphRecorder {
    final class Graph {
        let id: Int
        let outputs: [Tensor]
        let inputs: [TensorSignature]
        init(id: Int, outputs: [Tensor], inputs: [TensorSignature]) {
            self.id = id
            self.outputs = outputs
            self.inputs = inputs
        }
    }

    var log = [String]()
    var captureError: (any Error)?
    var replayError: (any Error)?
    var workingBytes = 100
    var released = [Int]()
    private var next = 0

    func measure(_ body: () throws -> [Tensor]) throws -> (outputs: [Tensor], workingBytes: Int) {
        log.append("warm-up")
        return (try body(), workingBytes)
    }

    func capture(inputs: [Tensor], outputs: [TensorSignature], _ body: ([Tensor]) throws -> [Tensor]) throws -> Graph {
        log.append("capture")
        if let captureError { throw captureError }
        // The body is "recorded" on stand-in inputs; what it returns is not what the caller gets.
        _ = try body(inputs.map { fakeTensor($0.shape, tag: -2, $0.dtype) })
        next += 1
        return Graph(id: next, outputs: outputs.map { fakeTensor($0.shape, tag: 1000 + next, $0.dtype) }, inputs: inputs.map(TensorSignature.init))
    }

    func replay(_ graph: Graph, inputs: [Tensor]) throws -> [Tensor] {
        log.append("replay \(graph.id)")
        if let replayError { throw replayError }
        return graph.outputs
    }

    func describe(_ graph: Graph) -> String { "graph \(graph.id)" }

    func released(_ graphs: [Graph]) { released += graphs.map(\.id) }
}

struct Refused: Error, CustomStringConvertible {
    let description: String
}

final class Counter {
    var value = 0
}

/// A body that doubles the first input's tag into its one output (same shape).
func body(_ calls: Counter) -> ([Tensor]) throws -> [Tensor] {
    { inputs in
        calls.value += 1
        return [fakeTensor(inputs[0].shape, tag: tag(inputs[0]) * 2)]
    }
}

@Test func disabledRunsTheBodyDirectly() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    for _ in 0..<3 {
        let out = try cache.run(key: "unet", inputs: [fakeTensor([2, 4], tag: 3)], options: .disabled, recorder: recorder, body(calls))
        #expect(tag(out[0]) == 6)
    }
    #expect(calls.value == 3)
    #expect(recorder.log.isEmpty)
    #expect(cache.status.isEmpty)
}

@Test func warmUpThenCaptureThenReplay() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    let options = CUDAGraphOptions.enabledDefaults
    let first = try cache.run(key: "unet", inputs: [fakeTensor([2, 4], tag: 3)], options: options, recorder: recorder, body(calls))
    #expect(tag(first[0]) == 6)  // the warm-up call returns the body's own output
    #expect(cache.status.first?.state == "warming up")
    let second = try cache.run(key: "unet", inputs: [fakeTensor([2, 4], tag: 5)], options: options, recorder: recorder, body(calls))
    #expect(tag(second[0]) == 1001)  // the graph's output buffer
    let third = try cache.run(key: "unet", inputs: [fakeTensor([2, 4], tag: 7)], options: options, recorder: recorder, body(calls))
    #expect(third[0].storage === second[0].storage)  // the same buffer, overwritten by each replay
    #expect(recorder.log == ["warm-up", "capture", "replay 1", "replay 1"])
    #expect(calls.value == 2)  // warm-up + the recording
    let status = try #require(cache.status.first)
    #expect(status.state == "replaying" && status.calls == 3 && status.replays == 2 && status.graph == "graph 1")
    #expect(status.workingBytes == 100)
    #expect(cache.graphCount == 1)
}

@Test func moreWarmUpCalls() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    let options = CUDAGraphOptions(enabled: true, warmUpCalls: 3)
    for _ in 0..<5 { _ = try cache.run(key: "k", inputs: [fakeTensor([1])], options: options, recorder: recorder, body(calls)) }
    #expect(recorder.log == ["warm-up", "warm-up", "warm-up", "capture", "replay 1", "replay 1"])
}

@Test func captureFailureFallsBackToEagerWithTheReason() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    recorder.captureError = Refused(description: "cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED")
    let calls = Counter()
    let options = CUDAGraphOptions.enabledDefaults
    for i in 1...4 {
        let out = try cache.run(key: "unet", inputs: [fakeTensor([2], tag: i)], options: options, recorder: recorder, body(calls))
        #expect(tag(out[0]) == 2 * i)  // always the eager result
    }
    #expect(recorder.log == ["warm-up", "capture"])  // never retried for these shapes
    #expect(calls.value == 4)
    let status = try #require(cache.status.first)
    #expect(status.state == "eager")
    #expect(status.reason?.contains("capture failed: cuStreamEndCapture: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED") == true)
    // New shapes try again.
    recorder.captureError = nil
    _ = try cache.run(key: "unet", inputs: [fakeTensor([4])], options: options, recorder: recorder, body(calls))
    _ = try cache.run(key: "unet", inputs: [fakeTensor([4])], options: options, recorder: recorder, body(calls))
    #expect(recorder.log.suffix(3) == ["warm-up", "capture", "replay 1"])
}

@Test func replayFailureFreesTheGraphAndRunsEagerly() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    let options = CUDAGraphOptions.enabledDefaults
    for _ in 0..<2 { _ = try cache.run(key: "k", inputs: [fakeTensor([2], tag: 1)], options: options, recorder: recorder, body(calls)) }
    recorder.replayError = Refused(description: "cuGraphLaunch failed")
    let out = try cache.run(key: "k", inputs: [fakeTensor([2], tag: 4)], options: options, recorder: recorder, body(calls))
    #expect(tag(out[0]) == 8)
    #expect(recorder.released == [1])
    #expect(cache.status.first?.reason?.contains("replay failed: cuGraphLaunch failed") == true)
    #expect(cache.graphCount == 0)
}

@Test func eagerBodyErrorsPropagate() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    recorder.captureError = Refused(description: "refused")
    let failing: ([Tensor]) throws -> [Tensor] = { _ in throw Refused(description: "bad input") }
    #expect(throws: Refused.self) {
        try cache.run(key: "k", inputs: [fakeTensor([2])], options: .enabledDefaults, recorder: recorder, failing)
    }
    // The failed warm-up left nothing half-done: a good body still warms up then records.
    let calls = Counter()
    recorder.captureError = nil
    _ = try cache.run(key: "k", inputs: [fakeTensor([2])], options: .enabledDefaults, recorder: recorder, body(calls))
    _ = try cache.run(key: "k", inputs: [fakeTensor([2])], options: .enabledDefaults, recorder: recorder, body(calls))
    #expect(recorder.log == ["warm-up", "warm-up", "capture", "replay 1"])
}

@Test func shapeChangeReleasesTheOldGraph() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    let options = CUDAGraphOptions.enabledDefaults
    for shape in [[2, 8], [2, 8], [2, 8], [2, 16], [2, 16], [2, 8]] {
        _ = try cache.run(key: "unet", inputs: [fakeTensor(shape)], options: options, recorder: recorder, body(calls))
    }
    #expect(recorder.released == [1, 2])
    #expect(cache.status.count == 1)
    #expect(cache.status.first?.inputs == "[2, 8] f16")
    #expect(cache.graphCount == 0)  // [2, 8] is warming up again
    // A dtype change is a shape change too.
    _ = try cache.run(key: "unet", inputs: [fakeTensor([2, 8], .f32)], options: options, recorder: recorder, body(calls))
    #expect(cache.status.first?.inputs == "[2, 8] f32")
}

@Test func leastRecentlyUsedGraphsAreDropped() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let calls = Counter()
    let options = CUDAGraphOptions(enabled: true, maxGraphs: 2)
    for key in ["a", "b", "a", "b", "c"] {
        _ = try cache.run(key: key, inputs: [fakeTensor([1])], options: options, recorder: recorder, body(calls))
    }
    #expect(recorder.released == [1])  // "a" went when "c" came
    #expect(cache.status.map(\.key) == ["c", "b"])
    #expect(cache.removeAll().map(\.id) == [2])
    #expect(cache.status.isEmpty)
}

@Test func nestedRegionsRunDirectly() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    let innerCalls = Counter()
    let options = CUDAGraphOptions.enabledDefaults
    let outer: ([Tensor]) throws -> [Tensor] = { inputs in
        try cache.run(key: "inner", inputs: inputs, options: options, recorder: recorder, body(innerCalls))
    }
    for _ in 0..<3 { _ = try cache.run(key: "outer", inputs: [fakeTensor([1], tag: 1)], options: options, recorder: recorder, outer) }
    #expect(cache.status.map(\.key) == ["outer"])
    #expect(innerCalls.value == 2)  // inside the warm-up and the recording, not in replays
    #expect(recorder.log == ["warm-up", "capture", "replay 1", "replay 1"])
}

@Test func largeWorkingSetStaysEager() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    recorder.workingBytes = 5 << 20
    let calls = Counter()
    let options = CUDAGraphOptions(enabled: true, maxWorkingBytes: 4 << 20)
    for _ in 0..<3 { _ = try cache.run(key: "k", inputs: [fakeTensor([1])], options: options, recorder: recorder, body(calls)) }
    #expect(recorder.log == ["warm-up"])
    #expect(calls.value == 3)
    #expect(cache.status.first?.reason?.contains("5 MiB of temporary memory, over the graph limit of 4 MiB") == true)
}

@Test func changingOutputsBetweenWarmUpsStayEager() throws {
    let cache = GraphCache<FakeRecorder.Graph>()
    let recorder = FakeRecorder()
    var n = 1
    let growing: ([Tensor]) throws -> [Tensor] = { _ in
        n += 1
        return [fakeTensor([n])]
    }
    let options = CUDAGraphOptions(enabled: true, warmUpCalls: 2)
    for _ in 0..<4 { _ = try cache.run(key: "k", inputs: [fakeTensor([1])], options: options, recorder: recorder, growing) }
    #expect(recorder.log == ["warm-up", "warm-up"])
    #expect(cache.status.first?.reason?.contains("outputs changed") == true)
}

/// The optional graph symbols are resolved apart from the required driver table: without a loaded
/// driver the loader says so instead of failing the backend.
@Test func graphSymbolsAreOptional() {
    var table = CCUDAGraphAPI()
    var message = [CChar](repeating: 0, count: 512)
    let found = ccuda_load_graph_api(&table, &message, message.count)
    if CUDABackend.availability().isAvailable {
        #expect(found == 1 || string(message).contains("missing"))
    } else if CUDABackend.availability().description.contains("libcuda") {
        #expect(found == 0)
        #expect(string(message).contains("not loaded"))
        #expect(table.cuGraphLaunch == nil)
    }
}
