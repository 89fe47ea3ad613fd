import Testing
@testable import SSDPipeline

@Test func moduleLoads() { #expect(Bool(true)) }
