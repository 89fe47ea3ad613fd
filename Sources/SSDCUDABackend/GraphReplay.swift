import SSDTensor

/// How `CUDABackend.runReplayable` uses CUDA graphs (Documentation/CUDA.md, "CUDA graphs").
///
/// On by default (measured on an H200: 1.05× at batch 1, bitwise equal to eager). `fromEnvironment()`
/// reads `SSD_CUDA_GRAPHS` (`0`/`off`/`false` disables, an unreadable value too),
/// `SSD_CUDA_GRAPH_WARMUP` (eager calls before the capture, default 1),
/// `SSD_CUDA_GRAPH_CAPTURE_MODE` (`thread-local`, `global` or `relaxed`), `SSD_CUDA_GRAPH_LIMIT`
/// (graphs kept at once, default 2) and `SSD_CUDA_GRAPH_MAX_WORKSPACE_MIB` (regions whose eager
/// call needed more temporary memory stay eager, default 3072).
public struct CUDAGraphOptions: Sendable, Hashable {
    /// `cuStreamBeginCapture`'s mode: which CUDA calls of other code are refused while capturing.
    public enum CaptureMode: String, Sendable, Hashable, CaseIterable {
        /// Unsafe calls (synchronous allocation, synchronisation, …) refused in every thread.
        case global
        /// Unsafe calls refused in the capturing thread only (default).
        case threadLocal = "thread-local"
        /// Nothing refused (the capture may still be invalidated).
        case relaxed
    }

    /// Record and replay at all.
    public var enabled: Bool
    /// Eager calls of a region (per input shapes) before it is captured, at least 1: they load
    /// kernels, make the cuBLASLt / cuDNN plans and grow the memory pool outside the capture.
    public var warmUpCalls: Int
    /// The capture mode.
    public var captureMode: CaptureMode
    /// Graphs kept at once (least recently used dropped first), at least 1.
    public var maxGraphs: Int
    /// A region whose warm-up call needed more temporary device memory than this stays eager: a
    /// graph keeps that much memory reserved for itself between calls.
    public var maxWorkingBytes: Int

    /// Graphs off; the other fields at their defaults.
    public static let disabled = CUDAGraphOptions(enabled: false)
    /// Graphs on with the defaults (what `CUDAGraphOptions()` gives).
    public static let enabledDefaults = CUDAGraphOptions(enabled: true)

    /// Graph options; the defaults are `SSD_CUDA_GRAPHS`'s when it is unset (on, one warm-up call, thread-local capture).
    public init(enabled: Bool = true, warmUpCalls: Int = 1, captureMode: CaptureMode = .threadLocal, maxGraphs: Int = 2,
                maxWorkingBytes: Int = 3072 << 20) {
        self.enabled = enabled
        self.warmUpCalls = max(1, warmUpCalls)
        self.captureMode = captureMode
        self.maxGraphs = max(1, maxGraphs)
        self.maxWorkingBytes = max(0, maxWorkingBytes)
    }

    /// The options the `SSD_CUDA_GRAPH*` variables give; `problems` names every value that could not
    /// be read (its setting keeps the default; an unreadable `SSD_CUDA_GRAPHS` leaves graphs off).
    public static func parse(_ lookup: (String) -> String?) -> (options: CUDAGraphOptions, problems: [String]) {
        var options = CUDAGraphOptions()
        var problems = [String]()
        func value(_ name: String) -> String? {
            guard let raw = lookup(name) else { return nil }
            let trimmed = raw.trimmingWhitespace.lowercased()
            return trimmed.isEmpty ? nil : trimmed
        }
        func integer(_ name: String, minimum: Int) -> Int? {
            guard let text = value(name) else { return nil }
            guard let n = Int(text), n >= minimum else {
                problems.append("\(name)=\(lookup(name) ?? "") is not an integer ≥ \(minimum)")
                return nil
            }
            return n
        }
        if let text = value("SSD_CUDA_GRAPHS") {
            switch text {
            case "1", "on", "true", "yes": options.enabled = true
            case "0", "off", "false", "no": options.enabled = false
            default:
                options.enabled = false
                problems.append("SSD_CUDA_GRAPHS=\(lookup("SSD_CUDA_GRAPHS") ?? "") is not 1/on/true or 0/off/false: graphs off")
            }
        }
        if let n = integer("SSD_CUDA_GRAPH_WARMUP", minimum: 1) { options.warmUpCalls = n }
        if let n = integer("SSD_CUDA_GRAPH_LIMIT", minimum: 1) { options.maxGraphs = n }
        if let n = integer("SSD_CUDA_GRAPH_MAX_WORKSPACE_MIB", minimum: 0) {
            options.maxWorkingBytes = n > Int.max >> 21 ? Int.max : n << 20
        }
        if let text = value("SSD_CUDA_GRAPH_CAPTURE_MODE") {
            if let mode = CaptureMode(rawValue: text == "threadlocal" || text == "thread_local" ? "thread-local" : text) {
                options.captureMode = mode
            } else {
                problems.append("SSD_CUDA_GRAPH_CAPTURE_MODE=\(lookup("SSD_CUDA_GRAPH_CAPTURE_MODE") ?? "") is not global, thread-local or relaxed")
            }
        }
        return (options, problems)
    }

