import Testing
@testable import SSDCUDABackend

@Test func moduleLoads() { #expect(Bool(true)) }
