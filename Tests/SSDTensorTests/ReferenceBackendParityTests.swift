import Testing
@testable import SSDTensor

/// Every ReferenceBackend op against PyTorch fp32 on CPU (fixtures from
/// `Scripts/make_fixtures.py ops`); relative error ≤ 1e-5 (DESIGN.md §7).
@Suite struct ReferenceBackendParityTests {
    let backend = ReferenceBackend()
    static let tolerance = 1e-5

    /// Downloads `result` and checks it against fixture tensor `expected` (shape and values).
    func check(_ result: Tensor, _ fixture: OpsFixture, _ expected: String) throws {
        #expect(result.shape == (try fixture.shape(expected)), "\(expected)")
        let error = relativeError(try backend.download(result), try fixture.floats(expected))
        #expect(error <= Self.tolerance, "\(expected): relative error \(error)")
    }

    // MARK: Convolution and resampling

    @Test(arguments: ["conv1x1", "conv3x3_pad1", "conv3x3_stride2", "conv3x3_stride2_even"])
    func conv2d(_ name: String) throws {
        let f = try OpsFixture("conv")
        let residual = f.has("\(name).residual") ? try f.tensor("\(name).residual", on: backend) : nil
        let out = try backend.conv2d(
            f.tensor("\(name).x", on: backend),
            weight: f.weight("\(name).weight", role: .conv2d, on: backend),
            bias: f.weight("\(name).bias", role: .vector, on: backend),
            stride: f.integer("\(name).stride"), padding: f.integer("\(name).padding"), residual: residual)
        try check(out, f, "\(name).out")
    }

    @Test func upsampleNearest2x() throws {
        let f = try OpsFixture("conv")
        try check(backend.upsampleNearest2x(f.tensor("upsample.x", on: backend)), f, "upsample.out")
    }

    // MARK: Normalisation

