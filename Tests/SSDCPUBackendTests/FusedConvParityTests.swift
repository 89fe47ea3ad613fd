import Testing
import SSDTensor
@testable import SSDCPUBackend

/// `groupNormSiLUConv2d` (normalisation as the convolution reads), `upsampleNearest2xConv2d`
/// (phase kernels) and the per-block input bands, against the reference backend's compositions.
@Suite struct FusedConvParityTests {
    /// Backends with small blocking, so blocks cut rows mid-image, span several rows or one row.
    static func smallBlocking(_ variant: Variant) throws -> CPUBackend? {
        guard let base = try variant.backend() else { return nil }
        var o = base.options
        o.blocking = (mc: 12, nc: 64, kc: 32)
        return try CPUBackend(options: o)
    }

    /// (B, H, W, Cin, Cout, k): W = 20 makes one-row blocks at mc 12, W = 5 multi-row blocks.
    /// The last three take the AMX band path on bf16 (rows of whole 16-pixel tiles, kw·cin a multiple
    /// of 32): two images with a half 32-row slice at the end, a 32-wide image, a 1×1 kernel.
    static let cases: [[Int]] = [[2, 9, 7, 32, 70, 3], [1, 4, 20, 16, 8, 3], [1, 6, 5, 64, 66, 3], [2, 3, 4, 32, 5, 1],
                                 [2, 5, 16, 32, 70, 3], [1, 3, 32, 64, 40, 3], [1, 4, 16, 32, 33, 1]]

    @Test(arguments: Variant.allCases)
    func groupNormSiLUConv(_ variant: Variant) throws {
        for cpu in [try variant.backend(), try Self.smallBlocking(variant)].compactMap({ $0 }) {
            for c in Self.cases {
                let (bt, h, w, cin, cout, k) = (c[0], c[1], c[2], c[3], c[4], c[5])
                let p = (k - 1) / 2
                let err = try parity(cpu) { b in
                    try b.groupNormSiLUConv2d(input(b, [bt, h, w, cin], seed: 1, scale: 3), groups: 8,
                                              normWeight: input(b, [cin], seed: 2), normBias: input(b, [cin], seed: 3), epsilon: 1e-6,
                                              weight: weight(b, [cout, cin, k, k], seed: 4, role: .conv2d), bias: input(b, [cout], seed: 5),
                                              padding: p, residual: input(b, [bt, h, w, cout], seed: 6))
                }
                #expect(err < variant.tolerance, "\(variant) mc \(cpu.options.blocking.mc) \(c): \(err)")
            }
        }
    }

    @Test(arguments: Variant.allCases)
    func upsampleConv(_ variant: Variant) throws {
        for cpu in [try variant.backend(), try Self.smallBlocking(variant)].compactMap({ $0 }) {
            for c in [[2, 3, 4, 8, 70], [1, 5, 11, 64, 64], [1, 1, 1, 3, 5], [1, 2, 16, 32, 40]] {
                let (bt, h, w, cin, cout) = (c[0], c[1], c[2], c[3], c[4])
                let err = try parity(cpu) { b in
                    try b.upsampleNearest2xConv2d(input(b, [bt, h, w, cin], seed: 7), weight: weight(b, [cout, cin, 3, 3], seed: 8, role: .upsampleConv2d),
                                                  bias: input(b, [cout], seed: 9))
                }
                #expect(err < variant.tolerance, "\(variant) mc \(cpu.options.blocking.mc) \(c): \(err)")
            }
        }
    }

    /// Plain convolutions whose blocks touch the border or not, in one-row and multi-row blocks.
    @Test func convBands() throws {
        for cpu in [try Self.smallBlocking(.f32), try Self.smallBlocking(.openBLAS)].compactMap({ $0 }) {
            for c in [[1, 7, 20, 8, 9, 3, 1, 1], [2, 9, 5, 4, 7, 3, 1, 1], [1, 9, 14, 3, 6, 3, 2, 1], [1, 6, 6, 5, 4, 3, 1, 0]] {
                let (bt, h, w, cin, cout, k, s, p) = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
                let err = try parity(cpu) { b in
                    try b.conv2d(input(b, [bt, h, w, cin], seed: 1), weight: weight(b, [cout, cin, k, k], seed: 2, role: .conv2d),
                                 bias: input(b, [cout], seed: 3), stride: s, padding: p, residual: nil)
                }
                #expect(err < 1e-4, "\(c): \(err)")
            }
        }
    }

    /// bf16 dot products stay off for a `force_upcast` VAE (its weights keep the storage type).
    @Test func forceUpcastVAEKeepsFloatDotProducts() throws {
        let cpu = try CPUBackend(options: CPUBackendOptions(weightStorage: .bf16, bf16Compute: true))
        let view = HostBuffer.view(of: values(8 * 4 * 9, seed: 1), shape: [8, 4, 3, 3])
        let vae = try cpu.prepareWeight(view, role: .conv2d, component: .vae(forceUpcast: true))
        let unet = try cpu.prepareWeight(view, role: .conv2d, component: .unet)
        let upsample = try cpu.prepareWeight(view, role: .upsampleConv2d, component: .vae(forceUpcast: true))
        #expect((vae.storage as? PackedWeight)?.layout == .panels(.bf16))
        #expect((unet.storage as? PackedWeight)?.layout == .bf16Pairs)
        #expect((upsample.storage as? UpsampleConvWeight)?.phases.allSatisfy { $0.layout == .panels(.bf16) } == true)
    }
}
