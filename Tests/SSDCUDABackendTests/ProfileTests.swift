import Testing

@testable import SSDCUDABackend

/// Profile entries are grouped by what their names say they are.
@Test func profileCategoriesFromNames() {
    let cases: [(String, CUDAProfileCategory)] = [
        ("cublasLt m=8192 n=640 k=640", .gemm), ("cudnn conv 3x3 s1 640->640 2x64x64 algo 1", .convolution),
        ("im2col_kernel<16>", .convolution), ("flash_attention_fast_d64_w8", .attention),
        ("group_norm_partial_h8", .normalization), ("layer_norm_h8", .normalization), ("softmax_kernel<1>", .normalization),
        ("geglu_h8", .elementwise), ("bias_residual_h8", .elementwise), ("permute_kernel<1>", .elementwise),
        ("cudnn graph conv 3x3 s1 320->320 2x128x128 +bias +residual", .convolution),
        ("cudnn graph sdpa 2x10 4096x4096 d64 (SDPA operation)", .attention),
    ]
    for (name, category) in cases {
        #expect(CUDAProfileCategory(entryName: name) == category, "\(name)")
    }
}

@Test func profileSummaryAddsPerCategory() {
    let entries = [
        CUDAProfileEntry(name: "cublasLt m=1 n=2 k=3", category: .gemm, seconds: 2, calls: 3, flops: 10),
        CUDAProfileEntry(name: "cublasLt m=4 n=5 k=6", category: .gemm, seconds: 1, calls: 1, flops: 20),
        CUDAProfileEntry(name: "geglu_h8", category: .elementwise, seconds: 0.5, calls: 4, flops: 0),
    ]
    let summary = summarize(entries)
    #expect(summary.map(\.category) == [.gemm, .elementwise])
    #expect(summary[0].seconds == 3 && summary[0].calls == 4 && summary[0].flops == 30)
    #expect(summary[0].flopsPerSecond == 10)
    #expect(summary[1].flopsPerSecond == 0)
}
