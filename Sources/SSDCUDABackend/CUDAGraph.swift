import CCUDA
import SSDTensor

/// One recorded region: the instantiated graph, the buffers its inputs are copied into and its
/// outputs are written to, and every older buffer the recorded work reads (weights), kept alive
/// as long as the graph. Destroyed when the last reference goes (the buffers then go back to the
/// pool, stream-ordered after the last launch).
final class CUDAGraphEntry {
    let graphs: CCUDAGraphAPI
    let graph: CUgraph
    let exec: CUgraphExec
    let inputs: [Tensor]
    let outputs: [Tensor]
    let retained: [DeviceBuffer]
    let nodes: Int
    /// Graph memory (temporary tensors) the recording allocates and frees per launch, at its peak.
    let graphMemoryBytes: Int

    init(graphs: CCUDAGraphAPI, graph: CUgraph, exec: CUgraphExec, inputs: [Tensor], outputs: [Tensor], retained: [DeviceBuffer],
         nodes: Int, graphMemoryBytes: Int) {
        self.graphs = graphs
        self.graph = graph
        self.exec = exec
        self.inputs = inputs
        self.outputs = outputs
        self.retained = retained
        self.nodes = nodes
        self.graphMemoryBytes = graphMemoryBytes
    }

    private var destroyed = false

    /// Destroys the executable graph and the graph (an executing graph is freed by the driver when
    /// it completes); the buffers go when the entry goes.
    func destroy() {
        guard !destroyed else { return }
        destroyed = true
        _ = graphs.cuGraphExecDestroy!(exec)
        _ = graphs.cuGraphDestroy!(graph)
    }

    deinit { destroy() }
}

/// Captures, replays and frees `CUDAGraphEntry`s on the backend's stream.
///
/// Capture: the stream is drained and the pool's cached memory trimmed (the graph gets its own
/// memory for its temporaries), persistent input and output buffers are allocated, then the
/// body is captured reading the input buffers, its outputs are copied into the output buffers
/// inside the capture, and its temporaries are freed inside it, so every graph allocation is
/// also freed by the graph. Refused (the region stays eager): a host transfer or `synchronize`
/// inside the body, a driver refusal or invalidated capture, a temporary that outlives the
/// capture, outputs of other shapes than in the warm-up call.
final class CUDAGraphRecorder: GraphRecorder {
    let backend: CUDABackend
    let mode: CUDAGraphOptions.CaptureMode

    init(backend: CUDABackend, mode: CUDAGraphOptions.CaptureMode) {
        self.backend = backend
        self.mode = mode
    }

    var device: CUDADevice { backend.device }

    func measure(_ body: () throws -> [Tensor]) throws -> (outputs: [Tensor], workingBytes: Int) {
        let (outputs, bytes) = try device.measureWorkingBytes(body)
        return (outputs, bytes)
    }

    func capture(inputs: [Tensor], outputs: [TensorSignature], _ body: ([Tensor]) throws -> [Tensor]) throws -> CUDAGraphEntry {
        guard let graphs = device.graphs else {
            throw GraphCaptureFailure(reason: device.graphsUnavailableReason ?? "CUDA graphs are unavailable")
        }
        // The warm-up work has finished; what the pool cached goes back to the driver, so that
        // the graph's own memory does not come on top of it.
        try device.synchronize()
        device.trimPool()
        let persistentInputs = try inputs.map { input -> Tensor in
            let copy = try backend.empty(input.shape, input.dtype)
            try backend.buffer(copy, "runReplayable").layout = try backend.buffer(input, "runReplayable").layout
            return copy
        }
        let persistentOutputs = try outputs.map { try backend.empty($0.shape, $0.dtype) }

        try device.beginCapture(mode: mode)
        var bodyError: (any Error)?
        do {
            try enqueue(body, inputs: persistentInputs, outputs: persistentOutputs)
        } catch {
            bodyError = error
        }
        let (graph, result, tracked) = device.endCapture()
        func fail(_ reason: String) -> GraphCaptureFailure {
            if let graph { _ = graphs.cuGraphDestroy!(graph) }
            return GraphCaptureFailure(reason: reason)
        }
        if let bodyError {
            let end = result == Int32(CCUDA_SUCCESS) ? "" : "; cuStreamEndCapture: \(CUDADevice.describe(device.driver, result))"
            throw fail("\(bodyError)\(end)")
        }
        guard result == Int32(CCUDA_SUCCESS), let graph, let tracked else {
            throw fail("cuStreamEndCapture: \(CUDADevice.describe(device.driver, result))")
        }
        guard tracked.liveBytes == 0 else {
            throw fail("\(tracked.liveBytes) bytes allocated inside the capture are still referenced after it (a tensor escaped the region)")
        }
        var nodes = 0
        _ = graphs.cuGraphGetNodes!(graph, nil, &nodes)
        var exec: CUgraphExec?
        let instantiated = graphs.cuGraphInstantiateWithFlags!(&exec, graph, 0)
        guard instantiated == Int32(CCUDA_SUCCESS), let exec else {
            throw fail("cuGraphInstantiateWithFlags: \(CUDADevice.describe(device.driver, instantiated))")
        }
        let entry = CUDAGraphEntry(graphs: graphs, graph: graph, exec: exec, inputs: persistentInputs, outputs: persistentOutputs,
                                   retained: Array(tracked.retained.values), nodes: nodes, graphMemoryBytes: tracked.peakBytes)
        let uploaded = graphs.cuGraphUpload!(exec, device.stream)
        guard uploaded == Int32(CCUDA_SUCCESS) else {
            throw GraphCaptureFailure(reason: "cuGraphUpload: \(CUDADevice.describe(device.driver, uploaded))")
        }
        return entry
    }

