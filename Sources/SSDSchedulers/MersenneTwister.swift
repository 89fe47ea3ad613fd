/// MT19937, seeded as PyTorch's `at::mt19937` (`ATen/core/MT19937RNGEngine.h`): the state is
/// filled from the low 32 bits of the seed with the reference `init_genrand` recurrence, and the
/// output is the standard tempered 32-bit word.
public struct MersenneTwister19937: Sendable, Hashable {
    private static let n = 624
    private static let m = 397
    private var state: [UInt32]
    private var index: Int

    /// Seeds the engine; only the low 32 bits of `seed` are used, as in PyTorch.
    public init(seed: UInt64) {
        var state = [UInt32](repeating: 0, count: Self.n)
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<Self.n {
            let previous = state[j - 1]
            state[j] = 1_812_433_253 &* (previous ^ (previous >> 30)) &+ UInt32(j)
        }
        self.state = state
        self.index = Self.n
    }

    /// The next tempered 32-bit output.
    public mutating func next() -> UInt32 {
        if index >= Self.n { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        let upper: UInt32 = 0x8000_0000
        let lower: UInt32 = 0x7FFF_FFFF
        let matrixA: UInt32 = 0x9908_B0DF
        for i in 0..<Self.n {
            let y = (state[i] & upper) | (state[(i + 1) % Self.n] & lower)
            var value = state[(i + Self.m) % Self.n] ^ (y >> 1)
            if y & 1 != 0 { value ^= matrixA }
            state[i] = value
        }
        index = 0
    }
}
