import CSSDKernels
import SSDTensor

/// A `linear` or `conv2d` weight laid out once at load time for the GEMM.
///
/// The GEMM sees the weight as `B[k × n]` with `n` = output features and `k` running over
/// `(ky, kx, ci)` (the NHWC input order), split in `kernelH` segments of `segmentLength = kw·Cin`
/// (the row of input pixels one output pixel reads per kernel row).
final class PackedWeight: TensorStorage, @unchecked Sendable {
    enum Layout: Equatable {
        /// k × 64 panels of `element` (f32, f16 or bf16), k = `kernelH · segmentStride`.
        case panels(DType)
        /// bf16 k-pair-interleaved panels for `vdpbf16ps` and AMX (segments zero-padded to 32).
        case bf16Pairs
        /// fp32 values split as `hi + lo` (two bf16, RNE), in bf16 k-pair panels where each 32 of a
        /// segment's depth (zero-padded to a multiple of 32) is stored as 64: the high parts, then
        /// the low parts. Same bytes as fp32; for `ssd_bf16x3gemm_bf16a` on AMX (float32 matmul
        /// precision `.high`).
        case bf16SplitPairs
        /// Row-major fp32 `[n, k]` for OpenBLAS.
        case rowMajor

        /// Element type of the stored values.
        var elementType: DType {
            switch self {
            case .panels(let e): return e
            case .bf16Pairs: return .bf16
            case .bf16SplitPairs, .rowMajor: return .f32
            }
        }
    }

    let layout: Layout
    let n: Int
    let kernelH: Int
    let kernelW: Int
    let inChannels: Int
    /// k elements of one segment as stored (kw·Cin, zero-padded to a multiple of 32 for `bf16Pairs`,
    /// twice that for `bf16SplitPairs`).
    let segmentStride: Int
    /// Stored depth: kernelH · segmentStride.
    let depth: Int
    /// Elements between panels.
    let panelStride: Int
    let buffer: CPUBuffer
    /// For a bf16 3×3 convolution weight prepared with `winogradF23` (on a CPU with AMX): its Winograd F(2×2, 3×3)
    /// transform U[ξ] = G g Gᵀ as 16 sets of bf16 k-pair panels of depth Cin (ξ-major, `panels ·
    /// Cin · 64` elements each), for `winogradBF16Conv2d`; nil otherwise.
    let winogradF23: CPUBuffer?

    var byteCount: Int { buffer.byteCount + (winogradF23?.byteCount ?? 0) }
    var segmentLength: Int { kernelW * inChannels }
    var panels: Int { (n + Int(SSD_NR) - 1) / Int(SSD_NR) }

    /// Uninitialised fp32 panels for `n` columns and depth `depth` (a matmul operand).
    init(emptyPanels n: Int, depth: Int, counter: MemoryCounter) {
        layout = .panels(.f32)
        self.n = n
        kernelH = 1
        kernelW = 1
        inChannels = depth
        segmentStride = depth
        self.depth = depth
        panelStride = depth * Int(SSD_NR)
        buffer = CPUBuffer(byteCount: (n + Int(SSD_NR) - 1) / Int(SSD_NR) * panelStride * 4, counter: counter)
        winogradF23 = nil
    }

    /// Whether a weight of this shape and layout gets `winogradF23` when asked: bf16 pairs, 3×3,
    /// Cin a multiple of 32 (whole AMX depth steps), at most 640 outputs in multiples of 16 (the
    /// UNet's two outer levels, where output tiles are many; the transform holds 16/9 of the weight).
    static func takesWinogradF23(layout: Layout, n: Int, kernelH: Int, kernelW: Int, inChannels: Int) -> Bool {
        layout == .bf16Pairs && kernelH == 3 && kernelW == 3 && inChannels % 32 == 0 && inChannels > 0
            && n % 16 == 0 && n > 0 && n <= 640
    }

