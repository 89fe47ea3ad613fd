import SSDTensor

/// Collects named intermediate activations during a forward pass (for parity tests against
/// diffusers' module outputs). Not thread-safe; one trace per call.
final class ForwardTrace {
    private(set) var tensors: [String: Tensor] = [:]

    func record(_ name: String, _ tensor: Tensor) { tensors[name] = tensor }
}
