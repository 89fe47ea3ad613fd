import SSDCPUBackend
import SSDCUDABackend
import SSDTensor

// The one place that knows the backend modules' constructors.

/// CPU: fp32 compute (fp32-high: bf16×3 linears on AMX); fp16 keeps weights fp16-resident
/// (converted on the fly); bf16 stores weights in bf16 and uses bf16 dot products with fp32 accumulation.
func makeCPUBackend(precision: Precision) throws -> any ComputeBackend {
    var options = CPUBackendOptions()
    switch precision {
    case .fp32: break
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

/// CUDA: text encoders and UNet in fp16 with fp32 accumulation; the VAE in fp32 unless its config
/// allows fp16 (`force_upcast: false`). The precision argument is not used yet.
func makeCUDABackend(precision: Precision) throws -> any ComputeBackend {
    do {
        return try CUDABackend()
    } catch let TensorError.backendUnavailable(backend, reason) {
        throw PipelineError.backendUnavailable(name: backend, reason: reason)
    }
}
