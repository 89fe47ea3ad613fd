import Foundation
import Testing
@testable import SSDSchedulers

@Suite struct SchedulerAPITests {
    static let sdxl = SchedulerConfiguration([
        "_class_name": .string("EulerDiscreteScheduler"), "beta_start": .number(0.00085), "beta_end": .number(0.012),
        "beta_schedule": .string("scaled_linear"), "num_train_timesteps": .number(1000), "prediction_type": .string("epsilon"),
        "timestep_spacing": .string("leading"), "steps_offset": .number(1), "use_karras_sigmas": .bool(false),
    ])

    @Test(arguments: SchedulerFactory.names)
    func badStepCountsAndStrengthsThrowTypedErrors(_ name: String) throws {
        var scheduler = try SchedulerFactory.make(name: name, config: Self.sdxl)
        #expect(throws: SchedulerError.invalidStepCount(scheduler: Self.className(name), steps: 0)) { try scheduler.setTimesteps(0) }
        #expect(throws: SchedulerError.invalidStepCount(scheduler: Self.className(name), steps: -3)) { try scheduler.setTimesteps(-3) }
        #expect(throws: SchedulerError.tooManySteps(scheduler: Self.className(name), steps: 1001, trainTimesteps: 1000)) {
            try scheduler.setTimesteps(1001)
        }
        #expect(throws: SchedulerError.invalidStrength(1.5)) { try scheduler.setTimesteps(10, strength: 1.5) }
        #expect(throws: SchedulerError.invalidStrength(-0.1)) { try scheduler.setTimesteps(10, strength: -0.1) }
        #expect(throws: SchedulerError.self) { try scheduler.setTimesteps(10, strength: .nan) }
        #expect(throws: SchedulerError.noStepsForStrength(steps: 4, strength: 0.2)) { try scheduler.setTimesteps(4, strength: 0.2) }
        // Nothing set yet: stepping or scaling is a typed error, not a crash.
        #expect(throws: SchedulerError.timestepsNotSet(scheduler: Self.className(name))) {
            try scheduler.step(modelOutput: [0], sample: [0])
        }
        try scheduler.setTimesteps(4)
        #expect(throws: SchedulerError.countMismatch(argument: "modelOutput", expected: 2, actual: 3)) {
            try scheduler.step(modelOutput: [0, 0, 0], sample: [0, 0])
        }
        #expect(throws: SchedulerError.self) { try scheduler.scaleModelInput([1], timestepIndex: scheduler.timesteps.count) }
        // Strength 1 keeps the whole schedule; strength 0.5 starts half way (× order for Heun).
        try scheduler.setTimesteps(10, strength: 1)
        let full = scheduler.timesteps
        try scheduler.setTimesteps(10)
        #expect(scheduler.timesteps == full)
        try scheduler.setTimesteps(10, strength: 0.5)
        #expect(scheduler.timesteps == Array(full.dropFirst(5 * scheduler.order)))
    }

    static func className(_ name: String) -> String {
        SchedulerFactory.presets.first { $0.name == name }!.className
    }

    @Test func unknownNamesListTheValidOnes() {
        #expect(throws: SchedulerError.unknownName("k_lms", valid: SchedulerFactory.names)) {
            _ = try SchedulerFactory.make(name: "k_lms", config: Self.sdxl)
        }
        #expect(throws: SchedulerError.unknownClassName("PNDMScheduler", valid: SchedulerFactory.classNames)) {
            _ = try SchedulerFactory.make(className: "PNDMScheduler", config: Self.sdxl)
        }
        let message = SchedulerError.unknownName("x", valid: SchedulerFactory.names).description
        #expect(message.contains("dpm++2m-sde-karras") && message.contains("euler-a"))
    }

    @Test func configurationDecodesAnyDiffusersFile() throws {
        let json = """
            {"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.27.0", "algorithm_type": "dpmsolver++",
             "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "lambda_min_clipped": -Infinity,
             "solver_order": 2, "some_future_key": {"nested": [1, 2]}, "trained_betas": null, "timestep_spacing": "linspace",
             "variance_type": null, "name": "a \\"quoted\\" NaN"}
            """
        let config = try SchedulerConfiguration(json: Array(json.utf8))
        #expect(config.className == "DPMSolverMultistepScheduler")
        #expect(config["lambda_min_clipped"] == .number(-.infinity))
        #expect(config["name"] == .string("a \"quoted\" NaN"))
        let folderDefault = try SchedulerFactory.make(config: config)
        #expect(folderDefault is DPMSolverMultistepScheduler)
        // from_config across classes: Euler from a DPM file.
        var euler = try SchedulerFactory.make(name: "euler", config: config)
        try euler.setTimesteps(5)
        #expect(euler.timesteps == [999, 749.25, 499.5, 249.75, 0].map { Double(Float($0)) })
        // Round trip through Codable.
        let data = try JSONEncoder().encode(config)
        #expect(try JSONDecoder().decode(SchedulerConfiguration.self, from: data).className == config.className)
        // Typed errors for bad values, naming the key.
        var bad = Self.sdxl
        bad.timestepSpacing = "sideways"
        #expect(throws: SchedulerError.invalidConfiguration(key: "timestep_spacing", value: "\"sideways\"", reason: "unknown value")) {
            _ = try SchedulerFactory.make(name: "euler", config: bad)
        }
        bad = Self.sdxl
        bad["num_train_timesteps"] = .string("many")
        #expect(throws: SchedulerError.self) { _ = try SchedulerFactory.make(name: "ddim", config: bad) }
        #expect(throws: SchedulerError.self) { _ = try SchedulerConfiguration(json: Array("{not json".utf8)) }
        #expect(throws: SchedulerError.self) { _ = try SchedulerConfiguration(contentsOf: "/nonexistent/scheduler_config.json") }
        do {
            _ = try SchedulerConfiguration(contentsOf: "/nonexistent/scheduler_config.json")
        } catch {
            #expect("\(error)".contains("/nonexistent/scheduler_config.json") && "\(error)".contains("file not found"), "\(error)")
        }
    }

    @Test func overridesReachTheScheduler() throws {
        var overrides = SchedulerConfiguration()
        overrides.useKarrasSigmas = true
        overrides.finalSigmasType = "sigma_min"
        let scheduler = try SchedulerFactory.make(name: "euler", config: Self.sdxl, overrides: overrides)
        let euler = try #require(scheduler as? EulerScheduler)
        #expect(euler.useKarrasSigmas && euler.finalSigmas == .sigmaMin)
        let sde = try #require(try SchedulerFactory.make(name: "dpm++2m-sde-karras", config: Self.sdxl) as? DPMSolverMultistepScheduler)
        #expect(sde.algorithm == .sdeDPMSolverPlusPlus && sde.useKarrasSigmas && sde.solverOrder == 2)
        let lcm = try SchedulerFactory.make(name: "lcm", config: Self.sdxl)
        var lcmScheduler = lcm
        #expect(throws: SchedulerError.self) { try lcmScheduler.setTimesteps(60) }  // > original_inference_steps
    }

    @Test func sdxlDefaultScheduleMatchesTheSpecification() throws {
        var euler = try SchedulerFactory.make(config: Self.sdxl)
        try euler.setTimesteps(25)
        #expect(euler.timesteps.first == 961 && euler.timesteps.last == 1)
        #expect(abs(euler.initNoiseSigma - 11.718795) < 1e-5)
    }
}

