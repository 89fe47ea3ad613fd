import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Rows of A converted to bf16 at a time (all segments). B streams from memory once per row
    /// block, so blocks are as tall as keeps one kernel pass of them (≤ 2048 deep) within about
    /// 1.25 MiB (in L2 beside the slice of B), at least 256 rows, and of equal height, so that
    /// e.g. the 512 rows of a UNet level-3 linear (K = 1280) read the weights once.
    static func amxRowBlock(rows m: Int, depth: Int) -> Int {
        let most = max(256, min(1024, (5 << 18) / (2 * min(depth, 2048)) / 32 * 32))
        let blocks = (m + most - 1) / most
        return ((m + blocks - 1) / blocks + 31) / 32 * 32
    }

    /// One GEMM task on the AMX tiles (bf16 weights in `bf16Pairs` panels): each row block of A
    /// is converted to bf16 once, over all segments in the weights' stored depth layout, and then
    /// multiplied by every column of the task (the kernel blocks the depth itself), so that neither
    /// the conversion nor the epilogue repeats per column or depth block (the generic path,
    /// `gemmTask`, does both).
    /// Row blocks follow `GEMMRows.blockEnd` and the output's lines, as in `gemmTask`.
    func gemmTaskAMX(_ source: GEMMRows, rows: Range<Int>, columns: Range<Int>, _ w: PackedWeight,
                     _ out: GEMMOutput, _ ep: GEMMEpilogue) {
        let m = rows.count
        let depth = w.depth, segments = w.kernelH
        let mc = Self.amxRowBlock(rows: m, depth: depth)
        // Rows one cache line longer than the depth when that is a multiple of 512 bytes, so that
        // the 16 rows of an A tile do not all fall in the same few L1 sets.
        let lda = (depth * 2) % 512 == 0 ? depth + 32 : depth
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
        let j0 = columns.lowerBound
        let b = UnsafeRawPointer(w.buffer.pointer) + (j0 / Int(SSD_NR)) * w.panelStride * 2
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
                ssd_rows_to_bf16(UnsafePointer(rowPointers + s * mb), mb, w.segmentLength, w.segmentStride,
                                 a16 + s * w.segmentStride, lda)
            }
            let offset = out.offset(row0)
            var args = ssd_gemm_args(
                m: mb, n: columns.count, k: depth, a_rows: nil, a_offset: 0, b: b, b_panel_stride: w.panelStride,
                c: out.c + offset + j0, ldc: out.ldc, alpha: ep.alpha, accumulate: 0, bias: ep.bias.map { $0 + j0 },
                residual: ep.residual.map { $0 + offset + j0 }, ldr: out.ldc, scratch: scratch)
            ssd_bf16gemm_bf16a(a16, lda, &args)
            row0 = row1
        }
    }
}
