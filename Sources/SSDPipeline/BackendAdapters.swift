import SSDCPUBackend
import SSDCUDABackend
import SSDTensor

// The one place that knows the backend modules' constructors.

func makeCPUBackend(precision: Precision) throws -> any ComputeBackend {
    ReferenceBackend()  // replaced by CPUBackend once it lands
}

func makeCUDABackend(precision: Precision) throws -> any ComputeBackend {
    throw PipelineError.backendUnavailable(name: "cuda", reason: "not built yet")
}
