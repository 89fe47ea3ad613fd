import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Rows of A converted to bf16 at a time (all segments) on the per-task conversion path. B
    /// streams from memory once per row block, so blocks are as tall as keeps them within about
    /// 1.25 MiB of bf16 (up to 2048 deep counted), at least 256 rows, and of equal height, so that
    /// e.g. the 512 rows of a UNet level-3 linear (K = 1280) read the weights once. (The kernel
    /// blocks each call itself: see `amx_gemm` in gemm_amx.c.)
    static func amxRowBlock(rows m: Int, depth: Int) -> Int {
        let most = max(256, min(1024, (5 << 18) / (2 * min(depth, 2048)) / 32 * 32))
        let blocks = (m + most - 1) / most
        return ((m + blocks - 1) / blocks + 31) / 32 * 32
    }

    /// Elements between bf16 rows of A: one cache line more than the depth when that is a multiple
    /// of 512 bytes, so that the 16 rows of an A tile do not all fall in the same few L1 sets.
    static func amxRowStride(depth: Int) -> Int { (depth * 2) % 512 == 0 ? depth + 32 : depth }

    /// One AMX kernel call's arguments: output rows `rows` (within one output line) and the task's
    /// `columns` (starting on a panel), the weights' whole depth, the epilogue offset to match.
    func amxArgs(rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight, _ out: GEMMOutput, _ ep: GEMMEpilogue,
                 scratch: UnsafeMutableRawPointer) -> ssd_gemm_args {
        let j0 = columns.lowerBound, offset = out.offset(rows.lowerBound)
        let b = UnsafeRawPointer(w.buffer.pointer) + (j0 / Int(SSD_NR)) * w.panelStride * 2
        return ssd_gemm_args(
            m: rows.count, n: columns.count, k: w.depth, a_rows: nil, a_offset: 0, b: b, b_panel_stride: w.panelStride,
            c: out.c + offset + j0, ldc: out.ldc, alpha: ep.alpha, accumulate: 0, bias: ep.bias.map { $0 + j0 },
            residual: ep.residual.map { $0 + offset + j0 }, ldr: out.ldc, scratch: scratch)
    }

    /// One GEMM task on the AMX tiles (bf16 weights in `bf16Pairs` panels): each row block of A
    /// is converted to bf16 once, over all segments in the weights' stored depth layout, and then
    /// multiplied by every column of the task (the kernel blocks the depth itself), so that neither
    /// the conversion nor the epilogue repeats per column or depth block (the generic path,
    /// `gemmTask`, does both).
    /// Row blocks follow `GEMMRows.blockEnd` and the output's lines, as in `gemmTask`.
    func gemmTaskAMX(_ source: GEMMRows, rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight,
                     _ out: GEMMOutput, _ ep: GEMMEpilogue) {
        // The band path's tiles must not straddle output rows: every block (cut at task, image, row
        // and output-line ends) has to start on a 16-pixel boundary.
        if case let .conv(x, g, prologue) = source, w.layout == .bf16Pairs, ConvBandBF16.fits(g, w), rows.lowerBound % 16 == 0,
           out.lineLength == Int.max || out.lineLength % 16 == 0 {
            gemmTaskAMXConv(x, g, prologue, rows: rows, columns: columns, w, out, ep)
            return
        }
        let m = rows.count
        let depth = w.depth, segments = w.kernelH
        let mc = Self.amxRowBlock(rows: m, depth: depth)
        let lda = Self.amxRowStride(depth: depth)
        // This worker thread's kept scratch (slot 0): the sizes vary from layer to layer, and a
        // fresh mapping would page-fault on every task; the backend's pool is left to tensors.
        let aBytes = mc * lda * 2
        let kept = ssd_thread_scratch(0, aBytes)
        let a = kept ?? counter.obtain(aBytes)
        defer { if kept == nil { counter.release(a, aBytes) } }
        let a16 = a.assumingMemoryBound(to: UInt16.self)
        // Only used should the level drop below AMX meanwhile (tests switch it process-wide).
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 24 * depth + 64, alignment: 64)
        defer { scratch.deallocate() }
        let rowPointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: segments * mc)
        defer { rowPointers.deallocate() }
        var band = InputBand()
        defer { band.deallocate() }
        var row0 = rows.lowerBound
        while row0 < rows.upperBound {
            let row1 = min(source.blockEnd(from: row0, limit: rows.upperBound, mc: mc), out.lineEnd(row0))
            let mb = row1 - row0
            band.rowPointers(source, rows: row0..<row1, segments: segments, into: rowPointers)
            for s in 0..<segments {
                w.convertRows(UnsafePointer(rowPointers + s * mb), mb, a16 + s * w.segmentStride, lda)
            }
            var args = amxArgs(rows: row0..<row1, columns: columns, w, out, ep, scratch: scratch)
            w.multiplyRows(a16, lda, &args)
            row0 = row1
        }
    }

    /// Dense rows (a linear's input) converted to bf16 once, by all threads, for every task of a GEMM
    /// that runs in several column chunks: per-task conversion (`gemmTaskAMX`) would convert every
    /// row once per column chunk (a 512 × 1280 × 1280 linear on 2 threads runs as 2 × 4 tasks, and
    /// converting 256 rows takes about a third of such a task's multiplication). The caller releases
    /// `buffer` to `counter`.
    func convertSharedBF16(_ p: UnsafePointer<Float>, lda: Int, m: Int, _ w: PackedWeight) -> SharedBF16Rows {
        sharedBF16Rows(m: m, w) { r0, r1, dst, ld in
            let pointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: r1 - r0)
            defer { pointers.deallocate() }
            for r in r0..<r1 { pointers[r - r0] = p + r * lda }
            w.convertRows(UnsafePointer(pointers), r1 - r0, dst, ld)
        }
    }

    /// The rows `h · GELU(g)` of GEGLU input rows `[m, 2 · w.depth]` (diffusers `GEGLU`), made
    /// straight in bf16 for a linear on them (`gegluLinear`): the fp32 GEGLU output is never stored.
    func convertSharedGEGLU(_ p: UnsafePointer<Float>, m: Int, _ w: PackedWeight) -> SharedBF16Rows {
        sharedBF16Rows(m: m, w) { r0, r1, dst, ld in
            if w.layout == .bf16SplitPairs {
                ssd_geglu_to_bf16x2(p + r0 * 2 * w.segmentLength, r1 - r0, w.segmentLength, w.segmentStride / 2, dst, ld)
            } else {
                ssd_geglu_to_bf16(p + r0 * 2 * w.segmentLength, r1 - r0, w.segmentLength, w.segmentStride, dst, ld)
            }
        }
    }

    /// `m` bf16 rows for `w` filled in parallel chunks by `fill(r0, r1, rowR0, ld)`.
    func sharedBF16Rows(m: Int, _ w: PackedWeight,
                        fill: (Int, Int, UnsafeMutablePointer<UInt16>, Int) -> Void) -> SharedBF16Rows {
        let ld = Self.amxRowStride(depth: w.depth)
        // The kernel reads rows up to a multiple of 32 past the first row of each call.
        let bytes = ((m + 31) / 32 * 32 + 32) * ld * 2
        let buffer = counter.obtain(bytes)
        let a16 = buffer.assumingMemoryBound(to: UInt16.self)
        let chunks = max(1, min(m, options.threads * 2)), chunkRows = (m + chunks - 1) / chunks
        parallelFor(chunks) { t in
            let r0 = t * chunkRows, r1 = min(m, r0 + chunkRows)
            guard r0 < r1 else { return }
            fill(r0, r1, a16 + r0 * ld, ld)
        }
        return SharedBF16Rows(buffer: buffer, bytes: bytes, rows: a16, ld: ld)
    }

    /// One task of a GEMM whose rows were converted by `convertSharedBF16` (rows start on a
    /// 32-row slice): only the multiplication.
    func gemmTaskAMXShared(_ a: SharedBF16Rows, rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight,
                           _ out: GEMMOutput, _ ep: GEMMEpilogue) {
        // Only used should the level drop below AMX meanwhile (tests switch it process-wide).
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 24 * w.depth + 64, alignment: 64)
        defer { scratch.deallocate() }
        var row0 = rows.lowerBound
        while row0 < rows.upperBound {
            let row1 = min(rows.upperBound, out.lineEnd(row0))
            var args = amxArgs(rows: row0..<row1, columns: columns, w, out, ep, scratch: scratch)
            w.multiplyRows(a.rows + row0 * a.ld, a.ld, &args)
            row0 = row1
        }
    }

    /// One convolution task on the AMX tiles with A read in place from a bf16 band of the block's
    /// input rows (prologue applied, zero padding included): each input pixel is converted once per
    /// block instead of once per kernel tap (`gemmTaskAMX` converts kh·kw copies), and the tiles
    /// of 16 output pixels read their kw·cin inputs per kernel row straight from the band, cin
    /// apart. Needs `ConvBandBF16.fits` and a first row on a 16-pixel boundary.
    func gemmTaskAMXConv(_ x: UnsafePointer<Float>, _ g: ConvGeometry, _ prologue: ConvPrologue?, rows: Range<Int>,
                         columns: Range<Int>, _ w: PackedWeight, _ out: GEMMOutput, _ ep: GEMMEpilogue) {
        let segments = w.kernelH
        let mc = 1024
        // Only used should the level drop below AMX meanwhile (tests switch it process-wide).
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 44 * w.depth + 128, alignment: 64)
        defer { scratch.deallocate() }
        var band = ConvBandBF16(g)
        defer { band.deallocate() }
        let source = GEMMRows.conv(x, g, prologue: prologue)
        let tiles = UnsafeMutablePointer<UnsafePointer<UInt16>?>.allocate(capacity: (mc / 16 + 2) * segments)
        defer { tiles.deallocate() }
        var row0 = rows.lowerBound
        while row0 < rows.upperBound {
            let row1 = min(source.blockEnd(from: row0, limit: rows.upperBound, mc: mc), out.lineEnd(row0))
            let mb = row1 - row0
            band.fill(x, prologue, rows: row0..<row1)
            let tileCount = (mb + 31) / 32 * 2
            for t in 0..<tileCount {
                // Tiles past the block (the second half of a last 16-row slice) repeat the first.
                let pixel = row0 + (16 * t < mb ? 16 * t : 0)
                for s in 0..<segments { tiles[t * segments + s] = band.start(pixel: pixel, kernelRow: s) }
            }
            var args = amxArgs(rows: row0..<row1, columns: columns, w, out, ep, scratch: scratch)
            ssd_bf16gemm_tiles(UnsafePointer(tiles), segments, w.segmentLength, g.cin * 2, &args)
            row0 = row1
        }
    }
}

