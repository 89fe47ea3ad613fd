/// A read-only matrix in memory: element `(r, c)` at `base[r * rowStride + c * columnStride]`.
/// Transposes and per-head column slices are just other strides.
struct MatrixView {
    var base: UnsafePointer<Float>
    var rowStride: Int
    var columnStride: Int

    @inline(__always)
    subscript(r: Int, c: Int) -> Float { base[r * rowStride + c * columnStride] }

    /// The view starting at `(r, c)`.
    func offset(row r: Int, column c: Int) -> MatrixView {
        MatrixView(base: base + r * rowStride + c * columnStride, rowStride: rowStride, columnStride: columnStride)
    }

    /// A row-major `[rows, columns]` matrix (`transposed`: the transpose of a row-major `[columns, rows]`).
    static func rowMajor(_ base: UnsafePointer<Float>, columns: Int, rows: Int, transposed: Bool) -> MatrixView {
        transposed ? MatrixView(base: base, rowStride: 1, columnStride: rows)
                   : MatrixView(base: base, rowStride: columns, columnStride: 1)
    }
}

/// Blocked single-threaded matrix product, the inner engine of `linear`, `matmul`, `conv2d`
/// and `attention`.
enum ReferenceGEMM {
    /// Depth and column block: a `kBlock × nBlock` slice of B (256 KB) stays in L2 while every
    /// row of the tile streams over it; one row of C (1 KB) stays in L1.
    static let kBlock = 256
    static let nBlock = 256

    /// `C[m, n] = A[m, k] · B[k, n]` (C row-major with leading dimension `ldc`, overwritten).
    /// Loop order i-k-j: the innermost loop is `C[i, :] += A[i, k] · B[k, :]` over contiguous
    /// memory, which the compiler vectorises. B blocks with a non-unit column stride (transposed
    /// operands, keys in attention) are first packed into a contiguous buffer.
    static func multiply(_ a: MatrixView, _ b: MatrixView, into c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int) {
        for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
        guard k > 0 else { return }
        let needsPacking = b.columnStride != 1
        let pack: UnsafeMutablePointer<Float>? = needsPacking ? .allocate(capacity: kBlock * min(n, nBlock)) : nil
        defer { pack?.deallocate() }
        for j0 in stride(from: 0, to: n, by: nBlock) {
            let nc = min(nBlock, n - j0)
            for k0 in stride(from: 0, to: k, by: kBlock) {
                let kc = min(kBlock, k - k0)
                let bBlock: UnsafePointer<Float>
                let ldb: Int
                if let pack {
                    for j in 0..<nc {
                        for kk in 0..<kc { pack[kk * nc + j] = b[k0 + kk, j0 + j] }
                    }
                    bBlock = UnsafePointer(pack)
                    ldb = nc
                } else {
                    bBlock = b.base + k0 * b.rowStride + j0
                    ldb = b.rowStride
                }
                for i in 0..<m {
                    let cRow = c + i * ldc + j0
                    for kk in 0..<kc {
                        axpy(a[i, k0 + kk], bBlock + kk * ldb, cRow, nc)
                    }
                }
            }
        }
    }

