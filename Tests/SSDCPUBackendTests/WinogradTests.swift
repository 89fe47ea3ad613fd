import Foundation
import Testing
import SSDTensor
@testable import SSDCPUBackend

/// Winograd F(4×4, 3×3) convolution against the reference backend's direct convolution.
@Suite struct WinogradTests {
    /// (B, H, W, Cin, Cout): odd sizes, partial tiles at the right and bottom borders, Cin/Cout
    /// not multiples of 16 or 64, batch 2.
    static let cases: [[Int]] = [[1, 9, 7, 16, 5], [2, 6, 11, 20, 70], [1, 5, 5, 33, 64], [2, 13, 4, 17, 129]]

    func backend(_ weights: DType = .f32) throws -> CPUBackend {
        var o = CPUBackendOptions(weightStorage: weights)
        o.winogradMinimumTiles = 1
        return try CPUBackend(options: o)
    }

    /// Relative error of `winogradConv2d` (with bias, residual and prologue as asked) against the
    /// reference conv2d of the host-normalised input.
    func error(_ cpu: CPUBackend, _ c: [Int], bias: Bool, residual: Bool, prologue: Bool, silu: Bool = true,
               bf16F23: Bool = false) throws -> Double {
        try errorIfTaken(cpu, c, bias: bias, residual: residual, prologue: prologue, silu: silu, bf16F23: bf16F23) ?? .infinity
    }

    /// `error`, or nil when the path declined (the bf16 path also declines while another suite
    /// has switched the process below AMX).
    func errorIfTaken(_ cpu: CPUBackend, _ c: [Int], bias: Bool, residual: Bool, prologue: Bool, silu: Bool = true,
                      bf16F23: Bool = false) throws -> Double? {
        let (b, h, w, cin, cout) = (c[0], c[1], c[2], c[3], c[4])
        let x = values(b * h * w * cin, seed: 1, scale: 2)
        let wt = values(cout * cin * 9, seed: 2, scale: 0.3)
        let bv = values(cout, seed: 3), rv = values(b * h * w * cout, seed: 4)
        let scale = values(b * cin, seed: 5, scale: 1.5), shift = values(b * cin, seed: 6)
        // Expected: the normalised input (zero padding applied after it), then the direct convolution.
        var xn = x
        if prologue {
            for i in 0..<xn.count {
                let bc = (i / (h * w * cin)) * cin + i % cin
                let v = Double(x[i]) * Double(scale[bc]) + Double(shift[bc])
                xn[i] = Float(silu ? v / (1 + exp(-v)) : v)
            }
        }
        let wRef = try reference.prepareWeight(HostBuffer.view(of: wt, shape: [cout, cin, 3, 3]), role: .conv2d, activationDType: .f32)
        let want = try reference.download(reference.conv2d(
            reference.upload(xn, shape: [b, h, w, cin]), weight: wRef, bias: bias ? reference.upload(bv, shape: [cout]) : nil,
            stride: 1, padding: 1, residual: residual ? reference.upload(rv, shape: [b, h, w, cout]) : nil))

        let wCPU = try cpu.prepareWeight(HostBuffer.view(of: wt, shape: [cout, cin, 3, 3]), role: .conv2d, activationDType: .f32)
        let packed = try #require(wCPU.storage as? PackedWeight)
        let out = cpu.allocate([b, h, w, cout])
        let y = try out.cpuBuffer("test").floats
        let done = x.withUnsafeBufferPointer { xp in
            bv.withUnsafeBufferPointer { bp in
                rv.withUnsafeBufferPointer { rp in
                    scale.withUnsafeBufferPointer { sp in
                        shift.withUnsafeBufferPointer { hp in
                            let pro = prologue ? ConvPrologue(scale: sp.baseAddress!, shift: hp.baseAddress!, silu: silu) : nil
                            return bf16F23
                                ? cpu.winogradBF16Conv2d(xp.baseAddress!, batch: b, height: h, width: w, weight: packed,
                                                         bias: bias ? bp.baseAddress : nil, residual: residual ? rp.baseAddress : nil,
                                                         prologue: pro, output: y)
                                : cpu.winogradConv2d(xp.baseAddress!, batch: b, height: h, width: w, weight: packed,
                                                     bias: bias ? bp.baseAddress : nil, residual: residual ? rp.baseAddress : nil,
                                                     prologue: pro, output: y)
                        }
                    }
                }
            }
        }
        if bf16F23 && !done { return nil }
        #expect(done, "Winograd declined \(c)")
        return relativeError(try cpu.download(out), want)
    }

