import SSDTensor

/// A single-file checkpoint in the original SGM / LDM layout, as AUTOMATIC1111, ComfyUI and model
/// sites distribute SDXL-family models (`SSD-1B.safetensors`, `sd_xl_base_1.0.safetensors`): all four
/// networks in one file under their original names (diffusers `loaders/single_file_utils.py`,
/// `from_single_file`). Each component's tensors are presented under diffusers names
/// (`WeightFiles`), so the networks load them exactly as from a diffusers folder; the names are mapped
/// by `SingleFileNames` (`WeightNames.swift`).
///
/// The configs, tokenizers and scheduler still come from a diffusers folder (diffusers'
/// `from_single_file(path, config=folder)`): the model's Hub folder without its weight files is enough.
/// Unlike diffusers (which loads with `strict=False` and leaves missing tensors at their random
/// initial values), every tensor a network expects must be in the file, and every tensor under a
/// component's prefix must be used.
public final class SingleFileCheckpoint: Sendable {
    /// The checkpoint's path.
    public let path: String
    let file: SafetensorsFile
    /// Keys outside every component's prefix (EMA copies, LDM noise-schedule buffers, …), which are skipped.
    public let ignoredKeys: [String]
    private let keysByComponent: [SingleFileNames.Component: [String]]

    /// Opens and indexes the file (the header is validated; the data stays memory-mapped).
    public init(path: String) throws {
        self.path = path
        file = try SafetensorsFile(path: path)
        var byComponent: [SingleFileNames.Component: [String]] = [:]
        var ignored: [String] = []
        for key in file.entries.keys.sorted() {
            if let component = SingleFileNames.component(of: key) {
                byComponent[component.component, default: []].append(key)
            } else {
                ignored.append(key)
            }
        }
        keysByComponent = byComponent
        ignoredKeys = ignored
        // A file without `model.diffusion_model.*` is not an SGM / LDM checkpoint of this family (a
        // diffusers-named file, another model's file): refused instead of silently loading the folder's.
        guard byComponent[.unet] != nil else {
            throw ModelError.invalidInput(
                model: "SingleFileCheckpoint", argument: path,
                message: "no UNet tensors (model.diffusion_model.*) among its \(file.entries.count) tensors: not an SGM / LDM single-file checkpoint"
                    + (ignored.isEmpty ? "" : " (e.g. \(ignored.prefix(3).joined(separator: ", ")))"))
        }
    }

    /// The components the file holds.
    public var components: Set<SingleFileNames.Component> { Set(keysByComponent.keys) }

    /// `component`'s tensors under diffusers names, or nil when the file has none of them (a file
    /// without its VAE, say). `unet` needs the UNet's config (its block layout numbers the
    /// original names); `vae` the VAE's (the decoder's blocks are numbered in reverse there).
    public func weights(for component: SingleFileNames.Component, unet: UNet2DConditionConfig? = nil,
                        vae: AutoencoderKLConfig? = nil) throws -> WeightFiles? {
        guard let keys = keysByComponent[component], !keys.isEmpty else { return nil }
        var renamed: [String: WeightFiles.Location] = [:]
        for key in keys {
            guard let stored = file.entries[key], let split = SingleFileNames.component(of: key) else { continue }
            let targets = try SingleFileNames.diffusersNames(
                for: split.rest, in: component, storedShape: stored.shape, unet: unet, vae: vae, key: key, source: path)
            // A key no rule maps keeps its own name, so that loading reports it as unexpected.
            for (name, transform) in targets ?? [(key, .identity)] {
                if let other = renamed[name] {
                    throw ModelError.invalidInput(model: "SingleFileCheckpoint", argument: path,
                                                  message: "\(other.key) and \(key) both hold \(component.rawValue) \(name)")
                }
                renamed[name] = WeightFiles.Location(file: 0, key: key, transform: transform)
            }
        }
        return WeightFiles(file: file, source: "\(path) (\(component.rawValue))", renamed: renamed)
    }
}

/// How a stored tensor becomes the tensor a diffusers name stands for.
enum WeightTransform: Equatable, Sendable {
    /// The stored tensor as it is.
    case identity
    /// Trailing axes of size 1 dropped down to rank 2: a 1×1 convolution's weight used as a linear one
    /// (the VAE attention's `q`, `k`, `v`, `proj_out`; diffusers `conv_attn_to_linear`).
    case squeezeToMatrix
    /// Rows `range` of the first axis: one of `q`, `k`, `v` stacked in OpenCLIP's `in_proj_weight`.
    case rows(Range<Int>)
    /// A matrix transposed (copied): OpenCLIP's `text_projection` is used as `x @ P`, the Linear weight's transpose.
    case transpose

    func shape(of stored: [Int]) -> [Int] {
        switch self {
        case .identity:
            return stored
        case .squeezeToMatrix:
            var shape = stored
            while shape.count > 2, shape.last == 1 { shape.removeLast() }
            return shape
        case .rows(let range):
            guard !stored.isEmpty, range.upperBound <= stored[0] else { return stored }
            return [range.count] + stored.dropFirst()
        case .transpose:
            return stored.count == 2 ? [stored[1], stored[0]] : stored
        }
    }

    /// The header entry the renamed tensor has (shape, and for rows the bytes of those rows).
    func entry(of stored: SafetensorsEntry, name: String) -> SafetensorsEntry {
        var range = stored.dataRange
        if case .rows(let rows) = self, shape(of: stored.shape) != stored.shape {
            let rowBytes = stored.shape.dropFirst().reduce(1, *) * stored.dtype.byteSize
            range = (range.lowerBound + rows.lowerBound * rowBytes)..<(range.lowerBound + rows.upperBound * rowBytes)
        }
        return SafetensorsEntry(name: name, dtype: stored.dtype, shape: shape(of: stored.shape), dataRange: range)
    }

    /// The renamed tensor's view of the stored one.
    func apply(to view: HostTensorView) -> HostTensorView {
        let shape = shape(of: view.shape)
        switch self {
        case .identity:
            return view
        case .squeezeToMatrix:
            return HostTensorView(name: view.name, shape: shape, dtype: view.dtype, pointer: view.pointer, owner: view.owner)
        case .rows(let rows):
            guard shape != view.shape else { return view }
            let rowBytes = view.shape.dropFirst().reduce(1, *) * view.dtype.byteSize
            return HostTensorView(name: view.name, shape: shape, dtype: view.dtype,
                                  pointer: view.pointer + rows.lowerBound * rowBytes, owner: view.owner)
        case .transpose:
            guard view.shape.count == 2 else { return view }
            let (rows, columns, size) = (view.shape[0], view.shape[1], view.dtype.byteSize)
            let buffer = HostBuffer(byteCount: view.byteCount)
            for r in 0..<rows {
                for c in 0..<columns {
                    (buffer.pointer + (c * rows + r) * size).copyMemory(from: view.pointer + (r * columns + c) * size, byteCount: size)
                }
            }
            return HostTensorView(name: view.name, shape: shape, dtype: view.dtype, pointer: UnsafeRawPointer(buffer.pointer), owner: buffer)
        }
    }
}
