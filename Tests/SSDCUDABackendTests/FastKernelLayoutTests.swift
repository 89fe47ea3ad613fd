import Testing
@testable import SSDCUDABackend

/// Which broadcasts `binary_h8` takes (collapsed axes as `binary` computes them: size, stride a, stride b).
@Test func vectorBinaryLayouts() {
    // [2,64,64,640] + [2,1,1,640]: ResnetBlock2D's h + temb.
    let temb = CUDABackend.vectorBinaryLayout([(2, 64 * 64 * 640, 640), (4096, 640, 0), (640, 1, 1)])
    #expect(temb?.rowBroadcast == true && temb?.p == 4096 && temb?.c == 640)
    // [20,64] + [64]
    let row = CUDABackend.vectorBinaryLayout([(20, 64, 0), (64, 1, 1)])
    #expect(row?.rowBroadcast == true && row?.p == 20 && row?.c == 64)
    // same shape, contiguous
    let same = CUDABackend.vectorBinaryLayout([(4096, 1, 1)])
    #expect(same?.rowBroadcast == false && same?.c == 4096)
    // not handled: a broadcast, channel count not a multiple of 8, odd totals, column broadcast
    #expect(CUDABackend.vectorBinaryLayout([(4, 0, 64), (64, 1, 1)]) == nil)
    #expect(CUDABackend.vectorBinaryLayout([(20, 12, 0), (12, 1, 1)]) == nil)
    #expect(CUDABackend.vectorBinaryLayout([(21, 1, 1)]) == nil)
    #expect(CUDABackend.vectorBinaryLayout([(4, 64, 1), (64, 1, 0)]) == nil)
}
