import CCUDA
import SSDTensor

/// Convolutions through cuDNN 9's graph (backend) API (`cudnn_graph.h`; `SSD_CUDA_CONV_GRAPH=1`), the
/// API cuDNN's frontend and PyTorch build on: per shape one operation graph
/// `conv(x, w) → + bias → + residual → y` over NHWC tensors, the sums kept in fp32 virtual tensors so
/// that `y` is rounded once; cuDNN's heuristics (mode A) list engine configurations and the first that
/// finalizes becomes the execution plan (with `autotune`, the fastest of the first
/// `timedCandidates`, timed on the call's own operands outside graph captures). fp16 and bf16 only:
/// the graph API has no math-type switch, and fp32 convolutions must not run on TF32 tensor cores.
/// A shape cuDNN cannot plan is remembered with the reason (`refusals`) and the caller uses
/// `ConvolutionEngine` for it.
final class ConvolutionGraphEngine: @unchecked Sendable {
    /// Engine configurations asked of the heuristics, and how many of them autotune times.
    static let candidates = 8
    static let timedCandidates = 4

    struct Key: Hashable {
        var shape: ConvShape
        var bias: Bool
        var residual: Bool
    }

    /// A finalized execution plan and every descriptor it refers to (kept for its lifetime).
    final class Plan {
        let plan: cudnnBackendDescriptor_t
        let workspace: Int
        /// Unique ids of x, w, y, then the bias and the residual when the graph has them.
        let uniqueIDs: [Int64]
        let label: String
        let flops: Double
        let descriptors: [cudnnBackendDescriptor_t]
        init(plan: cudnnBackendDescriptor_t, workspace: Int, uniqueIDs: [Int64], label: String, flops: Double,
             descriptors: [cudnnBackendDescriptor_t]) {
            self.plan = plan; self.workspace = workspace; self.uniqueIDs = uniqueIDs; self.label = label; self.flops = flops
            self.descriptors = descriptors
        }
    }

    private let device: CUDADevice
    private let api: CCUDACudnnGraphAPI
    let autotune: Bool
    /// nil entries: cuDNN could not plan the key (see `refusals`).
    private let plans = Locked([Key: Plan?]())
    private let state = Locked((runs: 0, refusals: [String]()))

    /// nil when cuDNN or its graph API is absent.
    init?(device: CUDADevice, autotune: Bool) {
        guard device.cudnn != nil, device.cudnnHandle != nil, let api = device.cudnnGraph else { return nil }
        self.device = device
        self.api = api
        self.autotune = autotune
    }

    /// Shapes planned, convolutions run through a plan, and the keys cuDNN could not plan with the reason.
    var report: (planned: Int, runs: Int, refusals: [String]) {
        let planned = plans.withLock { $0.values.filter { $0 != nil }.count }
        return state.withLock { (planned, $0.runs, $0.refusals) }
    }

    /// Enqueues `y = conv(x, w) (+ bias) (+ residual)` (bias and residual in x's type) and returns
    /// true, or returns false when this shape has no plan (the caller runs the legacy path). A shape
    /// first seen during a graph capture is not planned there (finalizing may compile or allocate).
    func run(_ s: ConvShape, x: CUdeviceptr, w: CUdeviceptr, y: CUdeviceptr, bias: CUdeviceptr?, residual: CUdeviceptr?) throws -> Bool {
        guard s.dtype == .f16 || s.dtype == .bf16, let handle = device.cudnnHandle else { return false }
        let key = Key(shape: s, bias: bias != nil, residual: residual != nil)
        var pointers = [x, w, y]
        if let bias { pointers.append(bias) }
        if let residual { pointers.append(residual) }
        try device.makeCurrent()
        let found: Plan?? = plans.withLock { $0[key] }
        let plan: Plan
        switch found {
        case .some(.some(let existing)): plan = existing
        case .some(.none): return false
        case .none:
            if device.isCapturing { return false }
            guard let made = try makePlan(key, handle, pointers) else { return false }
            plan = made
        }
        let status = try execute(plan, handle, pointers, profileName: "cudnn graph conv\(key.bias ? "+bias" : "")\(key.residual ? "+residual" : "") \(plan.label)")
        guard status == 0 else {
            if device.isCapturing {
                throw TensorError.deviceFailure(backend: "cuda", message: "cudnnBackendExecute (\(plan.label)) failed during a capture: status \(status)")
            }
            refuse(key, "cudnnBackendExecute: status \(status)")
            return false
        }
        state.withLock { $0.runs += 1 }
        return true
    }

