extension ReferenceBackend {
    /// `nn.Conv2d` on NHWC activations (torch `F.conv2d`, zero padding, dilation 1, groups 1).
    ///
    /// Computed as a product per tile of output pixels: the tile's im2col rows `[pixels, kh·kw·Cin]`
    /// (zeros where the window leaves the image) times the weight `[kh·kw·Cin, Cout]`.
    /// A 1×1 convolution with stride 1 reads the input directly.
    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        let op = "conv2d"
        guard stride >= 1, padding >= 0 else {
            throw TensorError.invalidArgument(op: op, message: "stride \(stride) and padding \(padding) must be ≥ 1 and ≥ 0")
        }
        guard x.rank == 4, weight.rank == 4, x.shape[3] == weight.shape[1] else {
            throw TensorError.shapeMismatch(op: op, expected: [-1, -1, -1, weight.rank == 4 ? weight.shape[1] : -1], actual: x.shape)
        }
        let (batch, height, width, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let outH = (height + 2 * padding - kh) / stride + 1
        let outW = (width + 2 * padding - kw) / stride + 1
        guard kh >= 1, kw >= 1, height + 2 * padding >= kh, width + 2 * padding >= kw else {
            throw TensorError.invalidArgument(op: op, message: "kernel \(kh)×\(kw) does not fit input \(height)×\(width) with padding \(padding)")
        }
        let outShape = [batch, outH, outW, cout]
        let xp = try floats(x, op)
        let bp = try vector(bias, count: cout, op)
        let rp = try operand(residual, shape: outShape, op)
        let depth = kh * kw * cin

        // Weight as `[kh·kw·Cin, Cout]`: the prepared layout, or reordered now from a plain tensor.
        let storage = try referenceStorage(weight, op)
        guard weight.dtype == .f32 else { throw TensorError.unsupportedDType(op: op, dtype: weight.dtype) }
        var reordered: [Float] = []
        switch storage.layout {
        case let .convHWIO(o, i, h, w) where [o, i, h, w] == weight.shape:
            break
        case .rowMajor:
            let plain = try floats(weight, op)
            reordered = [Float](unsafeUninitializedCapacity: weight.count) { buffer, count in
                Self.reorderConvWeight(plain, shape: weight.shape, into: buffer.baseAddress!)
                count = weight.count
            }
        default:
            throw TensorError.invalidArgument(op: op, message: "weight \(weight.shape) was prepared for another role")
        }

        let (out, cp) = allocateFloats(outShape)
        let pixels = batch * outH * outW
        let direct = kh == 1 && kw == 1 && stride == 1 && padding == 0
        let pixelTile = 64
        let columnTile = min(cout, ReferenceGEMM.nBlock)
        let pixelTiles = (pixels + pixelTile - 1) / pixelTile
        let columnTiles = (cout + columnTile - 1) / columnTile

        /// The receptive field of output pixel `p` in `[kh, kw, Cin]` order, zero outside the image.
        func im2colRow(pixel p: Int, into row: UnsafeMutablePointer<Float>) {
            let b = p / (outH * outW), oy = p / outW % outH, ox = p % outW
            for ky in 0..<kh {
                let iy = oy * stride - padding + ky
                for kx in 0..<kw {
                    let ix = ox * stride - padding + kx
                    let dst = row + (ky * kw + kx) * cin
                    if iy < 0 || iy >= height || ix < 0 || ix >= width {
                        dst.update(repeating: 0, count: cin)
                    } else {
                        dst.update(from: xp + ((b * height + iy) * width + ix) * cin, count: cin)
                    }
                }
            }
        }

        func run(_ weightBase: UnsafePointer<Float>) {
            let w = MatrixView(base: weightBase, rowStride: cout, columnStride: 1)
            Parallel.forEach(pixelTiles * columnTiles) { tile in
                let p0 = tile / columnTiles * pixelTile
                let j0 = tile % columnTiles * columnTile
                let rows = min(pixelTile, pixels - p0), cols = min(columnTile, cout - j0)
                let cTile = cp + p0 * cout + j0
                if direct {
                    ReferenceGEMM.multiply(MatrixView(base: xp + p0 * cin, rowStride: cin, columnStride: 1), w.offset(row: 0, column: j0),
                                           into: cTile, ldc: cout, m: rows, n: cols, k: depth)
                } else {
                    let patches = UnsafeMutablePointer<Float>.allocate(capacity: rows * depth)
                    defer { patches.deallocate() }
                    for r in 0..<rows {
                        im2colRow(pixel: p0 + r, into: patches + r * depth)
                    }
                    ReferenceGEMM.multiply(MatrixView(base: patches, rowStride: depth, columnStride: 1), w.offset(row: 0, column: j0),
                                           into: cTile, ldc: cout, m: rows, n: cols, k: depth)
                }
                ReferenceGEMM.epilogue(cTile, ldc: cout, rows: rows, columns: cols, alpha: 1,
                                       bias: bp.map { $0 + j0 }, residual: rp.map { $0 + p0 * cout + j0 })
            }
        }

        if reordered.isEmpty {
            run(UnsafePointer(storage.floats))
        } else {
            reordered.withUnsafeBufferPointer { run($0.baseAddress!) }
        }
        return out
    }

    /// Nearest-neighbour ×2 upsampling of NHWC `[B, H, W, C]` (torch `F.interpolate(scale_factor=2.0, mode="nearest")`).
    public func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
        let op = "upsampleNearest2x"
        guard x.rank == 4 else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1, -1, -1], actual: x.shape) }
        let (batch, height, width, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let xp = try floats(x, op)
        let (out, op2) = allocateFloats([batch, 2 * height, 2 * width, channels])
        Parallel.forEachChunk(batch * 2 * height, minimumChunk: 4) { outRows in
            for row in outRows {
                let b = row / (2 * height), y = row % (2 * height) / 2
                let src = xp + (b * height + y) * width * channels
                let dst = op2 + row * 2 * width * channels
                for ox in 0..<(2 * width) {
                    (dst + ox * channels).update(from: src + ox / 2 * channels, count: channels)
                }
            }
        }
        return out
    }
}
