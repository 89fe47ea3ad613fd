import CSSDKernels
import SSDTensor

/// Shape of an implicit-GEMM convolution over an NHWC input `[batch, h, w, cin]`: output
/// `[batch, ho, wo, ·]`, output pixel `(oy, ox)` reads input rows `oy·stride − padTop + ky` and
/// columns `ox·stride − padLeft + kx` (zeros outside the image).
struct ConvGeometry {
    let batch: Int, h: Int, w: Int, cin: Int
    let ho: Int, wo: Int
    let stride: Int, padTop: Int, padLeft: Int
    let kh: Int, kw: Int

    /// Floats one output pixel reads per kernel row.
    var segmentLength: Int { kw * cin }
}

/// Group norm + SiLU applied to a convolution's input as it is read (diffusers' `norm → SiLU → conv`
/// in `ResnetBlock2D`): `x' = silu(x·scale[b, c] + shift[b, c])` (no SiLU when `silu` is false);
/// the padding is of `x'`, so it stays zero.
struct ConvPrologue {
    /// `[batch, cin]` each.
    let scale: UnsafePointer<Float>
    let shift: UnsafePointer<Float>
    let silu: Bool

    /// Writes `count` normalised pixels of batch item `b` (`count × cin` floats) from `src` to `dst`.
    func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, pixels count: Int, cin: Int, batch b: Int) {
        ssd_scale_shift_act(src, dst, count, cin, scale + b * cin, shift + b * cin, silu ? Int32(SSD_ACT_SILU) : Int32(SSD_ACT_NONE))
    }
}

/// Where the GEMM's A rows come from.
enum GEMMRows {
    /// Row-major `[m, lda]`, one segment.
    case dense(UnsafePointer<Float>, lda: Int)
    /// Implicit GEMM: row `r` is output pixel `r` of `geometry`, segment `s` the `kw·cin` inputs under
    /// kernel row `s`. Blocks whose inputs lie inside the image read them in place; the others (and
    /// every block when there is a prologue) read a band of input rows assembled per block, with
    /// zeros outside the image (never a padded copy of the whole input).
    case conv(UnsafePointer<Float>, ConvGeometry, prologue: ConvPrologue?)

    /// Writes segment `s` of row `r` (zeros outside the image, prologue applied) to `destination`.
    func fill(_ r: Int, segment s: Int, into destination: UnsafeMutablePointer<Float>) {
        switch self {
        case let .dense(p, lda):
            destination.update(from: p + r * lda, count: lda)
        case let .conv(p, g, prologue):
            let b = r / (g.ho * g.wo), rem = r - b * g.ho * g.wo
            let oy = rem / g.wo, ox = rem - oy * g.wo
            let iy = oy * g.stride + s - g.padTop
            for kx in 0..<g.kw {
                let ix = ox * g.stride - g.padLeft + kx
                let dst = destination + kx * g.cin
                if iy >= 0, iy < g.h, ix >= 0, ix < g.w {
                    let src = p + ((b * g.h + iy) * g.w + ix) * g.cin
                    if let prologue { prologue.apply(src, dst, pixels: 1, cin: g.cin, batch: b) } else { dst.update(from: src, count: g.cin) }
                } else {
                    dst.update(repeating: 0, count: g.cin)
                }
            }
        }
    }

    /// End of the block of rows that starts at `r0` (at most `mc` rows, before `limit`). Convolution
    /// blocks stay inside one image and either inside one output row (wide images) or on whole rows,
    /// so that their input band is small.
    func blockEnd(from r0: Int, limit: Int, mc: Int) -> Int {
        var end = min(limit, r0 + mc)
        guard case let .conv(_, g, _) = self else { return end }
        let perImage = g.ho * g.wo
        end = min(end, (r0 / perImage + 1) * perImage)
        let rowEnd = (r0 / g.wo + 1) * g.wo
        if 2 * g.wo >= mc {
            end = min(end, rowEnd)
        } else if end > rowEnd {
            end = max(rowEnd, end / g.wo * g.wo)
        }
        return end
    }
}

