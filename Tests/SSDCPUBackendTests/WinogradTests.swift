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
    func error(_ cpu: CPUBackend, _ c: [Int], bias: Bool, residual: Bool, prologue: Bool, silu: Bool = true) throws -> Double {
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
                            cpu.winogradConv2d(xp.baseAddress!, batch: b, height: h, width: w, weight: packed,
                                               bias: bias ? bp.baseAddress : nil, residual: residual ? rp.baseAddress : nil,
                                               prologue: prologue ? ConvPrologue(scale: sp.baseAddress!, shift: hp.baseAddress!, silu: silu) : nil,
                                               output: y)
                        }
                    }
                }
            }
        }
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
}
