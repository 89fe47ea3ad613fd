#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor

/// A LoRA file and the scale to apply it with (diffusers `load_lora_weights(path)` and
/// `cross_attention_kwargs={"scale": scale}` / `fuse_lora(lora_scale=scale)`,
/// `loaders/lora_pipeline.py`).
public struct LoRAWeights: Sendable, Hashable {
    /// A `.safetensors` LoRA in kohya-ss / A1111 form (`lora_unet_*`, `lora_te1_*`, `lora_te2_*` with
    /// `lora_down` / `lora_up` / `alpha`) or diffusers / PEFT form (`unet.….lora_A.weight`, `lora.down`, …).
    public var path: String
    /// The LoRA's strength (diffusers' LoRA scale): `W + scale · (alpha / rank) · up · down`.
    public var scale: Double

    /// `path` at `scale` (1 = as trained).
    public init(path: String, scale: Double = 1) {
        self.path = path
        self.scale = scale
    }
}

/// What a LoRA changed.
public struct LoRAReport: Sendable, Hashable {
    /// The LoRA file.
    public var path: String
    /// Layers changed per network.
    public var layers: [SingleFileNames.Component: Int] = [:]
    /// Per network, the LoRA's layers naming a module the network does not have (an SDXL LoRA's layers
    /// of blocks SSD-1B dropped), as the file spells them; skipped, as diffusers / PEFT skip them.
    public var unmatched: [SingleFileNames.Component: [String]] = [:]

    /// An empty report for `path`.
    public init(path: String) { self.path = path }
}

/// One low-rank update `factor · up · down` of a weight (`factor` = scale · alpha / rank, or
/// scale · alpha / √rank for rank-stabilised LoRA).
struct LoRADelta: @unchecked Sendable {
    var down: HostTensorView
    var up: HostTensorView
    var factor: Float

    /// Adds the update to `weight` (`[out, …]` row-major; `down` is `[rank, …]` with the weight's
    /// trailing elements, `up` is `[out, rank(, 1, 1)]`; a convolution's update is `up · down` over the
    /// flattened kernel, as PEFT's `get_delta_weight`). Four ranks per pass over a row.
    func add(to weight: UnsafeMutableBufferPointer<Float>, rows: Int) {
        let rank = down.shape[0]
        let columns = weight.count / rows
        let downValues = [Float](unsafeUninitializedCapacity: down.count) { buffer, count in
            down.convertToFloat(into: buffer.baseAddress!)
            count = down.count
        }
        let upValues = (0..<up.count).map { factor * up.float(at: $0) }
        downValues.withUnsafeBufferPointer { d in
            upValues.withUnsafeBufferPointer { u in
                Parallel.forEach(rows) { o in
                    let row = weight.baseAddress! + o * columns
                    var r = 0
                    while r + 4 <= rank {
                        let (a0, a1, a2, a3) = (u[o * rank + r], u[o * rank + r + 1], u[o * rank + r + 2], u[o * rank + r + 3])
                        let s0 = d.baseAddress! + r * columns
                        let (s1, s2, s3) = (s0 + columns, s0 + 2 * columns, s0 + 3 * columns)
                        for j in 0..<columns { row[j] += a0 * s0[j] + a1 * s1[j] + a2 * s2[j] + a3 * s3[j] }
                        r += 4
                    }
                    while r < rank {
                        let a = u[o * rank + r], source = d.baseAddress! + r * columns
                        for j in 0..<columns { row[j] += a * source[j] }
                        r += 1
                    }
                }
            }
        }
    }
}

/// The `lora_adapter_metadata` diffusers writes with a LoRA (`save_lora_weights(…,
/// unet_lora_adapter_metadata=…)`, `loaders/lora_base.py`): per network, PEFT's `LoraConfig` fields.
struct PEFTAdapterMetadata {
    struct Network {
        var loraAlpha: Double?
        var useRSLoRA = false
        var alphaPattern: [String: Double] = [:]
    }
    var networks: [SingleFileNames.Component: Network] = [:]