/// Caller schedules (diffusers `timesteps=` / `sigmas=`): refused where diffusers has no such argument or
/// refuses it, with typed errors; `reset` repeats the custom schedule.
@Suite struct CustomScheduleTests {
    static func make(_ name: String, _ overrides: SchedulerConfiguration = SchedulerConfiguration()) throws -> any Scheduler {
        try SchedulerFactory.make(name: name, config: SchedulerConfiguration(), overrides: overrides)
    }

    @Test func unsupportedCombinationsThrow() throws {
        for name in ["euler-a", "ddim", "unipc"] {
            var scheduler = try Self.make(name)
            #expect(throws: SchedulerError.self) { try scheduler.setTimesteps(.alignYourStepsSDXLTimesteps, strength: nil) }
        }
        var lcm = try Self.make("lcm")
        #expect(throws: SchedulerError.self) { try lcm.setTimesteps(.timesteps([500, 700]), strength: nil) }  // (ascending)
        for name in ["dpm++2m", "heun", "lcm"] {
            var scheduler = try Self.make(name)
            #expect(throws: SchedulerError.self) { try scheduler.setTimesteps(.alignYourStepsSDXLSigmas, strength: nil) }
        }
        var karras = try Self.make("dpm++2m-karras")
        #expect(throws: SchedulerError.self) { try karras.setTimesteps(.alignYourStepsSDXLTimesteps, strength: nil) }
        var euler = try Self.make("euler")
        for bad in [CustomSchedule.timesteps([]), .timesteps([1000]), .timesteps([.nan]), .sigmas([1]), .sigmas([2, -1])] {
            #expect(throws: SchedulerError.self) { try euler.setTimesteps(bad, strength: nil) }
        }
    }

