import Foundation

/// `ssd-bench unet`: denoising iterations per second and memory (DESIGN.md §8). Needs SSDModels.
func runUNetBenchmark(_ args: Arguments) throws {
    throw BenchError.failed("unet: waiting for SSDModels (not on main yet)")
}