    private func refuse(_ key: Key, _ reason: String) {
        plans.withLock { $0[key] = .some(nil) }
        state.withLock { $0.refusals.append("\(Self.label(key)): \(reason)") }
    }

    private static func label(_ k: Key) -> String {
        let s = k.shape
        return "\(s.kernelHeight)x\(s.kernelWidth) s\(s.stride) \(s.inChannels)->\(s.outChannels) \(s.batch)x\(s.outHeight)x\(s.outWidth)"
            + (k.bias ? " +bias" : "") + (k.residual ? " +residual" : "")
    }

    /// Builds a variant pack for `pointers` (and a workspace), executes `plan` on the stream, returns cuDNN's status.
    private func execute(_ plan: Plan, _ handle: cudnnHandle_t, _ pointers: [CUdeviceptr], profileName: @autoclosure () -> String) throws -> cudnnStatus_t {
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
        return try device.timed(profileName(), flops: plan.flops) { api.cudnnBackendExecute!(handle, plan.plan, pack) }
    }

    /// The plan for `key` (cached, or nil cached with the refusal), built with the call's pointers
    /// at hand for autotune.
    private func makePlan(_ key: Key, _ handle: cudnnHandle_t, _ pointers: [CUdeviceptr]) throws -> Plan? {
        let builder = DescriptorBuilder(api)
        do {
            let graph = try buildGraph(key, handle, builder)
            let heuristics = try builder.make(Int32(CCUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR), "engine heuristics")
            try builder.set(heuristics, CCUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [graph.graph], "heuristics graph")
            try builder.set(heuristics, CCUDNN_ATTR_ENGINEHEUR_MODE, CCUDNN_TYPE_HEUR_MODE, [Int32(CCUDNN_HEUR_MODE_A)], "heuristics mode")
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
            // Execution plans of the configurations that finalize within the workspace limit, in the heuristics' order.
            var finalized: [(plan: cudnnBackendDescriptor_t, workspace: Int)] = []
            var lastFailure = "no configuration finalized"
            let limit = autotune && !device.isCapturing ? Self.timedCandidates : 1
            for configuration in configurations.prefix(Int(min(returned, Int64(wanted)))) where finalized.count < limit {
                guard let configuration else { continue }
                let plan = try builder.make(Int32(CCUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR), "execution plan")
                var h: cudnnHandle_t? = handle
                var ok = api.cudnnBackendSetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_HANDLE), Int32(CCUDNN_TYPE_HANDLE), 1, &h) == 0
                var c: cudnnBackendDescriptor_t? = configuration
                ok = ok && api.cudnnBackendSetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG),
                                                         Int32(CCUDNN_TYPE_BACKEND_DESCRIPTOR), 1, &c) == 0
                let status = ok ? api.cudnnBackendFinalize!(plan) : -1
                var bytes: Int64 = 0, count: Int64 = 0
                if status == 0, api.cudnnBackendGetAttribute!(plan, Int32(CCUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE),
                                                              Int32(CCUDNN_TYPE_INT64), 1, &count, &bytes) == 0,
                   bytes >= 0, Int(bytes) <= ConvolutionEngine.workspaceLimit {
                    finalized.append((plan, Int(bytes)))
                } else {
                    lastFailure = status == 0 ? "workspace \(bytes) bytes over the limit" : "execution plan not finalized (status \(status))"
                    builder.destroy(plan)
                }
            }
            guard !finalized.isEmpty else { throw GraphBuildError(what: lastFailure, status: 0) }
            var uniqueIDs: [Int64] = [GraphIDs.x, GraphIDs.w, GraphIDs.y]
            if key.bias { uniqueIDs.append(GraphIDs.bias) }
            if key.residual { uniqueIDs.append(GraphIDs.residual) }
            let label = Self.label(key)
            var chosen = 0
            if finalized.count > 1 {
                chosen = try fastest(finalized, handle, pointers, uniqueIDs, label, builder)
            }
            for (index, candidate) in finalized.enumerated() where index != chosen { builder.destroy(candidate.plan) }
            let made = Plan(plan: finalized[chosen].plan, workspace: finalized[chosen].workspace, uniqueIDs: uniqueIDs,
                            label: label + (finalized.count > 1 ? " (timed, #\(chosen + 1) of \(finalized.count))" : ""),
                            flops: key.shape.flops, descriptors: builder.keepAll())
            plans.withLock { $0[key] = made }
            return made
        } catch let error as GraphBuildError {
            builder.destroyAll()
            refuse(key, error.status == 0 ? error.what : "\(error.what): status \(error.status)")
            return nil
        }
    }

    /// Index of the fastest of `candidates` on the call's operands (another than the first wins only
    /// when more than 3 % faster; a candidate whose execution fails is skipped).
    private func fastest(_ candidates: [(plan: cudnnBackendDescriptor_t, workspace: Int)], _ handle: cudnnHandle_t,
                         _ pointers: [CUdeviceptr], _ uniqueIDs: [Int64], _ label: String, _ builder: DescriptorBuilder) throws -> Int {
        var times: [Double] = []
        for candidate in candidates {
            let trial = Plan(plan: candidate.plan, workspace: candidate.workspace, uniqueIDs: uniqueIDs, label: label, flops: 0, descriptors: [])
            var failed = false
            let seconds = try device.measure(repeats: 5) {
                if try execute(trial, handle, pointers, profileName: "") != 0 { failed = true }
            }
            times.append(failed ? .infinity : seconds)
        }
        guard let best = times.indices.min(by: { times[$0] < times[$1] }), times[best].isFinite else { return 0 }
        return best != 0 && times[0].isFinite && times[best] > 0.97 * times[0] ? 0 : best
    }

    /// Unique ids of the graph's tensors (the variant pack's order is x, w, y, bias, residual).
    private enum GraphIDs {
        static let x: Int64 = 1, w: Int64 = 2, y: Int64 = 3, bias: Int64 = 4, residual: Int64 = 5
        static let convolved: Int64 = 101, biased: Int64 = 102
    }

    /// The finalized operation graph of `key`: tensors in NCHW dimension order with NHWC strides
    /// (filters `[K, C, R, S]` stored as `[K, R, S, C]`), fp32 virtual intermediates.
    private func buildGraph(_ key: Key, _ handle: cudnnHandle_t, _ b: DescriptorBuilder) throws -> (graph: cudnnBackendDescriptor_t, ops: Int) {
        let s = key.shape
        let type = Int32(s.dtype == .bf16 ? CCUDNN_DATA_BFLOAT16 : CCUDNN_DATA_HALF)
        let float = Int32(CCUDNN_DATA_FLOAT)
        func nhwc(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> (dims: [Int64], strides: [Int64]) {
            ([n, c, h, w].map(Int64.init), [h * w * c, 1, w * c, c].map(Int64.init))
        }
        let xl = nhwc(s.batch, s.inChannels, s.height, s.width)
        let wl = nhwc(s.outChannels, s.inChannels, s.kernelHeight, s.kernelWidth)
        let yl = nhwc(s.batch, s.outChannels, s.outHeight, s.outWidth)
        let bl = nhwc(1, s.outChannels, 1, 1)
        let x = try b.tensor(GraphIDs.x, xl.dims, xl.strides, type, virtual: false, "x")
        let w = try b.tensor(GraphIDs.w, wl.dims, wl.strides, type, virtual: false, "w")
        let y = try b.tensor(GraphIDs.y, yl.dims, yl.strides, type, virtual: false, "y")
        // The chain's links: conv output, then after the bias; each virtual unless it is the last.
        let steps = (key.bias ? 1 : 0) + (key.residual ? 1 : 0)
        let convolved = steps == 0 ? y : try b.tensor(GraphIDs.convolved, yl.dims, yl.strides, float, virtual: true, "conv output")

        let conv = try b.make(Int32(CCUDNN_BACKEND_CONVOLUTION_DESCRIPTOR), "convolution")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE, [float], "compute type")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_CONV_MODE, CCUDNN_TYPE_CONVOLUTION_MODE, [Int32(CCUDNN_CROSS_CORRELATION)], "mode")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CCUDNN_TYPE_INT64, [Int64(2)], "spatial dims")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_DILATIONS, CCUDNN_TYPE_INT64, [Int64(1), 1], "dilations")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CCUDNN_TYPE_INT64, [Int64(s.stride), Int64(s.stride)], "strides")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CCUDNN_TYPE_INT64, [Int64(s.padding), Int64(s.padding)], "pre paddings")
        try b.set(conv, CCUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CCUDNN_TYPE_INT64, [Int64(s.padding), Int64(s.padding)], "post paddings")
        try b.finalize(conv, "convolution")

        let convOp = try b.make(Int32(CCUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR), "convolution operation")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [x], "conv x")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [w], "conv w")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [convolved], "conv y")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [conv], "conv descriptor")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CCUDNN_TYPE_FLOAT, [Float(1)], "alpha")
        try b.set(convOp, CCUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CCUDNN_TYPE_FLOAT, [Float(0)], "beta")
        try b.finalize(convOp, "convolution operation")
        var ops: [cudnnBackendDescriptor_t?] = [convOp]

        var current = convolved
        var remaining = steps
        func add(_ operand: cudnnBackendDescriptor_t, _ what: String) throws {
            remaining -= 1
            let out = remaining == 0 ? y : try b.tensor(GraphIDs.biased, yl.dims, yl.strides, float, virtual: true, "\(what) output")
            let mode = try b.make(Int32(CCUDNN_BACKEND_POINTWISE_DESCRIPTOR), "\(what) add")
            try b.set(mode, CCUDNN_ATTR_POINTWISE_MODE, CCUDNN_TYPE_POINTWISE_MODE, [Int32(CCUDNN_POINTWISE_ADD)], "\(what) add mode")
            try b.set(mode, CCUDNN_ATTR_POINTWISE_MATH_PREC, CCUDNN_TYPE_DATA_TYPE, [float], "\(what) add precision")
            try b.finalize(mode, "\(what) add")
            let op = try b.make(Int32(CCUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR), "\(what) operation")
            try b.set(op, CCUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [mode], "\(what) pointwise")
            try b.set(op, CCUDNN_ATTR_OPERATION_POINTWISE_XDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [current], "\(what) x")
            try b.set(op, CCUDNN_ATTR_OPERATION_POINTWISE_BDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [operand], "\(what) b")
            try b.set(op, CCUDNN_ATTR_OPERATION_POINTWISE_YDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [out], "\(what) y")
            try b.finalize(op, "\(what) operation")
            ops.append(op)
            current = out
        }
        if key.bias { try add(try b.tensor(GraphIDs.bias, bl.dims, bl.strides, type, virtual: false, "bias"), "bias") }
        if key.residual { try add(try b.tensor(GraphIDs.residual, yl.dims, yl.strides, type, virtual: false, "residual"), "residual") }

        let graph = try b.make(Int32(CCUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR), "operation graph")
        var h: cudnnHandle_t? = handle
        try b.check(api.cudnnBackendSetAttribute!(graph, Int32(CCUDNN_ATTR_OPERATIONGRAPH_HANDLE), Int32(CCUDNN_TYPE_HANDLE), 1, &h), "graph handle")
        try b.set(graph, CCUDNN_ATTR_OPERATIONGRAPH_OPS, CCUDNN_TYPE_BACKEND_DESCRIPTOR, ops, "graph operations")
        try b.finalize(graph, "operation graph")
        return (graph, ops.count)
    }
}

