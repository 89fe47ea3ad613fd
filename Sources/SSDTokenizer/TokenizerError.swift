/// Why a tokenizer folder could not be loaded. Every case names the file it is about.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// A required file (or the folder itself) does not exist.
    case fileNotFound(path: String)
    /// The file exists but could not be read.
    case unreadableFile(path: String, reason: String)
    /// The file is not valid UTF-8 text.
    case invalidUTF8(path: String)
    /// The file is not valid JSON, or its JSON does not have the expected shape.
    case malformedJSON(path: String, reason: String)
    /// A line of merges.txt is not two space-separated symbols (line numbers start at 1).
    case malformedMerges(path: String, line: Int, reason: String)
    /// The content is well-formed but unusable (a merge of unknown symbols, a bad model_max_length, ...).
    case invalidContent(path: String, reason: String)
    /// The file asks for a feature this tokenizer does not implement.
    case unsupported(path: String, reason: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path): return "tokenizer file not found: \(path)"
        case .unreadableFile(let path, let reason): return "cannot read \(path): \(reason)"
        case .invalidUTF8(let path): return "\(path) is not valid UTF-8 text"
        case .malformedJSON(let path, let reason): return "malformed JSON in \(path): \(reason)"
        case .malformedMerges(let path, let line, let reason): return "malformed merges in \(path), line \(line): \(reason)"
        case .invalidContent(let path, let reason): return "invalid tokenizer data in \(path): \(reason)"
        case .unsupported(let path, let reason): return "unsupported tokenizer feature in \(path): \(reason)"
        }
    }

    /// The file the error is about.
    public var path: String {
        switch self {
        case .fileNotFound(let path), .unreadableFile(let path, _), .invalidUTF8(let path),
             .malformedJSON(let path, _), .malformedMerges(let path, _, _), .invalidContent(let path, _),
             .unsupported(let path, _):
            return path
        }
    }
}
