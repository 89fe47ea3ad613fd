#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SSDTensor

/// FreeU (arXiv 2309.11497; diffusers `enable_freeu(s1, s2, b1, b2)`, `utils/torch_utils.py`
/// `apply_freeu` / `fourier_filter`): in the first two up blocks, before each skip is concatenated, the
/// first half of the backbone's channels is multiplied by `b1` (`b2` in the second block) and the skip's
/// lowest frequencies (the 2×2 block around the centre of its shifted 2-D spectrum) by `s1` (`s2`).
/// As in diffusers, FreeU is off when any of the four values is 0. diffusers' suggested values for
/// SDXL: `FreeU(s1: 0.6, s2: 0.4, b1: 1.1, b2: 1.2)`.
public struct FreeU: Sendable, Hashable {
    /// Skip-feature scale of the first (lowest-resolution) up block.
    public var s1: Double
    /// Skip-feature scale of the second up block.
    public var s2: Double
    /// Backbone scale of the first up block.
    public var b1: Double
    /// Backbone scale of the second up block.
    public var b2: Double

    /// The four factors of diffusers' `enable_freeu(s1=, s2=, b1=, b2=)`.
    public init(s1: Double, s2: Double, b1: Double, b2: Double) {
        self.s1 = s1
        self.s2 = s2
        self.b1 = b1
        self.b2 = b2
    }

    /// diffusers' FreeU values for SDXL (s1 0.6, s2 0.4, b1 1.1, b2 1.2).
    public static let sdxl = FreeU(s1: 0.6, s2: 0.4, b1: 1.1, b2: 1.2)

    /// diffusers' `is_freeu_enabled`: every factor non-zero.
    public var isEnabled: Bool { s1 != 0 && s2 != 0 && b1 != 0 && b2 != 0 }

    /// The filter of one generation: per up block (0 and 1) its factors and, for its skips' `h × w`
    /// (`skipSizes[0]`, `skipSizes[1]`: any sizes, as diffusers' FFT takes any), the real Fourier basis of
    /// the masked modes (uploaded before any replayed region, whose input it is).
    func filters(skipSizes: [(height: Int, width: Int)], dtype: DType, _ b: any ComputeBackend) throws -> [FreeUFilter] {
        try zip([(s1, b1), (s2, b2)], skipSizes).map { factors, size in
            let (s, scale) = factors
            let h = size.height, w = size.width
            let (basis, modes) = Self.basis(height: h, width: w)
            return FreeUFilter(backboneScale: Float(scale), skipScale: Float(s), pixels: h * w,
                               basis: try b.upload(basis, shape: [h * w, modes], as: dtype))
        }
    }

    /// `fourier_filter(x, threshold=1, scale)` is `x + (scale − 1) · P(x)` where P keeps the modes
    /// `ky ∈ {0, −1}`, `kx ∈ {0, −1}` (mod h and w: `fftshift` rolls by ⌊h/2⌋, so the mask's rows
    /// ⌊h/2⌋ − 1 and ⌊h/2⌋ are these modes for odd sizes too) and takes the real part: with θ = 2π(ky·y/h + kx·x/w),
    /// `P(x) = Σ (⟨x, cos θ⟩ cos θ + ⟨x, sin θ⟩ sin θ) / (h·w)`. Returns the `[h·w, m]` columns cos θ, sin θ
    /// (all-zero sine columns left out).
    static func basis(height h: Int, width w: Int) -> ([Float], Int) {
        let ys = h > 1 ? [0, h - 1] : [0], xs = w > 1 ? [0, w - 1] : [0]
        var columns: [[Float]] = []
        for ky in ys {
            for kx in xs {
                var c = [Float](repeating: 0, count: h * w), s = c
                for y in 0..<h {
                    for x in 0..<w {
                        let theta = 2 * Double.pi * (Double(ky * y) / Double(h) + Double(kx * x) / Double(w))
                        c[y * w + x] = Float(cos(theta))
                        s[y * w + x] = Float(sin(theta))
                    }
                }
                columns.append(c)
                if ky != 0 || kx != 0, s.contains(where: { abs($0) > 1e-6 }) { columns.append(s) }
            }
        }
        var out = [Float](repeating: 0, count: h * w * columns.count)
        for (j, column) in columns.enumerated() {
            for i in 0..<(h * w) { out[i * columns.count + j] = column[i] }
        }
        return (out, columns.count)
    }
}

/// FreeU prepared for one UNet and latent size (`UNet2DConditionModel.freeUFilters`): its factors and the
/// Fourier bases on the backend, made once per generation.
public struct FreeUFilters: Sendable {
    let filters: [FreeUFilter]
    /// The latent size the filters are for.
    public let latentHeight: Int
    /// The latent size the filters are for.
    public let latentWidth: Int
    /// The `replayKey` of the UNet that made them.
    let unetKey: String
}

/// One up block's FreeU factors and Fourier basis (`FreeU.filters`).
struct FreeUFilter: Sendable {
    let backboneScale: Float
    let skipScale: Float
    let pixels: Int
    /// `[h·w, m]`: the modes' cosine and sine columns.
    let basis: Tensor

    /// `apply_freeu`: the backbone `h` with its first half of channels scaled, and the filtered skip.
    func callAsFunction(_ h: Tensor, skip: Tensor, _ b: any ComputeBackend) throws -> (Tensor, Tensor) {
        let c = h.shape[3], half = c / 2
        let scaled = try b.concat([b.affine(b.slice(h, axis: 3, range: 0..<half), scale: backboneScale, shift: 0),
                                   b.slice(h, axis: 3, range: half..<c)], axis: 3)
        let batch = skip.shape[0], channels = skip.shape[3]
        guard skip.shape[1] * skip.shape[2] == pixels else {
            throw ModelError.invalidInput(model: UNetNetwork.model, argument: "freeU", message: "skip \(skip.shape) does not have \(pixels) pixels")
        }
        let x = try skip.reshaped([batch, pixels, channels])
        let coefficients = try b.matmul(x, basis, transposeA: true, transposeB: false, alpha: 1)  // [B, C, m]
        let low = try b.matmul(coefficients, basis, transposeA: false, transposeB: true,
                               alpha: (skipScale - 1) / Float(pixels))                         // [B, C, h·w]
        let filtered = try b.binary(x, b.permute(low, [0, 2, 1]), .add)
        return (scaled, try filtered.reshaped(skip.shape))
    }
}
