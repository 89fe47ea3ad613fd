import Testing
import CSSDKernels
import SSDTensor
@testable import SSDCPUBackend

/// bf16 attention (`bf16Compute`) against the reference backend, at every instruction-set level
/// this CPU has (AMX is skipped where the CPU lacks it: `setInstructionSet` clamps to the
/// detected level, and each level is run once).
@Suite(.serialized) struct AttentionBF16Tests {
    static let cases: [[Int]] = [
        // [B, Nq, Nk, heads, D, causal]
        [2, 50, 50, 2, 24, 0], [1, 37, 77, 3, 40, 0], [2, 77, 77, 2, 64, 1], [1, 300, 300, 1, 8, 1],
        [1, 1, 5, 1, 16, 0], [1, 70, 600, 1, 64, 0], [1, 65, 33, 1, 96, 0],
    ]

    @Test func everyInstructionSet() throws {
        defer { CPUBackend.resetInstructionSet() }
        var seen = Set<String>()
        for isa in ["portable", "avx2", "avx512", "avx512-bf16", "amx-bf16", "neon"] {
            let used = CPUBackend.setInstructionSet(isa)
            guard seen.insert(used).inserted else { continue }
            let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
            for p in Self.cases {
                let (bt, nq, nk, heads, d, causal) = (p[0], p[1], p[2], p[3], p[4], p[5] == 1)
                let err = try parity(cpu) { b in
                    try b.attention(query: input(b, [bt, nq, heads * d], seed: 1, scale: 2), key: input(b, [bt, nk, heads * d], seed: 2, scale: 2),
                                    value: input(b, [bt, nk, heads * d], seed: 3), heads: heads, scale: 1 / Float(d).squareRoot(), causal: causal)
                }
                #expect(err < 2e-2, "\(used) bf16 attention \(p): \(err)")
                #expect(err > 0, "\(used) bf16 attention \(p) should round to bf16")
            }
        }
    }

    /// A `force_upcast` VAE's attention stays fp32 on a bf16 backend (diffusers runs that VAE in
    /// fp32); the UNet's takes the bf16 path.
    @Test func forceUpcastVAEAttentionStaysFloat() throws {
        let bf16 = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
        let (nq, nk, width) = (40, 70, 64)
        func run(_ component: ModelComponent) throws -> Double {
            try parity(bf16) { b in
                let q = try input(b, [1, nq, width], seed: 1, scale: 2), k = try input(b, [1, nk, width], seed: 2, scale: 2)
                let v = try input(b, [1, nk, width], seed: 3)
                return try b.attention(query: q, key: k, value: v, heads: 1, scale: 0.125, causal: false, component: component)
            }
        }
        let vae = try run(.vae(forceUpcast: true)), unet = try run(.unet)
        #expect(vae < 1e-5, "force-upcast VAE attention: \(vae)")
        #expect(unet > 1e-4 && unet < 2e-2, "UNet attention on bf16: \(unet)")
    }

    /// The packed bf16 pair panels hold exactly the RNE-rounded operands (both orientations).
    @Test func packing() throws {
        defer { CPUBackend.resetInstructionSet() }
        let (k, n, ld) = (37, 70, 80)
        let src = values(ld * max(k, n), seed: 5)
        for isa in ["portable", "amx-bf16"] {
            CPUBackend.setInstructionSet(isa)
            for transposed in [false, true] {
                let kpad = 64, panels = (n + 63) / 64
                var out = [UInt16](repeating: 0xFFFF, count: panels * kpad * 64)
                src.withUnsafeBufferPointer { s in
                    out.withUnsafeMutableBufferPointer { o in
                        ssd_pack_bf16_pairs(s.baseAddress!, ld, transposed ? 1 : 0, k, n, kpad, o.baseAddress!)
                    }
                }
                for p in 0..<kpad {
                    for c in 0..<(panels * 64) {
                        let v: Float = p < k && c < n ? (transposed ? src[c * ld + p] : src[p * ld + c]) : 0
                        var want: UInt16 = 0
                        [v].withUnsafeBufferPointer { ssd_f32_to_bf16($0.baseAddress!, &want, 1) }
                        let got = out[(c / 64) * kpad * 64 + (p / 2) * 128 + (c % 64) * 2 + p % 2]
                        #expect(got == want, "\(isa) transposed \(transposed) (\(p), \(c))")
                        if got != want { return }
                    }
                }
            }
        }
    }
}