/// bf16 rows shared by the tasks of one GEMM (`convertSharedBF16`): row r at `rows + r · ld`.
struct SharedBF16Rows {
    let buffer: UnsafeMutableRawPointer
    let bytes: Int
    let rows: UnsafeMutablePointer<UInt16>
    let ld: Int
}

/// A block's input rows in bf16 for `gemmTaskAMXConv`: rows `oyA − padTop … oyB − padTop + kh − 1`
/// of one image, `wo + kw − 1` pixels wide (input column `ix` at band column `ix + padLeft`), the
/// prologue applied and zeros outside the image.
struct ConvBandBF16 {
    let g: ConvGeometry
    /// This worker thread's kept scratch (slot 0, as `gemmTaskAMX` uses it), or `owned`.
    private var storage: UnsafeMutablePointer<UInt16>? = nil
    private var owned: UnsafeMutablePointer<UInt16>? = nil
    private var ownedCapacity = 0
    private var staging: UnsafeMutablePointer<Float>? = nil
    /// Image and first output row of the band now held.
    private var image = 0, firstOutputRow = 0

    init(_ g: ConvGeometry) { self.g = g }

    /// Whether the band path applies: stride 1, output rows of whole 16-pixel tiles, and a kernel
    /// row's kw·cin inputs a whole number of 32-deep steps (the weights' segments then lie back to
    /// back, as the kernel reads them).
    static func fits(_ g: ConvGeometry, _ w: PackedWeight) -> Bool {
        g.stride == 1 && g.wo % 16 == 0 && w.kernelH == g.kh && w.segmentLength == g.kw * g.cin
            && w.segmentLength % 32 == 0 && w.segmentStride == w.segmentLength
    }

