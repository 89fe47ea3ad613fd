import CSSDKernels
import SSDTensor

/// Where the GEMM's A rows come from.
enum GEMMRows {
    /// Row-major `[m, lda]`, one segment.
    case dense(UnsafePointer<Float>, lda: Int)
    /// Implicit GEMM over an NHWC input `[b, h, w, cin]` with zero padding: row `r` is output pixel `r`,
    /// segment `s` the `kw·cin` inputs under kernel row `s`. Segments inside the image are read in place;
    /// those that cross its border are assembled with zeros (no padded copy of the whole input).
    case conv(UnsafePointer<Float>, h: Int, w: Int, cin: Int, ho: Int, wo: Int, stride: Int, padding: Int, kw: Int)

    /// Segment `s` of row `r` in place, or nil when it crosses the border (use `fill`).
    @inline(__always)
    func inPlace(_ r: Int, segment s: Int) -> UnsafePointer<Float>? {
        switch self {
        case let .dense(p, lda):
            return p + r * lda
        case let .conv(p, h, w, cin, ho, wo, stride, padding, kw):
            let b = r / (ho * wo), rem = r - b * ho * wo
            let oy = rem / wo, ox = rem - oy * wo
            let iy = oy * stride + s - padding, ix = ox * stride - padding
            guard iy >= 0, iy < h, ix >= 0, ix + kw <= w else { return nil }
            return p + ((b * h + iy) * w + ix) * cin
        }
    }

    /// Writes segment `s` of row `r` (`kw·cin` floats, zeros outside the image) to `destination`.
    func fill(_ r: Int, segment s: Int, into destination: UnsafeMutablePointer<Float>) {
        switch self {
        case let .dense(p, lda):
            destination.update(from: p + r * lda, count: lda)
        case let .conv(p, h, w, cin, ho, wo, stride, padding, kw):
            let b = r / (ho * wo), rem = r - b * ho * wo
            let oy = rem / wo, ox = rem - oy * wo
            let iy = oy * stride + s - padding
            for kx in 0..<kw {
                let ix = ox * stride - padding + kx
                let dst = destination + kx * cin
                if iy >= 0, iy < h, ix >= 0, ix < w {
                    dst.update(from: p + ((b * h + iy) * w + ix) * cin, count: cin)
                } else {
                    dst.update(repeating: 0, count: cin)
                }
            }
        }
    }
}

/// Epilogue operands of a GEMM: `C = alpha·A·B + bias + residual`.
struct GEMMEpilogue {
    var alpha: Float = 1
    var bias: UnsafePointer<Float>? = nil
    var residual: UnsafePointer<Float>? = nil
    var ldr: Int = 0
}

extension CPUBackend {
    /// `C[m × n] = alpha · A · W + bias + residual` with the packed weight `w`, over the worker threads.
    func gemm(rows a: GEMMRows, m: Int, weight w: PackedWeight, c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: GEMMEpilogue) {
        if m == 0 || w.n == 0 { return }
        let threads = options.threads
        let nr = Int(SSD_NR)
        let panels = w.panels
        if threads == 1 {
            gemmTask(a, rows: 0..<m, columns: 0..<w.n, w, c, ldc, epilogue)
            return
        }
        // A grid of about 4 tasks per thread, handed out dynamically so that a core slowed by
        // other work costs little. Every row chunk streams all the weights of its columns and
        // every column chunk all of its rows, so the split minimises rowChunks·|W| + colChunks·|A|
        // (weights are the larger operand for the small token counts of the inner UNet levels).
        let target = threads * 4
        let weightBytes = Double(w.n * w.depth * w.layout.elementType.byteSize)
        let inputBytes = Double(m * w.depth * 4)
        var best = (cost: Double.infinity, rows: 1, cols: 1)
        for rc in 1...max(1, min(target, (m + 5) / 6)) {
            let cc = min(panels, (target + rc - 1) / rc)
            let cost = Double(rc) * weightBytes + Double(cc) * inputBytes + (rc * cc < threads ? 1e18 : 0)
            if cost < best.cost { best = (cost, rc, cc) }
        }
        let rowChunks = best.rows, colChunks = best.cols
        let rowsPer = ((m + rowChunks - 1) / rowChunks + 5) / 6 * 6
        let panelsPer = (panels + colChunks - 1) / colChunks
        parallelFor(rowChunks * colChunks) { t in
            let r0 = (t / colChunks) * rowsPer, r1 = min(m, r0 + rowsPer)
            let c0 = (t % colChunks) * panelsPer * nr, c1 = min(w.n, c0 + panelsPer * nr)
            if r0 < r1 && c0 < c1 { gemmTask(a, rows: r0..<r1, columns: c0..<c1, w, c, ldc, epilogue) }
        }
    }

