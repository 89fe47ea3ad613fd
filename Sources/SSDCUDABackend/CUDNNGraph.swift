import CCUDA
import SSDTensor

/// Plans of cuDNN 9 operation graphs (the graph/backend API of `cudnn_graph.h`), cached per `Key`:
/// the caller builds a finalized operation graph once per key; cuDNN's heuristics (mode A, then its
/// fallback list) give engine configurations and the first that finalizes within the workspace limit becomes the
/// execution plan (with `autotune`, the fastest of the first `timedCandidates`, timed on the call's
/// own operands outside graph captures). A key cuDNN cannot plan is remembered with the reason
/// (`report.refusals`) and `run` returns false for it, so that the caller takes its own path. A key
/// first seen during a graph capture is not planned there (finalizing may compile or allocate).
final class CUDNNGraphEngine<Key: Hashable>: @unchecked Sendable {
    /// Engine configurations asked of the heuristics, and how many of them autotune times.
    static var candidates: Int { 8 }
    static var timedCandidates: Int { 4 }

    /// A finalized execution plan and every descriptor it refers to (kept for its lifetime).
    final class Plan {
        let plan: cudnnBackendDescriptor_t
        let workspace: Int
        /// Unique ids of the graph's tensors, in the order of the pointers `run` is given.
        let uniqueIDs: [Int64]
        let label: String
        let descriptors: [cudnnBackendDescriptor_t]
        init(plan: cudnnBackendDescriptor_t, workspace: Int, uniqueIDs: [Int64], label: String, descriptors: [cudnnBackendDescriptor_t]) {
            self.plan = plan; self.workspace = workspace; self.uniqueIDs = uniqueIDs; self.label = label
            self.descriptors = descriptors
        }
    }

    /// What `build` hands back: the finalized operation graph and the unique ids of the tensors
    /// whose pointers `run` passes, in that order.
    struct Graph {
        let graph: cudnnBackendDescriptor_t
        let uniqueIDs: [Int64]
    }

    let device: CUDADevice
    let api: CCUDACudnnGraphAPI
    let autotune: Bool
    /// nil entries: cuDNN could not plan the key (see `report`).
    private let plans = Locked([Key: Plan?]())
    private let state = Locked((runs: 0, refusals: [String]()))
    /// Held while a plan is made (one at a time).
    private let building = Locked(())
    /// Plans refused after they were made, destroyed with the engine.
    private let retired = Locked([Plan]())

    /// nil when cuDNN or its graph API is absent.
    init?(device: CUDADevice, autotune: Bool) {
        guard device.cudnn != nil, device.cudnnHandle != nil, let api = device.cudnnGraph else { return nil }
        self.device = device
        self.api = api
        self.autotune = autotune
    }

    deinit {
        // The device (and its cuDNN handle) outlives this engine: it holds the device.
        plans.withLock { table in
            for case let plan? in table.values { destroy(plan) }
        }
        retired.withLock { for plan in $0 { destroy(plan) } }
    }

    /// Keys planned, executions, and the keys cuDNN could not plan with the reason.
    var report: (planned: Int, runs: Int, refusals: [String]) {
        let planned = plans.withLock { $0.values.filter { $0 != nil }.count }
        return state.withLock { (planned, $0.runs, $0.refusals) }
    }

    /// Enqueues the plan of `key` on `pointers` (device pointers, or host addresses of by-value
    /// scalars) and returns true; builds the plan first with `build` (descriptors from the builder it
    /// is given); returns false when `key` has no plan. `label` names the key in reports and the profile.
    func run(_ key: Key, label: @autoclosure () -> String, flops: Double, pointers: [CUdeviceptr],
             build: (DescriptorBuilder, cudnnHandle_t) throws -> Graph) throws -> Bool {
        guard let handle = device.cudnnHandle else { return false }
        try device.makeCurrent()
        let found: Plan?? = plans.withLock { $0[key] }
        let plan: Plan
        switch found {
        case .some(.some(let existing)): plan = existing
        case .some(.none): return false
        case .none:
            if device.isCapturing { return false }
            guard let made = try makePlan(key, label(), handle, pointers, build) else { return false }
            plan = made
        }
        let status: cudnnStatus_t
        do {
            status = try execute(plan, handle, pointers, profileName: "cudnn graph \(plan.label)", flops: flops)
        } catch let error as GraphBuildError {  // the variant pack was not made
            status = error.status == 0 ? -1 : error.status
        }
        guard status == 0 else {
            if device.isCapturing {
                throw TensorError.deviceFailure(backend: "cuda", message: "cudnnBackendExecute (\(plan.label)) failed during a capture: status \(status)")
            }
            refuse(key, plan.label, "cudnnBackendExecute: status \(status)")
            return false
        }
        state.withLock { $0.runs += 1 }
        return true
    }

