import Testing
@testable import SSDTensor

@Test func moduleLoads() { #expect(Bool(true)) }
