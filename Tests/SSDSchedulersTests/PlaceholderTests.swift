import Testing
@testable import SSDSchedulers

@Test func moduleLoads() { #expect(Bool(true)) }