    /// Reads `metadata["lora_adapter_metadata"]` (`{"unet.lora_alpha": 8, "unet.use_rslora": false, …}`).
    init(metadata: [String: String], source: String) throws {
        guard let text = metadata["lora_adapter_metadata"] else { return }
        enum Value: Decodable {
            case number(Double), flag(Bool), table([String: Double]), other
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let v = try? c.decode(Bool.self) { self = .flag(v) }
                else if let v = try? c.decode(Double.self) { self = .number(v) }
                else if let v = try? c.decode([String: Double].self) { self = .table(v) }
                else { self = .other }
            }
        }
        guard let values = try? JSONDecoder().decode([String: Value].self, from: Data(text.utf8)) else {
            throw ModelError.invalidInput(model: "LoRA", argument: source, message: "lora_adapter_metadata is not a JSON object")
        }
        for (key, value) in values {
            guard let dot = key.lastIndex(of: "."),
                  let component = SingleFileNames.Component(rawValue: String(key[..<dot])) else { continue }
            var network = networks[component] ?? Network()
            switch (key[key.index(after: dot)...], value) {
            case ("lora_alpha", .number(let v)): network.loraAlpha = v
            case ("use_rslora", .flag(let v)): network.useRSLoRA = v
            case ("alpha_pattern", .table(let v)): network.alphaPattern = v
            default: break
            }
            networks[component] = network
        }
    }

    /// PEFT's scaling numerator and whether it is divided by √rank, for `module` of `component`
    /// (`alpha_pattern` entries match the module name or its dotted suffix, as PEFT's pattern match does
    /// for plain names).
    func alpha(for component: SingleFileNames.Component, module: String) -> (alpha: Double, rsLoRA: Bool)? {
        guard let network = networks[component] else { return nil }
        let pattern = network.alphaPattern.first { module == $0.key || module.hasSuffix("." + $0.key) }?.value
        guard let alpha = pattern ?? network.loraAlpha else { return nil }
        return (alpha, network.useRSLoRA)
    }
}

/// The LoRA layers of one file, grouped by network and matched to the networks' parameters.
final class LoRAFile: Sendable {
    let path: String
    let file: SafetensorsFile
    /// (network, module as spelled in the file, key style) → down / up / alpha keys.
    let layers: [LoRANames.Layer]
    /// Scaling read from diffusers' `lora_adapter_metadata`, for layers without an `.alpha` key.
    let adapterMetadata: PEFTAdapterMetadata

    init(path: String) throws {
        self.path = path
        file = try SafetensorsFile(path: path)
        var byModule: [LoRANames.LayerID: LoRANames.Layer] = [:]
        for key in file.entries.keys.sorted() {
            guard let parsed = try LoRANames.parse(key, source: path) else { continue }
            var layer = byModule[parsed.id] ?? LoRANames.Layer(id: parsed.id)
            switch parsed.part {
            case .down: layer.down = key
            case .up: layer.up = key
            case .alpha: layer.alpha = key
            }
            byModule[parsed.id] = layer
        }
        layers = byModule.values.sorted { ($0.id.component.rawValue, $0.id.module) < ($1.id.component.rawValue, $1.id.module) }
        adapterMetadata = try PEFTAdapterMetadata(metadata: file.metadata, source: path)
        for layer in layers where layer.down == nil || layer.up == nil {
            throw ModelError.invalidInput(model: "LoRA", argument: path,
                                          message: "layer \(layer.id.module) of \(layer.id.component.rawValue) lacks its \(layer.down == nil ? "down (A)" : "up (B)") matrix")
        }
        guard !layers.isEmpty else {
            throw ModelError.invalidInput(model: "LoRA", argument: path, message: "no LoRA layers (lora_down / lora_up or lora_A / lora_B pairs) found")
        }
    }

    /// The updates of `component`'s weights, by canonical parameter name, for a network whose
    /// parameters are `specs`; also the layers that name no parameter of it.
    func deltas(for component: SingleFileNames.Component, specs: [ParameterSpec], scale: Double,
                unet: UNet2DConditionConfig?) throws -> (deltas: [String: LoRADelta], unmatched: [String]) {
        let lookup = LoRANames.moduleLookup(specs: specs, component: component, unet: unet)
        let shapes = Dictionary(specs.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        var deltas: [String: LoRADelta] = [:]
        var unmatched: [String] = []
        for layer in layers where layer.id.component == component {
            guard let name = lookup[layer.id.lookupKey], let shape = shapes[name], let downKey = layer.down, let upKey = layer.up else {
                unmatched.append(layer.id.module)
                continue
            }
            let down = try file.view(downKey), up = try file.view(upKey)
            let rank = down.shape.first ?? 0
            let columns = shape.dropFirst().reduce(1, *)
            guard rank > 0, up.shape.count >= 2, up.shape[0] == shape[0], up.shape[1] == rank, up.count == shape[0] * rank,
                  down.count == rank * columns else {
                throw ModelError.invalidInput(model: "LoRA", argument: path,
                                              message: "\(downKey) \(down.shape) and \(upKey) \(up.shape) do not fit \(name) \(shape)")
            }
            for (key, view) in [(downKey, down), (upKey, up)] where !view.dtype.isFloatingPoint {
                throw ModelError.unsupportedWeightDType(source: path, tensor: key, dtype: view.dtype)
            }
            // Each layer's own alpha (kohya-ss, A1111 and ComfyUI do the same; diffusers 0.42 gives some
            // layers of a file with mixed alphas the file's most common one), else diffusers' adapter
            // metadata, else alpha = rank.
            var alpha = Double(rank), divisor = Double(rank)
            if let alphaKey = layer.alpha {
                let view = try file.view(alphaKey)
                guard view.count == 1 else {
                    throw ModelError.invalidInput(model: "LoRA", argument: path, message: "\(alphaKey) \(view.shape) is not a scalar")
                }
                alpha = Double(view.float(at: 0))
            } else if let (metadataAlpha, rsLoRA) = adapterMetadata.alpha(for: component, module: layer.id.module) {
                alpha = metadataAlpha
                if rsLoRA { divisor = Double(rank).squareRoot() }
            }
            guard alpha.isFinite else {
                throw ModelError.invalidInput(model: "LoRA", argument: path, message: "alpha of \(layer.id.module) is \(alpha)")
            }
            guard deltas[name] == nil else {
                throw ModelError.invalidInput(model: "LoRA", argument: path, message: "two layers of the file update \(name)")
            }
            deltas[name] = LoRADelta(down: down, up: up, factor: Float(scale * alpha / divisor))
        }
        return (deltas, unmatched)
    }
}

/// LoRA files applied together, their updates fused into the weights as the networks load (diffusers
/// `load_lora_weights` + `fuse_lora`; several LoRAs add up, as `set_adapters` with their scales). The
/// fused weights compute what diffusers' unfused LoRA layers compute, without their per-step cost.
/// Changing the LoRAs means loading the networks again (`DiffusionPipeline.setLoRAs`).
public final class LoRASet: Sendable {
    /// The LoRAs, in order.
    public let loras: [LoRAWeights]
    private let files: [LoRAFile]

