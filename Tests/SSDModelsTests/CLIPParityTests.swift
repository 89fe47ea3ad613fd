import SSDTensor
import Testing
@testable import SSDModels

/// Reference backend vs transformers on tiny random CLIP text encoders (relative error ≤ 1e-4).
@Suite struct CLIPParityTests {
    @Test(arguments: ["clip_l", "clip_g"])
    func matchesTransformers(_ name: String) throws {
        let backend = ReferenceBackend()
        let model = try CLIPTextModel.load(componentDirectory: Fixtures.models(name), backend: backend)
        #expect(model.hasProjection == (name == "clip_g"))
        let io = try Fixtures.io(name)
        let flat = try io.floats("input_ids").map { Int32($0) }
        let ids = stride(from: 0, to: flat.count, by: 77).map { Array(flat[$0..<($0 + 77)]) }
        for (index, key) in [(-2, "hidden_states_m2"), (-1, "hidden_states_m1"), (0, "hidden_states_0"), (2, "hidden_states_m2")] {
            let (hidden, pooled) = try model.encode(inputIDs: ids, hiddenStateIndex: index, pooled: index == -2)
            #expect(hidden.shape == io.shape(key))
            let error = relativeError(try backend.download(hidden), try io.floats(key))
            #expect(error <= 1e-4, "\(name) hidden state \(index): \(error)")
            if let pooled {
                #expect(pooled.shape == io.shape("pooled"))
                let e = relativeError(try backend.download(pooled), try io.floats("pooled"))
                #expect(e <= 1e-4, "\(name) pooled: \(e)")
            } else {
                #expect(index != -2)
            }
        }
    }

    @Test func rejectsBadArguments() throws {
        let model = try CLIPTextModel.load(componentDirectory: Fixtures.models("clip_l"), backend: ReferenceBackend())
        #expect(throws: ModelError.self) { try model.encode(inputIDs: [[1, 2]], hiddenStateIndex: -5, pooled: false) }
        #expect(throws: ModelError.self) { try model.encode(inputIDs: [[1, 2], [1]], pooled: false) }
        #expect(throws: ModelError.self) { try model.encode(inputIDs: [[1, 5000]], pooled: false) }
    }
}
