import SSDTensor

/// One parameter a network expects: its canonical (diffusers / transformers) name and shape.
public struct ParameterSpec: Sendable, Hashable {
    /// The parameter's diffusers name, e.g. `down_blocks.0.resnets.0.conv1.weight`.
    public let name: String
    /// Its shape as stored in the file.
    public let shape: [Int]
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
}

/// Storage of a parameter that was only described, not loaded (spec mode, or a missing
/// tensor while the loader collects every problem before throwing).
final class UnloadedStorage: TensorStorage, @unchecked Sendable {
    var byteCount: Int { 0 }
}

/// Hands out a network's parameters while the network is built, checking each against the file.
///
/// In spec mode (no weights) it only records names and shapes (parameter counting). In load
/// mode each parameter is looked up through `WeightNameMapping`, its shape and element type
/// are checked, and the memory-mapped view goes straight to `backend.prepareWeight`. Problems
/// are collected; `finish()` throws one `ModelError.weightMismatch` naming every missing,
/// unexpected and wrongly shaped tensor.
final class ParameterLoader {
    let model: String
    let family: WeightNameMapping.Family
    private let weights: WeightFiles?
    private let backend: (any ComputeBackend)?
    private let activationDType: DType
    /// The model component the parameters are prepared for.
    let component: ModelComponent
    private(set) var specs: [ParameterSpec] = []
    private var consumed: Set<String> = []
    private var missing: [String] = []
    private var wrongShape: [ModelError.WrongShape] = []

    /// Spec mode: records parameters, loads nothing.
    init(describing model: String, family: WeightNameMapping.Family) {
        self.model = model
        self.family = family
        self.weights = nil
        self.backend = nil
        self.activationDType = .f32
        self.component = .textEncoder
    }

    /// Load mode: parameters come from `weights`, prepared by `backend` for `component`.
    init(model: String, family: WeightNameMapping.Family, weights: WeightFiles, backend: any ComputeBackend, component: ModelComponent) {
        self.model = model
        self.family = family
        self.weights = weights
        self.backend = backend
        self.activationDType = backend.activationDType(for: component)
        self.component = component
    }

    /// The root scope (no name prefix).
    var root: ParameterScope { ParameterScope(loader: self, prefix: "") }

    /// Parameter `name` of `shape` (as stored in the file), prepared for `role`. `preparedShape`
    /// reinterprets the same elements with another shape (a 1×1 convolution used as a linear layer).
    func parameter(_ name: String, shape: [Int], role: WeightRole, preparedShape: [Int]? = nil) throws -> Tensor {
        specs.append(ParameterSpec(name: name, shape: shape))
        let logicalShape = preparedShape ?? shape
        let placeholder = Tensor(shape: logicalShape, dtype: activationDType, storage: UnloadedStorage())
        guard let weights, let backend else { return placeholder }
        // Loading a component takes seconds: a cancelled task stops at the next tensor.
        try Task.checkCancellation()
        let candidates = WeightNameMapping.candidates(for: name, in: family)
        guard let fileName = candidates.first(where: { weights.entry($0) != nil }), let entry = weights.entry(fileName) else {
            missing.append(name)
            return placeholder
        }
        consumed.insert(fileName)
        guard entry.shape == shape else {
            wrongShape.append(.init(tensor: fileName, expected: shape, actual: entry.shape))
            return placeholder
        }
        guard entry.dtype.isFloatingPoint else {
            throw ModelError.unsupportedWeightDType(source: weights.source, tensor: fileName, dtype: entry.dtype)
        }
        var view = try weights.view(fileName)
        if let preparedShape {
            view = HostTensorView(name: view.name, shape: preparedShape, dtype: view.dtype, pointer: view.pointer, owner: view.owner)
        }
        let prepared = try backend.prepareWeight(view, role: role, component: component)
        // Backends copy what they keep (documented on `prepareWeight`), so the file pages can go.
        weights.evictPages(of: fileName)
        return prepared
    }

    /// The fp32 values of parameter `name` as stored in the file, for weights derived at load time
    /// (the parameter itself is declared through `parameter`); nil in spec mode or when the tensor
    /// is missing or of another shape (`finish` reports those).
    func hostValues(_ name: String, shape: [Int]) throws -> [Float]? {
        guard let weights else { return nil }
        let candidates = WeightNameMapping.candidates(for: name, in: family)
        guard let fileName = candidates.first(where: { weights.entry($0) != nil }), let entry = weights.entry(fileName),
              entry.shape == shape, entry.dtype.isFloatingPoint else { return nil }
        let view = try weights.view(fileName)
        defer { weights.evictPages(of: fileName) }
        return [Float](unsafeUninitializedCapacity: view.count) { buffer, count in
            if let base = buffer.baseAddress { view.convertToFloat(into: base) }
            count = view.count
        }
    }

    /// A weight computed at load time (not stored in the file), prepared for `role` like a parameter.
    func derivedParameter(_ name: String, values: [Float], shape: [Int], role: WeightRole) throws -> Tensor? {
        guard let backend else { return nil }
        let view = HostBuffer.view(of: values, shape: shape, name: name)
        return try backend.prepareWeight(view, role: role, component: component)
    }

    /// Throws `ModelError.weightMismatch` if any tensor was missing, unexpected or of the wrong shape.
    func finish() throws {
        guard let weights else { return }
        let unexpected = weights.names.filter { !consumed.contains($0) && !WeightNameMapping.isIgnored($0, in: family) }
        if !missing.isEmpty || !unexpected.isEmpty || !wrongShape.isEmpty {
            throw ModelError.weightMismatch(model: model, source: weights.source, missing: missing, unexpected: unexpected, wrongShape: wrongShape)
        }
    }

    /// Total number of parameters described so far.
    var parameterCount: Int { specs.reduce(0) { $0 + $1.count } }
}

/// A module path inside a network (`down_blocks.1.attentions.0`), for naming parameters.
struct ParameterScope {
    let loader: ParameterLoader
    let prefix: String

    /// The model component being loaded (passed to backend ops that care, e.g. attention).
    var component: ModelComponent { loader.component }

    /// The sub-module `name` (e.g. `"resnets.0"`).
    func callAsFunction(_ name: String) -> ParameterScope {
        ParameterScope(loader: loader, prefix: prefix.isEmpty ? name : prefix + "." + name)
    }

    /// The sub-module `name.index`.
    func callAsFunction(_ name: String, _ index: Int) -> ParameterScope { self("\(name).\(index)") }

    /// The fp32 file values of parameter `name` of this module (see `ParameterLoader.hostValues`).
    func hostValues(_ name: String, shape: [Int]) throws -> [Float]? {
        try loader.hostValues(prefix.isEmpty ? name : prefix + "." + name, shape: shape)
    }

    /// A weight of this module computed at load time (see `ParameterLoader.derivedParameter`).
    func derivedParameter(_ name: String, values: [Float], shape: [Int], role: WeightRole) throws -> Tensor? {
        try loader.derivedParameter(prefix.isEmpty ? name : prefix + "." + name, values: values, shape: shape, role: role)
    }

    /// Parameter `name` of this module.
    func parameter(_ name: String, shape: [Int], role: WeightRole, preparedShape: [Int]? = nil) throws -> Tensor {
        try loader.parameter(prefix.isEmpty ? name : prefix + "." + name, shape: shape, role: role, preparedShape: preparedShape)
    }
}