/// Where row `r` of C goes: rows come in lines of `lineLength` rows, `ldc` elements apart inside a
/// line, `lineStride` elements between the first rows of consecutive lines (dense: one line).
/// The residual, when there is one, is laid out the same way.
struct GEMMOutput {
    let c: UnsafeMutablePointer<Float>
    let ldc: Int
    let lineLength: Int
    let lineStride: Int

    /// Dense `[m, ldc]` output.
    static func dense(_ c: UnsafeMutablePointer<Float>, ldc: Int) -> GEMMOutput {
        GEMMOutput(c: c, ldc: ldc, lineLength: Int.max, lineStride: 0)
    }

    /// Elements from `c` to row `r`.
    @inline(__always)
    func offset(_ r: Int) -> Int {
        lineLength == Int.max ? r * ldc : (r / lineLength) * lineStride + (r % lineLength) * ldc
    }

    /// Last row (exclusive) of the line holding `r`.
    func lineEnd(_ r: Int) -> Int {
        lineLength == Int.max ? Int.max : (r / lineLength + 1) * lineLength
    }
}

/// Epilogue operands of a GEMM: `C = alpha·A·B + bias + residual` (the residual laid out like C).
struct GEMMEpilogue {
    var alpha: Float = 1
    var bias: UnsafePointer<Float>? = nil
    var residual: UnsafePointer<Float>? = nil
}

extension CPUBackend {
    /// `C[m × n] = alpha · A · W + bias + residual` with the packed weight `w`, over the worker threads.
    func gemm(rows a: GEMMRows, m: Int, weight w: PackedWeight, c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: GEMMEpilogue) {
        gemm(rows: a, m: m, weight: w, output: .dense(c, ldc: ldc), epilogue: epilogue)
    }

    /// `C = alpha · A · W + bias + residual` with C rows placed by `output`.
    /// `preconverted`: the rows already in bf16 for the AMX kernel (`layerNormLinears`, `gegluLinear`);
    /// `a` is then unused and the caller releases them.
    func gemm(rows a: GEMMRows, m: Int, weight w: PackedWeight, output: GEMMOutput, epilogue: GEMMEpilogue,
              preconverted: SharedBF16Rows? = nil) {
        if m == 0 || w.n == 0 { return }
        let threads = options.threads
        let nr = Int(SSD_NR)
        let panels = w.panels
        if threads == 1 {
            if let preconverted {
                gemmTaskAMXShared(preconverted, rows: 0..<m, columns: 0..<w.n, w, output, epilogue)
            } else {
                gemmTask(a, rows: 0..<m, columns: 0..<w.n, w, output, epilogue)
            }
            return
        }
        // A grid of about 4 tasks per thread, handed out dynamically so that a core slowed by
        // other work costs little. Every row chunk streams all the weights of its columns and
        // every column chunk all of its rows, so the split minimises rowChunks·|W| + colChunks·|A|
        // (weights are the larger operand for the small token counts of the inner UNet levels).
        let target = threads * 4
        let weightBytes = Double(w.buffer.byteCount)
        let inputBytes = Double(m * w.depth * 4)
        var best = (cost: Double.infinity, rows: 1, cols: 1)
        for rc in 1...max(1, min(target, (m + 5) / 6)) {
            let cc = min(panels, (target + rc - 1) / rc)
            let cost = Double(rc) * weightBytes + Double(cc) * inputBytes + (rc * cc < threads ? 1e18 : 0)
            if cost < best.cost { best = (cost, rc, cc) }
        }
        let rowChunks = best.rows, colChunks = best.cols
        let amx = w.runsOnAMX
        // Row chunks in whole micro-tiles: 6 rows for the micro-kernels, 32 (the AMX kernel's row
        // slice) on the AMX tiles; a convolution's band path needs chunks on 16-pixel boundaries.
        let unit = amx ? 32 : 6
        let rowsPer = ((m + rowChunks - 1) / rowChunks + unit - 1) / unit * unit
        let panelsPer = (panels + colChunks - 1) / colChunks
        // On AMX, several column chunks would each convert the same dense rows to bf16: convert
        // them once, shared by every task.
        var shared = preconverted
        if shared == nil, amx, colChunks > 1, case let .dense(p, lda) = a, w.kernelH == 1 {
            shared = convertSharedBF16(p, lda: lda, m: m, w)
        }
        defer { if preconverted == nil, let shared { counter.release(shared.buffer, shared.bytes) } }
        parallelFor(rowChunks * colChunks) { t in
            let r0 = (t / colChunks) * rowsPer, r1 = min(m, r0 + rowsPer)
            let c0 = (t % colChunks) * panelsPer * nr, c1 = min(w.n, c0 + panelsPer * nr)
            guard r0 < r1 && c0 < c1 else { return }
            if let shared {
                gemmTaskAMXShared(shared, rows: r0..<r1, columns: c0..<c1, w, output, epilogue)
            } else {
                gemmTask(a, rows: r0..<r1, columns: c0..<c1, w, output, epilogue)
            }
        }
    }

