#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One JSON value of a `scheduler_config.json`.
public enum ConfigValue: Sendable, Hashable, Codable {
    /// JSON `null`.
    case null
    /// `true` / `false`.
    case bool(Bool)
    /// Any number (Python's `NaN`, `Infinity` and `-Infinity` included).
    case number(Double)
    /// A string.
    case string(String)
    /// A list.
    case array([ConfigValue])
    /// An object.
    case object([String: ConfigValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([ConfigValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: ConfigValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value) where value.isNaN: try container.encode("NaN")
        case .number(let value) where value.isInfinite: try container.encode(value > 0 ? "Infinity" : "-Infinity")
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return String(value)
        case .number(let value): return String(value)
        case .string(let value): return "\"\(value)\""
        case .array(let values): return "[" + values.map(\.text).joined(separator: ", ") + "]"
        case .object: return "{…}"
        }
    }
}

/// The contents of a diffusers `scheduler_config.json`: every key is kept (unknown ones too, and
/// `_class_name`), so any scheduler can be built from any other's configuration the way diffusers'
/// `SchedulerMixin.from_config` does: each scheduler reads the keys it knows and uses its own
/// defaults for the rest (`configuration_utils.py` `extract_init_dict`). A `null` value counts as
/// absent.
public struct SchedulerConfiguration: Sendable, Hashable, Codable {
    /// The raw key/value pairs.
    public var values: [String: ConfigValue]

    /// A configuration with the given keys (empty: every scheduler's defaults).
    public init(_ values: [String: ConfigValue] = [:]) {
        self.values = values
    }

    public init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: ConfigValue].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }

    /// Parses JSON text as Python's `json` writes it (bare `NaN`, `Infinity`, `-Infinity` allowed,
    /// as diffusers writes `lambda_min_clipped = -inf`).
    public init(json: [UInt8], path: String = "<memory>") throws {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        do {
            self = try decoder.decode(SchedulerConfiguration.self, from: Data(Self.quoteNonFiniteNumbers(json)))
        } catch {
            throw SchedulerError.unreadableConfiguration(path: path, reason: String(describing: error))
        }
        for (key, value) in values {
            if case .string(let text) = value, ["Infinity", "-Infinity", "NaN"].contains(text),
                let number = Double(text == "Infinity" ? "inf" : text == "-Infinity" ? "-inf" : "nan")
            {
                values[key] = .number(number)
            }
        }
    }

    /// Reads `scheduler_config.json` (or any scheduler `config.json`).
    public init(contentsOf path: String) throws {
        let data: Data
        guard FileManager.default.fileExists(atPath: path) else {
            throw SchedulerError.unreadableConfiguration(path: path, reason: "file not found")
        }
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SchedulerError.unreadableConfiguration(path: path, reason: "cannot read the file (\(type(of: error)))")
        }
        try self.init(json: [UInt8](data), path: path)
    }

    /// These values with `overrides`' keys replacing them (diffusers `from_config(config, **overrides)`).
    public func merging(_ overrides: SchedulerConfiguration) -> SchedulerConfiguration {
        SchedulerConfiguration(values.merging(overrides.values) { _, new in new })
    }

    /// Reads or writes one key; `nil` removes it.
    public subscript(key: String) -> ConfigValue? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// `num_train_timesteps` (1000 when absent).
    public var trainTimesteps: Int {
        get throws { try int("num_train_timesteps", default: 1000) }
    }

    /// `_class_name`, the diffusers scheduler class the file was written for.
    public var className: String? {
        get { if case .string(let value)? = values["_class_name"] { return value } else { return nil } }
        set { values["_class_name"] = newValue.map(ConfigValue.string) }
    }

    // MARK: Typed access used by the schedulers (absent or null → the scheduler's default).

    func present(_ key: String) -> ConfigValue? {
        guard let value = values[key], value != .null else { return nil }
        return value
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = present(key) else { return fallback }
        switch value {
        case .bool(let flag): return flag
        case .number(let number) where number == 0 || number == 1: return number == 1
        default: throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected a boolean")
        }
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        try optionalDouble(key) ?? fallback
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let value = present(key) else { return nil }
        guard case .number(let number) = value else {
            throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected a number")
        }
        return number
    }

    func int(_ key: String, default fallback: Int) throws -> Int {
        guard let value = present(key) else { return fallback }
        guard case .number(let number) = value, number.rounded() == number, abs(number) < 1e15 else {
            throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected an integer")
        }
        return Int(number)
    }

    func string(_ key: String, default fallback: String) throws -> String {
        try optionalString(key) ?? fallback
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = present(key) else { return nil }
        guard case .string(let text) = value else {
            throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected a string")
        }
        return text
    }

    func doubles(_ key: String) throws -> [Double]? {
        guard let value = present(key) else { return nil }
        guard case .array(let items) = value else {
            throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected an array of numbers")
        }
        return try items.map { item in
            guard case .number(let number) = item else {
                throw SchedulerError.invalidConfiguration(key: key, value: value.text, reason: "expected an array of numbers")
            }
            return number
        }
    }

    /// Parses `key` as one of `T`'s raw values.
    func choice<T: RawRepresentable>(_ key: String, default fallback: T) throws -> T where T.RawValue == String {
        guard let text = try optionalString(key) else { return fallback }
        guard let value = T(rawValue: text) else {
            throw SchedulerError.invalidConfiguration(key: key, value: "\"\(text)\"", reason: "unknown value")
        }
        return value
    }

    /// Wraps bare `NaN`/`Infinity`/`-Infinity` tokens (outside strings) in quotes.
    static func quoteNonFiniteNumbers(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var inString = false
        var escaped = false
        var i = 0
        let tokens: [[UInt8]] = [Array("-Infinity".utf8), Array("Infinity".utf8), Array("NaN".utf8)]
        while i < bytes.count {
            let byte = bytes[i]
            if inString {
                output.append(byte)
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            if byte == UInt8(ascii: "\"") {
                inString = true
                output.append(byte)
                i += 1
                continue
            }
            if let token = tokens.first(where: { i + $0.count <= bytes.count && Array(bytes[i..<(i + $0.count)]) == $0 }) {
                output.append(UInt8(ascii: "\""))
                output.append(contentsOf: token)
                output.append(UInt8(ascii: "\""))
                i += token.count
                continue
            }
            output.append(byte)
            i += 1
        }
        return output
    }
}

extension SchedulerConfiguration {
    /// Convenience setters for common overrides (each writes the diffusers key).
    public var useKarrasSigmas: Bool? {
        get { if case .bool(let value)? = values["use_karras_sigmas"] { return value } else { return nil } }
        set { values["use_karras_sigmas"] = newValue.map(ConfigValue.bool) }
    }

    /// `timestep_spacing`: "leading", "linspace" or "trailing".
    public var timestepSpacing: String? {
        get { if case .string(let value)? = values["timestep_spacing"] { return value } else { return nil } }
        set { values["timestep_spacing"] = newValue.map(ConfigValue.string) }
    }

    /// `prediction_type`: "epsilon", "v_prediction" or "sample".
    public var predictionType: String? {
        get { if case .string(let value)? = values["prediction_type"] { return value } else { return nil } }
        set { values["prediction_type"] = newValue.map(ConfigValue.string) }
    }

    /// `final_sigmas_type`: "zero" or "sigma_min".
    public var finalSigmasType: String? {
        get { if case .string(let value)? = values["final_sigmas_type"] { return value } else { return nil } }
        set { values["final_sigmas_type"] = newValue.map(ConfigValue.string) }
    }
}
