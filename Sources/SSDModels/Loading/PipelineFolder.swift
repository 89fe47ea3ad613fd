#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A diffusers pipeline folder: `model_index.json` plus one sub-folder per component
/// (diffusers `DiffusionPipeline.from_pretrained` layout, `pipelines/pipeline_utils.py`; spec §6.1).
public struct PipelineFolder: Sendable {
    /// The folder path.
    public let path: String
    /// The decoded `model_index.json`.
    public let modelIndex: ModelIndex

    /// Reads `<path>/model_index.json`. Throws `folderNotFound`, `configNotFound` or `invalidConfig`.
    public init(path: String) throws {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        guard Self.isDirectory(trimmed) else { throw ModelError.folderNotFound(path: trimmed) }
        self.path = trimmed
        modelIndex = try ConfigFile.load(ModelIndex.self, path: trimmed + "/model_index.json")
    }

    /// Component folder names listed in `model_index.json`, sorted.
    public var componentNames: [String] { modelIndex.components.keys.sorted() }

    /// The `model_index.json` entry of `name` (library and class), if listed.
    public func component(_ name: String) -> ModelIndex.Component? { modelIndex.components[name] }

    /// The folder of component `name` (e.g. `"unet"`); throws `componentNotFound` when
    /// `model_index.json` does not list it or the folder is missing.
    public func componentDirectory(_ name: String) throws -> String {
        let directory = path + "/" + name
        guard modelIndex.components[name] != nil, Self.isDirectory(directory) else {
            throw ModelError.componentNotFound(component: name, folder: path)
        }
        return directory
    }

    /// Whether `path` is an existing directory.
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}
