import Testing
@testable import SSDModels

@Test func moduleLoads() { #expect(Bool(true)) }
