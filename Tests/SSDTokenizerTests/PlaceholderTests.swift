import Testing
@testable import SSDTokenizer

@Test func moduleLoads() { #expect(Bool(true)) }
