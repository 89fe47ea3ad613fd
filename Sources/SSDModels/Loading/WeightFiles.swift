#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor

/// The safetensors file(s) holding one component's weights: a single file or the shards named
/// by a `*.safetensors.index.json`, or one component's part of a single-file checkpoint
/// (`SingleFileCheckpoint`), its tensors renamed to diffusers names. Files stay memory-mapped;
/// tensors are read as zero-copy views (a transposed one is copied).
public final class WeightFiles: @unchecked Sendable {
    /// The file (or index file) the weights were found through, for messages.
    public let source: String
    /// The opened files.
    public let files: [SafetensorsFile]
    /// Tensor name → where its data is.
    private let location: [String: Location]
    /// LoRA updates added to tensors as they are viewed (`addingLoRA`).
    private let updates: [String: [LoRADelta]]

    /// A tensor of one of `files`: its key there and how its data becomes the named tensor.
    struct Location {
        var file: Int
        var key: String
        var transform: WeightTransform = .identity
    }

    /// Opens the given safetensors files (shards of one checkpoint); `source` names them in errors.
    public init(files: [SafetensorsFile], source: String) {
        self.source = source
        self.files = files
        var location: [String: Location] = [:]
        for (index, file) in files.enumerated() {
            for name in file.entries.keys where location[name] == nil { location[name] = Location(file: index, key: name) }
        }
        self.location = location
        self.updates = [:]
    }

    /// Tensors of `file` under other names (a single-file checkpoint's component).
    init(file: SafetensorsFile, source: String, renamed: [String: Location]) {
        self.source = source
        self.files = [file]
        self.location = renamed
        self.updates = [:]
    }

    private init(_ base: WeightFiles, updates: [String: [LoRADelta]]) {
        source = base.source
        files = base.files
        location = base.location
        self.updates = updates
    }

    /// The same tensors with LoRA updates added to the named ones (fp32, as they are viewed).
    func addingLoRA(_ deltas: [String: [LoRADelta]]) -> WeightFiles {
        WeightFiles(self, updates: updates.merging(deltas, uniquingKeysWith: +))
    }

    /// Opens one safetensors file.
    public convenience init(path: String) throws {
        self.init(files: [try SafetensorsFile(path: path)], source: path)
    }

    /// All tensor names, sorted.
    public var names: [String] { location.keys.sorted() }

    /// The header entry of `name`, if present: after renaming, the shape the name stands for (and for a
    /// row slice its bytes; a transposed tensor keeps the stored bytes' range).
    public func entry(_ name: String) -> SafetensorsEntry? {
        guard let l = location[name], let stored = files[l.file].entries[l.key] else { return nil }
        return l.transform.entry(of: stored, name: name)
    }

    /// A view of tensor `name` (zero-copy unless it is stored transposed).
    public func view(_ name: String) throws -> HostTensorView {
        guard let l = location[name] else { throw ModelError.weightMismatch(model: "weights", source: source, missing: [name], unexpected: [], wrongShape: []) }
        let view = l.transform.apply(to: try files[l.file].view(l.key))
        guard let deltas = updates[name], view.shape.count >= 2 else { return view }
        let buffer = HostBuffer(byteCount: view.count * 4)
        let values = UnsafeMutableBufferPointer(start: buffer.pointer.assumingMemoryBound(to: Float.self), count: view.count)
        view.convertToFloat(into: values.baseAddress!)
        for delta in deltas { delta.add(to: values, rows: view.shape[0]) }
        return buffer.view(name: view.name + " + LoRA", shape: view.shape, dtype: .f32)
    }

    /// Drops tensor `name`'s file pages from the resident set once a backend has prepared its own copy.
    public func evictPages(of name: String) {
        guard let l = location[name] else { return }
        // Rows of a stored tensor (q, k, v of one `in_proj_weight`): its pages go with the last rows.
        if case .rows(let rows) = l.transform, let stored = files[l.file].entries[l.key], rows.upperBound < stored.shape.first ?? 0 {
            return
        }
        files[l.file].evictPages(of: l.key)
    }

