import SSDTensor

/// diffusers `Downsample2D` with `use_conv=True` (`models/downsampling.py`): a 3×3 convolution of
/// stride 2. With `padding == 0` (the VAE encoder) the input is first padded by one zero row
/// and column at the bottom and right, as diffusers does.
struct Downsample2D: Sendable {
    let conv: Conv2d
    let padding: Int

    init(_ scope: ParameterScope, channels: Int, padding: Int) throws {
        conv = try Conv2d(scope("conv"), in: channels, out: channels, kernel: 3, stride: 2, padding: padding)
        self.padding = padding
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        guard padding == 0 else { return try conv(x, b) }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let column = try b.upload([Float](repeating: 0, count: n * h * c), shape: [n, h, 1, c], as: x.dtype)
        let wider = try b.concat([x, column], axis: 2)
        let row = try b.upload([Float](repeating: 0, count: n * (w + 1) * c), shape: [n, 1, w + 1, c], as: x.dtype)
        return try conv(b.concat([wider, row], axis: 1), b)
    }
}

/// diffusers `Upsample2D` with `use_conv=True` (`models/upsampling.py`): nearest ×2, then 3×3 convolution.
struct Upsample2D: Sendable {
    let conv: Conv2d

    init(_ scope: ParameterScope, channels: Int) throws {
        conv = try Conv2d(scope("conv"), in: channels, out: channels, kernel: 3, role: .upsampleConv2d)
    }

    /// `size`: diffusers' `upsample_size` (the skip connection's height and width when the UNet's input is not a
    /// multiple of its total downscale): nearest interpolation to `2h − 1` is nearest ×2 without the last row
    /// (torch's index ⌊i · h/(2h − 1)⌋ = ⌊i/2⌋ there, in torch's float32 arithmetic while h < 2095), so ×2 then a crop.
    func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil, _ b: any ComputeBackend) throws -> Tensor {
        let (h, w) = (x.shape[1], x.shape[2])
        guard let size, size != (2 * h, 2 * w) else {
            return try b.upsampleNearest2xConv2d(x, weight: conv.weight, bias: conv.bias)
        }
        guard size.height <= 2 * h, size.height >= 2 * h - 1, size.width <= 2 * w, size.width >= 2 * w - 1 else {
            throw ModelError.invalidInput(model: "Upsample2D", argument: "upsample_size",
                                          message: "\(size.height)×\(size.width) from \(h)×\(w) (needs twice the size, or one less)")
        }
        var up = try b.upsampleNearest2x(x)
        if size.height < 2 * h { up = try b.slice(up, axis: 1, range: 0..<size.height) }
        if size.width < 2 * w { up = try b.slice(up, axis: 2, range: 0..<size.width) }
        return try conv(up, b)
    }
}
