/// `DDIMScheduler` (diffusers `scheduling_ddim.py`, 0.42; Song et al. 2020): the deterministic
/// (η = 0) or stochastic DDIM update on ᾱ, stepping from t to t − T/N.
///
/// Configuration keys: `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`,
/// `trained_betas`, `rescale_betas_zero_snr`, `clip_sample` (default true), `clip_sample_range`,
/// `set_alpha_to_one` (default true), `steps_offset`, `prediction_type`, `timestep_spacing` (default
/// leading). `eta` is diffusers' `step` argument (0 in the SDXL pipelines).
public struct DDIMScheduler: PositionedScheduler {
    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `timestep_spacing`.
    public let spacing: TimestepSpacing
    /// `steps_offset`.
    public let stepsOffset: Int
    /// `clip_sample_range` when `clip_sample` is true, else nil.
    public let clipSampleRange: Float?
    /// ᾱ before the first training step (`final_alpha_cumprod`).
    public let finalAlphaCumprod: Float
    /// The η of `step` (0: deterministic DDIM; > 0 draws noise).
    public var eta: Float = 0
    var position = SchedulePosition()

    let name = "DDIMScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        noise = try NoiseSchedule(
            configuration: config, scheduler: "DDIMScheduler", betaStart: 0.0001, betaEnd: 0.02, betaSchedule: .linear, clampLastAlpha: false)
        prediction = try PredictionType.parse(config, scheduler: "DDIMScheduler")
        spacing = try config.choice("timestep_spacing", default: .leading)
        stepsOffset = try config.int("steps_offset", default: 0)
        if try config.bool("thresholding", default: false) {
            throw SchedulerError.unsupportedConfiguration(scheduler: "DDIMScheduler", key: "thresholding", value: "true")
        }
        clipSampleRange = try config.bool("clip_sample", default: true) ? Float(try config.double("clip_sample_range", default: 1)) : nil
        finalAlphaCumprod = try config.bool("set_alpha_to_one", default: true) ? 1 : noise.alphasCumprod[0]
    }

    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    var stepCount: Int { position.requestedSteps }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        let values = SigmaSchedule.ddimTimesteps(
            count: steps, trainTimesteps: noise.trainTimesteps, spacing: spacing, stepsOffset: stepsOffset)
        try position.install(values, steps: steps, strength: strength, order: order)
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try unscaledInput(sample, timestepIndex: timestepIndex)
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let t = try Int(position.allTimesteps[beginStep(modelOutput: modelOutput, sample: sample)])
        let previous = t - noise.trainTimesteps / stepCount
        let alphaProd = noise.alphasCumprod[t]
        let alphaProdPrevious = previous >= 0 ? noise.alphasCumprod[previous] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let alpha = alphaProd.squareRoot()
        let sigma = betaProd.squareRoot()
        var denoised = prediction.denoised(sample: sample, output: modelOutput, alpha: alpha, sigma: sigma)
        let epsilon = prediction.noise(sample: sample, output: modelOutput, alpha: alpha, sigma: sigma)
        if let limit = clipSampleRange { denoised = Elementwise.clamp(denoised, limit) }
        let betaProdPrevious = 1 - alphaProdPrevious
        let variance = betaProdPrevious / betaProd * (1 - alphaProd / alphaProdPrevious)
        let stdDev = eta * variance.squareRoot()
        let directionScale = (1 - alphaProdPrevious - stdDev * stdDev).squareRoot()
        let direction = Elementwise.scale(epsilon, directionScale)
        let alphaPrevious = alphaProdPrevious.squareRoot()
        var result = Elementwise.zip(denoised, direction) { x0, d in alphaPrevious * x0 + d }
        if eta > 0 {
            let fresh = random.normal(count: sample.count)
            result = Elementwise.zip(result, fresh) { x, n in x + stdDev * n }
        }
        position.current += 1
        return result
    }

    /// `√ᾱ_t·original + √(1−ᾱ_t)·noise` (DDIM/DDPM `add_noise`).
    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        let t = Int(position.allTimesteps[try position.absolute(timestepIndex, scheduler: name)])
        return Self.vpAddNoise(original: original, noise: noise, alphaCumprod: self.noise.alphasCumprod[t])
    }

    static func vpAddNoise(original: [Float], noise: [Float], alphaCumprod: Float) -> [Float] {
        let signal = alphaCumprod.squareRoot()
        let level = (1 - alphaCumprod).squareRoot()
        return Elementwise.zip(original, noise) { x, n in signal * x + level * n }
    }
}