    var width: Int { g.wo + g.kw - 1 }

    mutating func deallocate() {
        owned?.deallocate()
        staging?.deallocate()
    }

    /// Converts the input rows the output rows `rows` (within one image) read.
    mutating func fill(_ x: UnsafePointer<Float>, _ prologue: ConvPrologue?, rows: Range<Int>) {
        let perImage = g.ho * g.wo
        let b = rows.lowerBound / perImage
        let oyA = (rows.lowerBound - b * perImage) / g.wo, oyB = (rows.upperBound - 1 - b * perImage) / g.wo
        let bandRows = oyB - oyA + g.kh, rowLength = width * g.cin
        let needed = bandRows * rowLength
        if let kept = ssd_thread_scratch(0, needed * 2) {
            storage = kept.assumingMemoryBound(to: UInt16.self)
        } else {
            if ownedCapacity < needed {
                owned?.deallocate()
                owned = .allocate(capacity: needed)
                ownedCapacity = needed
            }
            storage = owned
        }
        if prologue != nil && staging == nil { staging = .allocate(capacity: g.w * g.cin) }
        (image, firstOutputRow) = (b, oyA)
        // Image columns skip..<skip + take land at band columns first…; the rest of a row is padding.
        let first = max(0, g.padLeft), skip = max(0, -g.padLeft)
        let take = min(g.w - skip, width - first)
        for i in 0..<bandRows {
            let row = storage! + i * rowLength
            let iy = oyA - g.padTop + i
            guard iy >= 0, iy < g.h else {
                row.update(repeating: 0, count: rowLength)
                continue
            }
            if first > 0 { row.update(repeating: 0, count: first * g.cin) }
            let end = first + max(0, take)
            if end < width { (row + end * g.cin).update(repeating: 0, count: (width - end) * g.cin) }
            guard take > 0 else { continue }
            var src = x + ((b * g.h + iy) * g.w + skip) * g.cin
            if let prologue {
                prologue.apply(src, staging!, pixels: take, cin: g.cin, batch: b)
                src = UnsafePointer(staging!)
            }
            var pointer: UnsafePointer<Float>? = src
            ssd_rows_to_bf16(&pointer, 1, take * g.cin, take * g.cin, row + first * g.cin, rowLength)
        }
    }

    /// Where the inputs of output pixel `pixel` (a GEMM row of the band's image) under kernel row
    /// `kernelRow` start: kw·cin contiguous values.
    func start(pixel: Int, kernelRow: Int) -> UnsafePointer<UInt16> {
        let rem = pixel - image * g.ho * g.wo
        let oy = rem / g.wo, ox = rem - oy * g.wo
        return UnsafePointer(storage! + ((oy - firstOutputRow + kernelRow) * width + ox) * g.cin)
    }
}