    private func refuse(_ key: Key, _ label: String, _ reason: String) {
        let dropped = plans.withLock { table -> Plan? in
            let previous = table[key] ?? nil
            table[key] = .some(nil)
            return previous
        }
        // Kept until the engine goes: another thread may still be executing it.
        if let dropped { retired.withLock { $0.append(dropped) } }
        state.withLock { $0.refusals.append("\(label): \(reason)") }
    }

    private func destroy(_ plan: Plan) {
        for descriptor in plan.descriptors.reversed() { _ = api.cudnnBackendDestroyDescriptor!(descriptor) }
    }

    /// Builds a variant pack for `pointers` (and a workspace), executes `plan` on the stream, returns cuDNN's status.
    /// `profileName` nil: not profiled (autotune's trials).
    private func execute(_ plan: Plan, _ handle: cudnnHandle_t, _ pointers: [CUdeviceptr], profileName: @autoclosure () -> String?,
                         flops: Double) throws -> cudnnStatus_t {
        let workspace = plan.workspace > 0 ? try device.allocate(plan.workspace) : nil
        defer { withExtendedLifetime(workspace) {} }
        let builder = DescriptorBuilder(api)
        defer { builder.destroyAll() }
        let pack = try builder.make(Int32(CCUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR), "variant pack")
        try builder.set(pack, CCUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CCUDNN_TYPE_INT64, plan.uniqueIDs, "variant pack ids")
        try builder.set(pack, CCUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CCUDNN_TYPE_VOID_PTR,
                        pointers.map { UnsafeMutableRawPointer(bitPattern: UInt($0)) }, "variant pack pointers")
        try builder.set(pack, CCUDNN_ATTR_VARIANT_PACK_WORKSPACE, CCUDNN_TYPE_VOID_PTR,
                        [workspace.flatMap { UnsafeMutableRawPointer(bitPattern: UInt($0.pointer)) }], "variant pack workspace")
        try builder.finalize(pack, "variant pack")
        guard device.profiling, let name = profileName() else { return api.cudnnBackendExecute!(handle, plan.plan, pack) }
        return try device.timed(name, flops: flops) { api.cudnnBackendExecute!(handle, plan.plan, pack) }
    }

    /// The plan for `key` (cached, or nil cached with cuDNN's refusal; other errors are thrown and
    /// nothing is cached). Plans are made one at a time
    /// (cuDNN's handle is not for concurrent use); a key made meanwhile by another thread is taken.
    private func makePlan(_ key: Key, _ label: String, _ handle: cudnnHandle_t, _ pointers: [CUdeviceptr],
                          _ build: (DescriptorBuilder, cudnnHandle_t) throws -> Graph) throws -> Plan? {
        try building.withLock { _ in
            if let existing = plans.withLock({ $0[key] }) { return existing }
            let builder = DescriptorBuilder(api)
            do {
                let graph = try build(builder, handle)
                guard graph.uniqueIDs.count == pointers.count else {
                    throw GraphBuildError(what: "\(graph.uniqueIDs.count) tensor ids for \(pointers.count) pointers", status: 0)
                }
                // Heuristics mode A; if none of its configurations finalizes, cuDNN's fallback list.
                var finalized: [(plan: cudnnBackendDescriptor_t, workspace: Int)] = []
                var failures: [String] = []
                for mode in [CCUDNN_HEUR_MODE_A, CCUDNN_HEUR_MODE_FALLBACK] where finalized.isEmpty {
                    do {
                        finalized = try finalizedPlans(graph.graph, mode: mode, handle, builder)
                    } catch let error as GraphBuildError {
                        failures.append("mode \(mode): \(error.description)")
                    }
                }
                guard !finalized.isEmpty else { throw GraphBuildError(what: failures.joined(separator: "; "), status: 0) }
                var chosen = 0
                if finalized.count > 1 { chosen = try fastest(finalized, handle, pointers, graph.uniqueIDs) }
                for (index, candidate) in finalized.enumerated() where index != chosen { builder.destroy(candidate.plan) }
                let made = Plan(plan: finalized[chosen].plan, workspace: finalized[chosen].workspace, uniqueIDs: graph.uniqueIDs,
                                label: label + (finalized.count > 1 ? " (timed, #\(chosen + 1) of \(finalized.count))" : ""),
                                descriptors: builder.keepAll())
                plans.withLock { $0[key] = made }
                return made
            } catch let error as GraphBuildError {
                // Nothing half-made stays: the key goes to the caller's own path from now on.
                builder.destroyAll()
                refuse(key, label, error.description)
                return nil
            } catch {
                // Not cuDNN's answer (out of memory while timing candidates, …): nothing cached, the error goes up.
                builder.destroyAll()
                throw error
            }
        }
    }

