// swift-tools-version: 6.0
// SSD-1B text-to-image in Swift. No package dependencies; optional native libraries
// (OpenBLAS, CUDA, cuBLAS, cuDNN, NVRTC) are opened at run time.
import PackageDescription

let package = Package(
    name: "SSDPipeline",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SSDTensor", targets: ["SSDTensor"]),
        .library(name: "SSDTokenizer", targets: ["SSDTokenizer"]),
        .library(name: "SSDModels", targets: ["SSDModels"]),
        .library(name: "SSDSchedulers", targets: ["SSDSchedulers"]),
        .library(name: "SSDPipeline", targets: ["SSDPipeline"]),
        .library(name: "SSDCPUBackend", targets: ["SSDCPUBackend"]),
        .library(name: "SSDCUDABackend", targets: ["SSDCUDABackend"]),
        .executable(name: "ssd1b", targets: ["ssd1b"]),
        .executable(name: "ssd-bench", targets: ["ssd-bench"]),
        .executable(name: "ssd-cuda-check", targets: ["ssd-cuda-check"]),
    ],
    targets: [
        .target(name: "SSDTensor"),
        .target(name: "SSDTokenizer"),
        .target(name: "SSDModels", dependencies: ["SSDTensor"]),
        .target(name: "SSDSchedulers", dependencies: ["SSDTensor"]),
        // SIMD micro-kernels: per-function target attributes, chosen at run time (no build flags).
        .target(name: "CSSDKernels"),
        .target(name: "SSDCPUBackend", dependencies: ["SSDTensor", "CSSDKernels"]),
        // CUDA driver / cuBLASLt / cuDNN / NVRTC declarations and a run-time loader (dlopen).
        .target(name: "CCUDA", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .target(name: "SSDCUDABackend", dependencies: ["SSDTensor", "CCUDA"]),
        .target(
            name: "SSDPipeline",
            dependencies: ["SSDTensor", "SSDTokenizer", "SSDModels", "SSDSchedulers", "SSDCPUBackend", "SSDCUDABackend"]),
        .executableTarget(name: "ssd1b", dependencies: ["SSDPipeline", "SSDTensor", "SSDTokenizer", "SSDModels", "SSDSchedulers", "SSDCPUBackend", "SSDCUDABackend"]),
        // GPU parity against ReferenceBackend and micro-benchmarks (Scripts/gpu/check.sh).
        .executableTarget(name: "ssd-cuda-check", dependencies: ["SSDCUDABackend", "SSDTensor", "SSDModels"]),
        .executableTarget(
            name: "ssd-bench",
            dependencies: ["SSDPipeline", "SSDTensor", "SSDTokenizer", "SSDModels", "SSDSchedulers", "SSDCPUBackend",
                           "SSDCUDABackend", "CSSDKernels"],
            path: "Benchmarks/Sources/ssd-bench"),
        .testTarget(name: "SSDTensorTests", dependencies: ["SSDTensor"]),
        .testTarget(name: "SSDTokenizerTests", dependencies: ["SSDTokenizer"]),
        .testTarget(name: "SSDModelsTests", dependencies: ["SSDModels"]),
        .testTarget(name: "SSDSchedulersTests", dependencies: ["SSDSchedulers"]),
        .testTarget(name: "SSDCPUBackendTests", dependencies: ["SSDCPUBackend"]),
        .testTarget(name: "SSDCUDABackendTests", dependencies: ["SSDCUDABackend"]),
        .testTarget(name: "SSDPipelineTests", dependencies: ["SSDPipeline"]),
    ],
    swiftLanguageModes: [.v6]
)
