import SSDTensor
import Testing
@testable import SSDCUDABackend

/// Compiles every kernel group with NVRTC for sm_90 when libnvrtc is present (set
/// `SSD_CUDA_LIBRARY_PATH` to the folder holding `libnvrtc.so.13`, e.g. the `nvidia-cuda-nvrtc` wheel's;
/// `SSD_CUDA_REQUIRE_NVRTC=1` makes a missing NVRTC a failure).
@Test(arguments: KernelGroup.allCases)
func kernelGroupCompiles(_ group: KernelGroup) throws {
    let compiler: NVRTCCompiler
    do {
        compiler = try NVRTCCompiler()
    } catch {
        // No NVRTC on this machine: nothing to check, unless the caller insists.
        if environment("SSD_CUDA_REQUIRE_NVRTC") == "1" { throw error }
        return
    }
    let output = try compiler.compile(
        source: group.source, name: "\(group.rawValue).cu", computeCapability: 90, nameExpressions: group.nameExpressions)
    #expect(output.isCUBIN)
    #expect(!output.image.isEmpty)
    #expect(output.loweredNames.count == group.nameExpressions.count)
    #expect(output.loweredNames.values.allSatisfy { !$0.isEmpty })
}