    /// Execution plans (finalized, within the workspace limit, in the heuristics' order; autotune:
    /// up to `timedCandidates`, else the first) for `graph` from heuristics `mode`.
    private func finalizedPlans(_ graph: cudnnBackendDescriptor_t, mode: Int, _ handle: cudnnHandle_t,
                                _ builder: DescriptorBuilder) throws -> [(plan: cudnnBackendDescriptor_t, workspace: Int)] {
        let heuristics = try builder.make(Int32(CCUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR), "engine heuristics")
        try builder.set(heuristics, CCUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [graph], "heuristics graph")
        try builder.set(heuristics, CCUDNN_ATTR_ENGINEHEUR_MODE, CCUDNN_TYPE_HEUR_MODE, [Int32(mode)], "heuristics mode")
        try builder.finalize(heuristics, "engine heuristics")
        var available: Int64 = 0
        try builder.check(api.cudnnBackendGetAttribute!(heuristics, Int32(CCUDNN_ATTR_ENGINEHEUR_RESULTS),
                                                        Int32(CCUDNN_TYPE_BACKEND_DESCRIPTOR), 0, &available, nil), "heuristics count")
        let wanted = Int(min(available, Int64(Self.candidates)))
        guard wanted > 0 else { throw GraphBuildError(what: "no engine configuration from the heuristics", status: 0) }
        var configurations: [cudnnBackendDescriptor_t?] = []
        for _ in 0..<wanted { configurations.append(try builder.make(Int32(CCUDNN_BACKEND_ENGINECFG_DESCRIPTOR), "engine configuration")) }
        var returned: Int64 = 0
        try builder.check(api.cudnnBackendGetAttribute!(heuristics, Int32(CCUDNN_ATTR_ENGINEHEUR_RESULTS),
                                                        Int32(CCUDNN_TYPE_BACKEND_DESCRIPTOR), Int64(wanted), &returned,
                                                        &configurations), "heuristics results")
        var finalized: [(plan: cudnnBackendDescriptor_t, workspace: Int)] = []
        var lastFailure = "no configuration finalized"
        let limit = autotune && !device.isCapturing ? Self.timedCandidates : 1
        for configuration in configurations.prefix(Int(min(max(returned, 0), Int64(wanted)))) where finalized.count < limit {
            guard let configuration else { continue }
            let plan = try builder.make(Int32(CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR), "execution plan")
            var h: cudnnHandle_t? = handle
            var ok = api.cudnnBackendSetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_HANDLE), Int32(CCUDNN_TYPE_HANDLE), 1, &h) == 0
            var c: cudnnBackendDescriptor_t? = configuration
            ok = ok && api.cudnnBackendSetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG),
                                                     Int32(CCUDNN_TYPE_BACKEND_DESCRIPTOR), 1, &c) == 0
            let status = ok ? api.cudnnBackendFinalize!(plan) : -1
            var bytes: Int64 = 0, count: Int64 = 0
            let query = status == 0 ? api.cudnnBackendGetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE),
                                                                    Int32(CCUDNN_TYPE_INT64), 1, &count, &bytes) : -1
            if status == 0, query == 0, bytes >= 0, Int(bytes) <= ConvolutionEngine.workspaceLimit {
                finalized.append((plan, Int(bytes)))
            } else {
                lastFailure = status != 0 ? "execution plan not finalized (status \(status))"
                    : query != 0 ? "workspace size not given (status \(query))" : "workspace \(bytes) bytes over the limit"
                builder.destroy(plan)
            }
        }
        guard !finalized.isEmpty else { throw GraphBuildError(what: lastFailure, status: 0) }
        return finalized
    }

    /// Index of the fastest of `candidates` on the call's operands (another than the first wins only
    /// when more than 3 % faster; a candidate whose execution fails is skipped).
    private func fastest(_ candidates: [(plan: cudnnBackendDescriptor_t, workspace: Int)], _ handle: cudnnHandle_t,
                         _ pointers: [CUdeviceptr], _ uniqueIDs: [Int64]) throws -> Int {
        var times: [Double] = []
        for candidate in candidates {
            let trial = Plan(plan: candidate.plan, workspace: candidate.workspace, uniqueIDs: uniqueIDs, label: "", descriptors: [])
            var failed = false
            let seconds = try device.measure(repeats: 5) {
                if try execute(trial, handle, pointers, profileName: nil, flops: 0) != 0 { failed = true }
            }
            times.append(failed ? .infinity : seconds)
        }
        guard let best = times.indices.min(by: { times[$0] < times[$1] }), times[best].isFinite else { return 0 }
        return best != 0 && times[0].isFinite && times[best] > 0.97 * times[0] ? 0 : best
    }
}

