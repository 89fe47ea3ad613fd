import SSDTensor
import Testing
@testable import SSDCUDABackend

/// On a machine without libcuda (CI), the backend reports itself unavailable and says what is missing.
@Test func availabilityNamesWhatIsMissing() throws {
    let availability = CUDABackend.availability()
    if availability.isAvailable {
        #expect(availability.description.contains("sm_"))
        return
    }
    #expect(!availability.description.isEmpty)
    do {
        _ = try CUDABackend()
        Issue.record("CUDABackend() succeeded although availability() said: \(availability.description)")
    } catch let error as TensorError {
        guard case let .backendUnavailable(backend, reason) = error else {
            Issue.record("unexpected error \(error)")
            return
        }
        #expect(backend == "cuda")
        #expect(reason == availability.description)
    }
}

/// The loader names the library and the folders it searched.
@Test func missingDriverIsNamed() throws {
    let availability = CUDABackend.availability()
    guard !availability.isAvailable, availability.description.contains("libcuda") else { return }
    #expect(availability.description.contains("libcuda.so.1"))
    #expect(availability.description.contains("SSD_CUDA_LIBRARY_PATH"))
}

/// NVRTC's location is reported too (when present), and the unit chooser used by copies is sane.
@Test func copyUnit() {
    #expect(CUDABackend.unit([32, 64]) == 16)
    #expect(CUDABackend.unit([6]) == 2)
    #expect(CUDABackend.unit([12, 8]) == 4)
}
