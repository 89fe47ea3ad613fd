import Testing
@testable import SSDPipeline

/// The host latent layout changes (chunked over pixels and spread over the cores) against the
/// direct index formula, on sizes with several chunks per image and a partial last chunk.
@Test(arguments: [(2, 4, 3, 5), (3, 4, 70, 130), (1, 9, 64, 129)])
func latentLayoutsMatchTheIndexFormula(_ b: Int, _ c: Int, _ h: Int, _ w: Int) {
    let count = b * c * h * w
    let planar = (0..<count).map { Float($0) * 0.5 - 3 }
    let interleaved = Layout.nchwToNHWC(planar, b, c, h, w)
    var expected = [Float](repeating: 0, count: count)
    for n in 0..<b { for ch in 0..<c { for y in 0..<h { for x in 0..<w {
        expected[((n * h + y) * w + x) * c + ch] = planar[((n * c + ch) * h + y) * w + x]
    } } } }
    #expect(interleaved == expected)
    #expect(Layout.nhwcToNCHW(interleaved, b, c, h, w) == planar)
}

@Test func emptyLatentsAreEmpty() {
    #expect(Layout.nchwToNHWC([], 0, 4, 8, 8).isEmpty)
    #expect(Layout.nhwcToNCHW([], 1, 4, 0, 8).isEmpty)
    #expect(Guidance.combine([], scale: 5).guided.isEmpty)
    #expect(Layout.allFinite([]))
}

@Test func finiteCheckAndGuidance() {
    var values = (0..<200_000).map { Float($0 % 97) - 40 }
    #expect(Layout.allFinite(values))
    for bad in [Float.nan, .infinity, -.infinity] {
        var copy = values
        copy[123_457] = bad
        #expect(!Layout.allFinite(copy))
    }
    values[0] = -0.0
    #expect(Layout.allFinite(values))
    let (guided, conditional) = Guidance.combine(values, scale: 7.5)
    let half = values.count / 2
    #expect(guided.count == half && conditional.count == half)
    #expect(guided == (0..<half).map { values[$0] + 7.5 * (values[half + $0] - values[$0]) })
}
