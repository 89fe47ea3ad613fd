/// Errors of the pipeline layer; each names the argument, file or tensor at fault.
public enum PipelineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A request field is out of range (name, value, what is allowed).
    case invalidArgument(name: String, message: String)
    /// The model folder or one of its parts is missing or unusable.
    case invalidModelFolder(path: String, message: String)
    /// Latents contain NaN or infinity (at which stage).
    case nonFiniteValues(stage: String)
    /// The requested backend cannot run here.
    case backendUnavailable(name: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidArgument(name, message): return "invalid \(name): \(message)"
        case let .invalidModelFolder(path, message): return "model folder \(path): \(message)"
        case let .nonFiniteValues(stage): return "NaN or infinity in the \(stage)"
        case let .backendUnavailable(name, reason): return "backend \(name) is unavailable: \(reason)"
        }
    }
}
