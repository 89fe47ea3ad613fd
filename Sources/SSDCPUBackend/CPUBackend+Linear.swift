import CSSDKernels
import SSDTensor

extension PackedWeight {
    /// Packs an activation operand `B` (`[k, n]`, or `[n, k]` when `transposed`; rows `ld` apart,
    /// default dense) into fp32 panels.
    convenience init(operand b: UnsafePointer<Float>, k: Int, n: Int, transposed: Bool, ld: Int? = nil, counter: MemoryCounter) {
        let ld = ld ?? (transposed ? k : n)
        self.init(emptyPanels: n, depth: k, counter: counter)
        let nr = Int(SSD_NR)
        let out = buffer.floats, stride = panelStride
        for p in 0..<panels {
            let dst = out + p * stride
            let cols = min(nr, n - p * nr)
            for kk in 0..<k {
                let row = dst + kk * nr
                if transposed {
                    for c in 0..<cols { row[c] = b[(p * nr + c) * ld + kk] }
                } else {
                    row.update(from: b + kk * ld + p * nr, count: cols)
                }
                if cols < nr { (row + cols).update(repeating: 0, count: nr - cols) }
            }
        }
    }
}

extension CPUBackend {
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        let op = "linear"
        let xp = try x.cpuFloats(op)
        guard let k = x.shape.last else { throw TensorError.shapeMismatch(op: op, expected: [-1], actual: x.shape) }
        let w = try packedWeight(weight, op: op, kernel: (weight.shape.first ?? 0, 1, 1))
        guard w.kernelH == 1, w.kernelW == 1, w.inChannels == k else {
            throw TensorError.shapeMismatch(op: op, expected: [w.n, k], actual: weight.shape)
        }
        let m = x.count / max(k, 1), n = w.n
        let outShape = Array(x.shape.dropLast()) + [n]
        let ep = try epilogue(op, bias: bias, n: n, residual: residual, shape: outShape)
        let out = allocate(outShape)
        let y = try out.cpuBuffer(op).floats
        runGEMM(rows: .dense(xp, lda: k), m: m, weight: w, c: y, epilogue: ep)
        return out
    }

    /// `linear(geglu(x), …)` (diffusers `FeedForward`: `GEGLU` then `net.2`). Where the linear runs
    /// on the AMX tiles, which read bf16 rows, GEGLU is computed as those rows are made: the
    /// `[…, 4·dim]` fp32 GEGLU output is never written or read back. Same values as the composition.
    public func gegluLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        let op = "gegluLinear"
        let xp = try x.cpuFloats(op)
        guard let last = x.shape.last, last % 2 == 0 else {
            throw TensorError.invalidArgument(op: op, message: "last axis \(x.shape) must be even")
        }
        let w = try packedWeight(weight, op: op, kernel: (weight.shape.first ?? 0, 1, 1))
        guard w.runsOnAMX, x.count > 0 else {
            return try linear(geglu(x), weight: weight, bias: bias, residual: residual)
        }
        guard w.kernelH == 1, w.kernelW == 1, w.inChannels == last / 2 else {
            throw TensorError.shapeMismatch(op: op, expected: [w.n, last / 2], actual: weight.shape)
        }
        let m = x.count / last, n = w.n
        let outShape = Array(x.shape.dropLast()) + [n]
        let ep = try epilogue(op, bias: bias, n: n, residual: residual, shape: outShape)
        let out = allocate(outShape)
        let y = try out.cpuBuffer(op).floats
        let rows = convertSharedGEGLU(xp, m: m, w)
        defer { counter.release(rows.buffer, rows.bytes) }
        gemm(rows: .dense(xp, lda: last), m: m, weight: w, output: .dense(y, ldc: n), epilogue: ep, preconverted: rows)
        return out
    }

    /// `layerNorm(x)` then a linear per weight. Where the linears run on the AMX tiles, the rows are
    /// normalised straight into the bf16 rows the kernel reads, once for all the weights (a
    /// transformer block's `to_q`, `to_k`, `to_v`): the normalised fp32 rows are never stored. Same
    /// values as the composition.
    public func layerNormLinears(_ x: Tensor, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                 weights: [Tensor], biases: [Tensor?]) throws -> [Tensor] {
        let op = "layerNormLinears"
        guard weights.count == biases.count, let n = x.shape.last, n > 0, x.count > 0, normWeight.count == n,
              normBias.count == n else {
            return try composedLayerNormLinears(x, normWeight: normWeight, normBias: normBias, epsilon: epsilon, weights: weights, biases: biases)
        }
        let packed = try weights.map { try packedWeight($0, op: op, kernel: ($0.shape.first ?? 0, 1, 1)) }
        guard let first = packed.first, first.runsOnAMX,
              packed.allSatisfy({ $0.layout == first.layout && $0.depth > 0 && $0.kernelH == 1 && $0.kernelW == 1 &&
                                  $0.inChannels == n && $0.segmentStride == first.segmentStride }) else {
            return try composedLayerNormLinears(x, normWeight: normWeight, normBias: normBias, epsilon: epsilon, weights: weights, biases: biases)
        }
        let xp = try x.cpuFloats(op), gamma = try normWeight.cpuFloats(op), beta = try normBias.cpuFloats(op)
        let m = x.count / n
        let rows = sharedBF16Rows(m: m, first) { r0, r1, dst, ld in
            if first.layout == .bf16SplitPairs {
                ssd_layer_norm_to_bf16x2(xp + r0 * n, r1 - r0, n, gamma, beta, epsilon, first.segmentStride / 2, dst, ld)
            } else {
                ssd_layer_norm_to_bf16(xp + r0 * n, r1 - r0, n, gamma, beta, epsilon, first.segmentStride, dst, ld)
            }
        }
        defer { counter.release(rows.buffer, rows.bytes) }
        return try zip(packed, biases).map { w, bias in
            let outShape = Array(x.shape.dropLast()) + [w.n]
            let ep = try epilogue(op, bias: bias, n: w.n, residual: nil, shape: outShape)
            let out = allocate(outShape)
            gemm(rows: .dense(xp, lda: n), m: m, weight: w, output: .dense(try out.cpuBuffer(op).floats, ldc: w.n),
                 epilogue: ep, preconverted: rows)
            return out
        }
    }

    /// Checks and resolves the bias and residual of a fused epilogue.
    func epilogue(_ op: String, bias: Tensor?, n: Int, residual: Tensor?, shape: [Int]) throws -> GEMMEpilogue {
        var ep = GEMMEpilogue()
        if let bias {
            guard bias.count == n else { throw TensorError.shapeMismatch(op: op + " bias", expected: [n], actual: bias.shape) }
            ep.bias = try bias.cpuFloats(op)
        }
        if let residual {
            guard residual.shape.reduce(1, *) == shape.reduce(1, *), residual.shape.last == n else {
                throw TensorError.shapeMismatch(op: op + " residual", expected: shape, actual: residual.shape)
            }
            ep.residual = try residual.cpuFloats(op)
        }
        return ep
    }

    /// GEMM with the selected provider; `c` is `[m, w.n]`.
    func runGEMM(rows: GEMMRows, m: Int, weight w: PackedWeight, c: UnsafeMutablePointer<Float>, epilogue ep: GEMMEpilogue) {
        runGEMM(rows: rows, m: m, weight: w, output: .dense(c, ldc: w.n), epilogue: ep)
    }

    /// GEMM with the selected provider, C rows placed by `output`.
    func runGEMM(rows: GEMMRows, m: Int, weight w: PackedWeight, output: GEMMOutput, epilogue ep: GEMMEpilogue) {
        guard let blas, w.layout == .rowMajor else {
            gemm(rows: rows, m: m, weight: w, output: output, epilogue: ep)
            return
        }
        let n = w.n, k = w.depth
        let wp = UnsafePointer(w.buffer.floats)
        // Writes `rb` rows of `tile` (`[rb, n]`) to C rows r0… with bias and residual.
        func place(_ tile: UnsafePointer<Float>, r0: Int, rb: Int) {
            parallelChunks(rb, minimumChunk: 16) { range in
                for r in range {
                    let o = output.offset(r0 + r)
                    let dst = output.c + o, src = tile + r * n
                    for j in 0..<n { dst[j] = src[j] + (ep.bias?[j] ?? 0) + (ep.residual?[o + j] ?? 0) }
                }
            }
        }
        switch rows {
        case let .dense(a, lda):
            // `linear` and `matmul` outputs are dense: C in place, then bias and residual.
            precondition(output.lineLength == Int.max && output.ldc == n, "dense BLAS GEMM with a mapped output")
            blas.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: ep.alpha, a: a, lda: lda, b: wp, ldb: k, beta: 0, c: output.c, ldc: n)
            if ep.bias != nil || ep.residual != nil { place(output.c, r0: 0, rb: m) }
        case .conv:
            // Tiled im2col: 512 output pixels at a time.
            let tile = 512, segLen = w.segmentLength
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: tile * k)
            let result = UnsafeMutablePointer<Float>.allocate(capacity: tile * n)
            defer { buf.deallocate(); result.deallocate() }
            var r0 = 0
            while r0 < m {
                let rb = min(tile, m - r0)
                parallelChunks(rb, minimumChunk: 32) { range in
                    for r in range {
                        for s in 0..<w.kernelH {
                            rows.fill(r0 + r, segment: s, into: buf + r * k + s * segLen)
                        }
                    }
                }
                blas.gemm(transA: false, transB: true, m: rb, n: n, k: k, alpha: ep.alpha, a: buf, lda: k, b: wp, ldb: k, beta: 0, c: result, ldc: n)
                place(result, r0: r0, rb: rb)
                r0 += rb
            }
        }
    }

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor {
        let op = "matmul"
        guard a.rank >= 2, b.rank >= 2 else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1], actual: a.shape) }
        let ap = try a.cpuFloats(op), bp = try b.cpuFloats(op)
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (kb, n) = transposeB ? (bc, br) : (br, bc)
        let batchShape = Array(a.shape.dropLast(2))
        let batch = batchShape.reduce(1, *)
        let sharedB = b.rank == 2
        guard k == kb, sharedB || Array(b.shape.dropLast(2)) == batchShape else {
            throw TensorError.shapeMismatch(op: op, expected: a.shape, actual: b.shape)
        }
        let out = allocate(batchShape + [m, n])
        let y = try out.cpuBuffer(op).floats
        if let blas {
            for i in 0..<batch {
                blas.gemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: alpha,
                          a: ap + i * m * k, lda: ac, b: bp + (sharedB ? 0 : i * k * n), ldb: bc,
                          beta: 0, c: y + i * m * n, ldc: n)
            }
            return out
        }
        var ep = GEMMEpilogue()
        ep.alpha = alpha
        // A with transposeA is made row-major first.
        var aRows = ap
        var aTransposed: UnsafeMutablePointer<Float>? = nil
        defer { aTransposed?.deallocate() }
        if transposeA {
            let t = UnsafeMutablePointer<Float>.allocate(capacity: max(batch * m * k, 1))
            parallelFor(batch) { i in
                for r in 0..<k { for c in 0..<m { t[i * m * k + c * k + r] = ap[i * m * k + r * m + c] } }
            }
            aTransposed = t
            aRows = UnsafePointer(t)
        }
        if sharedB {
            let w = PackedWeight(operand: bp, k: k, n: n, transposed: transposeB, counter: counter)
            gemm(rows: .dense(aRows, lda: k), m: batch * m, weight: w, c: y, ldc: n, epilogue: ep)
        } else {
            for i in 0..<batch {
                let w = PackedWeight(operand: bp + i * k * n, k: k, n: n, transposed: transposeB, counter: counter)
                gemm(rows: .dense(aRows + i * m * k, lda: k), m: m, weight: w, c: y + i * m * n, ldc: n, epilogue: ep)
            }
        }
        return out
    }
}
