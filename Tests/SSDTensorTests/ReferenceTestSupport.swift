import Testing
@testable import SSDTensor

/// Deterministic pseudo-random values in [-1, 1).
func testValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

/// ‖a − b‖₂ / ‖b‖₂ over the whole tensor (DESIGN.md §7); infinite when the sizes differ.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else { return .infinity }
    var diff = 0.0, norm = 0.0
    for (x, y) in zip(a, b) {
        diff += (Double(x) - Double(y)) * (Double(x) - Double(y))
        norm += Double(y) * Double(y)
    }
    return (diff / max(norm, 1e-300)).squareRoot()
}

/// One file of Tests/Fixtures/ops (written by Scripts/fixtures/ops.py): tensors "<case>.<role>",
/// parameters in the metadata as "<case>.<param>".
struct OpsFixture {
    let file: SafetensorsFile

    init(_ group: String) throws {
        // …/Tests/SSDTensorTests/ThisFile.swift → …/Tests/Fixtures/ops/<group>.safetensors
        let tests = String(#filePath).split(separator: "/", omittingEmptySubsequences: false).dropLast(2).joined(separator: "/")
        file = try SafetensorsFile(path: tests + "/Fixtures/ops/\(group).safetensors")
    }

    func has(_ name: String) -> Bool { file.entries[name] != nil }

    func view(_ name: String) throws -> HostTensorView { try file.view(name) }

    func floats(_ name: String) throws -> [Float] { try file.view(name).floats() }

    func shape(_ name: String) throws -> [Int] { try file.view(name).shape }

    /// An activation uploaded to `backend` as f32.
    func tensor(_ name: String, on backend: any ComputeBackend) throws -> Tensor {
        try backend.upload(file.view(name), as: .f32)
    }

    /// A weight prepared by `backend` for `role`.
    func weight(_ name: String, role: WeightRole, on backend: any ComputeBackend) throws -> Tensor {
        try backend.prepareWeight(file.view(name), role: role, activationDType: .f32)
    }

    func parameter(_ name: String) throws -> Double {
        guard let text = file.metadata[name], let value = Double(text) else {
            throw TensorError.invalidArgument(op: "fixture", message: "\(file.path): no numeric metadata \(name)")
        }
        return value
    }

    func integer(_ name: String) throws -> Int { Int(try parameter(name)) }
}
