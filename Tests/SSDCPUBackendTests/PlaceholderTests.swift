import Testing
@testable import SSDCPUBackend

@Test func moduleLoads() { #expect(Bool(true)) }
