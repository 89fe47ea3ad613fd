import Foundation
import Testing
@testable import SSDSchedulers

/// Every listed scheduler against diffusers 0.42.1, step by step (Tests/Fixtures/schedulers/steps.json).
@Suite struct SchedulerFixtureTests {
    @Test func fixtureCoversEveryNamedScheduler() {
        let used = Set(Fixtures.cases.compactMap { $0["scheduler"] as? String })
        #expect(Fixtures.cases.count >= 30)
        #expect(used == Set(SchedulerFactory.names))
    }

    static func sigmas(of scheduler: any Scheduler) -> [Float]? {
        switch scheduler {
        case let s as EulerScheduler: return s.sigmas
        case let s as HeunScheduler: return s.sigmas
        case let s as DPMSolverMultistepScheduler: return s.sigmas
        case let s as UniPCMultistepScheduler: return s.sigmas
        default: return nil
        }
    }

    @Test(arguments: Fixtures.caseNames)
    func matchesDiffusersStepByStep(_ caseName: String) throws {
        let record = try #require(Fixtures.cases.first { $0["name"] as? String == caseName })
        let base = try Fixtures.baseConfiguration()
        let overrides = try Fixtures.configuration(record["overrides"] ?? [String: Any]())
        let name = try #require(record["scheduler"] as? String)
        var scheduler = try SchedulerFactory.make(name: name, config: base, overrides: overrides)
        if let eta = record["eta"] as? Double {  // (TCD's gamma: diffusers' step(eta=…))
            var tcd = try #require(scheduler as? TCDScheduler)
            tcd.eta = Float(eta)
            scheduler = tcd
        }
        let steps = try #require(record["steps"] as? Int)
        let strength = record["strength"] as? Double
        let denoisingStart = record["denoising_start"] as? Double
        if let values = record["custom_timesteps"] as? [Double] {
            try scheduler.setTimesteps(.timesteps(values), strength: strength)
        } else if let values = record["custom_sigmas"] as? [Double] {
            try scheduler.setTimesteps(.sigmas(values), strength: strength)
        } else if let denoisingStart {
            try scheduler.setTimesteps(steps, denoisingStart: denoisingStart)
        } else {
            try scheduler.setTimesteps(steps, strength: strength)
        }

        #expect(scheduler.order == record["order"] as? Int)
        let expectedTimesteps = try #require(record["timesteps"] as? [Double])
        #expect(Self.sameTimesteps(scheduler.timesteps, expectedTimesteps), "timesteps \(scheduler.timesteps)")
        let initSigma = try #require(record["init_noise_sigma"] as? Double)
        #expect(abs(Double(scheduler.initNoiseSigma) - initSigma) <= 1e-6 * initSigma, "init_noise_sigma")
        if let expectedSigmas = record["sigmas"] as? [Double] {
            let sigmas = try #require(Self.sigmas(of: scheduler))
            #expect(relativeError(sigmas, expectedSigmas.map { Float($0) }) <= 1e-6, "sigmas")
            #expect(sigmas.count == expectedSigmas.count)
        }

        let baseValues = try Fixtures.floats(Fixtures.steps?["base"])
        var sample: [Float]
        if strength != nil || denoisingStart != nil {
            let original = try Fixtures.floats(record["original"])
            let noise = try Fixtures.floats(record["noise"])
            sample = try scheduler.addNoise(original: original, noise: noise)
            #expect(relativeError(sample, try Fixtures.floats(record["noised"])) <= 1e-6, "add_noise")
        } else {
            let initial = try Fixtures.floats(Fixtures.steps?["initial"])
            sample = initial.map { $0 * scheduler.initNoiseSigma }
        }
        var generator = TorchCPUGenerator(seed: UInt64(record["seed"] as? Int ?? 0))
        let expectedSamples = try #require(record["samples"] as? [String])
        #expect(expectedSamples.count == scheduler.timesteps.count)
        var worst = 0.0
        for (i, t) in scheduler.timesteps.enumerated() {
            #expect(scheduler.stepIndex == i)
            let input = try scheduler.scaleModelInput(sample, timestepIndex: i)
            let output = fakeModel(input, timestep: t, base: baseValues)
            sample = try scheduler.step(modelOutput: output, sample: sample, random: &generator)
            let error = relativeError(sample, try Fixtures.floats(expectedSamples[i]))
            worst = max(worst, error)
            #expect(error <= 1e-5, "step \(i) (t = \(t)): relative error \(error)")
        }
        #expect(scheduler.remainingSteps == 0)
        #expect(throws: SchedulerError.self) { try scheduler.step(modelOutput: sample, sample: sample) }

        // reset() replays the same schedule from the start.
        scheduler.reset()
        #expect(scheduler.stepIndex == 0)
        #expect(Self.sameTimesteps(scheduler.timesteps, expectedTimesteps))
    }

    /// Integer timesteps exactly; fractional (Karras) ones to 1e-6 relative (see
    /// `SigmaSchedule.timestep(forSigma:logSigmas:)` on NumPy's float32 log).
    static func sameTimesteps(_ actual: [Double], _ expected: [Double]) -> Bool {
        actual.count == expected.count && zip(actual, expected).allSatisfy { a, e in
            e.rounded() == e ? Float(a) == Float(e) : abs(a - e) <= 1e-6 * abs(e)
        }
    }

    @Test func trainingTablesMatchTorch() throws {
        let tables = try #require(Fixtures.steps?["tables"] as? [String: [String: Any]])
        #expect(tables.count == 4)
        for (label, table) in tables {
            let config = try Fixtures.configuration(try #require(table["config"]))
            let className = try #require(table["class"] as? String)
            let scheduler = try SchedulerFactory.make(className: className, config: config)
            let noise: NoiseSchedule
            switch scheduler {
            case let s as EulerScheduler: noise = s.noise
            case let s as DDIMScheduler: noise = s.noise
            default: Issue.record("unexpected class \(className)"); continue
            }
            let betas = try Fixtures.floats(table["betas"])
            let alphasCumprod = try Fixtures.floats(table["alphas_cumprod"])
            if label == "zero-snr" {  // rescaling cancels: 1 − α near 1 amplifies last-bit differences
                #expect(relativeError(noise.betas, betas) <= 1e-6, "\(label) betas")
            } else {
                #expect(noise.betas.map(\.bitPattern) == betas.map(\.bitPattern), "\(label) betas")
            }
            #expect(relativeError(noise.alphasCumprod, alphasCumprod) <= 1e-6, "\(label) alphas_cumprod")
        }
    }
}
