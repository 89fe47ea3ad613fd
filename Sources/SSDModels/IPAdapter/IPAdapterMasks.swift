import SSDTensor

/// Masks of one IP-Adapter's images (diffusers `ip_adapter_masks` in `cross_attention_kwargs`: one
/// `[1, n, H, W]` tensor per adapter from `IPAdapterMaskProcessor.preprocess`). With masks each image is
/// attended on its own (its own softmax) and its result multiplied by its mask, resampled to the layer's
/// token grid (`IPAdapterMaskProcessor.downsample`), and by its scale.
public struct IPAdapterMasks: Sendable {
    /// One `height × width` map per image of the prompt, row-major (0 or 1 after diffusers' preprocessing).
    public var maps: [[Float]]
    /// The maps' height (the output image's, as diffusers' preprocessing makes them).
    public var height: Int
    /// The maps' width.
    public var width: Int
    /// Per-image scales (diffusers `set_ip_adapter_scale([[s₁, s₂, …]])`); nil: the prompt's scale for each.
    public var scales: [Float]?
    /// The latent height of the UNet calls the conditioning is for (checked at every call).
    public var latentHeight: Int
    /// The latent width of those calls.
    public var latentWidth: Int

    /// Masks for `latentHeight × latentWidth` latents.
    public init(maps: [[Float]], height: Int, width: Int, scales: [Float]? = nil, latentHeight: Int, latentWidth: Int) {
        self.maps = maps
        self.height = height
        self.width = width
        self.scales = scales
        self.latentHeight = latentHeight
        self.latentWidth = latentWidth
    }

    /// diffusers `IPAdapterMaskProcessor.downsample` of one map to `queries` tokens: a grid of
    /// `h = ⌊√(queries / (W/H))⌋` (plus one when it does not divide `queries`) by `queries / h`, torch's bicubic
    /// `F.interpolate` (A = −0.75, half-pixel centres, clamped borders, fp32), flattened, then zero-padded or cut
    /// to `queries` values.
    static func downsample(_ map: [Float], height: Int, width: Int, queries: Int) -> [Float] {
        let ratio = Double(width) / Double(height)
        var gridHeight = Int((Double(queries) / ratio).squareRoot())
        gridHeight = max(gridHeight, 1)
        gridHeight += queries % gridHeight != 0 ? 1 : 0
        let gridWidth = queries / gridHeight
        var out = bicubic(map, height: height, width: width, toHeight: gridHeight, toWidth: gridWidth)
        if out.count < queries { out += [Float](repeating: 0, count: queries - out.count) }
        return Array(out.prefix(queries))
    }

    /// torch `upsample_bicubic2d` (align_corners false, no antialiasing) of one channel in fp32.
    static func bicubic(_ x: [Float], height: Int, width: Int, toHeight: Int, toWidth: Int) -> [Float] {
        let a: Float = -0.75
        func near(_ t: Float) -> Float { ((a + 2) * t - (a + 3)) * t * t + 1 }
        func far(_ t: Float) -> Float { ((a * t - 5 * a) * t + 8 * a) * t - 4 * a }
        func taps(_ inSize: Int, _ outSize: Int) -> [(index: Int, weights: [Float])] {
            let scale = Float(inSize) / Float(outSize)
            return (0..<outSize).map { o in
                let real = scale * (Float(o) + 0.5) - 0.5
                let index = min(Int(real.rounded(.down)), inSize - 1)
                let t = min(max(real - Float(index), 0), 1)
                return (index, [far(t + 1), near(t), near(1 - t), far(2 - t)])
            }
        }
        let rows = taps(height, toHeight), columns = taps(width, toWidth)
        var out = [Float](repeating: 0, count: toHeight * toWidth)
        for (oy, row) in rows.enumerated() {
            for (ox, column) in columns.enumerated() {
                var lines = [Float](repeating: 0, count: 4)
                for i in 0..<4 {
                    let yy = min(max(row.index - 1 + i, 0), height - 1)
                    var acc: Float = 0
                    for j in 0..<4 {
                        let xx = min(max(column.index - 1 + j, 0), width - 1)
                        acc += x[yy * width + xx] * column.weights[j]
                    }
                    lines[i] = acc
                }
                var acc: Float = 0
                for i in 0..<4 { acc += lines[i] * row.weights[i] }
                out[oy * toWidth + ox] = acc
            }
        }
        return out
    }
}
