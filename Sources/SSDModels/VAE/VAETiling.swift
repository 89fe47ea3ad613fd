import SSDTensor

/// Tiled VAE decoding and encoding, as diffusers' `AutoencoderKL.enable_tiling()`
/// (`models/autoencoders/autoencoder_kl.py`: `tiled_decode`, `_tiled_encode`, `blend_v`, `blend_h`).
///
/// Overlapping tiles go through the decoder (encoder) one at a time and are blended linearly where
/// they overlap, so the activations are one tile's whatever the image size. Each tile's group norms
/// see only that tile, so the result differs a little from an untiled pass, exactly as diffusers' does.
/// Only images larger than one tile are tiled (diffusers' test: latent side > tile, or pixel side > tile).
/// Blending is done in fp32 on the host; diffusers blends in the VAE's dtype (the same for the fp32 VAE
/// SDXL's `force_upcast` implies; with an fp16 VAE the overlaps differ by about one fp16 step).
/// To get the same tiles from diffusers with another tile size, set both `vae.tile_sample_min_size` and
/// `vae.tile_latent_min_size` (the latter is derived from the config only once, at construction).
public struct VAETiling: Sendable, Hashable {
    /// Tile edge in image pixels (diffusers `tile_sample_min_size`); nil → the VAE config's `sample_size`
    /// (1024 for SDXL's VAE). The latent tile is this divided by the VAE's downsampling factor.
    public var tileSampleSize: Int?
    /// The fraction of a tile blended with each neighbour (diffusers `tile_overlap_factor`).
    public var overlapFactor: Double

    /// Tiles of `tileSampleSize` pixels (nil → the config's `sample_size`), `overlapFactor` of each blended.
    public init(tileSampleSize: Int? = nil, overlapFactor: Double = 0.25) {
        self.tileSampleSize = tileSampleSize
        self.overlapFactor = overlapFactor
    }
}

/// One direction of a tiling: tiles of `tile` input units every `stride`; outputs blended over
/// `blend` output units and cropped to `keep`.
struct TileGeometry: Equatable {
    var tile: Int
    var stride: Int
    var blend: Int
    var keep: Int
}

extension VAETiling {
    /// Throws `ModelError.invalidInput(argument: "tiling")` when these tiles cannot be used with a VAE
    /// of `config` for images of `width` × `height` pixels: a tile smaller than the downsampling factor or
    /// an overlap outside [0, 1) always; kept parts that do not line up with the tiles' strides only when
    /// the image is larger than one tile (smaller ones are never tiled, as in diffusers).
    public func validate(for config: AutoencoderKLConfig, width: Int, height: Int) throws {
        let (sample, latent, factor) = try sizes(config: config)
        if width / factor > latent || height / factor > latent { _ = try decodeGeometry(config: config) }
        if width > sample || height > sample { _ = try encodeGeometry(config: config) }
    }

    /// Pixel and latent tile sizes as diffusers derives them (`int(sample_size / 2 ** (levels - 1))`).
    func sizes(config: AutoencoderKLConfig) throws -> (sample: Int, latent: Int, factor: Int) {
        let factor = 1 << (config.blockOutChannels.count - 1)
        let sample: Int
        if let tileSampleSize {
            sample = tileSampleSize
        } else {
            switch config.sampleSize ?? .one(32) {
            case .one(let v): sample = v
            case .many(let v): sample = v.first ?? 32
            }
        }
        guard sample >= factor, sample <= 1 << 20 else {
            throw invalid("tile size \(sample) must be between \(factor) (the VAE's downsampling factor) and 2^20 pixels")
        }
        guard overlapFactor.isFinite, overlapFactor >= 0, overlapFactor < 1 else {
            throw invalid("overlap factor \(overlapFactor) must be in [0, 1)")
        }
        return (sample, Int(Double(sample) / Double(factor)), factor)
    }

