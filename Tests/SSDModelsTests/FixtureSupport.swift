#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor
@testable import SSDModels

/// Fixture folders written by `Scripts/make_fixtures.py models`.
enum Fixtures {
    static let root: String = {
        var url = URL(filePath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        return url.appending(path: "Fixtures").path
    }()

    static func models(_ name: String) -> String { root + "/models/" + name }
    static let tinyPipeline = root + "/pipeline/tiny-ssd1b"

    /// The `io.safetensors` of a case.
    static func io(_ name: String) throws -> SafetensorsFile { try SafetensorsFile(path: models(name) + "/io.safetensors") }

    /// A fresh empty temporary folder.
    static func temporaryDirectory(_ label: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "ssdmodels-\(label)-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// ‖a − b‖₂ / ‖b‖₂ over the whole tensor (DESIGN.md §7).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var diff = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        diff += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    return (diff / max(norm, 1e-30)).squareRoot()
}

extension SafetensorsFile {
    func floats(_ name: String) throws -> [Float] { try view(name).floats() }
    func shape(_ name: String) -> [Int] { entries[name]?.shape ?? [] }
    func upload(_ name: String, to backend: any ComputeBackend) throws -> Tensor { try backend.upload(view(name), as: .f32) }
}
