import CSSDKernels
import SSDTensor
import Synchronization


extension CPUBackend {
    /// 3×3, stride 1, padding 1 convolution (diffusers `nn.Conv2d(…, kernel_size=3, padding=1)` on
    /// NHWC) by Winograd F(4×4, 3×3) (Lavin & Gray 2015): 36 GEMMs `[tiles × Cin] · [Cin × Cout]`
    /// in the transformed domain (4× fewer multiplications than direct) on the packed micro-kernel.
    /// The weight is transformed per call (at most 64 MB at a time, pooled, no resident copy);
    /// tiles are processed in blocks, one block at a time per worker. `output` is
    /// `[batch, height, width, Cout]`, `residual` the same shape.
    /// Returns false (having written nothing) when it declines: weights not in fp32/f16/bf16 panels,
    /// too few tiles, too few input channels, or the option is off; the caller then runs the implicit GEMM.
    func winogradConv2d(_ x: UnsafePointer<Float>, batch: Int, height: Int, width: Int, weight w: PackedWeight,
                        bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?, prologue: ConvPrologue?,
                        output: UnsafeMutablePointer<Float>) -> Bool {
        guard options.winograd, w.kernelH == 3, w.kernelW == 3, case .panels = w.layout else { return false }
        let tiles = batch * ((width + 3) / 4) * ((height + 3) / 4)
        guard w.inChannels >= 16, w.n > 0, tiles >= options.winogradMinimumTiles else { return false }
        let nr = Int(SSD_NR)
        let chunkPanels = max(1, options.winogradWeightBytes / (36 * w.inChannels * nr * 4))
        var p0 = 0
        while p0 < w.panels {
            let p1 = min(w.panels, p0 + chunkPanels)
            winograd(x, batch: batch, height: height, width: width, weight: w, columns: (p0 * nr)..<min(w.n, p1 * nr),
                     bias: bias, residual: residual, prologue: prologue, output: output)
            p0 = p1
        }
        return true
    }

    /// Output channels `columns` (starting on a panel boundary) of `winogradConv2d`.
    private func winograd(_ x: UnsafePointer<Float>, batch: Int, height: Int, width: Int, weight w: PackedWeight,
                          columns: Range<Int>, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                          prologue: ConvPrologue?, output: UnsafeMutablePointer<Float>) {
        guard case .panels(let element) = w.layout else { return }
        let cin = w.inChannels, cout = w.n, nr = Int(SSD_NR), n = columns.count, c0 = columns.lowerBound
        let tilesX = (width + 3) / 4, tilesY = (height + 3) / 4
        let tiles = batch * tilesX * tilesY

        // Transformed weight U[ξ] of these columns as 64-column panels of depth Cin (ssd_sgemm's B layout).
        let panels = (n + nr - 1) / nr, uXi = panels * cin * nr
        let uBuffer = winogradWorkspace.take(36 * uXi * 4)
        defer { winogradWorkspace.give(uBuffer) }
        let u = uBuffer.pointer.assumingMemoryBound(to: Float.self)
        let base = UnsafeRawPointer(w.buffer.pointer)
        parallelFor(panels) { p in
            let src = base + (c0 / nr + p) * w.panelStride * element.byteSize
            if element == .f32 {
                ssd_winograd_weight_f43(src.assumingMemoryBound(to: Float.self), cin, u + p * cin * nr, uXi)
            } else {
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: 9 * cin * nr)
                defer { tmp.deallocate() }
                let h = src.assumingMemoryBound(to: UInt16.self)
                if element == .f16 { ssd_f16_to_f32(h, tmp, 9 * cin * nr) } else { ssd_bf16_to_f32(h, tmp, 9 * cin * nr) }
                ssd_winograd_weight_f43(tmp, cin, u + p * cin * nr, uXi)
            }
        }

        // Tiles per block: ~180 (each U[ξ] comes from L3 once per block and serves T/6 micro-tiles;
        // measured best for 128–512 channels), the block's transformed input and output
        // (36·T·(Cin + n) floats) within 32 MB. Tasks are (block, column split): with fewer than
        // two blocks per worker the columns are split too (each task transforms its block's input).
        let threads = options.threads
        var blockTiles = min(180, 32 * 1024 * 1024 / (36 * 4 * (cin + n)))
        blockTiles = max(6, (min(blockTiles, tiles) + 5) / 6 * 6)
        let blocks = (tiles + blockTiles - 1) / blockTiles
        let splits = min(panels, max(1, (2 * threads + blocks - 1) / blocks))
        let panelsPerSplit = (panels + splits - 1) / splits
        let tasks = blocks * splits
        let (_, ncBlock, kcBlock) = options.blocking
        let next = Atomic<Int>(0)
        parallelFor(min(threads, tasks)) { _ in
            let stageStride = (4 * blockTiles + 2) * cin
            let scratch = winogradWorkspace.take((6 * stageStride + 36 * blockTiles * (cin + n)) * 4)
            let stage = scratch.pointer.assumingMemoryBound(to: Float.self), v = stage + 6 * stageStride, m = v + 36 * blockTiles * cin
            let rows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: blockTiles)
            defer { rows.deallocate(); winogradWorkspace.give(scratch) }
            for i in 0..<blockTiles { rows[i] = UnsafePointer(v + i * cin) }
            while true {
                let task = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if task >= tasks { break }
                let t0 = (task / splits) * blockTiles, t1 = min(tiles, t0 + blockTiles)
                let s0 = (task % splits) * panelsPerSplit * nr, s1 = min(n, s0 + panelsPerSplit * nr)
                if s0 >= s1 { continue }

                // Input transform V[ξ][t][ci], one run of tiles along a tile row at a time (staged
                // with zero padding and the prologue applied).
                var t = t0
                while t < t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx0 = rem % tilesX
                    let count = min(t1 - t, tilesX - tx0)
                    let rowStride = (4 * count + 2) * cin
                    stageWinogradRows(x, image: b, height: height, width: width, cin: cin, firstRow: 4 * ty - 1, rows: 6,
                                      firstPixel: 4 * tx0 - 1, pixels: 4 * count + 2, prologue: prologue, into: stage)
                    ssd_winograd_input_f43(stage, rowStride, cin, count, v + (t - t0) * cin, cin, blockTiles * cin)
                    t += count
                }

