import Foundation
import Testing
@testable import SSDTensor

/// Builds a safetensors file from a header text and data bytes (the header length is the JSON's own).
func safetensorsBytes(_ header: String, data: [UInt8] = []) -> [UInt8] {
    let json = Array(header.utf8)
    return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json + data
}

/// The error parsing `bytes` gives (nil when it parses).
func safetensorsError(_ bytes: [UInt8], file: String = "t.safetensors") -> SafetensorsError? {
    do {
        _ = try SafetensorsFile(bytes: bytes, path: file)
        return nil
    } catch let e as SafetensorsError {
        return e
    } catch {
        Issue.record("untyped error \(error)")
        return nil
    }
}

/// A fresh temporary directory, removed by the caller.
func safetensorsTemporaryDirectory() throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

func safetensorsHexBytes(_ lines: [String]) -> [UInt8] {
    let hex = Array(lines.joined().utf8)
    return stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16) ?? 0 }
}

struct SafetensorsReadWriteTests {
    /// Written by the Python `safetensors` 0.8.0 package (Scripts/requirements.txt pins it):
    /// ```python
    /// t = {'w.f32': torch.tensor([[1.0, -2.5, 3.25], [0.0, 1e-3, -7.0]]),
    ///      'b.f16': torch.tensor([0.5, -1.0, 65504.0], dtype=torch.float16),
    ///      'c.bf16': torch.tensor([[1.0, -0.1], [3.0e38, 2.0]], dtype=torch.bfloat16),
    ///      'i.i32': torch.tensor([-1, 7], dtype=torch.int32),
    ///      'j.i64': torch.tensor([2**40, -3], dtype=torch.int64),
    ///      'scalar': torch.tensor(4.0), 'empty': torch.zeros(0, 3, dtype=torch.float16)}
    /// safetensors.torch.save(t, metadata={'note': 'tab\there "q" \u00e9\u2603\x01'}).hex()
    /// ```
    static let pythonFile = safetensorsHexBytes([
        "e0010000000000007b225f5f6d657461646174615f5f223a7b226e6f7465223a227461625c7468657265205c22715c22",
        "20c3a9e298835c7530303031227d2c226a2e693634223a7b226474797065223a22493634222c227368617065223a5b32",
        "5d2c22646174615f6f666673657473223a5b302c31365d7d2c227363616c6172223a7b226474797065223a2246333222",
        "2c227368617065223a5b5d2c22646174615f6f666673657473223a5b31362c32305d7d2c22772e663332223a7b226474",
        "797065223a22463332222c227368617065223a5b322c335d2c22646174615f6f666673657473223a5b32302c34345d7d",
        "2c22692e693332223a7b226474797065223a22493332222c227368617065223a5b325d2c22646174615f6f6666736574",
        "73223a5b34342c35325d7d2c22632e62663136223a7b226474797065223a2242463136222c227368617065223a5b322c",
        "325d2c22646174615f6f666673657473223a5b35322c36305d7d2c22622e663136223a7b226474797065223a22463136",
        "222c227368617065223a5b335d2c22646174615f6f666673657473223a5b36302c36365d7d2c22656d707479223a7b22",
        "6474797065223a22463136222c227368617065223a5b302c335d2c22646174615f6f666673657473223a5b36362c3636",
        "5d7d7d20202020200000000000010000fdffffffffffffff000080400000803f000020c000005040000000006f12833a",
        "0000e0c0ffffffff07000000803fcdbd627f0040003800bcff7b",
    ])

    @Test func readsAFileWrittenByPython() throws {
        let file = try SafetensorsFile(bytes: Self.pythonFile, path: "python.safetensors")
        #expect(file.names == ["b.f16", "c.bf16", "empty", "i.i32", "j.i64", "scalar", "w.f32"])
        #expect(file.metadata == ["note": "tab\there \"q\" \u{e9}\u{2603}\u{1}"])
        #expect(file.entries["w.f32"] == SafetensorsEntry(name: "w.f32", dtype: .f32, shape: [2, 3], dataRange: 20..<44))
        #expect(try file.view("w.f32").floats() == [1.0, -2.5, 3.25, 0.0, 1e-3, -7.0])
        #expect(try file.view("b.f16").floats() == [0.5, -1.0, 65504.0])
        #expect(try file.view("c.bf16").floats() == [1.0, HalfConversion.floatFromBF16(0xBDCD), HalfConversion.floatFromBF16(0x7F62), 2.0])
        let i64 = try file.view("j.i64")
        #expect(i64.pointer.loadUnaligned(as: Int64.self) == 1 << 40)
        #expect(i64.pointer.loadUnaligned(fromByteOffset: 8, as: Int64.self) == -3)
        #expect(try file.view("i.i32").floats() == [-1, 7])
        #expect(try file.view("scalar").shape == [])
        #expect(try file.view("scalar").floats() == [4])
        #expect(try file.view("empty").shape == [0, 3])
        #expect(try file.view("empty").count == 0)
    }

