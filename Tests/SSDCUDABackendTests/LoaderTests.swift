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