    init(fromRows src: UnsafePointer<Float>, n: Int, kernelH: Int, kernelW: Int, inChannels: Int,
         layout: Layout, counter: MemoryCounter, winogradF23 wantsWinograd: Bool = false) {
        // `src` is [n, kernelH · kernelW · inChannels] in (ky, kx, ci) order.
        if wantsWinograd && Self.takesWinogradF23(layout: layout, n: n, kernelH: kernelH, kernelW: kernelW, inChannels: inChannels) {
            winogradF23 = Self.winogradF23Weights(src, n: n, inChannels: inChannels, counter: counter)
        } else {
            winogradF23 = nil
        }
        self.layout = layout
        self.n = n
        self.kernelH = kernelH
        self.kernelW = kernelW
        self.inChannels = inChannels
        let seg = kernelW * inChannels
        let align = Int(SSD_BF16_KALIGN)
        switch layout {
        case .bf16Pairs: segmentStride = (seg + align - 1) / align * align
        case .bf16SplitPairs: segmentStride = 2 * ((seg + align - 1) / align * align)
        default: segmentStride = seg
        }
        depth = kernelH * segmentStride
        let nr = Int(SSD_NR)
        let panelCount = (n + nr - 1) / nr
        switch layout {
        case .rowMajor:
            panelStride = 0
            buffer = CPUBuffer(byteCount: n * depth * 4, counter: counter)
            buffer.floats.update(from: src, count: n * depth)
        case .panels(let element):
            panelStride = depth * nr
            buffer = CPUBuffer(byteCount: panelCount * panelStride * element.byteSize, counter: counter)
            let depth = self.depth, panelStride = self.panelStride
            let out = buffer.pointer
            Parallel.forEach(panelCount) { p in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: panelStride)
                defer { tmp.deallocate() }
                Self.columnsPanel(src, n: n, depth: depth, panel: p, into: tmp)
                switch element {
                case .f16: ssd_f32_to_f16(tmp, out.assumingMemoryBound(to: UInt16.self) + p * panelStride, panelStride)
                case .bf16: ssd_f32_to_bf16(tmp, out.assumingMemoryBound(to: UInt16.self) + p * panelStride, panelStride)
                default: (out.assumingMemoryBound(to: Float.self) + p * panelStride).update(from: tmp, count: panelStride)
                }
            }
        case .bf16Pairs:
            panelStride = depth * nr
            buffer = CPUBuffer(byteCount: panelCount * panelStride * 2, counter: counter)
            let segmentStride = self.segmentStride, panelStride = self.panelStride, rowLength = kernelH * seg
            let out = buffer.pointer.assumingMemoryBound(to: UInt16.self)
            Parallel.forEach(panelCount) { p in
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: panelStride)
                defer { tmp.deallocate() }
                for s in 0..<kernelH {
                    for kk in 0..<segmentStride {
                        let k = s * segmentStride + kk  // stored depth index
                        for c in 0..<nr {
                            let col = p * nr + c
                            let v: Float = (col < n && kk < seg) ? src[col * rowLength + s * seg + kk] : 0
                            tmp[(k / 2) * 2 * nr + c * 2 + (k % 2)] = v
                        }
                    }
                }
                ssd_f32_to_bf16(tmp, out + p * panelStride, panelStride)
            }
        case .bf16SplitPairs:
            panelStride = depth * nr
            buffer = CPUBuffer(byteCount: panelCount * panelStride * 2, counter: counter)
            let segmentStride = self.segmentStride, panelStride = self.panelStride, rowLength = kernelH * seg
            let out = buffer.pointer.assumingMemoryBound(to: UInt16.self)
            Parallel.forEach(panelCount) { p in
                // The panel's fp32 columns (k × 64, segment by segment), then split per segment.
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rowLength * nr))
                defer { tmp.deallocate() }
                Self.columnsPanel(src, n: n, depth: rowLength, panel: p, into: tmp)
                for s in 0..<kernelH {
                    ssd_pack_bf16x2_panel(tmp + s * seg * nr, seg, segmentStride / 2, out + p * panelStride + s * segmentStride * nr)
                }
            }
        }
    }

    /// Columns `64p ..< 64p + 64` of the rows `src` (`[n, depth]`) as one fp32 panel, `depth × 64`
    /// row-major, zeros past column `n`.
    static func columnsPanel(_ src: UnsafePointer<Float>, n: Int, depth: Int, panel p: Int, into tmp: UnsafeMutablePointer<Float>) {
        let nr = Int(SSD_NR)
        for k in 0..<depth {
            for c in 0..<nr {
                let col = p * nr + c
                tmp[k * nr + c] = col < n ? src[col * depth + k] : 0
            }
        }
    }

    /// Whether the AMX kernels multiply by this weight now (bf16 or split panels, AMX level active).
    var runsOnAMX: Bool { (layout == .bf16Pairs || layout == .bf16SplitPairs) && depth > 0 && ssd_amx_active() != 0 }

    /// `m` fp32 rows of this weight's segment length (`rows`, segment-major) converted to the bf16
    /// rows its AMX kernel reads (`dst`, `ld` apart): plain or split as the layout asks.
    func convertRows(_ rows: UnsafePointer<UnsafePointer<Float>?>, _ m: Int, _ dst: UnsafeMutablePointer<UInt16>, _ ld: Int) {
        if layout == .bf16SplitPairs {
            ssd_rows_to_bf16x2(rows, m, segmentLength, segmentStride / 2, dst, ld)
        } else {
            ssd_rows_to_bf16(rows, m, segmentLength, segmentStride, dst, ld)
        }
    }

    /// The AMX GEMM of converted rows `a` (`lda` apart) by this weight with `args`.
    func multiplyRows(_ a: UnsafePointer<UInt16>, _ lda: Int, _ args: inout ssd_gemm_args) {
        if layout == .bf16SplitPairs { ssd_bf16x3gemm_bf16a(a, lda, &args) } else { ssd_bf16gemm_bf16a(a, lda, &args) }
    }
}