    /// `tiled_decode`: latent tiles, pixel blending.
    func decodeGeometry(config: AutoencoderKLConfig) throws -> TileGeometry { try geometry(config: config, decoding: true) }

    /// `_tiled_encode`: pixel tiles, latent blending.
    func encodeGeometry(config: AutoencoderKLConfig) throws -> TileGeometry { try geometry(config: config, decoding: false) }

    /// Tiles of the input every `int(tile · (1 − overlap))`, outputs blended over `int(output tile · overlap)`
    /// and cropped to the rest (diffusers' `overlap_size`, `blend_extent`, `row_limit`).
    private func geometry(config: AutoencoderKLConfig, decoding: Bool) throws -> TileGeometry {
        let (sample, latent, factor) = try sizes(config: config)
        let (input, output) = decoding ? (latent, sample) : (sample, latent)
        let blend = Int(Double(output) * overlapFactor)
        let g = TileGeometry(tile: input, stride: Int(Double(input) * (1 - overlapFactor)), blend: blend, keep: output - blend)
        try check(g, decoding: decoding, factor: factor, sample: sample)
        return g
    }

    /// diffusers does not check that the tiles' kept parts line up with their strides; a mismatch
    /// there gives an image of the wrong size with seams, so it is refused here.
    private func check(_ g: TileGeometry, decoding: Bool, factor: Int, sample: Int) throws {
        let lined = decoding ? g.stride * factor == g.keep : g.stride == g.keep * factor
        guard g.stride > 0, g.keep > 0, lined else {
            throw invalid("tile size \(sample) with overlap \(overlapFactor) gives tiles every \(g.stride) \(decoding ? "latents" : "pixels") "
                          + "but keeps \(g.keep) \(decoding ? "pixels" : "latents") of each; use a multiple of \(4 * factor) pixels with overlap 0.25")
        }
    }

    private func invalid(_ message: String) -> ModelError {
        .invalidInput(model: AutoencoderKL.model, argument: "tiling", message: message)
    }
}

/// Runs `body` on overlapping tiles of the NHWC tensor `x` and blends the outputs as diffusers'
/// `tiled_decode` / `_tiled_encode` do: tiles in raster order, each blended with the (already blended)
/// tile above and then the one to its left, then cropped to `keep` × `keep`. Returns the NHWC output on
/// the host. Only the previous row of tiles is kept.
func blendTiles(_ x: Tensor, _ g: TileGeometry, backend: any ComputeBackend,
                _ body: (Tensor) throws -> Tensor) throws -> (values: [Float], shape: [Int]) {
    let height = x.shape[1], width = x.shape[2]
    var previousRow: [HostTile] = []
    var rows: [[HostTile]] = []  // the kept (cropped) parts
    for top in stride(from: 0, to: height, by: g.stride) {
        var row: [HostTile] = []
        var kept: [HostTile] = []
        for left in stride(from: 0, to: width, by: g.stride) {
            try Task.checkCancellation()
            let rowsSlice = try backend.slice(x, axis: 1, range: top..<min(top + g.tile, height))
            let input = try backend.slice(rowsSlice, axis: 2, range: left..<min(left + g.tile, width))
            let output = try body(input)
            var tile = HostTile(values: try backend.download(output), shape: output.shape)
            if !previousRow.isEmpty { tile.blendVertically(after: previousRow[row.count], extent: g.blend) }
            if let leftTile = row.last { tile.blendHorizontally(after: leftTile, extent: g.blend) }
            kept.append(tile.cropped(height: g.keep, width: g.keep))
            row.append(tile)
        }
        rows.append(kept)
        previousRow = row
    }
    return HostTile.assemble(rows)
}

/// A tile's NHWC values on the host.
struct HostTile {
    var values: [Float]
    /// `[B, h, w, C]`.
    var shape: [Int]

    var height: Int { shape[1] }
    var width: Int { shape[2] }

