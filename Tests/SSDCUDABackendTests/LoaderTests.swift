import CCUDA
import SSDTensor
import Testing
@testable import SSDCUDABackend
#if canImport(Glibc)
import Glibc
#endif

/// A library that opens but lacks the entry points is reported with the missing symbol and the file.
/// (cuBLASLt is opened by nothing else in these tests on a GPU-less machine; the loader caches per process.)
@Test func missingSymbolIsNamed() throws {
    let candidates = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6"]
    guard CUDABackend.availability().description.contains("libcuda"),  // no driver: cuBLASLt never opened
          let target = candidates.first(where: { access($0, R_OK) == 0 }) else { return }
    var template = Array("/tmp/ssd-cuda-loader-XXXXXX".utf8CString)
    guard let dir = mkdtemp(&template) else { return }
    let folder = String(cString: dir)
    defer {
        unlink(folder + "/libcublasLt.so.13")
        rmdir(folder)
    }
    #expect(symlink(target, folder + "/libcublasLt.so.13") == 0)
    do {
        _ = try CUDALibrary.load(CCUDA_LIBRARY_CUBLASLT, as: CCUDACublasLtAPI.self, searching: folder)
        Issue.record("a libm posing as libcublasLt loaded")
    } catch let TensorError.backendUnavailable(_, reason) {
        #expect(reason.contains("symbol cublasLtCreate is missing"))
        #expect(reason.contains(folder + "/libcublasLt.so.13"))
    }
}

/// The optional cuDNN calls (measured algorithm search, fused convolution) are resolved apart from
/// the required cuDNN table: without a loaded cuDNN the loader says so and leaves the table empty.
@Test func cudnnExtrasAreOptional() {
    var table = CCUDACudnnExtraAPI()
    var message = [CChar](repeating: 0, count: 512)
    let found = ccuda_load_cudnn_extra_api(&table, &message, message.count)
    if CUDABackend.availability().description.contains("libcuda") {  // no driver: cuDNN never opened
        #expect(found == 0)
        #expect(string(message).contains("cuDNN library is not loaded"))
        #expect(table.cudnnConvolutionBiasActivationForward == nil)
        #expect(table.cudnnFindConvolutionForwardAlgorithm == nil)
    } else {
        #expect(found == 1 || string(message).contains("missing") || string(message).contains("not loaded"))
    }
}

/// cuDNN's graph (backend) API (convolutions with `SSD_CUDA_CONV_GRAPH=1`) is optional the same way.
@Test func cudnnGraphAPIIsOptional() {
    var table = CCUDACudnnGraphAPI()
    var message = [CChar](repeating: 0, count: 512)
    let found = ccuda_load_cudnn_graph_api(&table, &message, message.count)
    if CUDABackend.availability().description.contains("libcuda") {  // no driver: cuDNN never opened
        #expect(found == 0)
        #expect(string(message).contains("cuDNN library is not loaded"))
        #expect(table.cudnnBackendExecute == nil)
        #expect(table.cudnnBackendCreateDescriptor == nil)
    } else {
        #expect(found == 1 || string(message).contains("missing") || string(message).contains("not loaded"))
    }
}