extension PackedWeight {
    /// U[ξ][ci][co] = (G g Gᵀ)[ξ] of the 3×3 filters g (`src` [n, 3, 3, Cin], Cin a multiple of 32),
    /// packed per ξ into bf16 k-pair panels of depth Cin (`ssd_wino23_weight` on each panel's fp32 taps).
    static func winogradF23Weights(_ src: UnsafePointer<Float>, n: Int, inChannels cin: Int, counter: MemoryCounter) -> CPUBuffer {
        let nr = Int(SSD_NR), panelCount = (n + nr - 1) / nr, perXi = panelCount * cin * nr, k = 9 * cin
        let out = CPUBuffer(byteCount: 16 * perXi * 2, counter: counter)
        let dst = out.pointer.assumingMemoryBound(to: UInt16.self)
        Parallel.forEach(panelCount) { p in
            // The panel's taps as fp32 panel rows ((ky·3 + kx)·Cin + ci) × 64, zero past column n.
            let tmp = UnsafeMutablePointer<Float>.allocate(capacity: k * nr)
            defer { tmp.deallocate() }
            columnsPanel(src, n: n, depth: k, panel: p, into: tmp)
            ssd_wino23_weight(tmp, cin, 0, cin, 0, dst + p * cin * nr, perXi)
        }
        return out
    }
}

extension CPUBackend {
    public func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor {
        try prepareWeight(view, role: role, layout: weightLayout)
    }

    /// A `force_upcast` VAE keeps fp32 dot products (its weights stay in the chosen storage type,
    /// as diffusers upcasts the stored weights); the other components use `weightLayout`.
    public func prepareWeight(_ view: HostTensorView, role: WeightRole, component: ModelComponent) throws -> Tensor {
        let layout = component == .vae(forceUpcast: true) && weightLayout == .bf16Pairs ? .panels(options.weightStorage) : weightLayout
        return try prepareWeight(view, role: role, layout: layout)
    }