/// The bf16 GEMM with depths past one AMX pass (2048) and edge blocks (rows and columns not
/// multiples of 32), at every level (AMX where the CPU has it).
@Suite(.serialized) struct BF16GEMMTests {
    @Test func deepEdges() throws {
        defer { CPUBackend.resetInstructionSet() }
        var seen = Set<String>()
        for isa in ["portable", "avx512-bf16", "amx-bf16"] {
            let used = CPUBackend.setInstructionSet(isa)
            guard seen.insert(used).inserted else { continue }
            let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
            let lin = try parity(cpu) { b in
                try b.linear(input(b, [45, 4200], seed: 1), weight: weight(b, [70, 4200], seed: 2, role: .linear),
                             bias: input(b, [70], seed: 3), residual: input(b, [45, 70], seed: 4))
            }
            #expect(lin < 2e-2 && lin > 0, "\(used) linear 45x4200x70: \(lin)")
            let conv = try parity(cpu) { b in
                try b.conv2d(input(b, [1, 5, 7, 700], seed: 5), weight: weight(b, [33, 700, 3, 3], seed: 6, role: .conv2d),
                             bias: nil, stride: 1, padding: 1, residual: nil)
            }
            #expect(conv < 2e-2 && conv > 0, "\(used) conv 700->33: \(conv)")
        }
    }

