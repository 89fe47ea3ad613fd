/// The pure-Swift fp32 backend: the correctness oracle every fast backend is checked against
/// (DESIGN.md §3). Synchronous; multi-threaded with `Parallel`, with cache-friendly loop orders
/// but no hand-written SIMD.
///
/// - Activations are always f32. f16/bf16 tensors exist only as the result of `upload(_:as:)`
///   or `convert(_:to:)` (they hold rounded values); compute ops refuse them.
/// - `prepareWeight` converts every weight to f32; linear weights are stored `[in, out]` and
///   conv weights `[kh, kw, Cin, Cout]` (the order an NHWC im2col row reads them in).
public final class ReferenceBackend: ComputeBackend {
    let counter = ReferenceMemoryCounter()

    /// Creates a backend; it holds no memory until tensors are uploaded.
    public init() {}

    /// `"reference"`.
    public var name: String { "reference" }

    /// Always `.f32`.
    public func activationDType(for component: ModelComponent) -> DType { .f32 }

    // MARK: Memory

    /// Copies `view` into a new tensor of `dtype`: floating types convert (round to nearest even),
    /// integers convert to floating types by value, i32 widens to i64.
    public func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor {
        let n = view.count
        let storage = ReferenceStorage(byteCount: n * dtype.byteSize, counter: counter)
        switch (view.dtype, dtype) {
        case (let from, let to) where from == to:
            storage.pointer.copyMemory(from: view.pointer, byteCount: view.byteCount)
        case (_, .f32):
            view.convertToFloat(into: storage.floats)
        case (_, .f16), (_, .bf16):
            guard view.dtype.isFloatingPoint else { throw TensorError.unsupportedDType(op: "upload", dtype: view.dtype) }
            let floats = view.floats()
            let bits = storage.pointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n {
                bits[i] = dtype == .f16 ? HalfConversion.f16FromFloat(floats[i]) : HalfConversion.bf16FromFloat(floats[i])
            }
        case (.i32, .i64):
            let out = storage.pointer.assumingMemoryBound(to: Int64.self)
            for i in 0..<n { out[i] = Int64(view.pointer.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        default:
            throw TensorError.unsupportedDType(op: "upload as \(dtype.rawValue)", dtype: view.dtype)
        }
        return Tensor(shape: view.shape, dtype: dtype, storage: storage)
    }

    /// The elements as Float, in the logical (PyTorch) order also for prepared weights.
    public func download(_ tensor: Tensor) throws -> [Float] {
        let storage = try referenceStorage(tensor, "download")
        let n = tensor.count
        guard storage.byteCount >= n * tensor.dtype.byteSize else {
            throw TensorError.shapeMismatch(op: "download", expected: tensor.shape, actual: [storage.byteCount / tensor.dtype.byteSize])
        }
        switch storage.layout {
        case .rowMajor:
            let view = HostTensorView(name: "download", shape: tensor.shape, dtype: tensor.dtype,
                                      pointer: UnsafeRawPointer(storage.pointer), owner: storage)
            return view.floats()
        case let .linearInOut(outFeatures, inFeatures):
            let src = storage.floats
            return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                for o in 0..<outFeatures { for i in 0..<inFeatures { buffer[o * inFeatures + i] = src[i * outFeatures + o] } }
                count = n
            }
        case let .convHWIO(cout, cin, kh, kw):
            let src = storage.floats
            return [Float](unsafeUninitializedCapacity: n) { buffer, count in
                for o in 0..<cout { for c in 0..<cin { for y in 0..<kh { for x in 0..<kw {
                    buffer[((o * cin + c) * kh + y) * kw + x] = src[((y * kw + x) * cin + c) * cout + o]
                } } } }
                count = n
            }
        }
    }

    /// Converts the weight to f32 (whatever `activationDType` says); linear weights are stored
    /// `[in, out]`, conv weights `[kh, kw, Cin, Cout]`, the rest as they are.
    public func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor {
        guard view.dtype.isFloatingPoint else { throw TensorError.unsupportedDType(op: "prepareWeight \(view.name)", dtype: view.dtype) }
        let shape = view.shape
        switch role {
        case .vector, .embedding:
            guard role == .embedding ? shape.count == 2 : shape.count == 1 else {
                throw TensorError.invalidArgument(op: "prepareWeight", message: "\(view.name): shape \(shape) does not fit role \(role.rawValue)")
            }
            return try upload(view, as: .f32)
        case .linear:
            guard shape.count == 2 else {
                throw TensorError.invalidArgument(op: "prepareWeight", message: "\(view.name): linear weight must be [out, in], got \(shape)")
            }
            let (outF, inF) = (shape[0], shape[1])
            let storage = ReferenceStorage(byteCount: view.count * 4, layout: .linearInOut(outFeatures: outF, inFeatures: inF), counter: counter)
            let dst = storage.floats
            let src = view.floats()
            Parallel.forEachChunk(outF, minimumChunk: 16) { rows in
                for o in rows { for i in 0..<inF { dst[i * outF + o] = src[o * inF + i] } }
            }
            return Tensor(shape: shape, dtype: .f32, storage: storage)
        case .conv2d, .upsampleConv2d:
            guard shape.count == 4 else {
                throw TensorError.invalidArgument(op: "prepareWeight", message: "\(view.name): conv weight must be [Cout, Cin, kh, kw], got \(shape)")
            }
            let layout = ReferenceLayout.convHWIO(outChannels: shape[0], inChannels: shape[1], kernelHeight: shape[2], kernelWidth: shape[3])
            let storage = ReferenceStorage(byteCount: view.count * 4, layout: layout, counter: counter)
            view.floats().withUnsafeBufferPointer { Self.reorderConvWeight($0.baseAddress!, shape: shape, into: storage.floats) }
            return Tensor(shape: shape, dtype: .f32, storage: storage)
        }
    }

    /// Nothing to wait for: every op has finished when it returns.
    public func synchronize() throws {}

    /// Bytes of live tensors created by this backend (scratch buffers inside ops are not counted).
    public func memoryStatistics() -> BackendMemoryStatistics { counter.statistics() }

    /// Sets the peak to the current bytes.
    public func resetPeakMemory() { counter.resetPeak() }

    // MARK: Helpers shared by the op files

    /// `[Cout, Cin, kh, kw]` → `[kh, kw, Cin, Cout]`.
    static func reorderConvWeight(_ src: UnsafePointer<Float>, shape: [Int], into dst: UnsafeMutablePointer<Float>) {
        let (cout, cin, kh, kw) = (shape[0], shape[1], shape[2], shape[3])
        Parallel.forEachChunk(cout, minimumChunk: 8) { outs in
            for o in outs { for c in 0..<cin { for y in 0..<kh { for x in 0..<kw {
                dst[((y * kw + x) * cin + c) * cout + o] = src[((o * cin + c) * kh + y) * kw + x]
            } } } }
        }
    }

    /// The storage behind `t`, refusing tensors of other backends.
    func referenceStorage(_ t: Tensor, _ op: String) throws -> ReferenceStorage {
        guard let storage = t.storage as? ReferenceStorage else {
            throw TensorError.foreignTensor(op: op, backend: name)
        }
        return storage
    }

    /// Read access to a contiguous f32 operand. The pointer is valid while `t` is alive
    /// (callers pass their own parameters, which outlive the call).
    func floats(_ t: Tensor, _ op: String) throws -> UnsafePointer<Float> {
        let storage = try referenceStorage(t, op)
        guard t.dtype == .f32 else { throw TensorError.unsupportedDType(op: op, dtype: t.dtype) }
        guard storage.layout == .rowMajor else {
            throw TensorError.invalidArgument(op: op, message: "a prepared linear/conv weight cannot be used as a plain tensor")
        }
        guard storage.byteCount >= t.count * 4 else {
            throw TensorError.shapeMismatch(op: op, expected: t.shape, actual: [storage.byteCount / 4])
        }
        return UnsafePointer(storage.floats)
    }

    /// A per-channel vector operand (bias, norm weight) of exactly `count` elements.
    func vector(_ t: Tensor?, count: Int, _ op: String) throws -> UnsafePointer<Float>? {
        guard let t else { return nil }
        guard t.count == count, t.rank == 1 else { throw TensorError.shapeMismatch(op: op, expected: [count], actual: t.shape) }
        return try floats(t, op)
    }

    /// An optional operand that must have exactly `shape` (residuals).
    func operand(_ t: Tensor?, shape: [Int], _ op: String) throws -> UnsafePointer<Float>? {
        guard let t else { return nil }
        guard t.shape == shape else { throw TensorError.shapeMismatch(op: op, expected: shape, actual: t.shape) }
        return try floats(t, op)
    }

    /// A new row-major tensor of `shape` (uninitialised) and a pointer to its elements.
    func allocate(_ shape: [Int], _ dtype: DType = .f32) -> (Tensor, UnsafeMutableRawPointer) {
        let storage = ReferenceStorage(byteCount: shape.reduce(1, *) * dtype.byteSize, counter: counter)
        return (Tensor(shape: shape, dtype: dtype, storage: storage), storage.pointer)
    }

    /// A new f32 tensor of `shape` (uninitialised) and a pointer to its elements.
    func allocateFloats(_ shape: [Int]) -> (Tensor, UnsafeMutablePointer<Float>) {
        let (t, p) = allocate(shape, .f32)
        return (t, p.assumingMemoryBound(to: Float.self))
    }
}