    /// Rows per block for `count` dense rows: at most `mc`, in equal blocks (multiples of 6), so
    /// that no short last block streams the whole weight block again for a handful of rows
    /// (512 rows: 2 × 258 instead of 480 + 32; 512×10240×1280 on one thread 62 → 78 % of peak,
    /// 512×1280×1280 68 → 93 %).
    static func evenRowBlock(_ count: Int, mc: Int) -> Int {
        guard count > 0 else { return mc }
        let blocks = (count + mc - 1) / mc
        return min(mc, ((count + blocks - 1) / blocks + 5) / 6 * 6)
    }

    /// One thread's share: rows × columns (columns start on a panel boundary).
    private func gemmTask(_ a: GEMMRows, rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight,
                          _ out: GEMMOutput, _ ep: GEMMEpilogue) {
        let nr = Int(SSD_NR)
        let (mc, ncBlock, kcBlock) = options.blocking
        let segments = w.kernelH, segLen = w.segmentLength
        // Row pointers of every segment for one block of rows, segment-major.
        let rowPointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: segments * mc)
        defer { rowPointers.deallocate() }
        if w.runsOnAMX {
            gemmTaskAMX(a, rows: rows, columns: columns, w, out, ep)
            return
        }
        var band = InputBand()
        defer { band.deallocate() }
        let convertsB: Bool
        switch w.layout {
        case .panels(let e): convertsB = e != .f32
        case .bf16SplitPairs: convertsB = true
        default: convertsB = false
        }
        let bScratch = UnsafeMutablePointer<Float>.allocate(capacity: convertsB ? ncBlock * kcBlock : 1)
        defer { bScratch.deallocate() }
        let aScratchBytes = w.layout == .bf16Pairs ? (min(mc, rows.count) + 31) / 32 * 32 * ((kcBlock + 31) / 32 * 32 + 2) * 2 + 128 : 1
        let aScratch = UnsafeMutableRawPointer.allocate(byteCount: aScratchBytes, alignment: 64)
        defer { aScratch.deallocate() }
        let base = UnsafeRawPointer(w.buffer.pointer)
        // Each segment in equal depth blocks of at most kc (multiples of 32), not kc + a short tail.
        let blocksPerSegment = (segLen + kcBlock - 1) / kcBlock
        let kcEven = ((segLen + blocksPerSegment - 1) / blocksPerSegment + 31) / 32 * 32