    @Test func resetRepeatsTheCustomSchedule() throws {
        var scheduler = try Self.make("dpm++2m")
        try scheduler.setTimesteps(.alignYourStepsSDXLTimesteps, strength: 0.5)
        let timesteps = scheduler.timesteps
        #expect(timesteps == [310, 193, 116, 53, 13])  // (t_start = 10 − ⌊10 · 0.5⌋)
        _ = try scheduler.step(modelOutput: [1, 2], sample: [0.5, 0.25])
        scheduler.reset()
        #expect(scheduler.timesteps == timesteps && scheduler.stepIndex == 0)
    }
}

extension CustomScheduleTests {
    /// Heun with a custom schedule counts its 2n − 1 timesteps as steps (diffusers' `retrieve_timesteps`), so a low
    /// img2img strength leaves none: a typed error, not a trap.
    @Test func heunCustomScheduleWithLowStrengthThrows() throws {
        var heun = try Self.make("heun")
        for strength in [0.3, 0.5] {
            #expect(throws: SchedulerError.self) { try heun.setTimesteps(.alignYourStepsSDXLTimesteps, strength: strength) }
        }
        try heun.setTimesteps(.alignYourStepsSDXLTimesteps, strength: 0.6)
        #expect(heun.timesteps.count == 3)  // (diffusers: timesteps[16:] of 19)
    }
}

extension CustomScheduleTests {
    /// A caller's schedule with `denoising_start` (diffusers' img2img: `retrieve_timesteps`, then `get_timesteps`'
    /// cut): the timesteps below round(1000 · (1 − start)), Heun's even count one longer; `reset` repeats it.
    @Test func customScheduleWithDenoisingStart() throws {
        var dpm = try Self.make("dpm++2m")
        try dpm.setTimesteps(.alignYourStepsSDXLTimesteps, denoisingStart: 0.5)
        #expect(dpm.timesteps == [443, 310, 193, 116, 53, 13])
        _ = try dpm.step(modelOutput: [1, 2], sample: [0.5, 0.25])
        dpm.reset()
        #expect(dpm.timesteps == [443, 310, 193, 116, 53, 13] && dpm.stepIndex == 0)
        var heun = try Self.make("heun")
        try heun.setTimesteps(.alignYourStepsSDXLTimesteps, denoisingStart: 0.5)
        #expect(heun.timesteps.count == 13 && heun.timesteps.first == 587)  // (12 below 500, even: one more)
        var euler = try Self.make("euler")
        #expect(throws: SchedulerError.self) { try euler.setTimesteps(.alignYourStepsSDXLTimesteps, denoisingStart: 0.999) }
        #expect(throws: SchedulerError.self) { try euler.setTimesteps(.alignYourStepsSDXLTimesteps, denoisingStart: 1.5) }
        var ramp: any Scheduler = LinearRampScheduler()
        #expect(throws: SchedulerError.self) { try ramp.setTimesteps(.alignYourStepsSDXLTimesteps, denoisingStart: 0.5) }
    }
}