    /// The captured work: the body on the persistent inputs, its outputs copied out. Its temporaries
    /// (the body's outputs included) are released when this returns, inside the capture.
    private func enqueue(_ body: ([Tensor]) throws -> [Tensor], inputs: [Tensor], outputs: [Tensor]) throws {
        let produced = try body(inputs)
        let signatures = produced.map(TensorSignature.init)
        let expected = outputs.map(TensorSignature.init)
        guard signatures == expected else {
            throw GraphCaptureFailure(reason: "the captured call returned \(signatures), the warm-up call \(expected)")
        }
        for (destination, source) in zip(outputs, produced) {
            try device.copyOnDevice(try backend.pointer(destination, "runReplayable"), from: try backend.pointer(source, "runReplayable"),
                                    bytes: TensorSignature(source).byteCount)
        }
    }

    func replay(_ graph: CUDAGraphEntry, inputs: [Tensor]) throws -> [Tensor] {
        guard inputs.count == graph.inputs.count else {
            throw GraphCaptureFailure(reason: "\(inputs.count) inputs for a graph recorded with \(graph.inputs.count)")
        }
        try device.makeCurrent()
        for (destination, source) in zip(graph.inputs, inputs) {
            try device.copyOnDevice(try backend.pointer(destination, "runReplayable"), from: try backend.pointer(source, "runReplayable"),
                                    bytes: TensorSignature(source).byteCount)
        }
        try device.check(graph.graphs.cuGraphLaunch!(graph.exec, device.stream), "cuGraphLaunch")
        device.notePeakWithGraphMemory()
        return graph.outputs
    }

    func describe(_ graph: CUDAGraphEntry) -> String {
        "\(graph.nodes) nodes, \(graph.graphMemoryBytes >> 20) MiB graph memory, \(graph.retained.count) buffers retained"
    }

    func released(_ graphs: [CUDAGraphEntry]) {
        guard !graphs.isEmpty else { return }
        for graph in graphs { graph.destroy() }
        if (try? device.synchronize()) != nil { device.trimGraphMemory() }
    }
}

extension CUDABackend {
    /// Records the region as a CUDA graph and replays it when graphs are on (`graphOptions`);
    /// otherwise runs `body`. See `GraphCache.run` for the sequence.
    ///
    /// Lifetime rule: the tensors a replayed call returns are the graph's output buffers. Their
    /// contents are valid until the next `runReplayable` call with the same key (which overwrites
    /// them, stream-ordered after the work already enqueued on them); copy an output to keep it
    /// longer. After `releaseGraphs()` or a call with other input shapes they keep their memory
    /// (the tensors own it) but are no longer written. The inputs are copied into the graph's own
    /// buffers, so the caller may drop or reuse its input tensors as soon as the call returns.
    public func runReplayable(key: String, inputs: [Tensor], _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor] {
        let options = graphOptions
        guard options.enabled, graphsUsable else { return try body(inputs) }
        return try graphCache.run(key: key, inputs: inputs, options: options, recorder: graphRecorder, body)
    }

    /// True while graphs are on and usable: `runReplayable` then replays recorded regions.
    public var replaysRecordedRegions: Bool { graphOptions.enabled && graphsUsable }

    /// Frees every recorded graph, its buffers and its graph memory (waits for the stream).
    /// Tensors a replay returned stay valid (they own their memory).
    public func releaseGraphs() {
        graphRecorder.released(graphCache.removeAll())
    }

    /// Every region `runReplayable` has seen since the last `releaseGraphs`, most recent first.
    public var graphStatus: [CUDAGraphStatus] { graphCache.status }

    /// Why graphs cannot be used here (driver without the graph API, profiling on, an unreadable
    /// `SSD_CUDA_GRAPH*` value), or nil.
    public var graphsUnavailableReason: String? {
        if let reason = device.graphsUnavailableReason { return reason }
        if device.profiling { return "profiling is on (SSD_CUDA_PROFILE=1): every op is timed by CUDA events" }
        return nil
    }

    /// True when graphs are available and switched on.
    public var graphsActive: Bool { graphOptions.enabled && graphsUsable }

    var graphsUsable: Bool { device.graphs != nil && !device.profiling }

    /// Bytes the driver holds for CUDA graph memory (temporaries of recorded regions).
    public var graphReservedBytes: Int { device.graphReservedBytes }
}