    @Test(arguments: ["groupnorm_eps1e-5", "groupnorm_eps1e-6", "groupnorm_silu", "groupnorm_tokens"])
    func groupNorm(_ name: String) throws {
        let f = try OpsFixture("norm")
        let x = try f.tensor("\(name).x", on: backend)
        let weight = try f.weight("\(name).weight", role: .vector, on: backend)
        let bias = try f.weight("\(name).bias", role: .vector, on: backend)
        let groups = try f.integer("\(name).groups")
        let epsilon = Float(try f.parameter("\(name).epsilon"))
        if try f.integer("\(name).silu") == 1 {
            try check(backend.groupNormSiLU(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon), f, "\(name).out")
            // The unfused composition agrees too.
            let composed = try backend.activation(backend.groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon), .silu)
            try check(composed, f, "\(name).out")
        } else {
            try check(backend.groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon), f, "\(name).out")
        }
    }

    @Test func layerNorm() throws {
        let f = try OpsFixture("norm")
        let out = try backend.layerNorm(
            f.tensor("layernorm.x", on: backend), weight: f.weight("layernorm.weight", role: .vector, on: backend),
            bias: f.weight("layernorm.bias", role: .vector, on: backend), epsilon: Float(f.parameter("layernorm.epsilon")))
        try check(out, f, "layernorm.out")
    }

    @Test(arguments: ["softmax", "softmax_causal"])
    func softmax(_ name: String) throws {
        let f = try OpsFixture("norm")
        let out = try backend.softmax(f.tensor("\(name).x", on: backend), causal: f.integer("\(name).causal") == 1)
        try check(out, f, "\(name).out")
    }

    // MARK: Attention

    @Test(arguments: ["self_d64", "cross77_d64", "cross77_d40", "self_d24", "causal_d32"])
    func attention(_ name: String) throws {
        let f = try OpsFixture("attention")
        let out = try backend.attention(
            query: f.tensor("\(name).q", on: backend), key: f.tensor("\(name).k", on: backend),
            value: f.tensor("\(name).v", on: backend), heads: f.integer("\(name).heads"),
            scale: Float(f.parameter("\(name).scale")), causal: f.integer("\(name).causal") == 1)
        try check(out, f, "\(name).out")
    }

    // MARK: Elementwise

    @Test(arguments: [("gelu", Activation.gelu), ("quick_gelu", .quickGELU), ("silu", .silu)])
    func activation(_ name: String, _ kind: Activation) throws {
        let f = try OpsFixture("activation")
        try check(backend.activation(f.tensor("\(name).x", on: backend), kind), f, "\(name).out")
    }

    @Test func geglu() throws {
        let f = try OpsFixture("activation")
        try check(backend.geglu(f.tensor("geglu.x", on: backend)), f, "geglu.out")
    }

    @Test func affine() throws {
        let f = try OpsFixture("activation")
        let out = try backend.affine(f.tensor("affine.x", on: backend),
                                     scale: Float(f.parameter("affine.scale")), shift: Float(f.parameter("affine.shift")))
        try check(out, f, "affine.out")
    }

    @Test(arguments: ["broadcast_4d", "broadcast_scalar", "broadcast_same", "broadcast_rank1_first"])
    func binary(_ name: String) throws {
        let f = try OpsFixture("activation")
        let a = try f.tensor("\(name).a", on: backend)
        for op in [BinaryOp.add, .subtract, .multiply] {
            try check(backend.binary(a, f.tensor("\(name).b", on: backend), op), f, "\(name).\(op.rawValue)")
        }
        try check(backend.binary(a, f.tensor("\(name).b_div", on: backend), .divide), f, "\(name).divide")
    }

    // MARK: Linear algebra

    @Test(arguments: ["matmul_ta0_tb0", "matmul_ta0_tb1", "matmul_ta1_tb0", "matmul_ta1_tb1", "matmul_shared_b", "matmul_2d"])
    func matmul(_ name: String) throws {
        let f = try OpsFixture("matmul")
        let out = try backend.matmul(
            f.tensor("\(name).a", on: backend), f.tensor("\(name).b", on: backend),
            transposeA: f.integer("\(name).transpose_a") == 1, transposeB: f.integer("\(name).transpose_b") == 1,
            alpha: Float(f.parameter("\(name).alpha")))
        try check(out, f, "\(name).out")
    }

    @Test func linear() throws {
        let f = try OpsFixture("matmul")
        let x = try f.tensor("linear.x", on: backend)
        let weight = try f.weight("linear.weight", role: .linear, on: backend)
        let bias = try f.weight("linear.bias", role: .vector, on: backend)
        try check(backend.linear(x, weight: weight, bias: bias), f, "linear.out")
        try check(backend.linear(x, weight: weight, bias: bias, residual: f.tensor("linear.residual", on: backend)), f, "linear.out_residual")
        let plain = try f.weight("linear_nobias.weight", role: .linear, on: backend)
        try check(backend.linear(f.tensor("linear_nobias.x", on: backend), weight: plain, bias: nil), f, "linear_nobias.out")
    }

    // MARK: Shape and data movement

    @Test func concat() throws {
        let f = try OpsFixture("shapes")
        let parts = try ["a", "b", "c"].map { try f.tensor("concat_axis1.\($0)", on: backend) }
        try check(backend.concat(parts, axis: f.integer("concat_axis1.axis")), f, "concat_axis1.out")
        let last = try ["a", "b"].map { try f.tensor("concat_last.\($0)", on: backend) }
        try check(backend.concat(last, axis: f.integer("concat_last.axis")), f, "concat_last.out")
    }

    @Test func slice() throws {
        let f = try OpsFixture("shapes")
        let range = try f.integer("slice.start")..<f.integer("slice.end")
        try check(backend.slice(f.tensor("slice.x", on: backend), axis: f.integer("slice.axis"), range: range), f, "slice.out")
    }

    @Test(arguments: ["permute_0231", "permute_3102"])
    func permute(_ name: String) throws {
        let f = try OpsFixture("shapes")
        let dims = (f.file.metadata["\(name).dims"] ?? "").split(separator: ",").compactMap { Int($0) }
        try check(backend.permute(f.tensor("\(name).x", on: backend), dims), f, "\(name).out")
    }

    @Test func embedding() throws {
        let f = try OpsFixture("shapes")
        let idsView = try f.view("embedding.ids")
        #expect(idsView.dtype == .i32)
        let ids = (0..<idsView.count).map { Int32(idsView.float(at: $0)) }
        let table = try f.weight("embedding.table", role: .embedding, on: backend)
        try check(backend.embedding(table, ids: ids, outputDType: .f32), f, "embedding.out")
    }

    // MARK: Conversion

    /// Round trips through f16 and bf16 are bit-exact with torch `.half()` / `.bfloat16()`
    /// (ties to even, overflow to ±inf, subnormals), through `convert` and through `upload(as:)`.
    @Test(arguments: [(DType.f16, "roundtrip.f16"), (.bf16, "roundtrip.bf16")])
    func roundTrip(_ dtype: DType, _ expectedName: String) throws {
        let f = try OpsFixture("convert")
        let expected = try f.floats(expectedName).map(\.bitPattern)
        let converted = try backend.convert(f.tensor("roundtrip.x", on: backend), to: dtype)
        #expect(converted.dtype == dtype)
        #expect(try backend.download(converted).map(\.bitPattern) == expected)
        #expect(try backend.download(backend.convert(converted, to: .f32)).map(\.bitPattern) == expected)
        #expect(try backend.download(backend.upload(f.view("roundtrip.x"), as: dtype)).map(\.bitPattern) == expected)
    }
}
