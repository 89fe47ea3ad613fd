import Testing
import SSDSchedulers

/// A scheduler written outside the library: plain Euler on a hand-made σ ramp with ancestral noise.
struct LinearRampScheduler: Scheduler {
    var sigmaMax: Float = 10
    private var sigmas: [Float] = []
    private(set) var stepIndex = 0
    private(set) var timesteps: [Double] = []

    var initNoiseSigma: Float { sigmas.first ?? sigmaMax }
    var order: Int { 1 }

    mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        guard steps > 0 else { throw SchedulerError.invalidStepCount(scheduler: "LinearRamp", steps: steps) }
        sigmas = (0...steps).map { sigmaMax * Float(steps - $0) / Float(steps) }
        timesteps = (0..<steps).map { Double(999 * (steps - $0) / steps) }
        stepIndex = 0
    }

    func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        let sigma = sigmas[timestepIndex]
        return sample.map { $0 / (sigma * sigma + 1).squareRoot() }
    }

    mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let dt = sigmas[stepIndex + 1] - sigmas[stepIndex]
        let jitter = random.normal(count: sample.count)
        stepIndex += 1
        return (0..<sample.count).map { sample[$0] + modelOutput[$0] * dt + 0 * jitter[$0] }
    }

    func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        (0..<original.count).map { original[$0] + noise[$0] * sigmas[timestepIndex] }
    }

    mutating func reset() { stepIndex = 0 }
}

/// The pipeline's loop, written once against the protocol, with both the randomness and the
/// scheduler as existentials (what an API taking user-supplied pieces holds).
func denoise(
    scheduler: inout any Scheduler, steps: Int, count: Int, random: inout any RandomSource,
    model: ([Float], Double) -> [Float]
) throws -> [Float] {
    try scheduler.setTimesteps(steps)
    var latents = random.normal(count: count).map { $0 * scheduler.initNoiseSigma }
    for (i, t) in scheduler.timesteps.enumerated() {
        let input = try scheduler.scaleModelInput(latents, timestepIndex: i)
        latents = try scheduler.step(modelOutput: model(input, t), sample: latents, random: &random)
    }
    return latents
}

@Suite struct CustomSchedulerTests {
    @Test func aTestDefinedSchedulerDrivesTheLoop() throws {
        var scheduler: any Scheduler = LinearRampScheduler()
        var random: any RandomSource = TorchCPUGenerator(seed: 3)
        // With the exact ε of x = σ·ε the Euler steps land on x₀ = 0.
        var evaluations = 0
        let latents = try denoise(scheduler: &scheduler, steps: 8, count: 32, random: &random) { input, _ in
            evaluations += 1
            return input.map { $0 * (100 + 1).squareRoot() / 10 }  // undo the scaling at σ = 10 only
        }
        #expect(evaluations == 8)
        #expect(scheduler.stepIndex == 8 && scheduler.remainingSteps == 0)
        #expect(latents.count == 32)
        #expect(latents.allSatisfy { $0.isFinite })
        // A scheduler that does not say where `denoising_start` begins gets a typed error, not a guess.
        #expect(throws: SchedulerError.denoisingStartUnsupported(scheduler: "LinearRampScheduler")) {
            try scheduler.setTimesteps(8, denoisingStart: 0.5)
        }
    }

    @Test func builtInSchedulersRunThroughTheSameLoop() throws {
        for name in SchedulerFactory.names {
            var scheduler = try SchedulerFactory.make(name: name, config: SchedulerAPITests.sdxl)
            var random: any RandomSource = TorchCPUGenerator(seed: 1)
            var evaluations = 0
            let latents = try denoise(scheduler: &scheduler, steps: 6, count: 20, random: &random) { input, _ in
                evaluations += 1
                return input.map { $0 * 0.1 }
            }
            #expect(evaluations == 6 * scheduler.order - (scheduler.order - 1), "\(name)")
            #expect(latents.allSatisfy { $0.isFinite }, "\(name)")
        }
    }
}
