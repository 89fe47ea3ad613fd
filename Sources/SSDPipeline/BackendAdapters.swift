import SSDCPUBackend
import SSDCUDABackend
import SSDTensor

// The one place that knows the backend modules' constructors.

/// CPU: fp32 compute (fp32-high: bf16×3 linears on AMX); fp16 keeps weights fp16-resident
/// (converted on the fly); bf16 stores weights in bf16 and uses bf16 dot products with fp32 accumulation.
func makeCPUBackend(precision: Precision) throws -> any ComputeBackend {
    var options = CPUBackendOptions()
    switch precision {
    case .fp32, .automatic: break
    case .fp32High: options.float32MatmulPrecision = .high
    case .fp16: options.weightStorage = .f16
    case .bf16:
        options.weightStorage = .bf16
        options.bf16Compute = true
    }
    do {
        return try CPUBackend(options: options)
    } catch let TensorError.backendUnavailable(backend, reason) {
        throw PipelineError.backendUnavailable(name: backend, reason: reason)
    }
}

/// CUDA: text encoders and UNet in fp16 with fp32 accumulation (`automatic`, `fp16`) or in fp32
/// (`fp32`, `fp32-high`: no TF32); the VAE in fp32 unless its config allows fp16 (`force_upcast:
/// false`). bf16 is refused (the backend has no bf16 activation path).
func makeCUDABackend(precision: Precision) throws -> any ComputeBackend {
    let activations: DType
    switch precision {
    case .automatic, .fp16: activations = .f16
    case .fp32, .fp32High: activations = .f32
    case .bf16:
        throw PipelineError.backendUnavailable(name: "cuda", reason: "bf16 is not supported on the CUDA backend; use fp16 or fp32")
    }
    do {
        return try CUDABackend(activations: activations)
    } catch let TensorError.backendUnavailable(backend, reason) {
        throw PipelineError.backendUnavailable(name: backend, reason: reason)
    }
}