    /// Every transform variant this CPU has (portable, AVX2, AVX-512), with and without bias,
    /// residual and the group-norm + SiLU prologue.
    @Test func everyInstructionSet() throws {
        defer { CPUBackend.resetInstructionSet() }
        let cpu = try backend()
        for isa in ["portable", "avx2", "avx512"] {
            let used = CPUBackend.setInstructionSet(isa)
            for c in Self.cases {
                let plain = try error(cpu, c, bias: false, residual: false, prologue: false)
                #expect(plain < 1e-5, "\(used) \(c) plain: \(plain)")
                let full = try error(cpu, c, bias: true, residual: true, prologue: true)
                #expect(full < 1e-5, "\(used) \(c) bias+residual+prologue: \(full)")
            }
            let noSiLU = try error(cpu, Self.cases[1], bias: true, residual: false, prologue: true, silu: false)
            #expect(noSiLU < 1e-5, "\(used) prologue without SiLU: \(noSiLU)")
        }
    }

    /// Output channels in several column chunks (a transformed-weight budget of one 64-column panel).
    @Test func columnChunks() throws {
        var o = CPUBackendOptions()
        o.winogradMinimumTiles = 1
        o.winogradWeightBytes = 1
        let err = try error(try CPUBackend(options: o), [2, 7, 9, 20, 150], bias: true, residual: true, prologue: true)
        #expect(err < 1e-5, "column chunks: \(err)")
    }

    /// f16 and bf16 weight panels are converted before the transform.
    @Test func halfWeights() throws {
        for dtype in [DType.f16, .bf16] {
            let err = try error(try backend(dtype), Self.cases[1], bias: true, residual: true, prologue: true)
            #expect(err < 2e-2, "\(dtype): \(err)")
        }
    }

    /// The `conv2d` entry takes the Winograd path for 3×3 stride 1 padding 1 and matches the
    /// implicit GEMM; it declines for bf16 compute and when switched off.
    @Test func conv2dDispatch() throws {
        let (b, h, w, cin, cout) = (2, 10, 9, 24, 40)
        var off = CPUBackendOptions()
        off.winograd = false
        for cpu in [try backend(), try CPUBackend(options: off)] {
            let err = try parity(cpu) { be in
                try be.conv2d(input(be, [b, h, w, cin], seed: 1), weight: weight(be, [cout, cin, 3, 3], seed: 2, role: .conv2d),
                              bias: input(be, [cout], seed: 3), stride: 1, padding: 1, residual: input(be, [b, h, w, cout], seed: 4))
            }
            #expect(err < 1e-5, "winograd \(cpu.options.winograd): \(err)")
        }
        var bf16 = CPUBackendOptions(weightStorage: .bf16, bf16Compute: true)
        bf16.winogradMinimumTiles = 1
        let declines = [try CPUBackend(options: bf16), try CPUBackend(options: off)]
        for cpu in declines {
            let wt = try weight(cpu, [cout, cin, 3, 3], seed: 2, role: .conv2d)
            let packed = try #require(wt.storage as? PackedWeight)
            let x = try input(cpu, [b, h, w, cin], seed: 1)
            let out = cpu.allocate([b, h, w, cout])
            let took = cpu.winogradConv2d(try x.cpuFloats("test"), batch: b, height: h, width: w, weight: packed, bias: nil,
                                          residual: nil, prologue: nil, output: try out.cpuBuffer("test").floats)
            #expect(!took)
        }
    }

