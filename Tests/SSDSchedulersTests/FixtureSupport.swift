import Foundation
import SSDSchedulers

/// Loads `Tests/Fixtures/schedulers/*.json` relative to this file (no resource bundles).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/schedulers")

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureError.malformed(name)
        }
        return object
    }

    /// Little-endian float32 values from base64.
    static func floats(_ base64: Any?) throws -> [Float] {
        guard let text = base64 as? String, let data = Data(base64Encoded: text) else { throw FixtureError.malformed("base64") }
        return data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    nonisolated(unsafe) static let steps: [String: Any]? = try? json("steps.json")
    nonisolated(unsafe) static let randn: [String: Any]? = try? json("randn.json")

    static var cases: [[String: Any]] { steps?["cases"] as? [[String: Any]] ?? [] }
    static var caseNames: [String] { cases.compactMap { $0["name"] as? String } }

    /// The fixture's base `scheduler_config.json` (SDXL's).
    static func baseConfiguration() throws -> SchedulerConfiguration {
        guard let config = steps?["base_config"] else { throw FixtureError.malformed("base_config") }
        return try configuration(config)
    }

    static func configuration(_ object: Any) throws -> SchedulerConfiguration {
        let data = try JSONSerialization.data(withJSONObject: object)
        return try SchedulerConfiguration(json: [UInt8](data))
    }
}

enum FixtureError: Error { case malformed(String) }

/// ‖a − b‖₂ / ‖b‖₂ (DESIGN.md §7).
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var difference = 0.0
    var norm = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        difference += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    return norm == 0 ? difference.squareRoot() : (difference / norm).squareRoot()
}

/// The fixture's stand-in for the UNet: `k1(t)·input + k2(t)·base` (Scripts/fixtures/schedulers.py).
func fakeModel(_ input: [Float], timestep: Double, base: [Float]) -> [Float] {
    let s = timestep / 1000.0
    let k1 = Float(0.2 + 0.6 * s)
    let k2 = Float(0.5 - 0.3 * s * s)
    return (0..<input.count).map { i -> Float in
        let a = k1 * input[i]
        let b = k2 * base[i]
        return a + b
    }
}