    /// Given the same tensors and (single-key) metadata, our writer's bytes equal Python's.
    @Test func writerReproducesPythonBytes() throws {
        let file = try SafetensorsFile(bytes: Self.pythonFile)
        let bytes = try SafetensorsWriter.serialize(try file.views().reversed(), metadata: file.metadata)
        #expect(bytes == Self.pythonFile)
    }

    /// Every safetensors file committed under Tests/Fixtures (written by Python's `safetensors` for
    /// other areas) reads through the memory map, and our writer gives back the very same bytes.
    @Test func committedFixturesReadAndRewriteIdentically() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
        let paths = (FileManager.default.enumerator(atPath: root.path)?.allObjects as? [String] ?? [])
            .filter { $0.hasSuffix(".safetensors") }.sorted()
        for relative in paths {
            let path = root.path + "/" + relative
            let file = try SafetensorsFile(path: path)
            #expect(!file.names.isEmpty, "\(relative)")
            // Python orders several metadata keys at random, and writes `{}` for explicitly empty metadata.
            guard file.metadata.count == 1 else { continue }
            let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(try SafetensorsWriter.serialize(file.views(), metadata: file.metadata) == original, "\(relative)")
        }
    }

    @Test func roundTripsThroughADiskFile() throws {
        let dir = try safetensorsTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/weights.safetensors"
        let a = HostBuffer.view(of: (0..<24).map(Float.init), shape: [2, 3, 4], name: "a")
        let halfBuffer = HostBuffer(byteCount: 6)
        for (i, v) in [Float(1), -2, 0.5].enumerated() {
            halfBuffer.pointer.storeBytes(of: HalfConversion.f16FromFloat(v), toByteOffset: 2 * i, as: UInt16.self)
        }
        let h = halfBuffer.view(name: "layer.0/h", shape: [3], dtype: .f16)
        try SafetensorsWriter.write([a, h], metadata: ["format": "pt", "k": "v"], to: path)

        var view: HostTensorView?
        do {
            let file = try SafetensorsFile(path: path)
            #expect(file.names == ["a", "layer.0/h"])
            #expect(file.metadata == ["format": "pt", "k": "v"])
            #expect(file.headerLength % 8 == 0)
            #expect(file.fileSize == 8 + file.headerLength + 96 + 6)
            view = try file.view("a")
            #expect(try file.view("layer.0/h").floats() == [1, -2, 0.5])
            #expect(throws: SafetensorsError.tensorNotFound(file: path, tensor: "b")) { try file.view("b") }
        }
        // The view keeps the mapping alive after the file object is gone, even when the path is replaced.
        try SafetensorsWriter.write([h], to: path)
        #expect(view?.floats() == (0..<24).map(Float.init))
        #expect(try SafetensorsFile(path: path).names == ["layer.0/h"])
        // No temporary files are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["weights.safetensors"])
    }

    @Test func emptyFileWithNoTensorsIsValid() throws {
        let file = try SafetensorsFile(bytes: try SafetensorsWriter.serialize([]))
        #expect(file.names.isEmpty)
        #expect(file.metadata.isEmpty)
        // Whitespace around the JSON and a null __metadata__ are accepted.
        let spaced = try SafetensorsFile(bytes: safetensorsBytes(" \n{\"__metadata__\":null}\t "))
        #expect(spaced.metadata.isEmpty)
    }

    /// Entries may be listed in any order in the JSON; only their offsets have to tile the data.
    @Test func headerOrderDoesNotMatter() throws {
        let header = #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#
        let file = try SafetensorsFile(bytes: safetensorsBytes(header, data: [1, 0, 0, 0, 0, 0, 0x80, 0x3F]))
        #expect(try file.view("a").floats() == [1])
        #expect(try file.view("b").floats() == [1])
    }

    @Test func writerRejectsBadInput() throws {
        let a = HostBuffer.view(of: [1], shape: [1], name: "a")
        #expect(throws: SafetensorsError.invalidTensor(file: "<memory>", tensor: "a", reason: "the name is used twice")) {
            try SafetensorsWriter.serialize([a, a])
        }
        let reserved = HostBuffer.view(of: [1], shape: [1], name: "__metadata__")
        #expect(throws: SafetensorsError.invalidTensor(file: "<memory>", tensor: "__metadata__", reason: "the name is reserved")) {
            try SafetensorsWriter.serialize([reserved])
        }
        let dir = try safetensorsTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = dir + "/no/such/dir/x.safetensors"
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([a], to: missing) }
        // Writing over a directory fails at the rename and leaves nothing behind.
        try FileManager.default.createDirectory(atPath: dir + "/taken", withIntermediateDirectories: false)
        #expect(throws: SafetensorsError.self) { try SafetensorsWriter.write([a], to: dir + "/taken") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["taken"])
    }
}