    /// Runs `body` at each bf16 level this machine has (portable, avx512-bf16, amx-bf16) with one and
    /// two threads, then restores the detected level.
    private func forEachBF16Level(_ body: (String, Int, CPUBackend) throws -> Void) throws {
        defer { CPUBackend.resetInstructionSet() }
        var seen = Set<String>()
        for isa in ["portable", "avx512-bf16", "amx-bf16"] {
            let used = CPUBackend.setInstructionSet(isa)
            guard seen.insert(used).inserted else { continue }
            for threads in [1, 2] {
                try body(used, threads, CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true, threads: threads)))
            }
        }
    }

    /// `gegluLinear` (GEGLU made straight into the AMX kernel's bf16 rows) gives what `linear(geglu(x))`
    /// gives, on every level, one and two threads, edge sizes, with bias and residual.
    @Test func gegluLinearMatchesComposition() throws {
        try forEachBF16Level { used, threads, cpu in
            for (m, k, n) in [(1, 40, 48), (37, 64, 320), (300, 320, 70), (600, 100, 640)] {
                let x = try input(cpu, [m, 2 * k], seed: 31, scale: 3)
                let w = try weight(cpu, [n, k], seed: 32, role: .linear)
                let bias = try input(cpu, [n], seed: 33), residual = try input(cpu, [m, n], seed: 34)
                // Other suites switch the level process-wide while this runs: a pair computed across
                // a switch may differ by rounding, so a few attempts are allowed (a real fault
                // differs every time).
                var same = false, error = 0.0
                for _ in 0..<5 where !same {
                    let fused = try cpu.download(cpu.gegluLinear(x, weight: w, bias: bias, residual: residual))
                    let composed = try cpu.download(cpu.linear(cpu.geglu(x), weight: w, bias: bias, residual: residual))
                    same = fused == composed
                    error = relativeError(fused, composed)
                }
                #expect(same, "\(used) \(threads) threads \(m)x\(k)x\(n): \(error)")
            }
        }
        let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
        #expect(throws: TensorError.self) {
            try cpu.gegluLinear(input(cpu, [4, 7], seed: 1), weight: weight(cpu, [8, 3], seed: 2, role: .linear), bias: nil, residual: nil)
        }
        #expect(throws: TensorError.self) {
            try cpu.gegluLinear(input(cpu, [4, 8], seed: 1), weight: weight(cpu, [8, 5], seed: 2, role: .linear), bias: nil, residual: nil)
        }
    }

    /// `layerNormLinears` (rows normalised straight into the AMX kernel's bf16 rows, once for all
    /// weights) gives what `layerNorm` then `linear`s give, on every level, one and two threads.
    @Test func layerNormLinearsMatchComposition() throws {
        try forEachBF16Level { used, threads, cpu in
            for (m, k, ns) in [(1, 40, [48]), (37, 64, [320, 64, 64]), (600, 100, [70, 640])] {
                let x = try input(cpu, [m, k], seed: 41, scale: 3)
                let gamma = try input(cpu, [k], seed: 42), beta = try input(cpu, [k], seed: 43)
                let ws = try ns.enumerated().map { try weight(cpu, [$1, k], seed: 44 + UInt64($0), role: .linear) }
                let bs = try ns.enumerated().map { $0 == 1 ? nil : try input(cpu, [$1], seed: 50 + UInt64($0)) }
                // Other suites switch the level process-wide: a few attempts (see gegluLinear's test).
                var same = false
                for _ in 0..<5 where !same {
                    let fused = try cpu.layerNormLinears(x, normWeight: gamma, normBias: beta, epsilon: 1e-5, weights: ws, biases: bs)
                    let normed = try cpu.layerNorm(x, weight: gamma, bias: beta, epsilon: 1e-5)
                    let composed = try zip(ws, bs).map { try cpu.linear(normed, weight: $0, bias: $1, residual: nil) }
                    same = try fused.map { try cpu.download($0) } == composed.map { try cpu.download($0) }
                        && fused.map(\.shape) == composed.map(\.shape)
                }
                #expect(same, "\(used) \(threads) threads \(m)x\(k)x\(ns)")
            }
        }
        let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
        #expect(throws: TensorError.self) {
            try cpu.layerNormLinears(input(cpu, [4, 8], seed: 1), normWeight: input(cpu, [8], seed: 2), normBias: input(cpu, [8], seed: 3),
                                     epsilon: 1e-5, weights: [weight(cpu, [8, 8], seed: 4, role: .linear)], biases: [])
        }
        #expect(throws: TensorError.self) {
            try cpu.layerNormLinears(input(cpu, [4, 8], seed: 1), normWeight: input(cpu, [8], seed: 2), normBias: input(cpu, [8], seed: 3),
                                     epsilon: 1e-5, weights: [weight(cpu, [8, 6], seed: 4, role: .linear)], biases: [nil])
        }
    }

    /// `ssd_bf16gemm` on fp32 rows (the entry the generic task path takes when the level is not
    /// AMX at its check but is by the call) agrees across levels: the AMX variant converts the rows
    /// and runs the shared loop nest, with bias, residual and accumulation.
    @Test func floatRowsEntry() throws {
        defer { CPUBackend.resetInstructionSet() }
        let (m, n, k, kpad) = (300, 70, 100, 128)
        let a = values(m * k, seed: 21), bsrc = values(k * n, seed: 22), bias = values(n, seed: 23)
        let residual = values(m * n, seed: 24), c0 = values(m * n, seed: 25)
        var panels = [UInt16](repeating: 0, count: (n + 63) / 64 * kpad * 64)
        bsrc.withUnsafeBufferPointer { s in
            panels.withUnsafeMutableBufferPointer { ssd_pack_bf16_pairs(s.baseAddress!, n, 0, k, n, kpad, $0.baseAddress!) }
        }
        var results: [String: [Float]] = [:]
        for isa in ["portable", "amx-bf16"] {
            let used = CPUBackend.setInstructionSet(isa)
            var c = c0
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: (m + 32) * (kpad + 2) * 2 + 24 * kpad + 64, alignment: 64)
            defer { scratch.deallocate() }
            a.withUnsafeBufferPointer { ap in
                let rows = (0..<m).map { Optional(ap.baseAddress! + $0 * k) }
                rows.withUnsafeBufferPointer { rp in
                    panels.withUnsafeBufferPointer { bp in
                        bias.withUnsafeBufferPointer { biasp in
                            residual.withUnsafeBufferPointer { resp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    var args = ssd_gemm_args(
                                        m: m, n: n, k: k, a_rows: rp.baseAddress, a_offset: 0, b: bp.baseAddress,
                                        b_panel_stride: kpad * 64, c: cp.baseAddress, ldc: n, alpha: 0.5, accumulate: 1,
                                        bias: biasp.baseAddress, residual: resp.baseAddress, ldr: n, scratch: scratch)
                                    ssd_bf16gemm(&args)
                                }
                            }
                        }
                    }
                }
            }
            results[used] = c
        }
        guard let amx = results["amx-bf16"], let portable = results["portable"] else { return }  // no AMX here
        let diff = zip(amx, portable).map { abs(Double($0 - $1)) }.max() ?? 0
        #expect(diff < 1e-3, "AMX vs portable bf16 GEMM on fp32 rows: \(diff)")
    }

    /// The AMX kernel's depth passes (at most 640 deep, column groups of 512 outer, partial sums in
    /// C or the edge buffer) over many row slices and over a few; linears split over several column
    /// tasks convert A once for all of them. Plain (no bias, partial sums stored straight from the
    /// tiles) and with an epilogue, edge rows and columns, a convolution's implicit rows (17 wide:
    /// per-task conversion; 32 wide: the band path with passes across kernel rows).
    @Test func tallBlocking() throws {
        defer { CPUBackend.resetInstructionSet() }
        var seen = Set<String>()
        for isa in ["portable", "amx-bf16"] {
            let used = CPUBackend.setInstructionSet(isa)
            guard seen.insert(used).inserted else { continue }
            // One thread: each GEMM is one task, so its 290–340 rows reach the kernel together.
            let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true, threads: 1))
            let epilogue = try parity(cpu) { b in
                try b.linear(input(b, [300, 1400], seed: 1), weight: weight(b, [70, 1400], seed: 2, role: .linear),
                             bias: input(b, [70], seed: 3), residual: input(b, [300, 70], seed: 4))
            }
            #expect(epilogue < 2e-2 && epilogue > 0, "\(used) linear 300x1400x70 + bias + residual: \(epilogue)")
            let plain = try parity(cpu) { b in
                try b.linear(input(b, [290, 1300], seed: 5), weight: weight(b, [600, 1300], seed: 6, role: .linear),
                             bias: nil, residual: nil)
            }
            #expect(plain < 2e-2 && plain > 0, "\(used) linear 290x1300x600: \(plain)")
            let short = try parity(cpu) { b in
                try b.linear(input(b, [40, 1400], seed: 18), weight: weight(b, [70, 1400], seed: 19, role: .linear),
                             bias: input(b, [70], seed: 20), residual: nil)
            }
            #expect(short < 2e-2 && short > 0, "\(used) linear 40x1400x70 + bias: \(short)")
            let conv = try parity(cpu) { b in
                try b.conv2d(input(b, [1, 20, 17, 300], seed: 7), weight: weight(b, [40, 300, 3, 3], seed: 8, role: .conv2d),
                             bias: input(b, [40], seed: 9), stride: 1, padding: 1, residual: nil)
            }
            #expect(conv < 2e-2 && conv > 0, "\(used) conv 300->40 over 340 pixels: \(conv)")
            // 32 wide: the band path (tile pointers), 384 rows deep 2,880 in passes that cross the
            // 960-deep kernel rows, with bias and residual.
            let band = try parity(cpu) { b in
                try b.conv2d(input(b, [1, 12, 32, 320], seed: 14), weight: weight(b, [70, 320, 3, 3], seed: 15, role: .conv2d),
                             bias: input(b, [70], seed: 16), stride: 1, padding: 1, residual: input(b, [1, 12, 32, 70], seed: 17))
            }
            #expect(band < 2e-2 && band > 0, "\(used) conv 320->70 over 384 pixels (band): \(band)")
            // Two threads, 4 × 2 tasks: the rows are converted once into a shared buffer (column
            // chunks 256 + 44 wide, row chunks of 160 rows with an edge slice at the end).
            let two = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true, threads: 2))
            let shared = try parity(two) { b in
                try b.linear(input(b, [600, 700], seed: 10), weight: weight(b, [300, 700], seed: 11, role: .linear),
                             bias: input(b, [300], seed: 12), residual: input(b, [600, 300], seed: 13))
            }
            #expect(shared < 2e-2 && shared > 0, "\(used) linear 600x700x300 on 2 threads: \(shared)")
        }
    }
}