/// A cuDNN graph-API step that failed: what, and cuDNN's status (0: no status, `what` says it).
struct GraphBuildError: Error {
    let what: String
    let status: cudnnStatus_t
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

    /// A finalized tensor descriptor (16-byte aligned data).
    func tensor(_ id: Int64, _ dims: [Int64], _ strides: [Int64], _ dataType: Int32, virtual: Bool, _ what: String) throws
        -> cudnnBackendDescriptor_t {
        let t = try make(Int32(CCUDNN_BACKEND_TENSOR_DESCRIPTOR), "\(what) tensor")
        try set(t, CCUDNN_ATTR_TENSOR_DATA_TYPE, CCUDNN_TYPE_DATA_TYPE, [dataType], "\(what) data type")
        try set(t, CCUDNN_ATTR_TENSOR_DIMENSIONS, CCUDNN_TYPE_INT64, dims, "\(what) dimensions")
        try set(t, CCUDNN_ATTR_TENSOR_STRIDES, CCUDNN_TYPE_INT64, strides, "\(what) strides")
        try set(t, CCUDNN_ATTR_TENSOR_UNIQUE_ID, CCUDNN_TYPE_INT64, [id], "\(what) id")
        try set(t, CCUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CCUDNN_TYPE_INT64, [Int64(16)], "\(what) alignment")
        try set(t, CCUDNN_ATTR_TENSOR_IS_VIRTUAL, CCUDNN_TYPE_BOOLEAN, [virtual], "\(what) virtual")
        try finalize(t, "\(what) tensor")
        return t
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