/// A cuDNN graph-API step that failed: what, and cuDNN's status (0: no status, `what` says it).
struct GraphBuildError: Error, CustomStringConvertible {
    let what: String
    let status: cudnnStatus_t
    var description: String { status == 0 ? what : "\(what): status \(status)" }
}

/// Creates backend descriptors, sets their attributes and finalizes them, remembering every one
/// made so that a failed build destroys them all (or `keepAll` hands them to a plan).
final class DescriptorBuilder {
    private let api: CCUDACudnnGraphAPI
    private var made: [cudnnBackendDescriptor_t] = []

    init(_ api: CCUDACudnnGraphAPI) { self.api = api }

    func check(_ status: cudnnStatus_t, _ what: @autoclosure () -> String) throws {
        guard status == 0 else { throw GraphBuildError(what: what(), status: status) }
    }

    func make(_ type: Int32, _ what: @autoclosure () -> String) throws -> cudnnBackendDescriptor_t {
        var descriptor: cudnnBackendDescriptor_t?
        try check(api.cudnnBackendCreateDescriptor!(type, &descriptor), "create \(what())")
        guard let descriptor else { throw GraphBuildError(what: "create \(what()): no descriptor", status: 0) }
        made.append(descriptor)
        return descriptor
    }

    /// Sets attribute `name` of `type` to `values` (Int32 for enum types, Int64, Float, Bool, pointers).
    func set<T>(_ descriptor: cudnnBackendDescriptor_t, _ name: Int, _ type: Int, _ values: [T], _ what: @autoclosure () -> String) throws {
        let status = values.withUnsafeBytes { raw in
            api.cudnnBackendSetAttribute!(descriptor, Int32(name), Int32(type), Int64(values.count), raw.baseAddress)
        }
        try check(status, "set \(what())")
    }

    func finalize(_ descriptor: cudnnBackendDescriptor_t, _ what: @autoclosure () -> String) throws {
        try check(api.cudnnBackendFinalize!(descriptor), "finalize \(what())")
    }