    /// One thread's share: rows × columns (columns start on a panel boundary).
    private func gemmTask(_ a: GEMMRows, rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight,
                          _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ ep: GEMMEpilogue) {
        let nr = Int(SSD_NR)
        let (mc, ncBlock, kcBlock) = options.blocking
        let segments = w.kernelH, segLen = w.segmentLength, m = rows.count
        // Row pointers of every segment for this task's rows.
        let rowPointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: segments * m)
        defer { rowPointers.deallocate() }
        var borderSegments = 0
        for s in 0..<segments {
            for r in 0..<m {
                let p = a.inPlace(rows.lowerBound + r, segment: s)
                rowPointers[s * m + r] = p
                if p == nil { borderSegments += 1 }
            }
        }
        // Segments that cross the image border, assembled with zeros in a per-task scratch.
        let border = UnsafeMutablePointer<Float>.allocate(capacity: max(1, borderSegments * segLen))
        defer { border.deallocate() }
        if borderSegments > 0 {
            var next = 0
            for s in 0..<segments {
                for r in 0..<m where rowPointers[s * m + r] == nil {
                    let dst = border + next * segLen
                    a.fill(rows.lowerBound + r, segment: s, into: dst)
                    rowPointers[s * m + r] = UnsafePointer(dst)
                    next += 1
                }
            }
        }
        if w.layout == .bf16Pairs && w.depth > 0 && ssd_amx_active() != 0 {
            gemmTaskAMX(rowPointers: UnsafePointer(rowPointers), m: m, firstRow: rows.lowerBound, columns: columns, w, c, ldc, ep)
            return
        }
        let convertsB: Bool
        if case .panels(let e) = w.layout, e != .f32 { convertsB = true } else { convertsB = false }
        let bScratch = UnsafeMutablePointer<Float>.allocate(capacity: convertsB ? ncBlock * kcBlock : 1)
        defer { bScratch.deallocate() }
        let aScratchBytes = w.layout == .bf16Pairs ? (min(mc, m) + 31) / 32 * 32 * ((kcBlock + 31) / 32 * 32 + 2) * 2 + 128 : 1
        let aScratch = UnsafeMutableRawPointer.allocate(byteCount: aScratchBytes, alignment: 64)
        defer { aScratch.deallocate() }
        let base = UnsafeRawPointer(w.buffer.pointer)

        // Row blocks outer: the mc × nc block of C stays in L2 over the whole k loop (the weights
        // block is re-read per row block, which costs less than cycling C through memory).
        var r0 = 0
        while r0 < m {
            let rowCount = min(mc, m - r0)
            var j0 = columns.lowerBound
            while j0 < columns.upperBound {
                let nb = min(ncBlock, columns.upperBound - j0)
                let panel0 = j0 / nr, panelsInBlock = (nb + nr - 1) / nr
                var first = true
                // Each segment in equal depth blocks of at most kc (multiples of 32), not kc + a short tail.
                let blocksPerSegment = (segLen + kcBlock - 1) / kcBlock
                let kcEven = ((segLen + blocksPerSegment - 1) / blocksPerSegment + 31) / 32 * 32
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
                        case .rowMajor:
                            return  // handled by the BLAS path
                        }
                        do {
                            let m0 = r0, mb = rowCount
                            let row0 = rows.lowerBound + m0
                            var args = ssd_gemm_args(
                                m: mb, n: nb, k: kb, a_rows: UnsafePointer(rowPointers + s * m + m0), a_offset: k0,
                                b: b, b_panel_stride: bStride, c: c + row0 * ldc + j0, ldc: ldc, alpha: ep.alpha,
                                accumulate: first ? 0 : 1, bias: last ? ep.bias.map { $0 + j0 } : nil,
                                residual: last ? ep.residual.map { $0 + row0 * ep.ldr + j0 } : nil, ldr: ep.ldr,
                                scratch: aScratch)
                            if w.layout == .bf16Pairs { ssd_bf16gemm(&args) } else { ssd_sgemm(&args) }
                        }
                        first = false
                        k0 += kb
                    }
                }
                if first {
                    // k == 0: C = bias + residual.
                    for r in (rows.lowerBound + r0)..<(rows.lowerBound + r0 + rowCount) {
                        for j in j0..<(j0 + nb) {
                            c[r * ldc + j] = (ep.bias?[j] ?? 0) + (ep.residual?[r * ep.ldr + j] ?? 0)
                        }
                    }
                }
                j0 += nb
            }
            r0 += rowCount
        }
    }
}
