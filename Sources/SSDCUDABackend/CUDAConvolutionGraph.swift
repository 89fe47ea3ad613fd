import CCUDA
import SSDTensor

/// Convolutions through cuDNN 9's graph API (`SSD_CUDA_CONV_GRAPH=1`), the API cuDNN's frontend
/// and PyTorch build on: per shape one operation graph `conv(x, w) → + bias → + residual → y` over
/// NHWC tensors, the sums kept in fp32 virtual tensors so that `y` is rounded once (planned and
/// cached by `CUDNNGraphEngine`). fp16 and bf16 only: the graph API has no math-type switch, and fp32
/// convolutions must not run on TF32 tensor cores. A shape cuDNN cannot plan goes to
/// `ConvolutionEngine` (the legacy API).
final class ConvolutionGraphEngine: @unchecked Sendable {
    struct Key: Hashable {
        var shape: ConvShape
        var bias: Bool
        var residual: Bool
    }

    let plans: CUDNNGraphEngine<Key>

    /// nil when cuDNN or its graph API is absent.
    init?(device: CUDADevice, autotune: Bool) {
        guard let plans = CUDNNGraphEngine<Key>(device: device, autotune: autotune) else { return nil }
        self.plans = plans
    }

    /// Enqueues `y = conv(x, w) (+ bias) (+ residual)` (bias and residual in x's type) and returns
    /// true, or returns false when this shape has no plan (the caller runs the legacy path).
    func run(_ s: ConvShape, x: CUdeviceptr, w: CUdeviceptr, y: CUdeviceptr, bias: CUdeviceptr?, residual: CUdeviceptr?) throws -> Bool {
        guard s.dtype == .f16 || s.dtype == .bf16 else { return false }
        let key = Key(shape: s, bias: bias != nil, residual: residual != nil)
        var pointers = [x, w, y]
        if let bias { pointers.append(bias) }
        if let residual { pointers.append(residual) }
        return try plans.run(key, label: Self.label(key), flops: s.flops, pointers: pointers) { builder, handle in
            try Self.buildGraph(key, handle, builder)
        }
    }

    private static func label(_ k: Key) -> String {
        let s = k.shape
        return "conv \(s.kernelHeight)x\(s.kernelWidth) s\(s.stride) \(s.inChannels)->\(s.outChannels) \(s.batch)x\(s.outHeight)x\(s.outWidth)"
            + (k.bias ? " +bias" : "") + (k.residual ? " +residual" : "")
    }

    /// Unique ids of the graph's tensors (the pointers' order is x, w, y, bias, residual).
    private enum IDs {
        static let x: Int64 = 1, w: Int64 = 2, y: Int64 = 3, bias: Int64 = 4, residual: Int64 = 5
        static let convolved: Int64 = 101, biased: Int64 = 102
    }

    /// The finalized operation graph of `key`: tensors in NCHW dimension order with NHWC strides
    /// (filters `[K, C, R, S]` stored as `[K, R, S, C]`), fp32 virtual intermediates.
    private static func buildGraph(_ key: Key, _ handle: cudnnHandle_t, _ b: DescriptorBuilder) throws -> CUDNNGraphEngine<Key>.Graph {
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
        let x = try b.tensor(IDs.x, xl.dims, xl.strides, type, virtual: false, "x")
        let w = try b.tensor(IDs.w, wl.dims, wl.strides, type, virtual: false, "w")
        let y = try b.tensor(IDs.y, yl.dims, yl.strides, type, virtual: false, "y")
        // The chain's links: conv output, then after the bias; each virtual unless it is the last.
        let steps = (key.bias ? 1 : 0) + (key.residual ? 1 : 0)
        let convolved = steps == 0 ? y : try b.tensor(IDs.convolved, yl.dims, yl.strides, float, virtual: true, "conv output")

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
            let out = remaining == 0 ? y : try b.tensor(IDs.biased, yl.dims, yl.strides, float, virtual: true, "\(what) output")
            let op = try b.pointwise(CCUDNN_POINTWISE_ADD, current, operand, out, "\(what) add")
            ops.append(op)
            current = out
        }
        if key.bias { try add(try b.tensor(IDs.bias, bl.dims, bl.strides, type, virtual: false, "bias"), "bias") }
        if key.residual { try add(try b.tensor(IDs.residual, yl.dims, yl.strides, type, virtual: false, "residual"), "residual") }

        let graph = try b.operationGraph(ops, handle)
        var ids = [IDs.x, IDs.w, IDs.y]
        if key.bias { ids.append(IDs.bias) }
        if key.residual { ids.append(IDs.residual) }
        return .init(graph: graph, uniqueIDs: ids)
    }
}
