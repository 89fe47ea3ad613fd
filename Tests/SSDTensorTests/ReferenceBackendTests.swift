import Testing
@testable import SSDTensor

/// Self-checks of the reference backend against naive loops, its validation errors and its
/// memory accounting. (Parity with PyTorch is in ReferenceBackendParityTests.)
@Suite struct ReferenceBackendTests {
    let backend = ReferenceBackend()

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func matmulMatchesNaiveLoops(transposeA: Bool, transposeB: Bool) throws {
        let (batch, m, k, n) = (3, 37, 300, 270)  // k and n cross the 256 blocks
        let a = testValues(batch * m * k, seed: 1), b = testValues(batch * k * n, seed: 2)
        let ta = try backend.upload(a, shape: transposeA ? [batch, k, m] : [batch, m, k])
        let tb = try backend.upload(b, shape: transposeB ? [batch, n, k] : [batch, k, n])
        let got = try backend.download(backend.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB, alpha: 0.5))
        var want = [Float](repeating: 0, count: batch * m * n)
        for p in 0..<batch { for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for q in 0..<k {
                let x = transposeA ? a[(p * k + q) * m + i] : a[(p * m + i) * k + q]
                let y = transposeB ? b[(p * n + j) * k + q] : b[(p * k + q) * n + j]
                s += Double(x) * Double(y)
            }
            want[(p * m + i) * n + j] = Float(0.5 * s)
        } } }
        #expect(relativeError(got, want) < 1e-6)
    }

    @Test func linearPreparedAndPlainWeightsAgree() throws {
        let x = try backend.upload(testValues(5 * 40, seed: 3), shape: [5, 40])
        let wValues = testValues(24 * 40, seed: 4)
        let prepared = try backend.prepareWeight(HostBuffer.view(of: wValues, shape: [24, 40]), role: .linear, activationDType: .f32)
        let plain = try backend.upload(wValues, shape: [24, 40])
        let bias = try backend.upload(testValues(24, seed: 5), shape: [24])
        let residual = try backend.upload(testValues(5 * 24, seed: 6), shape: [5, 24])
        let a = try backend.download(backend.linear(x, weight: prepared, bias: bias, residual: residual))
        let b = try backend.download(backend.linear(x, weight: plain, bias: bias, residual: residual))
        #expect(relativeError(a, b) < 1e-6)
        #expect(try backend.download(prepared) == wValues)
    }

    @Test func convPreparedAndPlainWeightsAgreeWithNaiveLoops() throws {
        let (b, h, w, cin, cout) = (2, 7, 5, 6, 9)
        let xv = testValues(b * h * w * cin, seed: 7), wv = testValues(cout * cin * 9, seed: 8)
        let x = try backend.upload(xv, shape: [b, h, w, cin])
        let prepared = try backend.prepareWeight(HostBuffer.view(of: wv, shape: [cout, cin, 3, 3]), role: .conv2d, activationDType: .f32)
        let plain = try backend.upload(wv, shape: [cout, cin, 3, 3])
        #expect(try backend.download(prepared) == wv)
        for stride in [1, 2] {
            let y1 = try backend.conv2d(x, weight: prepared, bias: nil, stride: stride, padding: 1)
            let y2 = try backend.download(backend.conv2d(x, weight: plain, bias: nil, stride: stride, padding: 1))
            let (ho, wo) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1)
            #expect(y1.shape == [b, ho, wo, cout])
            var want = [Float](repeating: 0, count: b * ho * wo * cout)
            for n in 0..<b { for oy in 0..<ho { for ox in 0..<wo { for o in 0..<cout {
                var s: Float = 0
                for c in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
                    let iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx
                    if iy >= 0, iy < h, ix >= 0, ix < w {
                        s += xv[((n * h + iy) * w + ix) * cin + c] * wv[((o * cin + c) * 3 + ky) * 3 + kx]
                    }
                } } }
                want[((n * ho + oy) * wo + ox) * cout + o] = s
            } } } }
            #expect(relativeError(try backend.download(y1), want) < 1e-6)
            #expect(relativeError(y2, want) < 1e-6)
        }
    }

    @Test func attentionMatchesDefaultComposition() throws {
        let (b, nq, nk, heads, d) = (2, 70, 13, 3, 8)
        let q = try backend.upload(testValues(b * nq * heads * d, seed: 9), shape: [b, nq, heads * d])
        let k = try backend.upload(testValues(b * nk * heads * d, seed: 10), shape: [b, nk, heads * d])
        let v = try backend.upload(testValues(b * nk * heads * d, seed: 11), shape: [b, nk, heads * d])
        let direct = try backend.download(backend.attention(query: q, key: k, value: v, heads: heads, scale: 0.3, causal: false))
        // The protocol's default composition (matmul, softmax, matmul).
        func split(_ t: Tensor, _ n: Int) throws -> Tensor {
            try backend.permute(t.reshaped([b, n, heads, d]), [0, 2, 1, 3]).reshaped([b * heads, n, d])
        }
        let scores = try backend.matmul(split(q, nq), split(k, nk), transposeA: false, transposeB: true, alpha: 0.3)
        let outs = try backend.matmul(backend.softmax(scores, causal: false), split(v, nk), transposeA: false, transposeB: false, alpha: 1)
        let composed = try backend.download(backend.permute(outs.reshaped([b, heads, nq, d]), [0, 2, 1, 3]))
        #expect(relativeError(direct, composed) < 1e-6)
    }

    @Test func validationErrors() throws {
        let x = try backend.upload([Float](repeating: 1, count: 12), shape: [1, 2, 2, 3])
        let w = try backend.upload([Float](repeating: 1, count: 8), shape: [2, 4])
        #expect(throws: TensorError.self) { try backend.linear(x, weight: w, bias: nil) }
        #expect(throws: TensorError.self) { try backend.groupNorm(x, groups: 2, weight: x, bias: x, epsilon: 1e-5) }
        #expect(throws: TensorError.self) { try backend.binary(x, w, .add) }
        #expect(throws: TensorError.self) { try backend.permute(x, [0, 1, 1, 3]) }
        #expect(throws: TensorError.self) { try backend.slice(x, axis: 3, range: 2..<4) }
        #expect(throws: TensorError.self) { try backend.concat([x, w], axis: 0) }
        #expect(throws: TensorError.self) { try backend.embedding(w, ids: [2], outputDType: .f32) }
        #expect(throws: TensorError.self) { try backend.conv2d(x, weight: x, bias: nil, stride: 0, padding: 1) }
        #expect(throws: TensorError.self) { try backend.geglu(x) }
        let half = try backend.convert(x, to: .f16)
        #expect(throws: TensorError.unsupportedDType(op: "activation", dtype: .f16)) { try backend.activation(half, .silu) }
        let prepared = try backend.prepareWeight(HostBuffer.view(of: [1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 4]), role: .linear, activationDType: .f32)
        #expect(throws: TensorError.self) { try backend.activation(prepared, .silu) }
        #expect(throws: TensorError.self) { try backend.conv2d(x, weight: prepared, bias: nil, padding: 0) }
        #expect(throws: TensorError.self) { try backend.attention(query: w, key: w, value: w, heads: 1, scale: 1, causal: false) }
        let foreign = Tensor(shape: [1, 2, 2, 3], dtype: .f32, storage: HostBuffer(byteCount: 48))
        #expect(throws: TensorError.foreignTensor(op: "activation", backend: "reference")) { try backend.activation(foreign, .silu) }
    }

    @Test func memoryStatisticsTrackLiveTensors() throws {
        let fresh = ReferenceBackend()
        do {
            let a = try fresh.upload([Float](repeating: 1, count: 1000), shape: [1000])
            let b = try fresh.affine(a, scale: 2, shift: 1)
            #expect(fresh.memoryStatistics().currentBytes == 8000)
            #expect(try fresh.download(b).allSatisfy { $0 == 3 })
        }
        #expect(fresh.memoryStatistics() == BackendMemoryStatistics(currentBytes: 0, peakBytes: 8000))
        fresh.resetPeakMemory()
        #expect(fresh.memoryStatistics().peakBytes == 0)
    }
}