    /// Total bytes of tensor data.
    public var dataBytes: Int {
        location.keys.reduce(0) { $0 + (entry($1)?.dataRange.count ?? 0) }
    }

    /// Bytes of tensor data per element type.
    public var bytesByDType: [DType: Int] {
        var result: [DType: Int] = [:]
        for name in location.keys { if let e = entry(name) { result[e.dtype, default: 0] += e.dataRange.count } }
        return result
    }

    /// Finds and opens the weights in a component folder.
    ///
    /// `baseNames` are the file stems to look for (`diffusion_pytorch_model` for diffusers models,
    /// `model` for transformers ones). With `variant` (e.g. `"fp16"`) the variant file
    /// (`<base>.fp16.safetensors`, or a sharded variant index) is preferred and the plain file is
    /// the fallback; without it the plain file is used, and a folder that holds only an `fp16`
    /// variant (as SSD-1B's first release did) falls back to that.
    public static func locate(in directory: String, baseNames: [String], variant: String?) throws -> WeightFiles {
        guard PipelineFolder.isDirectory(directory) else {
            throw ModelError.folderNotFound(path: directory)
        }
        var tried: [String] = []
        let variants: [String?] = variant.map { [$0, nil] } ?? [nil, "fp16"]
        for variant in variants {
            for base in baseNames {
                let single = variant.map { "\(base).\($0).safetensors" } ?? "\(base).safetensors"
                let indexNames = variant.map { ["\(base).safetensors.index.\($0).json", "\(base).\($0).safetensors.index.json"] }
                    ?? ["\(base).safetensors.index.json"]
                for name in [single] + indexNames {
                    tried.append(name)
                    let path = directory + "/" + name
                    guard FileManager.default.fileExists(atPath: path) else { continue }
                    return name.hasSuffix(".json") ? try openSharded(indexPath: path) : try WeightFiles(path: path)
                }
            }
        }
        throw ModelError.weightsNotFound(directory: directory, tried: tried)
    }

    /// Opens the shards listed in a `*.safetensors.index.json` (`{"weight_map": {tensor: file}}`).
    public static func openSharded(indexPath: String) throws -> WeightFiles {
        struct Index: Decodable { let weight_map: [String: String] }
        let data: Data
        do { data = try Data(contentsOf: URL(filePath: indexPath)) } catch {
            throw ModelError.invalidShardIndex(path: indexPath, message: "cannot read: \(error)")
        }
        guard let index = try? JSONDecoder().decode(Index.self, from: data) else {
            throw ModelError.invalidShardIndex(path: indexPath, message: "expected an object with a 'weight_map' of tensor → file")
        }
        let directory = String(indexPath[..<(indexPath.lastIndex(of: "/") ?? indexPath.startIndex)])
        let shardNames = Set(index.weight_map.values).sorted()
        var files: [SafetensorsFile] = []
        for shard in shardNames {
            // Shards live in the component's folder (as the Hub writes them): no absolute paths, no "..".
            guard !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw ModelError.invalidShardIndex(path: indexPath, message: "shard \(shard) is outside the component's folder")
            }
            let path = directory.isEmpty ? shard : directory + "/" + shard
            guard FileManager.default.fileExists(atPath: path) else {
                throw ModelError.invalidShardIndex(path: indexPath, message: "shard \(shard) does not exist")
            }
            files.append(try SafetensorsFile(path: path))
        }
        for (tensor, shard) in index.weight_map {
            guard let file = files.first(where: { $0.path.hasSuffix("/" + shard) || $0.path == shard }),
                  file.entries[tensor] != nil
            else { throw ModelError.invalidShardIndex(path: indexPath, message: "tensor \(tensor) is not in shard \(shard)") }
        }
        return WeightFiles(files: files, source: indexPath)
    }
}