/// One test per malformed-file case; each asserts the exact typed error.
struct SafetensorsMalformedTests {
    let f = "t.safetensors"
    func entry(_ name: String, _ dtype: String = "F32", shape: String = "[1]", offsets: String) -> String {
        #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    @Test func emptyFile() throws {
        #expect(safetensorsError([]) == .fileTooSmall(file: f, byteCount: 0))
        let dir = try safetensorsTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/empty.safetensors"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        #expect(throws: SafetensorsError.fileTooSmall(file: path, byteCount: 0)) { try SafetensorsFile(path: path) }
    }

    @Test func shorterThanTheHeaderLength() {
        #expect(safetensorsError([8, 0, 0, 0, 0]) == .fileTooSmall(file: f, byteCount: 5))
    }

    @Test func missingOrUnreadableFile() throws {
        let dir = try safetensorsTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: SafetensorsError.cannotOpen(file: dir + "/none", reason: "No such file or directory")) {
            try SafetensorsFile(path: dir + "/none")
        }
        #expect(throws: SafetensorsError.cannotOpen(file: dir, reason: "not a regular file")) { try SafetensorsFile(path: dir) }
    }

    @Test func headerLengthTooLarge() {
        #expect(safetensorsError([0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, 0x7B, 0x7D]) == .headerTooLarge(file: f, headerLength: 100_000_001))
        #expect(safetensorsError([UInt8](repeating: 0xFF, count: 16)) == .headerTooLarge(file: f, headerLength: .max))
    }

    @Test func headerLengthPastTheEnd() {
        #expect(safetensorsError([100, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)) == .headerPastEnd(file: f, headerLength: 100, fileSize: 10))
    }

    @Test func truncatedHeader() {
        let whole = safetensorsBytes("{" + entry("a", offsets: "[0,4]") + "}", data: [0, 0, 0, 0])
        #expect(safetensorsError(Array(whole.prefix(30))) == .headerPastEnd(file: f, headerLength: UInt64(whole.count - 12), fileSize: 30))
        // A header whose declared length cuts the JSON short.
        #expect(safetensorsError(safetensorsBytes(#"{"a":{"dtype""#)) == .malformedHeader(file: f, offset: 13, reason: "expected ':' after an object key"))
        #expect(safetensorsError(safetensorsBytes("")) == .malformedHeader(file: f, offset: 0, reason: "unexpected end of input"))
    }

    @Test func malformedJSON() {
        let cases: [(String, Int, String)] = [
            (#"{"a":}"#, 5, "unexpected character"),
            (#"{"a":1,}"#, 7, "expected a string key"),
            (#"{'a':1}"#, 1, "expected a string key"),
            (#"{} x"#, 3, "unexpected data after the JSON value"),
            (#"{"a":tru}"#, 5, "invalid literal"),
            (#"{"a":01}"#, 6, "expected ',' or '}' in an object"),
            (#"{"a":1.}"#, 7, "invalid number: no digits after '.'"),
            (#"{"a":"\x"}"#, 8, "invalid escape character"),
            (#"{"a":"\ud800"}"#, 12, "lone leading surrogate in a \\u escape"),
            ("{\"a\":\"\t\"}", 6, "control character in a string"),
            (#"{"a":"x"#, 7, "unterminated string"),
            (String(repeating: "[", count: 100), 64, "nesting deeper than 64 levels"),
        ]
        for (header, offset, reason) in cases {
            #expect(safetensorsError(safetensorsBytes(header)) == .malformedHeader(file: f, offset: offset, reason: reason), "\(header)")
        }
        #expect(safetensorsError(safetensorsBytes("[]")) == .malformedHeader(file: f, offset: 0, reason: "header is an array, not an object"))
    }

    @Test func invalidUTF8() {
        let bytes: [UInt8] = [10, 0, 0, 0, 0, 0, 0, 0] + Array(#"{"a":""#.utf8) + [0xC3, 0x28, 0x22, 0x7D]
        #expect(safetensorsError(bytes) == .malformedHeader(file: f, offset: 6, reason: "header is not valid UTF-8"))
    }

    @Test func unknownDType() {
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", "F64", offsets: "[0,8]") + "}", data: Array(repeating: 0, count: 8)))
            == .unknownDType(file: f, tensor: "w", dtype: "F64"))
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":32,"shape":[],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
            == .invalidEntry(file: f, tensor: "w", reason: "'dtype' is a number, not a string"))
    }

    @Test func offsetsOutOfRange() {
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", shape: "[2]", offsets: "[0,8]") + "}", data: [0, 0, 0, 0]))
            == .offsetsOutOfRange(file: f, tensor: "w", begin: 0, end: 8, dataSize: 4))
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", offsets: "[0,18446744073709551616]") + "}"))
            == .invalidEntry(file: f, tensor: "w", reason: "'data_offsets' [0, 18446744073709551616] are not non-negative integers"))
    }

    @Test func overlappingOffsets() {
        let header = "{" + entry("a", shape: "[2]", offsets: "[0,8]") + "," + entry("b", shape: "[2]", offsets: "[4,12]") + "}"
        #expect(safetensorsError(safetensorsBytes(header, data: Array(repeating: 0, count: 12)))
            == .offsetsNotContiguous(file: f, tensor: "b", begin: 4, end: 12, expectedBegin: 8))
        // The same range twice.
        let same = "{" + entry("a", offsets: "[0,4]") + "," + entry("b", offsets: "[0,4]") + "}"
        #expect(safetensorsError(safetensorsBytes(same, data: [0, 0, 0, 0]))
            == .offsetsNotContiguous(file: f, tensor: "b", begin: 0, end: 4, expectedBegin: 4))
    }

    @Test func gapsAndUnorderedOffsets() {
        let gap = "{" + entry("a", offsets: "[0,4]") + "," + entry("b", offsets: "[8,12]") + "}"
        #expect(safetensorsError(safetensorsBytes(gap, data: Array(repeating: 0, count: 12)))
            == .offsetsNotContiguous(file: f, tensor: "b", begin: 8, end: 12, expectedBegin: 4))
        let late = "{" + entry("a", offsets: "[4,8]") + "}"
        #expect(safetensorsError(safetensorsBytes(late, data: Array(repeating: 0, count: 8)))
            == .offsetsNotContiguous(file: f, tensor: "a", begin: 4, end: 8, expectedBegin: 0))
        let reversed = "{" + entry("a", shape: "[0]", offsets: "[8,4]") + "}"
        #expect(safetensorsError(safetensorsBytes(reversed, data: Array(repeating: 0, count: 8)))
            == .offsetsNotContiguous(file: f, tensor: "a", begin: 8, end: 4, expectedBegin: 8))
    }

    @Test func sizeNotMatchingTheByteRange() {
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", shape: "[3]", offsets: "[0,8]") + "}", data: Array(repeating: 0, count: 8)))
            == .sizeMismatch(file: f, tensor: "w", dtype: .f32, shape: [3], byteCount: 8))
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", "BF16", shape: "[2,2]", offsets: "[0,4]") + "}", data: [0, 0, 0, 0]))
            == .sizeMismatch(file: f, tensor: "w", dtype: .bf16, shape: [2, 2], byteCount: 4))
        // Element count × size overflowing Int.
        let huge = "[4611686018427387904,4]"
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", shape: huge, offsets: "[0,0]") + "}"))
            == .sizeMismatch(file: f, tensor: "w", dtype: .f32, shape: [4_611_686_018_427_387_904, 4], byteCount: 0))
    }

    @Test func badShapeDimensions() {
        for (dim, shown) in [("-1", "-1"), ("1.5", "1.5"), ("1e2", "1e2"), ("\"2\"", "\"2\""), ("null", "null"), ("99999999999999999999", "99999999999999999999")] {
            #expect(safetensorsError(safetensorsBytes("{" + entry("w", shape: "[\(dim)]", offsets: "[0,4]") + "}", data: [0, 0, 0, 0]))
                == .invalidEntry(file: f, tensor: "w", reason: "shape dimension \(shown) is not a non-negative integer"), "\(dim)")
        }
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":"F32","shape":4,"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
            == .invalidEntry(file: f, tensor: "w", reason: "'shape' is a number, not an array"))
    }

    @Test func badEntries() {
        #expect(safetensorsError(safetensorsBytes(#"{"w":[1]}"#)) == .invalidEntry(file: f, tensor: "w", reason: "entry is an array, not an object"))
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"shape":[],"data_offsets":[0,4]}}"#)) == .invalidEntry(file: f, tensor: "w", reason: "missing 'dtype'"))
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#)) == .invalidEntry(file: f, tensor: "w", reason: "missing 'shape'"))
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[]}}"#)) == .invalidEntry(file: f, tensor: "w", reason: "missing 'data_offsets'"))
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", offsets: "[0,4,4]") + "}", data: [0, 0, 0, 0]))
            == .invalidEntry(file: f, tensor: "w", reason: "'data_offsets' is not an array of two integers"))
        // Unknown fields are ignored, as the Rust crate (serde) does.
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":{}}}"#, data: [0, 0, 0, 0])) == nil)
    }

    @Test func duplicateNames() {
        let header = "{" + entry("w", offsets: "[0,4]") + "," + entry("w", offsets: "[4,8]") + "}"
        #expect(safetensorsError(safetensorsBytes(header, data: Array(repeating: 0, count: 8))) == .duplicateName(file: f, tensor: "w"))
        // Names equal under Unicode canonical equivalence (é precomposed and decomposed) are ambiguous too.
        let unicode = "{" + entry("\u{e9}", offsets: "[0,4]") + "," + entry("e\u{301}", offsets: "[4,8]") + "}"
        #expect(safetensorsError(safetensorsBytes(unicode, data: Array(repeating: 0, count: 8))) == .duplicateName(file: f, tensor: "e\u{301}"))
        // A key repeated inside an entry, and inside __metadata__.
        #expect(safetensorsError(safetensorsBytes(#"{"w":{"dtype":"F32","dtype":"F16","shape":[],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
            == .invalidEntry(file: f, tensor: "w", reason: "key 'dtype' appears twice (header byte 20)"))
        #expect(safetensorsError(safetensorsBytes(#"{"__metadata__":{"a":"1","a":"2"}}"#)) == .invalidMetadata(file: f, reason: "key 'a' appears twice"))
        #expect(safetensorsError(safetensorsBytes(#"{"__metadata__":{},"__metadata__":{}}"#)) == .invalidMetadata(file: f, reason: "__metadata__ appears twice"))
    }

    @Test func badMetadata() {
        #expect(safetensorsError(safetensorsBytes(#"{"__metadata__":{"a":1}}"#)) == .invalidMetadata(file: f, reason: "value of 'a' is a number, not a string"))
        #expect(safetensorsError(safetensorsBytes(#"{"__metadata__":["a"]}"#)) == .invalidMetadata(file: f, reason: "it is an array, not an object"))
    }

    @Test func trailingBytes() {
        #expect(safetensorsError(safetensorsBytes("{" + entry("w", offsets: "[0,4]") + "}", data: Array(repeating: 0, count: 6)))
            == .trailingBytes(file: f, dataEnd: 4, dataSize: 6))
        #expect(safetensorsError(safetensorsBytes("{}", data: [0])) == .trailingBytes(file: f, dataEnd: 0, dataSize: 1))
    }

    @Test func errorsNameTheFileAndTensor() {
        let e = SafetensorsError.sizeMismatch(file: "unet.safetensors", tensor: "conv_in.weight", dtype: .f16, shape: [320, 4, 3, 3], byteCount: 8)
        #expect(e.description.contains("unet.safetensors"))
        #expect(e.description.contains("conv_in.weight"))
    }
}
