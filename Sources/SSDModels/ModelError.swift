import SSDTensor

/// Errors raised while reading model folders, configs and weights, or running the networks.
/// Every case names the file, field, tensor or argument concerned.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A folder that should exist does not (a pipeline or component folder).
    case folderNotFound(path: String)
    /// `model_index.json` does not list the component, or its folder is missing.
    case componentNotFound(component: String, folder: String)
    /// A component folder has no `config.json` (or the named config file).
    case configNotFound(path: String)
    /// A config file is not valid JSON or a field has the wrong type; `field` is the JSON key path.
    case invalidConfig(path: String, field: String, message: String)
    /// A config value that changes the architecture is not supported; names the model and field.
    case unsupportedConfig(model: String, field: String, value: String)
    /// No weight file was found in `directory`; `tried` lists the file names looked for.
    case weightsNotFound(directory: String, tried: [String])
    /// A sharded checkpoint's `*.safetensors.index.json` is malformed or names a missing file.
    case invalidShardIndex(path: String, message: String)
    /// The weights do not match what the config implies. Every list names tensors.
    case weightMismatch(model: String, source: String, missing: [String], unexpected: [String], wrongShape: [WrongShape])
    /// A weight tensor has an element type that cannot be a model parameter (integers).
    case unsupportedWeightDType(source: String, tensor: String, dtype: DType)
    /// A network was called with an input of the wrong shape or value.
    case invalidInput(model: String, argument: String, message: String)

    /// A tensor whose file shape differs from the shape the config implies.
    public struct WrongShape: Equatable, Sendable, CustomStringConvertible {
        /// Name of the tensor in the weight file.
        public let tensor: String
        /// Shape implied by the config.
        public let expected: [Int]
        /// Shape in the file.
        public let actual: [Int]
        /// A shape mismatch of `tensor`: the config implies `expected`, the file has `actual`.
        public init(tensor: String, expected: [Int], actual: [Int]) {
            self.tensor = tensor
            self.expected = expected
            self.actual = actual
        }
        public var description: String { "\(tensor): expected \(expected), file has \(actual)" }
    }

    public var description: String {
        switch self {
        case let .folderNotFound(path):
            return "folder not found: \(path)"
        case let .componentNotFound(component, folder):
            return "component '\(component)' not found in \(folder)"
        case let .configNotFound(path):
            return "config file not found: \(path)"
        case let .invalidConfig(path, field, message):
            return field.isEmpty ? "\(path): \(message)" : "\(path): field '\(field)': \(message)"
        case let .unsupportedConfig(model, field, value):
            return "\(model): unsupported value \(value) for config field '\(field)'"
        case let .weightsNotFound(directory, tried):
            return "no weights in \(directory) (looked for \(tried.joined(separator: ", ")))"
        case let .invalidShardIndex(path, message):
            return "\(path): \(message)"
        case let .weightMismatch(model, source, missing, unexpected, wrongShape):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(missing.count): \(Self.list(missing))") }
            if !unexpected.isEmpty { parts.append("unexpected \(unexpected.count): \(Self.list(unexpected))") }
            if !wrongShape.isEmpty { parts.append("wrong shape \(wrongShape.count): \(Self.list(wrongShape.map(\.description)))") }
            return "\(model) weights in \(source) do not match the config: " + parts.joined(separator: "; ")
        case let .unsupportedWeightDType(source, tensor, dtype):
            return "\(source): tensor \(tensor) has element type \(dtype.rawValue), expected a floating-point type"
        case let .invalidInput(model, argument, message):
            return "\(model): argument '\(argument)': \(message)"
        }
    }

    private static func list(_ names: [String]) -> String {
        let shown = names.prefix(20).joined(separator: ", ")
        return names.count > 20 ? shown + ", … (\(names.count - 20) more)" : shown
    }
}