    /// bf16 compute on AMX: Winograd F(2×2, 3×3) with the transformed weights prepared at load,
    /// against the reference's direct fp32 convolution (bf16 tolerance; F(4×4, 3×3) in bf16 errs
    /// about 2.5e-2, this one about 4e-3): odd sizes, partial tiles, batch 2, bias, residual, prologue.
    @Test func bf16F23() throws {
        guard CPUBackend.detectedInstructionSet == "amx-bf16" else { return }  // the path needs the AMX tiles
        var o = CPUBackendOptions(weightStorage: .bf16, bf16Compute: true)
        o.winogradBF16MinimumTiles = 1
        let cpu = try CPUBackend(options: o)
        for c in [[1, 9, 7, 32, 16], [2, 6, 11, 64, 80], [1, 5, 5, 96, 64], [2, 13, 4, 32, 48], [1, 40, 36, 64, 640]] {
            for withAll in [false, true] {
                var err: Double? = nil
                // Other suites switch the level process-wide for seconds at a time: wait it out.
                for _ in 0..<400 where err == nil {
                    err = try errorIfTaken(cpu, c, bias: withAll, residual: withAll, prologue: withAll, bf16F23: true)
                    if err == nil { Thread.sleep(forTimeInterval: 0.05) }
                }
                let e = try #require(err, "\(c): the AMX level never came back")
                #expect(e < 1e-2 && e > 0, "\(c) bias+residual+prologue \(withAll): \(e)")
            }
        }
    }

    /// Which bf16 convolutions carry the transformed weight, and `conv2d` taking the path when the
    /// output tiles are many, within the bf16 tolerance of the implicit GEMM (option off).
    @Test func bf16F23Dispatch() throws {
        var o = CPUBackendOptions(weightStorage: .bf16, bf16Compute: true)
        let on = try CPUBackend(options: o)
        o.winograd = false
        let off = try CPUBackend(options: o)
        guard CPUBackend.detectedInstructionSet == "amx-bf16" else {
            // Without AMX the transform is never prepared.
            let w = try weight(on, [64, 32, 3, 3], seed: 2, role: .conv2d)
            #expect(try #require(w.storage as? PackedWeight).winogradF23 == nil)
            return
        }
        func transformed(_ cpu: CPUBackend, _ shape: [Int]) throws -> Bool {
            let w = try weight(cpu, shape, seed: 2, role: .conv2d)
            return try #require(w.storage as? PackedWeight).winogradF23 != nil
        }
        #expect(try transformed(on, [64, 32, 3, 3]))
        #expect(try !transformed(on, [64, 40, 3, 3]))   // Cin not a multiple of 32
        #expect(try !transformed(on, [1280, 64, 3, 3])) // more than 640 outputs
        #expect(try !transformed(on, [64, 32, 1, 1]))
        #expect(try !transformed(off, [64, 32, 3, 3]))  // option off: nothing prepared
        // 2 × 16 × 16 = 512 output tiles: the Winograd path.
        let shape = [2, 32, 32, 64]
        func run(_ cpu: CPUBackend) throws -> [Float] {
            try cpu.download(cpu.conv2d(input(cpu, shape, seed: 1), weight: weight(cpu, [96, 64, 3, 3], seed: 2, role: .conv2d),
                                        bias: input(cpu, [96], seed: 3), stride: 1, padding: 1, residual: nil))
        }
        let direct = try run(off)
        // Equal results mean the Winograd path declined: another suite had switched the process
        // below AMX meanwhile; wait it out.
        var diff = 0.0
        for _ in 0..<400 where diff == 0 {
            diff = relativeError(try run(on), direct)
            if diff == 0 { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(diff > 0 && diff < 1e-2, "Winograd against the implicit GEMM: \(diff)")
    }
}