    /// `y[0..<n] += alpha · x[0..<n]` (no shortcut for `alpha == 0`: NaN and inf propagate as in torch).
    @inline(__always)
    static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for j in 0..<n { y[j] += alpha * x[j] }
    }

    /// Multi-threaded batched product: for each batch `b`, `C_b = alpha · A_b · B_b (+ bias) (+ R_b)`.
    /// A and B views are offset by `aBatchStride`/`bBatchStride` per batch (0: shared); C and the
    /// optional residual are row-major `[batch, m, n]`, bias is per column.
    static func batched(
        batch: Int, m: Int, n: Int, k: Int,
        a: MatrixView, aBatchStride: Int, b: MatrixView, bBatchStride: Int,
        c: UnsafeMutablePointer<Float>, alpha: Float = 1,
        bias: UnsafePointer<Float>? = nil, residual: UnsafePointer<Float>? = nil
    ) {
        guard batch > 0, m > 0, n > 0 else { return }
        // Tiles of rows × columns; shrink the row tile until there is work for every thread.
        let columnTile = min(n, nBlock)
        let columnTiles = (n + columnTile - 1) / columnTile
        var rowTile = 64
        while rowTile > 4 && batch * ((m + rowTile - 1) / rowTile) * columnTiles < 2 * Parallel.threadCount { rowTile /= 2 }
        let rowTiles = (m + rowTile - 1) / rowTile
        Parallel.forEach(batch * rowTiles * columnTiles) { tile in
            let bi = tile / (rowTiles * columnTiles)
            let i0 = (tile / columnTiles) % rowTiles * rowTile
            let j0 = tile % columnTiles * columnTile
            let rows = min(rowTile, m - i0), cols = min(columnTile, n - j0)
            var aTile = a.offset(row: i0, column: 0)
            aTile.base += bi * aBatchStride
            var bTile = b.offset(row: 0, column: j0)
            bTile.base += bi * bBatchStride
            let cTile = c + (bi * m + i0) * n + j0
            multiply(aTile, bTile, into: cTile, ldc: n, m: rows, n: cols, k: k)
            epilogue(cTile, ldc: n, rows: rows, columns: cols, alpha: alpha,
                     bias: bias.map { $0 + j0 }, residual: residual.map { $0 + (bi * m + i0) * n + j0 })
        }
    }

    /// `C = alpha · C + bias + residual` on a tile (residual laid out like C).
    static func epilogue(_ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, alpha: Float,
                         bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?) {
        if alpha == 1 && bias == nil && residual == nil { return }
        for i in 0..<rows {
            let row = c + i * ldc
            if alpha != 1 { for j in 0..<columns { row[j] *= alpha } }
            if let bias { for j in 0..<columns { row[j] += bias[j] } }
            if let residual {
                let r = residual + i * ldc
                for j in 0..<columns { row[j] += r[j] }
            }
        }
    }
}

extension ReferenceBackend {
    /// `nn.Linear` (torch `F.linear`): `x · Wᵀ + bias (+ residual)` over the last axis of `x`.
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        let op = "linear"
        guard weight.rank == 2, let inF = x.shape.last, inF == weight.shape[1] else {
            throw TensorError.shapeMismatch(op: op, expected: [x.shape.last ?? 0], actual: weight.shape)
        }
        let outF = weight.shape[0]
        let outShape = Array(x.shape.dropLast()) + [outF]
        let rows = x.count / max(inF, 1)
        let xp = try floats(x, op)
        let bp = try vector(bias, count: outF, op)
        let rp = try operand(residual, shape: outShape, op)
        // B = Wᵀ `[in, out]`: the prepared layout stores exactly that; a plain `[out, in]` tensor is read transposed.
        let storage = try referenceStorage(weight, op)
        guard weight.dtype == .f32 else { throw TensorError.unsupportedDType(op: op, dtype: weight.dtype) }
        let b: MatrixView
        switch storage.layout {
        case .linearInOut(let o, let i) where o == outF && i == inF:
            b = MatrixView(base: storage.floats, rowStride: outF, columnStride: 1)
        case .rowMajor:
            b = .rowMajor(try floats(weight, op), columns: outF, rows: inF, transposed: true)
        default:
            throw TensorError.invalidArgument(op: op, message: "weight \(weight.shape) was prepared for another role")
        }
        let (out, cp) = allocateFloats(outShape)
        ReferenceGEMM.batched(batch: 1, m: rows, n: outF, k: inF,
                              a: .rowMajor(xp, columns: inF, rows: rows, transposed: false), aBatchStride: 0,
                              b: b, bBatchStride: 0, c: cp, bias: bp, residual: rp)
        return out
    }

    /// Batched `alpha · op(a) · op(b)` (torch `matmul`/`bmm` with `transpose(-1, -2)` operands).
    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor {
        let op = "matmul"
        guard a.rank >= 2, b.rank >= 2 else { throw TensorError.shapeMismatch(op: op, expected: a.shape, actual: b.shape) }
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (kb, n) = transposeB ? (bc, br) : (br, bc)
        let batchShape = Array(a.shape.dropLast(2))
        let sharedB = b.rank == 2
        guard k == kb, sharedB || Array(b.shape.dropLast(2)) == batchShape else {
            throw TensorError.shapeMismatch(op: op, expected: a.shape, actual: b.shape)
        }
        let batch = batchShape.reduce(1, *)
        let ap = try floats(a, op), bp = try floats(b, op)
        let (out, cp) = allocateFloats(batchShape + [m, n])
        ReferenceGEMM.batched(batch: batch, m: m, n: n, k: k,
                              a: .rowMajor(ap, columns: k, rows: m, transposed: transposeA), aBatchStride: m * k,
                              b: .rowMajor(bp, columns: n, rows: k, transposed: transposeB), bBatchStride: sharedB ? 0 : k * n,
                              c: cp, alpha: alpha)
        return out
    }
}