    private func prepareWeight(_ view: HostTensorView, role: WeightRole, layout: PackedWeight.Layout) throws -> Tensor {
        guard view.dtype.isFloatingPoint else { throw TensorError.unsupportedDType(op: "prepareWeight \(view.name)", dtype: view.dtype) }
        switch role {
        case .vector:
            return try upload(view, as: .f32)
        case .embedding:
            guard view.shape.count == 2 else {
                throw TensorError.shapeMismatch(op: "prepareWeight \(view.name)", expected: [-1, -1], actual: view.shape)
            }
            return try upload(view, as: options.weightStorage)
        case .upsampleConv2d:
            let s = view.shape
            guard s.count == 4, s[2] == 3, s[3] == 3 else {
                throw TensorError.shapeMismatch(op: "prepareWeight \(view.name)", expected: [-1, -1, 3, 3], actual: s)
            }
            let source = UnsafeMutablePointer<Float>.allocate(capacity: max(view.count, 1))
            defer { source.deallocate() }
            view.convertToFloat(into: source)
            let phases = UpsampleConvWeight(source: source, outChannels: s[0], inChannels: s[1], layout: layout, counter: counter)
            phases.plain = try prepareWeight(view, role: .conv2d, layout: layout).storage as? PackedWeight
            return Tensor(shape: s, dtype: phases.phases[0].layout.elementType, storage: phases)
        case .linear, .conv2d:
            let s = view.shape
            let (n, cin, kh, kw): (Int, Int, Int, Int)
            if role == .linear {
                guard s.count == 2 else { throw TensorError.shapeMismatch(op: "prepareWeight \(view.name)", expected: [-1, -1], actual: s) }
                (n, cin, kh, kw) = (s[0], s[1], 1, 1)
            } else {
                guard s.count == 4 else { throw TensorError.shapeMismatch(op: "prepareWeight \(view.name)", expected: [-1, -1, -1, -1], actual: s) }
                (n, cin, kh, kw) = (s[0], s[1], s[2], s[3])
            }
            let k = cin * kh * kw
            let source = UnsafeMutablePointer<Float>.allocate(capacity: max(n * k, 1))
            defer { source.deallocate() }
            view.convertToFloat(into: source)
            if kh * kw > 1 {
                // [n, ci, ky, kx] → [n, ky, kx, ci]
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
                defer { tmp.deallocate() }
                tmp.update(from: source, count: n * k)
                Parallel.forEach(n) { o in
                    for ci in 0..<cin { for ky in 0..<kh { for kx in 0..<kw {
                        source[o * k + (ky * kw + kx) * cin + ci] = tmp[o * k + (ci * kh + ky) * kw + kx]
                    } } }
                }
            }
            // Split fp32 weights except for the 3×3 convolutions, which keep fp32 panels for
            // Winograd F(4×4, 3×3) (fewer multiplications than three bf16 products; the Winograd
            // GEMMs split their transformed operands per call).
            let packed = PackedWeight(fromRows: source, n: n, kernelH: kh, kernelW: kw, inChannels: cin,
                                      layout: layout == .bf16SplitPairs && kh * kw > 1 ? .panels(.f32) : layout, counter: counter,
                                      winogradF23: role == .conv2d && options.winograd && ssd_isa_detected() >= Int32(SSD_ISA_AMX_BF16))
            return Tensor(shape: s, dtype: packed.layout.elementType, storage: packed)
        }
    }

    /// The layout `linear`/`conv2d` weights are prepared in, from the options.
    var weightLayout: PackedWeight.Layout {
        if blas != nil { return .rowMajor }
        if options.bf16Compute { return .bf16Pairs }
        if options.float32MatmulPrecision == .high, options.weightStorage == .f32, ssd_isa_detected() >= Int32(SSD_ISA_AMX_BF16) {
            return .bf16SplitPairs
        }
        return .panels(options.weightStorage)
    }

    /// A weight given to `linear`/`conv2d`: prepared, or a plain f32 tensor packed on the fly.
    func packedWeight(_ w: Tensor, op: String, kernel: (Int, Int, Int)) throws -> PackedWeight {
        if let p = w.storage as? PackedWeight { return p }
        if let plain = (w.storage as? UpsampleConvWeight)?.plain { return plain }
        let buf = try w.cpuBuffer(op)
        let view = HostTensorView(name: op + " weight", shape: w.shape, dtype: w.dtype, pointer: UnsafeRawPointer(buf.pointer), owner: buf)
        let prepared = try prepareWeight(view, role: kernel.1 * kernel.2 > 1 || w.rank == 4 ? .conv2d : .linear, activationDType: .f32)
        guard let p = prepared.storage as? PackedWeight else { throw TensorError.foreignTensor(op: op, backend: name) }
        return p
    }
}