    /// `parse` over the process environment.
    public static func fromEnvironment() -> (options: CUDAGraphOptions, problems: [String]) {
        parse { environment($0) }
    }
}

/// A tensor's shape and element type: what a recorded graph is specialised for.
struct TensorSignature: Hashable, CustomStringConvertible {
    var shape: [Int]
    var dtype: DType

    init(shape: [Int], dtype: DType) {
        self.shape = shape
        self.dtype = dtype
    }

    init(_ t: Tensor) { self.init(shape: t.shape, dtype: t.dtype) }

    var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    var description: String { "\(shape) \(dtype.rawValue)" }
}

/// Why a capture or a replay did not work; the region then runs eagerly.
struct GraphCaptureFailure: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// What records, replays and frees graphs: `CUDAGraphRecorder` on the GPU; tests use a fake.
protocol GraphRecorder: AnyObject {
    associatedtype Graph: AnyObject
    /// Runs `body` eagerly and returns its outputs and the most temporary device memory it held
    /// (bytes above what was live when it started).
    func measure(_ body: () throws -> [Tensor]) throws -> (outputs: [Tensor], workingBytes: Int)
    /// Records `body` on buffers of its own (inputs shaped like `inputs`, outputs as `outputs`)
    /// without running it. Throws (any error) when the capture was refused or invalidated; the
    /// stream must be out of capture mode by then.
    func capture(inputs: [Tensor], outputs: [TensorSignature], _ body: ([Tensor]) throws -> [Tensor]) throws -> Graph
    /// Copies `inputs` into `graph`'s input buffers, launches it, returns its output tensors.
    func replay(_ graph: Graph, inputs: [Tensor]) throws -> [Tensor]
    /// A short description of `graph` (node count, memory) for `status`.
    func describe(_ graph: Graph) -> String
    /// Called with graphs that are no longer used (after they are dropped from the cache).
    func released(_ graphs: [Graph])
}

/// One region's state, as `CUDABackend.graphStatus` reports it.
public struct CUDAGraphStatus: Sendable, Hashable, CustomStringConvertible {
    /// The `runReplayable` key.
    public let key: String
    /// The input shapes and types the entry is for.
    public let inputs: String
    /// `warming up`, `replaying` or `eager`.
    public let state: String
    /// Why the region runs eagerly (state `eager`), else nil.
    public let reason: String?
    /// The graph (nodes, memory) when replaying.
    public let graph: String?
    /// Calls with these shapes so far, and how many of them were replays.
    public let calls: Int, replays: Int
    /// Temporary device memory the warm-up call needed.
    public let workingBytes: Int?

    public var description: String {
        var text = "\(key) \(inputs): \(state), \(calls) calls, \(replays) replays"
        if let workingBytes { text += ", working set \(workingBytes >> 20) MiB" }
        if let graph { text += "; \(graph)" }
        if let reason { text += "; \(reason)" }
        return text
    }
}