    /// A finalized tensor descriptor (16-byte alignment, as cuDNN's frontend declares; `byValue`: a host
    /// scalar passed at execution).
    func tensor(_ id: Int64, _ dims: [Int64], _ strides: [Int64], _ dataType: Int32, virtual: Bool, byValue: Bool = false,
                _ what: String) throws -> cudnnBackendDescriptor_t {
        let t = try make(Int32(CCUDNN_BACKEND_TENSOR_DESCRIPTOR), "\(what) tensor")
        try set(t, CCUDNN_ATTR_TENSOR_DATA_TYPE, CCUDNN_TYPE_DATA_TYPE, [dataType], "\(what) data type")
        try set(t, CCUDNN_ATTR_TENSOR_DIMENSIONS, CCUDNN_TYPE_INT64, dims, "\(what) dimensions")
        try set(t, CCUDNN_ATTR_TENSOR_STRIDES, CCUDNN_TYPE_INT64, strides, "\(what) strides")
        try set(t, CCUDNN_ATTR_TENSOR_UNIQUE_ID, CCUDNN_TYPE_INT64, [id], "\(what) id")
        try set(t, CCUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CCUDNN_TYPE_INT64, [Int64(16)], "\(what) alignment")
        if virtual { try set(t, CCUDNN_ATTR_TENSOR_IS_VIRTUAL, CCUDNN_TYPE_BOOLEAN, [true], "\(what) virtual") }
        if byValue { try set(t, CCUDNN_ATTR_TENSOR_IS_BY_VALUE, CCUDNN_TYPE_BOOLEAN, [true], "\(what) by value") }
        try finalize(t, "\(what) tensor")
        return t
    }

    /// A finalized pointwise operation `y = mode(x, operand)` in fp32 (`operand` nil for unary modes).
    func pointwise(_ mode: Int, _ x: cudnnBackendDescriptor_t, _ operand: cudnnBackendDescriptor_t?, _ y: cudnnBackendDescriptor_t,
                   _ what: String) throws -> cudnnBackendDescriptor_t {
        let descriptor = try make(Int32(CCUDNN_BACKEND_POINTWISE_DESCRIPTOR), what)
        try set(descriptor, CCUDNN_ATTR_POINTWISE_MODE, CCUDNN_TYPE_POINTWISE_MODE, [Int32(mode)], "\(what) mode")
        try set(descriptor, CCUDNN_ATTR_POINTWISE_MATH_PREC, CCUDNN_TYPE_DATA_TYPE, [Int32(CCUDNN_DATA_FLOAT)], "\(what) precision")
        try finalize(descriptor, what)
        let op = try make(Int32(CCUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR), "\(what) operation")
        try set(op, CCUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [descriptor], "\(what) pointwise")
        try set(op, CCUDNN_ATTR_OPERATION_POINTWISE_XDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [x], "\(what) x")
        if let operand { try set(op, CCUDNN_ATTR_OPERATION_POINTWISE_BDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [operand], "\(what) b") }
        try set(op, CCUDNN_ATTR_OPERATION_POINTWISE_YDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [y], "\(what) y")
        try finalize(op, "\(what) operation")
        return op
    }

    /// The finalized operation graph of `operations` (finalized, in order) on `handle`.
    func operationGraph(_ operations: [cudnnBackendDescriptor_t?], _ handle: cudnnHandle_t) throws -> cudnnBackendDescriptor_t {
        let graph = try make(Int32(CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR), "operation graph")
        let h: cudnnHandle_t? = handle
        try set(graph, CCUDNN_ATTR_OPERATIONGRAPH_HANDLE, CCUDNN_TYPE_HANDLE, [h], "graph handle")
        try set(graph, CCUDNN_ATTR_OPERATIONGRAPH_OPS, CCUDNN_TYPE_BACKEND_DESCRIPTOR, operations, "graph operations")
        try finalize(graph, "operation graph")
        return graph
    }

    /// Destroys `descriptor` now (and forgets it).
    func destroy(_ descriptor: cudnnBackendDescriptor_t) {
        made.removeAll { $0 == descriptor }
        _ = api.cudnnBackendDestroyDescriptor!(descriptor)
    }

    func destroyAll() {
        for descriptor in made.reversed() { _ = api.cudnnBackendDestroyDescriptor!(descriptor) }
        made = []
    }

    /// Hands every descriptor made to the caller (the builder forgets them).
    func keepAll() -> [cudnnBackendDescriptor_t] {
        defer { made = [] }
        return made
    }
}
