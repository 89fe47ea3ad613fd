import Foundation
import Testing
@testable import SSDTensor

/// Damages a valid file thousands of times (seeded, so every run is the same) and checks that
/// parsing only ever fails with a `SafetensorsError`, and that whatever still parses gives views
/// that lie inside the file and fill their byte ranges exactly.
struct SafetensorsMutationTests {
    static func validFile() throws -> [UInt8] {
        func view(_ name: String, _ dtype: DType, _ shape: [Int]) -> HostTensorView {
            let n = shape.reduce(1, *) * dtype.byteSize
            let buffer = HostBuffer(byteCount: n)
            for i in 0..<n { buffer.pointer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 37 &+ 11), toByteOffset: i, as: UInt8.self) }
            return buffer.view(name: name, shape: shape, dtype: dtype)
        }
        return try SafetensorsWriter.serialize(
            [view("conv.weight", .f32, [2, 3]), view("conv.bias", .f16, [3]), view("emb", .bf16, [2, 2]),
             view("ids", .i32, [4]), view("pos", .i64, [2]), view("s", .f32, []), view("nothing", .f16, [0, 2])],
            metadata: ["format": "pt", "note": "mutation"])
    }

    /// Checks one parse; returns true when it succeeded.
    static func check(_ parse: () throws -> SafetensorsFile, _ what: String) -> Bool {
        let file: SafetensorsFile
        do {
            file = try parse()
        } catch is SafetensorsError {
            return false
        } catch {
            Issue.record("\(what): untyped error \(error)")
            return false
        }
        let base = file.storage.base
        let end = base + file.storage.byteCount
        let dataStart = 8 + file.headerLength
        for name in file.names {
            guard let entry = file.entries[name], let view = try? file.view(name) else {
                Issue.record("\(what): entry \(name) cannot be viewed")
                continue
            }
            let ok = view.pointer >= base + dataStart && view.pointer + view.byteCount <= end
                && view.byteCount == entry.dataRange.count && dataStart + entry.dataRange.upperBound <= file.fileSize
            if !ok { Issue.record("\(what): view \(name) \(entry.dataRange) lies outside the file") }
            _ = view.floats()
        }
        return true
    }

    @Test func randomDamageGivesOnlyTypedErrors() throws {
        let valid = try Self.validFile()
        let headerEnd = 8 + Int(valid[0]) + Int(valid[1]) << 8
        let structural = Array(#"{}[]",:0123456789-.eE "#.utf8)
        var rng = SafetensorsTestRNG(seed: 20_240_601)
        var parsed = 0, failed = 0
        for iteration in 0..<4000 {
            var bytes = valid
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<40:  // flip bits in 1–4 bytes, mostly inside the header
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let i = Bool.random(using: &rng) || Bool.random(using: &rng)
                        ? Int.random(in: 0..<headerEnd, using: &rng) : Int.random(in: 0..<bytes.count, using: &rng)
                    bytes[i] ^= UInt8.random(in: 1...255, using: &rng)
                }
            case 40..<60:  // truncate
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
            case 60..<80:  // put a JSON-significant character somewhere in the header
                for _ in 0..<Int.random(in: 1...2, using: &rng) {
                    bytes[Int.random(in: 8..<headerEnd, using: &rng)] = structural.randomElement(using: &rng) ?? 0x20
                }
            case 80..<90:  // a different header length
                let n = Int.random(in: 0..<4, using: &rng) == 0
                    ? UInt64.random(in: 0...UInt64.max, using: &rng) : UInt64(headerEnd - 8 + Int.random(in: -16...16, using: &rng))
                for k in 0..<8 { bytes[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
            default:  // delete a header byte, keeping the length consistent so the JSON gets parsed
                bytes.remove(at: Int.random(in: 8..<headerEnd, using: &rng))
                let n = UInt64(headerEnd - 9)
                for k in 0..<8 { bytes[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
            }
            if Self.check({ try SafetensorsFile(bytes: bytes, path: "mutant-\(iteration)") }, "mutant \(iteration)") {
                parsed += 1
            } else {
                failed += 1
            }
        }
        // Both outcomes occur: damage to tensor bytes is harmless, damage to the header is caught.
        #expect(parsed > 100)
        #expect(failed > 2000)
    }

    /// The same through real memory-mapped files (fewer: each one touches the disk).
    @Test func randomDamageThroughMappedFiles() throws {
        let valid = try Self.validFile()
        let dir = try safetensorsTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SafetensorsTestRNG(seed: 77)
        for iteration in 0..<200 {
            var bytes = valid
            if Bool.random(using: &rng) {
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
            } else {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            }
            let path = dir + "/m\(iteration).safetensors"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            _ = Self.check({ try SafetensorsFile(path: path) }, path)
        }
        #expect(Self.check({ try SafetensorsFile(bytes: valid) }, "the valid file"))
    }
}