/// Per key: warm up, capture, replay; or stay eager with the reason. The decisions only (no
/// device calls), so that they are tested without a GPU; `run` drives a `GraphRecorder`.
///
/// A key is one region (e.g. one UNet). Its entry is for one input signature: a call with other
/// shapes or types drops the old graph and starts over (warm-up, capture). At most
/// `options.maxGraphs` entries are kept, least recently used dropped first. A failed capture or
/// replay leaves the entry eager with the reason until the shapes change or `removeAll`.
final class GraphCache<Graph: AnyObject>: @unchecked Sendable {
    enum Phase {
        case warming(calls: Int, outputs: [TensorSignature]?)
        case ready(Graph, info: String)
        case eager(reason: String)
    }

    struct Entry {
        var inputs: [TensorSignature]
        var phase: Phase
        var lastUse: Int
        var calls = 0
        var replays = 0
        var workingBytes: Int?
    }

    enum Action {
        /// Run the body with no bookkeeping (graphs off, or inside another replayable region).
        case direct
        case warmUp
        case capture(outputs: [TensorSignature])
        case replay(Graph)
        case eager
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var clock = 0
        var depth = 0
    }

    private let state = Locked(State())

    /// Decides what this call does; returns graphs dropped to make room or because the shapes changed.
    func begin(key: String, inputs: [TensorSignature], options: CUDAGraphOptions) -> (Action, dropped: [Graph]) {
        state.withLock { s in
            guard options.enabled, s.depth == 0 else { return (.direct, []) }
            s.depth += 1
            s.clock += 1
            var dropped = [Graph]()
            if let old = s.entries[key], old.inputs != inputs {
                if case let .ready(graph, _) = old.phase { dropped.append(graph) }
                s.entries[key] = nil
            }
            if s.entries[key] == nil {
                s.entries[key] = Entry(inputs: inputs, phase: .warming(calls: 0, outputs: nil), lastUse: s.clock)
                while s.entries.count > options.maxGraphs {
                    guard let oldest = s.entries.filter({ $0.key != key }).min(by: { $0.value.lastUse < $1.value.lastUse }) else { break }
                    if case let .ready(graph, _) = oldest.value.phase { dropped.append(graph) }
                    s.entries[oldest.key] = nil
                }
            }
            s.entries[key]!.lastUse = s.clock
            s.entries[key]!.calls += 1
            let action: Action
            switch s.entries[key]!.phase {
            case let .warming(calls, outputs):
                if calls >= options.warmUpCalls, let outputs { action = .capture(outputs: outputs) } else { action = .warmUp }
            case let .ready(graph, _): action = .replay(graph)
            case .eager: action = .eager
            }
            return (action, dropped)
        }
    }

    /// Ends a call that `begin` did not answer with `.direct`.
    func end() { state.withLock { $0.depth = max(0, $0.depth - 1) } }

    /// After a warm-up call: its outputs and the temporary memory it needed.
    func warmedUp(key: String, inputs: [TensorSignature], outputs: [TensorSignature], workingBytes: Int, options: CUDAGraphOptions) {
        state.withLock { s in
            guard let entry = s.entries[key], entry.inputs == inputs, case let .warming(calls, previous) = entry.phase else { return }
            s.entries[key]!.workingBytes = max(entry.workingBytes ?? 0, workingBytes)
            if let previous, previous != outputs {
                s.entries[key]!.phase = .eager(reason: "the outputs changed between warm-up calls (\(previous) then \(outputs))")
            } else if workingBytes > options.maxWorkingBytes {
                s.entries[key]!.phase = .eager(reason: "the region needs \(workingBytes >> 20) MiB of temporary memory, over the graph limit of \(options.maxWorkingBytes >> 20) MiB (SSD_CUDA_GRAPH_MAX_WORKSPACE_MIB)")
            } else {
                s.entries[key]!.phase = .warming(calls: calls + 1, outputs: outputs)
            }
        }
    }

    /// Stores a recorded graph; false (and the caller frees it) when the entry went away meanwhile.
    func captured(key: String, inputs: [TensorSignature], graph: Graph, info: String) -> Bool {
        state.withLock { s in
            guard let entry = s.entries[key], entry.inputs == inputs, case .warming = entry.phase else { return false }
            s.entries[key]!.phase = .ready(graph, info: info)
            return true
        }
    }