    /// diffusers `blend_v(a, b)`: the first `extent` rows fade in from `above`'s last ones.
    mutating func blendVertically(after above: HostTile, extent requested: Int) {
        let extent = min(above.height, height, requested)
        guard extent > 0 else { return }
        let (batch, channels, h, aboveHeight) = (shape[0], shape[3], height, above.height)
        let rowLength = width * channels
        precondition(above.width == width && above.shape[3] == channels, "tiles of one column have one width")
        values.withUnsafeMutableBufferPointer { b in
            above.values.withUnsafeBufferPointer { a in
                for y in 0..<extent {
                    let (wa, wb) = Self.weights(y, extent)
                    for n in 0..<batch {
                        let bRow = (n * h + y) * rowLength
                        let aRow = (n * aboveHeight + aboveHeight - extent + y) * rowLength
                        for i in 0..<rowLength { b[bRow + i] = a[aRow + i] * wa + b[bRow + i] * wb }
                    }
                }
            }
        }
    }

    /// diffusers `blend_h(a, b)`: the first `extent` columns fade in from `left`'s last ones.
    mutating func blendHorizontally(after left: HostTile, extent requested: Int) {
        let extent = min(left.width, width, requested)
        guard extent > 0 else { return }
        let (batch, channels, h, w, leftWidth) = (shape[0], shape[3], height, width, left.width)
        precondition(left.height == height && left.shape[3] == channels, "tiles of one row have one height")
        values.withUnsafeMutableBufferPointer { b in
            left.values.withUnsafeBufferPointer { a in
                for n in 0..<batch {
                    for y in 0..<h {
                        let bRow = (n * h + y) * w * channels
                        let aRow = (n * h + y) * leftWidth * channels + (leftWidth - extent) * channels
                        for x in 0..<extent {
                            let (wa, wb) = Self.weights(x, extent)
                            for c in 0..<channels {
                                let i = x * channels + c
                                b[bRow + i] = a[aRow + i] * wa + b[bRow + i] * wb
                            }
                        }
                    }
                }
            }
        }
    }

    /// `(1 − i/extent, i/extent)` as torch applies Python floats to an fp32 tensor.
    private static func weights(_ i: Int, _ extent: Int) -> (Float, Float) {
        let t = Double(i) / Double(extent)
        return (Float(1 - t), Float(t))
    }

    /// `tile[:, :, :height, :width]`.
    func cropped(height h: Int, width w: Int) -> HostTile {
        let (batch, channels) = (shape[0], shape[3])
        let kh = min(h, height), kw = min(w, width)
        if kh == height && kw == width { return self }
        var out = [Float](repeating: 0, count: batch * kh * kw * channels)
        for n in 0..<batch {
            for y in 0..<kh {
                let src = ((n * height + y) * width) * channels
                let dst = ((n * kh + y) * kw) * channels
                for i in 0..<(kw * channels) { out[dst + i] = values[src + i] }
            }
        }
        return HostTile(values: out, shape: [batch, kh, kw, channels])
    }

    /// `torch.cat` of each row along the width, then of the rows along the height.
    static func assemble(_ rows: [[HostTile]]) -> (values: [Float], shape: [Int]) {
        guard let first = rows.first?.first else { return ([], [0, 0, 0, 0]) }
        let (batch, channels) = (first.shape[0], first.shape[3])
        let width = rows[0].reduce(0) { $0 + $1.width }
        let height = rows.reduce(0) { $0 + ($1.first?.height ?? 0) }
        var out = [Float](repeating: 0, count: batch * height * width * channels)
        var top = 0
        for row in rows {
            var left = 0
            for tile in row {
                for n in 0..<batch {
                    for y in 0..<tile.height {
                        let src = ((n * tile.height + y) * tile.width) * channels
                        let dst = ((n * height + top + y) * width + left) * channels
                        for i in 0..<(tile.width * channels) { out[dst + i] = tile.values[src + i] }
                    }
                }
                left += tile.width
            }
            top += row.first?.height ?? 0
        }
        return (out, [batch, height, width, channels])
    }
}