    /// Opens every file and checks its keys (a missing matrix, DoRA / LyCORIS forms, bias updates and
    /// keys of unknown LoRA forms are errors).
    public init(_ loras: [LoRAWeights]) throws {
        self.loras = loras
        files = try loras.map { lora in
            guard lora.scale.isFinite else {
                throw ModelError.invalidInput(model: "LoRA", argument: lora.path, message: "scale \(lora.scale) is not finite")
            }
            return try LoRAFile(path: lora.path)
        }
    }

    /// `weights` with every LoRA's updates of `component` (whose parameters are `specs`) added, and
    /// per LoRA what changed in it.
    public func apply(to weights: WeightFiles, component: SingleFileNames.Component, specs: [ParameterSpec],
                      unet: UNet2DConditionConfig? = nil) throws -> (weights: WeightFiles, reports: [LoRAReport]) {
        var all: [String: [LoRADelta]] = [:]
        var reports: [LoRAReport] = []
        let family: WeightNameMapping.Family = component == .unet ? .unet : component == .vae ? .vae : .clipText
        for (index, file) in files.enumerated() {
            let (deltas, missing) = try file.deltas(for: component, specs: specs, scale: loras[index].scale, unet: unet)
            for (name, delta) in deltas {
                // Keyed by the spelling the weight file uses (transformers 5 drops `text_model.`).
                let stored = WeightNameMapping.candidates(for: name, in: family).first { weights.entry($0) != nil } ?? name
                all[stored, default: []].append(delta)
            }
            var report = LoRAReport(path: file.path)
            report.layers[component] = deltas.count
            if !missing.isEmpty { report.unmatched[component] = missing }
            reports.append(report)
        }
        return (all.isEmpty ? weights : weights.addingLoRA(all), reports)
    }

    /// Drops the LoRA files' pages from the resident set once the networks are built (the files stay
    /// mapped for the text encoders' reloads).
    public func evictPages() {
        for file in files { for key in file.file.entries.keys { file.file.evictPages(of: key) } }
    }

    /// Merges per-network reports into one per LoRA.
    public static func merge(_ reports: [LoRAReport]) -> [LoRAReport] {
        var merged: [String: LoRAReport] = [:]
        var order: [String] = []
        for report in reports {
            if merged[report.path] == nil { order.append(report.path); merged[report.path] = LoRAReport(path: report.path) }
            merged[report.path]!.layers.merge(report.layers) { $1 }
            merged[report.path]!.unmatched.merge(report.unmatched) { $1 }
        }
        return order.compactMap { merged[$0] }
    }

    /// Throws when a LoRA changed nothing in the networks it was applied to (made for another model,
    /// or keys in a form not understood).
    public static func checkEveryLoRAApplies(_ reports: [LoRAReport]) throws {
        for report in merge(reports) where report.layers.values.reduce(0, +) == 0 {
            let unmatched = report.unmatched.values.flatMap { $0 }
            throw ModelError.invalidInput(
                model: "LoRA", argument: report.path,
                message: "none of its \(unmatched.count) layers names a layer of these networks (e.g. \(unmatched.prefix(3).joined(separator: ", ")))")
        }
    }
}