    /// Leaves the entry eager with `reason`; returns its graph, if it had one, to be freed.
    func failed(key: String, inputs: [TensorSignature], reason: String) -> [Graph] {
        state.withLock { s in
            guard let entry = s.entries[key], entry.inputs == inputs else { return [] }
            s.entries[key]!.phase = .eager(reason: reason)
            if case let .ready(graph, _) = entry.phase { return [graph] }
            return []
        }
    }

    func replayed(key: String) {
        state.withLock { s in s.entries[key]?.replays += 1 }
    }

    /// Drops every entry; returns the graphs to free.
    func removeAll() -> [Graph] {
        state.withLock { s in
            let graphs = s.entries.values.compactMap { entry -> Graph? in
                if case let .ready(graph, _) = entry.phase { return graph }
                return nil
            }
            s.entries = [:]
            return graphs
        }
    }

    /// Number of recorded graphs held.
    var graphCount: Int {
        state.withLock { s in s.entries.values.filter { if case .ready = $0.phase { return true } else { return false } }.count }
    }

    /// Every entry, most recently used first.
    var status: [CUDAGraphStatus] {
        state.withLock { s in
            s.entries.sorted { $0.value.lastUse > $1.value.lastUse }.map { key, entry in
                let inputs = entry.inputs.map(\.description).joined(separator: ", ")
                switch entry.phase {
                case .warming:
                    return CUDAGraphStatus(key: key, inputs: inputs, state: "warming up", reason: nil, graph: nil,
                                           calls: entry.calls, replays: entry.replays, workingBytes: entry.workingBytes)
                case let .ready(_, info):
                    return CUDAGraphStatus(key: key, inputs: inputs, state: "replaying", reason: nil, graph: info,
                                           calls: entry.calls, replays: entry.replays, workingBytes: entry.workingBytes)
                case let .eager(reason):
                    return CUDAGraphStatus(key: key, inputs: inputs, state: "eager", reason: reason, graph: nil,
                                           calls: entry.calls, replays: entry.replays, workingBytes: entry.workingBytes)
                }
            }
        }
    }

    /// `ComputeBackend.runReplayable` on `recorder`: warm-up calls run `body` eagerly, the next
    /// call records it and replays the recording, later calls replay. A capture or replay that
    /// fails leaves the key eager (reason kept) and this call runs `body` eagerly; errors of the
    /// eager body itself propagate.
    func run<R: GraphRecorder>(key: String, inputs: [Tensor], options: CUDAGraphOptions, recorder: R,
                               _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor] where R.Graph == Graph {
        let signature = inputs.map(TensorSignature.init)
        let (action, dropped) = begin(key: key, inputs: signature, options: options)
        if !dropped.isEmpty { recorder.released(dropped) }
        if case .direct = action { return try body(inputs) }
        defer { end() }

        func replay(_ graph: Graph) throws -> [Tensor] {
            let outputs: [Tensor]
            do {
                outputs = try recorder.replay(graph, inputs: inputs)
            } catch {
                let freed = failed(key: key, inputs: signature, reason: "replay failed: \(error)")
                recorder.released(freed)
                return try body(inputs)
            }
            replayed(key: key)
            return outputs
        }

        switch action {
        case .direct, .eager:
            return try body(inputs)
        case .warmUp:
            let (outputs, working) = try recorder.measure { try body(inputs) }
            warmedUp(key: key, inputs: signature, outputs: outputs.map(TensorSignature.init), workingBytes: working, options: options)
            return outputs
        case let .capture(outputSignature):
            let graph: Graph
            do {
                graph = try recorder.capture(inputs: inputs, outputs: outputSignature, body)
            } catch {
                recorder.released(failed(key: key, inputs: signature, reason: "capture failed: \(error)"))
                return try body(inputs)
            }
            guard captured(key: key, inputs: signature, graph: graph, info: recorder.describe(graph)) else {
                recorder.released([graph])
                return try body(inputs)
            }
            return try replay(graph)
        case let .replay(graph):
            return try replay(graph)
        }
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines.
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        return String(self.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
