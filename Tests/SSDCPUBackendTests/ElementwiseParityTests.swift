import Testing
import SSDTensor
@testable import SSDCPUBackend

@Suite struct NormParityTests {
    let cpu = try! CPUBackend()

    @Test(arguments: [[2, 5, 3, 64], [1, 7, 96], [1, 2, 2, 6]])
    func groupNorm(_ shape: [Int]) throws {
        let c = shape.last!, groups = c % 32 == 0 ? 32 : 3
        for silu in [false, true] {
            let err = try parity(cpu) { b in
                let x = try input(b, shape, seed: 1, scale: 3), w = try input(b, [c], seed: 2), bias = try input(b, [c], seed: 3)
                let shifted = try b.affine(x, scale: 1, shift: 5)  // a large mean tests the two-pass variance
                return silu ? try b.groupNormSiLU(shifted, groups: groups, weight: w, bias: bias, epsilon: 1e-5)
                    : try b.groupNorm(shifted, groups: groups, weight: w, bias: bias, epsilon: 1e-6)
            }
            #expect(err < 1e-4, "\(shape) silu=\(silu): \(err)")
        }
    }

    @Test func layerNormAndSoftmax() throws {
        let ln = try parity(cpu) { b in
            try b.layerNorm(input(b, [3, 5, 77], seed: 1, scale: 4), weight: input(b, [77], seed: 2), bias: input(b, [77], seed: 3), epsilon: 1e-5)
        }
        #expect(ln < 1e-5)
        for causal in [false, true] {
            let sm = try parity(cpu) { b in try b.softmax(input(b, [2, 3, 9, 9], seed: 4, scale: 5), causal: causal) }
            #expect(sm < 1e-5, "softmax causal=\(causal): \(sm)")
        }
        let wide = try parity(cpu) { b in try b.softmax(input(b, [2, 37], seed: 4, scale: 5), causal: false) }
        #expect(wide < 1e-5)
    }
}

@Suite struct ElementwiseParityTests {
    let cpu = try! CPUBackend()

    @Test func activationsAndGEGLU() throws {
        for kind in Activation.allCases {
            let err = try parity(cpu) { b in try b.activation(input(b, [5, 33], seed: 1, scale: 8), kind) }
            #expect(err < 1e-5, "\(kind): \(err)")
        }
        let g = try parity(cpu) { b in try b.geglu(input(b, [2, 3, 2 * 37], seed: 2, scale: 4)) }
        #expect(g < 1e-5)
    }

    @Test(arguments: [([2, 3, 4, 5], [5]), ([2, 3, 4, 5], [2, 1, 1, 5]), ([2, 3, 4, 5], [2, 3, 4, 5]), ([4, 1], [1, 6]),
                      ([3, 1, 5], [3, 4, 1]), ([7], [1]), ([2, 3, 4, 5], [3, 1, 1])])
    func binaryBroadcast(_ a: [Int], _ bShape: [Int]) throws {
        for op in [BinaryOp.add, .subtract, .multiply, .divide] {
            let err = try parity(cpu) { b in
                let y = try input(b, bShape, seed: 2)
                let safe = op == .divide ? try b.affine(y, scale: 0.5, shift: 2) : y
                return try b.binary(input(b, a, seed: 1), safe, op)
            }
            #expect(err < 1e-6, "\(a) \(op) \(bShape): \(err)")
        }
    }

    @Test func shapes() throws {
        let e1 = try parity(cpu) { b in try b.concat([input(b, [2, 3, 4], seed: 1), input(b, [2, 5, 4], seed: 2)], axis: 1) }
        let e2 = try parity(cpu) { b in try b.concat([input(b, [2, 3, 4], seed: 1), input(b, [2, 3, 1], seed: 2)], axis: 2) }
        let e3 = try parity(cpu) { b in try b.slice(input(b, [3, 8, 5], seed: 3), axis: 1, range: 2..<7) }
        let e4 = try parity(cpu) { b in try b.permute(input(b, [2, 3, 4, 5], seed: 4), [0, 2, 1, 3]) }
        let e5 = try parity(cpu) { b in try b.permute(input(b, [2, 3, 4, 5], seed: 4), [3, 1, 0, 2]) }
        let e6 = try parity(cpu) { b in try b.upsampleNearest2x(input(b, [2, 3, 5, 7], seed: 5)) }
        let e7 = try parity(cpu) { b in
            let t = try b.prepareWeight(HostBuffer.view(of: values(10 * 6, seed: 6), shape: [10, 6]), role: .embedding, activationDType: .f32)
            return try b.embedding(t, ids: [3, 0, 9, 3], outputDType: .f32)
        }
        for e in [e1, e2, e3, e4, e5, e6, e7] { #expect(e == 0) }
    }

    @Test func conversionsAndHalfTypes() throws {
        let v = values(1000, seed: 7, scale: 100)
        for dt in [DType.f16, .bf16] {
            let t = try cpu.upload(v, shape: [1000], as: dt)
            let r = try reference.upload(v, shape: [1000], as: dt)
            #expect(try cpu.download(t) == reference.download(r))
            let back = try cpu.convert(cpu.convert(t, to: .f32), to: dt)
            #expect(try cpu.download(back) == cpu.download(t))
            // Shape ops work on any element type.
            let s = try cpu.slice(t, axis: 0, range: 10..<20)
            #expect(try cpu.download(s) == Array(cpu.download(t)[10..<20]))
        }
        let f16 = try CPUBackend(options: CPUBackendOptions(weightStorage: .f16))
        let table = try f16.prepareWeight(HostBuffer.view(of: v, shape: [100, 10]), role: .embedding, activationDType: .f32)
        #expect(table.dtype == .f16)
        let row = try f16.download(f16.embedding(table, ids: [7], outputDType: .f32))
        #expect(relativeError(row, Array(v[70..<80])) < 1e-3)
    }

    @Test func errorsAndMemory() throws {
        let b = try CPUBackend()
        #expect(throws: TensorError.self) { try b.linear(input(b, [2, 3], seed: 1), weight: weight(b, [4, 5], seed: 2, role: .linear), bias: nil) }
        #expect(throws: TensorError.self) { try b.binary(input(b, [2, 3], seed: 1), input(b, [4], seed: 2), .add) }
        #expect(throws: TensorError.self) { try b.linear(input(reference, [2, 3], seed: 1), weight: weight(b, [4, 3], seed: 2, role: .linear), bias: nil) }
        let before = b.memoryStatistics().currentBytes
        do {
            let t = try input(b, [1000], seed: 3)
            #expect(b.memoryStatistics().currentBytes == before + 4000)
            _ = t
        }
        #expect(b.memoryStatistics().currentBytes == before)
        #expect(b.memoryStatistics().peakBytes >= before + 4000)
    }
}
