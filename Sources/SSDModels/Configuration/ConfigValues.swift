#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A config value written either as one value or as a list (diffusers accepts both for many
/// fields, e.g. `attention_head_dim: 8` or `[5, 10, 20]`).
public enum OneOrMany<Element: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    /// A single value (applies to every block).
    case one(Element)
    /// One value per block.
    case many([Element])

    public init(from decoder: any Decoder) throws {
        // A list is tried first so that nested forms (`[[1, 1], [2, 2]]`) keep their nesting.
        if let list = try? [Element](from: decoder) {
            self = .many(list)
        } else {
            self = .one(try Element(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case let .one(value): try value.encode(to: encoder)
        case let .many(values): try values.encode(to: encoder)
        }
    }

    /// The value per level: a single value repeated `count` times, or the list (which must have
    /// `count` entries; otherwise `nil`).
    public func expanded(_ count: Int) -> [Element]? {
        switch self {
        case let .one(value): return Array(repeating: value, count: count)
        case let .many(values): return values.count == count ? values : nil
        }
    }
}

extension OneOrMany: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .one(value): return "\(value)"
        case let .many(values): return "\(values)"
        }
    }
}

/// A JSON number that config files sometimes write as an integer and sometimes as a float.
extension KeyedDecodingContainer {
    /// Decodes `key` if present and not null; otherwise `defaultValue`.
    func value<T: Decodable>(_ key: Key, default defaultValue: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? defaultValue
    }

    /// Decodes an optional field where an absent key means `defaultValue` and an explicit
    /// JSON `null` means `nil` (diffusers: a missing key takes the `__init__` default).
    func nullable<T: Decodable>(_ key: Key, default defaultValue: T?) throws -> T? {
        guard contains(key) else { return defaultValue }
        if try decodeNil(forKey: key) { return nil }
        return try decode(T.self, forKey: key)
    }
}

extension KeyedEncodingContainer {
    /// Encodes `value`, writing JSON `null` for `nil` (so a decoded config round-trips).
    mutating func encodeNullable<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

/// Reading config JSON files with errors that name the file and the field.
public enum ConfigFile {
    /// Decodes `T` from the JSON file at `path`.
    public static func load<T: Decodable>(_ type: T.Type, path: String) throws -> T {
        guard FileManager.default.fileExists(atPath: path) else { throw ModelError.configNotFound(path: path) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(filePath: path))
        } catch {
            throw ModelError.invalidConfig(path: path, field: "", message: "cannot read the file: \(error)")
        }
        return try decode(type, from: data, path: path)
    }

    /// Decodes `T` from JSON bytes; `path` names the source in errors.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw describe(error, path: path)
        } catch let error as ModelError {
            throw error
        } catch {
            throw ModelError.invalidConfig(path: path, field: "", message: "\(error)")
        }
    }

    private static func describe(_ error: DecodingError, path: String) -> ModelError {
        func field(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case let .typeMismatch(_, context), let .valueNotFound(_, context):
            return .invalidConfig(path: path, field: field(context.codingPath), message: context.debugDescription)
        case let .keyNotFound(key, context):
            return .invalidConfig(path: path, field: field(context.codingPath + [key]), message: "required field is missing")
        case let .dataCorrupted(context):
            // Not JSON at all (no field): add the parser's own reason, which says where.
            var message = context.debugDescription
            if context.codingPath.isEmpty, let underlying = context.underlyingError { message += " (\(underlying))" }
            return .invalidConfig(path: path, field: field(context.codingPath), message: message)
        @unknown default:
            return .invalidConfig(path: path, field: "", message: "\(error)")
        }
    }
}