                // 36 GEMMs M[ξ] = V[ξ] · U[ξ], cache-blocked in columns and depth like `gemm`.
                for xi in 0..<36 {
                    var j0 = s0
                    while j0 < s1 {
                        let nb = min(ncBlock, s1 - j0)
                        var k0 = 0
                        while k0 < cin {
                            let kb = min(kcBlock, cin - k0)
                            var args = ssd_gemm_args(
                                m: t1 - t0, n: nb, k: kb, a_rows: UnsafePointer(rows), a_offset: xi * blockTiles * cin + k0,
                                b: UnsafeRawPointer(u + xi * uXi + (j0 / nr) * cin * nr + k0 * nr), b_panel_stride: cin * nr,
                                c: m + xi * blockTiles * n + j0, ldc: n, alpha: 1, accumulate: k0 == 0 ? 0 : 1,
                                bias: nil, residual: nil, ldr: 0, scratch: nil)
                            ssd_sgemm(&args)
                            k0 += kb
                        }
                        j0 += nb
                    }
                }

                // Output transform with bias and residual.
                for t in t0..<t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx = rem % tilesX
                    let offset = ((b * height + 4 * ty) * width + 4 * tx) * cout + c0 + s0
                    ssd_winograd_output_f43(m + (t - t0) * n + s0, blockTiles * n, s1 - s0, bias.map { $0 + c0 + s0 }, residual.map { $0 + offset },
                                            output + offset, width * cout, cout,
                                            Int32(min(4, height - 4 * ty)), Int32(min(4, width - 4 * tx)))
                }
            }
        }
    }
}

extension CPUBackend {
    /// Input rows `firstRow ..< firstRow + rows` of image `b`, pixels `firstPixel ..< firstPixel +
    /// pixels` (zeros outside the image: the convolution's padding), the prologue applied, into
    /// `stage` (rows `pixels · cin` floats apart): the tiles' input for a Winograd input transform.
    func stageWinogradRows(_ x: UnsafePointer<Float>, image b: Int, height: Int, width: Int, cin: Int, firstRow: Int, rows: Int,
                           firstPixel ix0: Int, pixels: Int, prologue: ConvPrologue?, into stage: UnsafeMutablePointer<Float>) {
        let rowStride = pixels * cin
        let lo = max(ix0, 0), hi = min(ix0 + pixels, width)
        for r in 0..<rows {
            let iy = firstRow + r
            let dst = stage + r * rowStride
            guard iy >= 0, iy < height, hi > lo else {
                dst.update(repeating: 0, count: rowStride)
                continue
            }
            if lo > ix0 { dst.update(repeating: 0, count: (lo - ix0) * cin) }
            let pixelsAfter = ix0 + pixels - hi
            if pixelsAfter > 0 { (dst + (hi - ix0) * cin).update(repeating: 0, count: pixelsAfter * cin) }
            let src = x + ((b * height + iy) * width + lo) * cin
            let into = dst + (lo - ix0) * cin
            if let prologue {
                ssd_scale_shift_act(src, into, hi - lo, cin, prologue.scale + b * cin, prologue.shift + b * cin,
                                    prologue.silu ? Int32(SSD_ACT_SILU) : Int32(SSD_ACT_NONE))
            } else {
                into.update(from: src, count: (hi - lo) * cin)
            }
        }
    }
}

/// Scratch memory of the Winograd path kept for the backend's lifetime (freed by `trimMemory`):
/// at most one transformed weight (≤ 64 MB) and one block buffer per worker (≤ ~33 MB), reused
/// call after call. The shared activation pool is often full during a UNet call, and a fresh
/// mapping of these sizes costs thousands of page faults per convolution.
final class WinogradWorkspace: Sendable {
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let byteCount: Int
    }
    private let free = Mutex<[Buffer]>([])

    /// A buffer of at least `byteCount` bytes (64-byte aligned): the smallest free one that fits,
    /// else a new one (a smaller free buffer is then released, so the workspace holds at most
    /// as many buffers as were ever in use at once).
    func take(_ byteCount: Int) -> Buffer {
        let (found, dropped): (Buffer?, Buffer?) = free.withLock { list in
            if let i = list.indices.filter({ list[$0].byteCount >= byteCount }).min(by: { list[$0].byteCount < list[$1].byteCount }) {
                return (list.remove(at: i), nil)
            }
            return (nil, list.isEmpty ? nil : list.removeFirst())
        }
        if let found { return found }
        dropped?.pointer.deallocate()
        return Buffer(pointer: UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64), byteCount: byteCount)
    }

    /// Returns a buffer from `take` for reuse.
    func give(_ buffer: Buffer) { free.withLock { $0.append(buffer) } }

    /// Frees every buffer not in use.
    func drain() {
        let all = free.withLock { list -> [Buffer] in
            defer { list = [] }
            return list
        }
        for b in all { b.pointer.deallocate() }
    }

    deinit { drain() }
}