        // Row blocks outer: the mc × nc block of C stays in L2 over the whole k loop (the weights
        // block is re-read per row block, which costs less than cycling C through memory).
        let mcRows: Int
        if case .dense = a { mcRows = Self.evenRowBlock(rows.count, mc: mc) } else { mcRows = mc }
        var row0 = rows.lowerBound
        while row0 < rows.upperBound {
            let row1 = min(a.blockEnd(from: row0, limit: rows.upperBound, mc: mcRows), out.lineEnd(row0))
            let rowCount = row1 - row0
            band.rowPointers(a, rows: row0..<row1, segments: segments, into: rowPointers)
            let cRow = out.c + out.offset(row0)
            var j0 = columns.lowerBound
            while j0 < columns.upperBound {
                let nb = min(ncBlock, columns.upperBound - j0)
                let panel0 = j0 / nr, panelsInBlock = (nb + nr - 1) / nr
                var first = true
                for s in 0..<segments {
                    var k0 = 0
                    while k0 < segLen {
                        let kb = min(kcEven, segLen - k0)
                        let last = s == segments - 1 && k0 + kb >= segLen
                        let kStored = s * w.segmentStride + k0
                        var b: UnsafeRawPointer
                        var bStride = w.panelStride
                        switch w.layout {
                        case .panels(.f32):
                            b = base + (panel0 * w.panelStride + kStored * nr) * 4
                        case .panels(let e):
                            let src = base.assumingMemoryBound(to: UInt16.self)
                            for p in 0..<panelsInBlock {
                                let from = src + (panel0 + p) * w.panelStride + kStored * nr
                                if e == .f16 { ssd_f16_to_f32(from, bScratch + p * kb * nr, kb * nr) }
                                else { ssd_bf16_to_f32(from, bScratch + p * kb * nr, kb * nr) }
                            }
                            b = UnsafeRawPointer(bScratch)
                            bStride = kb * nr
                        case .bf16Pairs:
                            b = base + (panel0 * w.panelStride + kStored * nr) * 2
                        case .bf16SplitPairs:
                            // Without AMX: hi + lo back to fp32 panels (k0 is a multiple of 32,
                            // so the block starts on a stored 64-value chunk).
                            let src = base.assumingMemoryBound(to: UInt16.self)
                            for p in 0..<panelsInBlock {
                                ssd_bf16x2_pairs_to_f32(src + (panel0 + p) * w.panelStride + (s * w.segmentStride + 2 * k0) * nr,
                                                        kb, bScratch + p * kb * nr)
                            }
                            b = UnsafeRawPointer(bScratch)
                            bStride = kb * nr
                        case .rowMajor:
                            return  // handled by the BLAS path
                        }
                        var args = ssd_gemm_args(
                            m: rowCount, n: nb, k: kb, a_rows: UnsafePointer(rowPointers + s * rowCount), a_offset: k0,
                            b: b, b_panel_stride: bStride, c: cRow + j0, ldc: out.ldc, alpha: ep.alpha,
                            accumulate: first ? 0 : 1, bias: last ? ep.bias.map { $0 + j0 } : nil,
                            residual: last ? ep.residual.map { $0 + out.offset(row0) + j0 } : nil, ldr: out.ldc,
                            scratch: aScratch)
                        if w.layout == .bf16Pairs { ssd_bf16gemm(&args) } else { ssd_sgemm(&args) }
                        first = false
                        k0 += kb
                    }
                }
                if first {
                    // k == 0: C = bias + residual.
                    for r in row0..<row1 {
                        let o = out.offset(r)
                        for j in j0..<(j0 + nb) {
                            out.c[o + j] = (ep.bias?[j] ?? 0) + (ep.residual?[o + j] ?? 0)
                        }
                    }
                }
                j0 += nb
            }
            row0 = row1
        }
    }
}

/// A task's window of input rows for blocks of convolution rows: full-width rows (padding columns
/// included, zeros outside the image, prologue applied), kept from block to block so that each
/// input row is assembled once per task even though three consecutive output rows read it.
struct InputBand {
    private var storage: UnsafeMutablePointer<Float>? = nil
    private var capacity = 0
    /// Image, first input row and row count held now (`rows == 0`: nothing).
    private var image = -1, firstRow = 0, rows = 0

    mutating func deallocate() { storage?.deallocate() }

