/// `LCMScheduler` (diffusers `scheduling_lcm.py`, 0.42; Luo et al. 2023): the multistep latent
/// consistency sampler. Each step maps the sample to its consistency-model estimate
/// `c_out·x₀ + c_skip·x` and re-noises it to the next timestep with fresh noise (none after the last).
///
/// Configuration keys: `num_train_timesteps`, `beta_start` (0.00085), `beta_end` (0.012),
/// `beta_schedule` (scaled_linear), `trained_betas`, `rescale_betas_zero_snr`,
/// `original_inference_steps` (50), `clip_sample`, `clip_sample_range`, `set_alpha_to_one`,
/// `prediction_type`, `timestep_scaling` (10).
public struct LCMScheduler: PositionedScheduler {
    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `original_inference_steps`.
    public let originalSteps: Int
    /// `timestep_scaling`.
    public let timestepScaling: Float
    /// `clip_sample_range` when `clip_sample` is true, else nil.
    public let clipSampleRange: Float?
    /// ᾱ before the first training step (`final_alpha_cumprod`).
    public let finalAlphaCumprod: Float
    var position = SchedulePosition()

    let name = "LCMScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        noise = try NoiseSchedule(
            configuration: config, scheduler: "LCMScheduler", betaStart: 0.00085, betaEnd: 0.012, betaSchedule: .scaledLinear,
            clampLastAlpha: false)
        prediction = try PredictionType.parse(config, scheduler: "LCMScheduler")
        originalSteps = try config.int("original_inference_steps", default: 50)
        guard originalSteps >= 1 && originalSteps <= noise.trainTimesteps else {
            throw SchedulerError.invalidConfiguration(
                key: "original_inference_steps", value: String(originalSteps), reason: "must lie in 1...num_train_timesteps")
        }
        timestepScaling = Float(try config.double("timestep_scaling", default: 10))
        if try config.bool("thresholding", default: false) {
            throw SchedulerError.unsupportedConfiguration(scheduler: "LCMScheduler", key: "thresholding", value: "true")
        }
        clipSampleRange = try config.bool("clip_sample", default: false) ? Float(try config.double("clip_sample_range", default: 1)) : nil
        finalAlphaCumprod = try config.bool("set_alpha_to_one", default: true) ? 1 : noise.alphasCumprod[0]
    }

    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try setConsistencyTimesteps(steps, strength: strength, originalSteps: originalSteps)
    }

    /// `set_timesteps(timesteps=…)`: descending timesteps (diffusers raises otherwise; ones off the distillation
    /// schedule only get its warning), cast to integers (`np.int64`, toward zero); `num_inference_steps` is their count.
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        try setConsistencyTimesteps(schedule, strength: strength)
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try unscaledInput(sample, timestepIndex: timestepIndex)
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let t = Int(position.allTimesteps[i])
        let previous = i + 1 < position.allTimesteps.count ? Int(position.allTimesteps[i + 1]) : t
        let alphaProd = noise.alphasCumprod[t]
        let alphaProdPrevious = previous >= 0 ? noise.alphasCumprod[previous] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let betaProdPrevious = 1 - alphaProdPrevious
        // get_scalings_for_boundary_condition_discrete, on the int64 timestep tensor (float32 result).
        let scaled = Float(t) * timestepScaling
        let sigmaData2: Float = 0.25
        let cSkip = sigmaData2 / (scaled * scaled + sigmaData2)
        let cOut = scaled / (scaled * scaled + sigmaData2).squareRoot()
        var denoised = prediction.denoised(
            sample: sample, output: modelOutput, alpha: alphaProd.squareRoot(), sigma: betaProd.squareRoot())
        if let limit = clipSampleRange { denoised = Elementwise.clamp(denoised, limit) }
        let estimate = Elementwise.zip(denoised, sample) { x0, x in cOut * x0 + cSkip * x }
        var result = estimate
        if i != position.requestedSteps - 1 {
            let fresh = random.normal(count: sample.count)
            let signal = alphaProdPrevious.squareRoot()
            let level = betaProdPrevious.squareRoot()
            result = Elementwise.zip(estimate, fresh) { x, n in signal * x + level * n }
        }
        position.current += 1
        return result
    }

    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try consistencyAddNoise(original: original, noise: noise, timestepIndex: timestepIndex)
    }
}

extension PositionedScheduler {
    /// LCM's and TCD's `set_timesteps(steps)`: `original_inference_steps` evenly spaced training timesteps
    /// (`(1…n)·k − 1`), reversed, `steps` of them taken by `floor(linspace(0, n, steps))` index.
    mutating func setConsistencyTimesteps(_ steps: Int, strength: Double?, originalSteps: Int) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        let k = noise.trainTimesteps / originalSteps
        let origin = (1...originalSteps).map { $0 * k - 1 }
        guard steps <= originalSteps else {
            throw SchedulerError.incompatibleStepCount(
                scheduler: name, steps: steps, reason: "must not exceed original_inference_steps = \(originalSteps)")
        }
        let descending = Array(origin.reversed())
        let indices = NumPy.linspace(0, Double(descending.count), steps, endpoint: false).map { Int($0.rounded(.down)) }
        try position.install(indices.map { Double(descending[$0]) }, steps: steps, strength: strength, order: order)
    }

    /// LCM's and TCD's `set_timesteps(timesteps=…)`: descending, cast to integers toward zero.
    mutating func setConsistencyTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        guard case let .timesteps(values) = schedule else {
            throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "its set_timesteps takes timesteps, not sigmas")
        }
        try validateCustom(schedule, strength: strength)
        for i in values.indices.dropFirst() where values[i] >= values[i - 1] {
            throw SchedulerError.invalidCustomSchedule("\(name)'s timesteps must be in descending order (\(values))")
        }
        try installCustom(values.map { $0.rounded(.towardZero) }, schedule: schedule, strength: strength)
    }

    /// `add_noise` of the variance-preserving schedulers at the integer timestep `timesteps[timestepIndex]`.
    func consistencyAddNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        let t = Int(position.allTimesteps[try position.absolute(timestepIndex, scheduler: name)])
        return DDIMScheduler.vpAddNoise(original: original, noise: noise, alphaCumprod: self.noise.alphasCumprod[t])
    }
}
