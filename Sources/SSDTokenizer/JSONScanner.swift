/// A small JSON reader over UTF-8 bytes (RFC 8259). Foundation's JSONDecoder takes a fifth of a second for
/// CLIP's vocab.json; reading the vocabulary and merges straight into dictionaries here is ten times faster.
struct JSONScanner {
    struct Failure: Error {
        let message: String
        let offset: Int
        var description: String { "\(message) at byte \(offset)" }
    }

    private let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ message: String) -> Failure { Failure(message: message, offset: position) }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == byte else { throw fail("expected \(what)") }
        position += 1
    }

    /// Whether the next byte (after whitespace) is `byte`; consumes it if so.
    private mutating func take(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    mutating func expectEnd() throws(Failure) {
        skipWhitespace()
        guard position == bytes.count else { throw fail("unexpected data after the JSON value") }
    }

    /// Calls `body` for each key of an object, positioned at its value; `body` must consume the value.
    mutating func forEachMember(_ body: (inout JSONScanner, String) throws(Failure) -> Void) throws(Failure) {
        try expect(0x7B, "an object")
        if take(0x7D) { return }
        repeat {
            skipWhitespace()
            let key = try string()
            try expect(0x3A, "':'")
            try body(&self, key)
        } while take(0x2C)
        try expect(0x7D, "',' or '}'")
    }

    /// Calls `body` for each element of an array, positioned at the element; `body` must consume it.
    mutating func forEachElement(_ body: (inout JSONScanner) throws(Failure) -> Void) throws(Failure) {
        try expect(0x5B, "an array")
        if take(0x5D) { return }
        repeat {
            try body(&self)
        } while take(0x2C)
        try expect(0x5D, "',' or ']'")
    }

    mutating func string() throws(Failure) -> String {
        try expect(0x22, "a string")
        let start = position
        while position < bytes.count {
            let byte = bytes[position]
            if byte == 0x22 {
                defer { position += 1 }
                return try validated(bytes[start..<position])
            }
            if byte == 0x5C { break }
            guard byte >= 0x20 else { throw fail("control character in a string") }
            position += 1
        }
        // With escapes: collect bytes.
        var collected = Array(bytes[start..<position])
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            switch byte {
            case 0x22:
                return try validated(collected[...])
            case 0x5C:
                guard position < bytes.count else { throw fail("unterminated escape") }
                let escaped = bytes[position]
                position += 1
                switch escaped {
                case 0x22, 0x5C, 0x2F: collected.append(escaped)
                case 0x62: collected.append(0x08)
                case 0x66: collected.append(0x0C)
                case 0x6E: collected.append(0x0A)
                case 0x72: collected.append(0x0D)
                case 0x74: collected.append(0x09)
                case 0x75:
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        guard position + 1 < bytes.count, bytes[position] == 0x5C, bytes[position + 1] == 0x75 else {
                            throw fail("unpaired surrogate escape")
                        }
                        position += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low < 0xE000 else { throw fail("unpaired surrogate escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar < 0xE000 {
                        throw fail("unpaired surrogate escape")
                    }
                    appendUTF8(scalar, to: &collected)
                default:
                    throw fail("invalid escape")
                }
            default:
                guard byte >= 0x20 else { throw fail("control character in a string") }
                collected.append(byte)
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard position + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for byte in bytes[position..<(position + 4)] {
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x37)
            case 0x61...0x66: digit = UInt32(byte - 0x57)
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | digit
        }
        position += 4
        return value
    }

    private func validated(_ slice: ArraySlice<UInt8>) throws(Failure) -> String {
        guard let text = String(validating: slice, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
        return text
    }

    mutating func number() throws(Failure) -> Double {
        skipWhitespace()
        let start = position
        if position < bytes.count && bytes[position] == 0x2D { position += 1 }
        while position < bytes.count {
            switch bytes[position] {
            case 0x30...0x39, 0x2E, 0x65, 0x45, 0x2B, 0x2D: position += 1
            default:
                return try parsed(start)
            }
        }
        return try parsed(start)
    }

    private func parsed(_ start: Int) throws(Failure) -> Double {
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        guard !text.isEmpty, let value = Double(text), value.isFinite else { throw Failure(message: "invalid number", offset: start) }
        return value
    }

    /// A non-negative integer written without fraction or exponent (vocabulary ids), or nil for anything else.
    mutating func integer() throws(Failure) -> Int? {
        skipWhitespace()
        var value = 0
        var digits = 0
        while position < bytes.count, bytes[position] >= 0x30, bytes[position] <= 0x39, digits < 18 {
            value = value * 10 + Int(bytes[position] - 0x30)
            position += 1
            digits += 1
        }
        if digits > 0, position < bytes.count, [0x2C, 0x7D, 0x5D, 0x20, 0x0A, 0x0D, 0x09].contains(bytes[position]) {
            return value
        }
        return nil
    }

    private mutating func literal(_ text: StaticString) throws(Failure) {
        let count = text.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw fail("invalid literal") }
        let matches = text.withUTF8Buffer { buffer in bytes[position..<(position + count)].elementsEqual(buffer) }
        guard matches else { throw fail("invalid literal") }
        position += count
    }

    mutating func value() throws(Failure) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end of data") }
        switch bytes[position] {
        case 0x7B:
            var object: [String: JSONValue] = [:]
            try forEachMember { (scanner, key) throws(Failure) in object[key] = try scanner.value() }
            return .object(object)
        case 0x5B:
            var array: [JSONValue] = []
            try forEachElement { (scanner) throws(Failure) in array.append(try scanner.value()) }
            return .array(array)
        case 0x22: return .string(try string())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6E: try literal("null"); return .null
        default: return .number(try number())
        }
    }
}

/// A JSON value of unknown shape (tokenizer_config.json and special_tokens_map.json vary between versions).
enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}