    /// Makes the window hold input rows `iy0...iy1` of image `b`; returns its base pointer.
    private mutating func window(_ x: UnsafePointer<Float>, _ g: ConvGeometry, _ prologue: ConvPrologue?,
                                 image b: Int, rows iy0: Int, through iy1: Int, columns ix0: Int, through ix1: Int) -> UnsafeMutablePointer<Float> {
        let cols = ix1 - ix0 + 1, rowFloats = cols * g.cin, needed = iy1 - iy0 + 1
        if capacity < needed * rowFloats {
            storage?.deallocate()
            capacity = max(needed * rowFloats, capacity * 2)
            storage = .allocate(capacity: capacity)
            rows = 0
        }
        let dst = storage!
        var kept = 0  // rows at the start of the window that are already right
        if image == b && rows > 0 && iy0 >= firstRow && iy0 < firstRow + rows {
            kept = min(firstRow + rows - iy0, needed)
            if iy0 > firstRow { dst.update(from: dst + (iy0 - firstRow) * rowFloats, count: kept * rowFloats) }
        }
        for i in kept..<needed {
            let iy = iy0 + i
            let row = dst + i * rowFloats
            guard iy >= 0, iy < g.h else {
                row.update(repeating: 0, count: rowFloats)
                continue
            }
            let lo = max(ix0, 0), hi = min(ix1, g.w - 1)
            if lo > ix0 { row.update(repeating: 0, count: (lo - ix0) * g.cin) }
            if hi < ix1 { (row + (hi + 1 - ix0) * g.cin).update(repeating: 0, count: (ix1 - hi) * g.cin) }
            if lo <= hi {
                let src = x + ((b * g.h + iy) * g.w + lo) * g.cin
                let to = row + (lo - ix0) * g.cin
                if let prologue { prologue.apply(src, to, pixels: hi - lo + 1, cin: g.cin, batch: b) }
                else { to.update(from: src, count: (hi - lo + 1) * g.cin) }
            }
        }
        (image, firstRow, rows) = (b, iy0, needed)
        return dst
    }

    /// Fills `pointers[s · rows.count + i]` with the `segLen` inputs of segment `s` of row
    /// `rows.lowerBound + i`: in place when the block's inputs lie inside the image and need no
    /// prologue, otherwise in the window of assembled input rows.
    mutating func rowPointers(_ a: GEMMRows, rows: Range<Int>, segments: Int,
                              into pointers: UnsafeMutablePointer<UnsafePointer<Float>?>) {
        switch a {
        case let .dense(p, lda):
            for (i, r) in rows.enumerated() { pointers[i] = p + r * lda }
        case let .conv(p, g, prologue):
            let perImage = g.ho * g.wo, n = rows.count
            let b = rows.lowerBound / perImage
            let first = rows.lowerBound - b * perImage, lastPixel = rows.upperBound - 1 - b * perImage
            let oyA = first / g.wo, oyB = lastPixel / g.wo
            let (oxMin, oxMax) = oyA == oyB ? (first % g.wo, lastPixel % g.wo) : (0, g.wo - 1)
            let iy0 = oyA * g.stride - g.padTop, iy1 = oyB * g.stride - g.padTop + g.kh - 1
            let inside = iy0 >= 0 && iy1 < g.h && oxMin * g.stride - g.padLeft >= 0 && oxMax * g.stride - g.padLeft + g.kw <= g.w
            // Where input pixel (iy, ix) of this block is read from, and the floats between its rows.
            let origin: UnsafePointer<Float>, rowStride: Int, iyBase: Int, ixBase: Int
            if inside && prologue == nil {
                origin = p + b * g.h * g.w * g.cin
                (rowStride, iyBase, ixBase) = (g.w * g.cin, 0, 0)
            } else {
                let ix0 = -g.padLeft, ix1 = (g.wo - 1) * g.stride - g.padLeft + g.kw - 1
                origin = UnsafePointer(window(p, g, prologue, image: b, rows: iy0, through: iy1, columns: ix0, through: ix1))
                (rowStride, iyBase, ixBase) = ((ix1 - ix0 + 1) * g.cin, iy0, ix0)
            }
            for i in 0..<n {
                let pixel = first + i
                let oy = pixel / g.wo, ox = pixel - oy * g.wo
                let ix = ox * g.stride - g.padLeft - ixBase
                for s in 0..<segments {
                    let iy = oy * g.stride - g.padTop + s - iyBase
                    pointers[s * n + i] = origin + iy * rowStride + ix * g.cin
                }
            }
        }
    }
}
