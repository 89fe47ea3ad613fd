/// `TCDScheduler` (diffusers `scheduling_tcd.py`, 0.42; Zheng et al. 2024, trajectory consistency
/// distillation, e.g. for TCD-SDXL-LoRA): LCM's timestep schedule; each step predicts x₀ and ε, goes to the
/// intermediate timestep `s = ⌊(1 − γ)·t_prev⌋` and, with γ > 0, re-noises from s to the next timestep
/// (fresh noise, none after the last step). γ is diffusers' `step(eta=…)`: the SDXL pipelines pass their
/// `eta` argument, 0 unless given, so `eta` here is 0 by default too (diffusers' TCD examples pass 0.3).
///
/// Configuration keys: `num_train_timesteps`, `beta_start` (0.00085), `beta_end` (0.012),
/// `beta_schedule` (scaled_linear), `trained_betas`, `rescale_betas_zero_snr`,
/// `original_inference_steps` (50), `set_alpha_to_one`, `prediction_type` (`clip_sample` is unused by diffusers' TCD step).
public struct TCDScheduler: PositionedScheduler {
    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `original_inference_steps`.
    public let originalSteps: Int
    /// ᾱ before the first training step (`final_alpha_cumprod`).
    public let finalAlphaCumprod: Float
    /// γ (diffusers' `eta` of `step`), in [0, 1]: 0 is deterministic, 1 fully stochastic.
    public var eta: Float = 0
    var position = SchedulePosition()

    let name = "TCDScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        noise = try NoiseSchedule(
            configuration: config, scheduler: "TCDScheduler", betaStart: 0.00085, betaEnd: 0.012, betaSchedule: .scaledLinear,
            clampLastAlpha: false)
        prediction = try PredictionType.parse(config, scheduler: "TCDScheduler")
        originalSteps = try config.int("original_inference_steps", default: 50)
        guard originalSteps >= 1 && originalSteps <= noise.trainTimesteps else {
            throw SchedulerError.invalidConfiguration(
                key: "original_inference_steps", value: String(originalSteps), reason: "must lie in 1...num_train_timesteps")
        }
        if try config.bool("thresholding", default: false) {
            throw SchedulerError.unsupportedConfiguration(scheduler: "TCDScheduler", key: "thresholding", value: "true")
        }
        finalAlphaCumprod = try config.bool("set_alpha_to_one", default: true) ? 1 : noise.alphasCumprod[0]
    }

    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }

    /// LCM's schedule (`original_inference_steps` evenly spaced training timesteps, then `steps` of them by index).
    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try setConsistencyTimesteps(steps, strength: strength, originalSteps: originalSteps)
    }

    /// `set_timesteps(timesteps=…)`: descending timesteps cast to integers, as LCM's.
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        try setConsistencyTimesteps(schedule, strength: strength)
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try unscaledInput(sample, timestepIndex: timestepIndex)
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        guard eta >= 0, eta <= 1 else {
            throw SchedulerError.invalidConfiguration(key: "eta", value: String(eta), reason: "TCD's gamma must lie in [0, 1]")
        }
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let t = Int(position.allTimesteps[i])
        // The next timestep, 0 after the last (diffusers: `torch.tensor(0)`, so ᾱ₀ rather than final_alpha_cumprod).
        let previous = i + 1 < position.allTimesteps.count ? Int(position.allTimesteps[i + 1]) : 0
        // timestep_s = floor((1 − eta) · prev) on the int64 tensor: a float32 product.
        let s = Int((Float(1 - Double(eta)) * Float(previous)).rounded(.down))
        let alphaProd = noise.alphasCumprod[t]
        let alphaProdPrevious = previous >= 0 ? noise.alphasCumprod[previous] : finalAlphaCumprod
        let alphaProdS = noise.alphasCumprod[s]
        let alpha = alphaProd.squareRoot(), sigma = (1 - alphaProd).squareRoot()
        let denoised = prediction.denoised(sample: sample, output: modelOutput, alpha: alpha, sigma: sigma)
        let epsilon = prediction.noise(sample: sample, output: modelOutput, alpha: alpha, sigma: sigma)
        let signalS = alphaProdS.squareRoot(), levelS = (1 - alphaProdS).squareRoot()
        let noised = Elementwise.zip(denoised, epsilon) { x0, e in signalS * x0 + levelS * e }
        var result = noised
        if eta > 0, i != position.requestedSteps - 1 {
            let fresh = random.normal(count: sample.count)
            let ratio = alphaProdPrevious / alphaProdS
            let keep = ratio.squareRoot(), add = (1 - ratio).squareRoot()
            result = Elementwise.zip(noised, fresh) { x, n in keep * x + add * n }
        }
        position.current += 1
        return result
    }

    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try consistencyAddNoise(original: original, noise: noise, timestepIndex: timestepIndex)
    }
}
