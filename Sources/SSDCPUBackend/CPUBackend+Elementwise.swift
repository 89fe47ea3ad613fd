import CSSDKernels
import SSDTensor

extension CPUBackend {
    public func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor {
        let xp = try x.cpuFloats("activation")
        let out = allocate(x.shape)
        let y = try out.cpuBuffer("activation").floats
        let code: Int32
        switch kind {
        case .silu: code = Int32(SSD_ACT_SILU)
        case .gelu: code = Int32(SSD_ACT_GELU)
        case .quickGELU: code = Int32(SSD_ACT_QUICK_GELU)
        case .relu: code = Int32(SSD_ACT_RELU)
        case .tanh: code = Int32(SSD_ACT_TANH)
        }
        parallelChunks(x.count, minimumChunk: 1 << 14) { r in
            ssd_activation(xp + r.lowerBound, y + r.lowerBound, r.count, code)
        }
        return out
    }

    /// GEGLU (diffusers `GEGLU`: `hidden · gelu(gate)`) in one pass.
    public func geglu(_ x: Tensor) throws -> Tensor {
        let xp = try x.cpuFloats("geglu")
        guard let last = x.shape.last, last % 2 == 0 else {
            throw TensorError.invalidArgument(op: "geglu", message: "last axis \(x.shape) must be even")
        }
        let n = last / 2, rows = x.count / max(last, 1)
        let out = allocate(Array(x.shape.dropLast()) + [n])
        let y = try out.cpuBuffer("geglu").floats
        parallelChunks(rows, minimumChunk: max(1, 8192 / max(n, 1))) { r in
            ssd_geglu(xp + r.lowerBound * last, y + r.lowerBound * n, r.count, n)
        }
        return out
    }

    public func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor {
        let xp = try x.cpuFloats("affine")
        let out = allocate(x.shape)
        let y = try out.cpuBuffer("affine").floats
        parallelChunks(x.count, minimumChunk: 1 << 16) { r in
            ssd_affine(xp + r.lowerBound, y + r.lowerBound, r.count, scale, shift)
        }
        return out
    }

    /// Elementwise op with NumPy broadcasting: shapes are right-aligned, size-1 axes repeat.
    /// The innermost axes where both operands are contiguous run as one flat loop.
    public func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor {
        let name = "binary \(op.rawValue)"
        let ap = try a.cpuFloats(name), bp = try b.cpuFloats(name)
        let rank = max(a.rank, b.rank)
        let sa = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let sb = [Int](repeating: 1, count: rank - b.rank) + b.shape
        var shape = [Int](repeating: 0, count: rank)
        for i in 0..<rank {
            guard sa[i] == sb[i] || sa[i] == 1 || sb[i] == 1 else {
                throw TensorError.shapeMismatch(op: name, expected: a.shape, actual: b.shape)
            }
            shape[i] = sa[i] == 1 ? sb[i] : sa[i]
        }
        let out = allocate(shape)
        let y = try out.cpuBuffer(name).floats
        let total = out.count
        if total == 0 { return out }
        // Element strides (0 on broadcast axes), then merge axes into (outer dims, inner run).
        func strides(_ s: [Int]) -> [Int] {
            var st = [Int](repeating: 0, count: rank), acc = 1
            for i in stride(from: rank - 1, through: 0, by: -1) {
                st[i] = s[i] == 1 ? 0 : acc
                acc *= s[i]
            }
            return st
        }
        let stA = strides(sa), stB = strides(sb)
        // Inner run: trailing axes over which both strides are "contiguous" or both are 0 for one operand.
        var inner = 1, innerA = 1, innerB = 1  // innerX: 1 = contiguous, 0 = broadcast scalar
        var axis = rank - 1
        if axis >= 0 {
            innerA = stA[axis] == 0 ? 0 : 1
            innerB = stB[axis] == 0 ? 0 : 1
            while axis >= 0 {
                let ca = stA[axis] == 0 ? 0 : 1, cb = stB[axis] == 0 ? 0 : 1
                guard ca == innerA, cb == innerB, (ca == 0 || stA[axis] == inner), (cb == 0 || stB[axis] == inner) else { break }
                inner *= shape[axis]
                axis -= 1
            }
        }
        let outerRank = axis + 1
        let outer = total / inner
        let opCode = op
        parallelChunks(outer, minimumChunk: max(1, (1 << 15) / inner)) { range in
            for o in range {
                var rem = o, offA = 0, offB = 0
                for d in stride(from: outerRank - 1, through: 0, by: -1) {
                    let i = rem % shape[d]
                    rem /= shape[d]
                    offA += i * stA[d]
                    offB += i * stB[d]
                }
                let yy = y + o * inner, pa = ap + offA, pb = bp + offB
                let sA = innerA, sB = innerB
                switch opCode {
                case .add: for i in 0..<inner { yy[i] = pa[i * sA] + pb[i * sB] }
                case .subtract: for i in 0..<inner { yy[i] = pa[i * sA] - pb[i * sB] }
                case .multiply: for i in 0..<inner { yy[i] = pa[i * sA] * pb[i * sB] }
                case .divide: for i in 0..<inner { yy[i] = pa[i * sA] / pb[i * sB] }
                }
            }
        }
        return out
    }
}
