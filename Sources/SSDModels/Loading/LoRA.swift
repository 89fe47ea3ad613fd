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

/// What a LoRA changed in one network.
public struct LoRAReport: Sendable, Hashable {
    /// The LoRA file.
    public var path: String
    /// Layers changed per network (`unet`, `text_encoder`, `text_encoder_2`).
    public var layers: [String: Int]
    /// LoRA layers naming a module the network does not have (an SDXL LoRA's layers of blocks SSD-1B
    /// dropped), skipped as diffusers / PEFT skip them.
    public var unmatched: [String]
}

/// One low-rank update `factor · up · down` of a weight (`factor` = scale · alpha / rank).
struct LoRADelta {
    var down: HostTensorView
    var up: HostTensorView
    var factor: Float

    /// Adds the update to `weight` (`[out, …]` row-major; `down` is `[rank, …]` with the weight's
    /// trailing elements, `up` is `[out, rank(, 1, 1)]`; a convolution's update is `up · down` over the
    /// flattened kernel, as PEFT's `get_delta_weight`).
    func add(to weight: UnsafeMutableBufferPointer<Float>, rows: Int) {
        let rank = down.shape[0]
        let columns = weight.count / rows
        let downValues = (0..<down.count).map { down.float(at: $0) }
        downValues.withUnsafeBufferPointer { d in
            Parallel.forEach(rows) { o in
                let row = weight.baseAddress! + o * columns
                for r in 0..<rank {
                    let a = factor * up.float(at: o * rank + r)
                    if a == 0 { continue }
                    let source = d.baseAddress! + r * columns
                    for j in 0..<columns { row[j] += a * source[j] }
                }
            }
        }
    }
}

/// The LoRA layers of one file, grouped by network and matched to the networks' parameters.
final class LoRAFile {
    let path: String
    let file: SafetensorsFile
    /// (network, module as spelled in the file, key style) → down / up / alpha keys.
    private(set) var layers: [LoRANames.Layer] = []

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
            guard down.dtype.isFloatingPoint, up.dtype.isFloatingPoint else {
                throw ModelError.unsupportedWeightDType(source: path, tensor: downKey, dtype: down.dtype.isFloatingPoint ? up.dtype : down.dtype)
            }
            var alpha = Double(rank)
            if let alphaKey = layer.alpha {
                let view = try file.view(alphaKey)
                guard view.count == 1, view.dtype.isFloatingPoint || view.dtype == .i64 || view.dtype == .i32 else {
                    throw ModelError.invalidInput(model: "LoRA", argument: path, message: "\(alphaKey) is not a scalar")
                }
                alpha = Double(view.float(at: 0))
            }
            guard deltas[name] == nil else {
                throw ModelError.invalidInput(model: "LoRA", argument: path, message: "two layers of the file update \(name)")
            }
            deltas[name] = LoRADelta(down: down, up: up, factor: Float(scale * alpha / Double(rank)))
        }
        return (deltas, unmatched)
    }
}

/// LoRA files applied together, their updates fused into the weights as the networks load (diffusers
/// `load_lora_weights` + `fuse_lora`; several LoRAs add up, as `set_adapters` with their scales). The
/// fused weights compute what diffusers' unfused LoRA layers compute, without their per-step cost.
/// Changing the LoRAs means loading the networks again (`DiffusionPipeline.setLoRAs`).
public final class LoRASet {
    /// The LoRAs, in order.
    public let loras: [LoRAWeights]
    private let files: [LoRAFile]
    private var counts: [[String: Int]]
    private var unmatched: [[String]]
    private var visited: Set<SingleFileNames.Component> = []

    /// Opens every file and checks its keys (a missing matrix, DoRA / LyCORIS forms are errors).
    public init(_ loras: [LoRAWeights]) throws {
        self.loras = loras
        files = try loras.map { lora in
            guard lora.scale.isFinite else {
                throw ModelError.invalidInput(model: "LoRA", argument: lora.path, message: "scale \(lora.scale) is not finite")
            }
            return try LoRAFile(path: lora.path)
        }
        counts = Array(repeating: [:], count: loras.count)
        unmatched = Array(repeating: [], count: loras.count)
    }

    /// `weights` with every LoRA's updates of `component` (whose parameters are `specs`) added.
    public func apply(to weights: WeightFiles, component: SingleFileNames.Component, specs: [ParameterSpec],
                      unet: UNet2DConditionConfig? = nil) throws -> WeightFiles {
        var all: [String: [LoRADelta]] = [:]
        for (index, file) in files.enumerated() {
            let (deltas, missing) = try file.deltas(for: component, specs: specs, scale: loras[index].scale, unet: unet)
            let family: WeightNameMapping.Family = component == .unet ? .unet : component == .vae ? .vae : .clipText
            for (name, delta) in deltas {
                // Keyed by the spelling the weight file uses (transformers 5 drops `text_model.`).
                let stored = WeightNameMapping.candidates(for: name, in: family).first { weights.entry($0) != nil } ?? name
                all[stored, default: []].append(delta)
            }
            counts[index][component.rawValue] = deltas.count
            unmatched[index] = unmatched[index].filter { !$0.hasPrefix(component.rawValue + ": ") }
                + missing.map { component.rawValue + ": " + $0 }
        }
        visited.insert(component)
        return all.isEmpty ? weights : weights.addingLoRA(all)
    }

    /// What each LoRA changed so far.
    public var reports: [LoRAReport] {
        loras.indices.map { LoRAReport(path: loras[$0].path, layers: counts[$0], unmatched: unmatched[$0]) }
    }

    /// Throws when a LoRA changed nothing in the networks it was applied to (made for another model,
    /// or keys in a form not understood).
    public func checkEveryLoRAApplies() throws {
        for (index, lora) in loras.enumerated() where counts[index].values.reduce(0, +) == 0 {
            let sample = unmatched[index].prefix(3).joined(separator: ", ")
            throw ModelError.invalidInput(model: "LoRA", argument: lora.path,
                                          message: "none of its \(unmatched[index].count) layers names a layer of these networks (e.g. \(sample))")
        }
    }
}
