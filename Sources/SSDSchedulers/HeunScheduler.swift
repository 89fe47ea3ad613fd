/// `HeunDiscreteScheduler` (diffusers `scheduling_heun_discrete.py`, 0.42; Karras et al. 2022
/// Algorithm 2 without churn): each σ interval takes an Euler predictor and a trapezoidal corrector,
/// so every timestep after the first appears twice in `timesteps` and `order` is 2.
///
/// Configuration keys: `num_train_timesteps`, `beta_start` (0.00085), `beta_end` (0.012),
/// `beta_schedule` (linear; also exp, squaredcos_cap_v2), `trained_betas`, `prediction_type`,
/// `use_karras_sigmas`, `sigma_min`, `sigma_max`, `clip_sample`, `clip_sample_range`,
/// `timestep_spacing`, `steps_offset`.
public struct HeunScheduler: PositionedScheduler {
    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `timestep_spacing`.
    public let spacing: TimestepSpacing
    /// `steps_offset`.
    public let stepsOffset: Int
    /// `use_karras_sigmas`.
    public var useKarrasSigmas: Bool { karras.enabled }
    /// `clip_sample_range` when `clip_sample` is true, else nil.
    public let clipSampleRange: Float?
    let karras: KarrasSigmaOptions
    /// σ per entry of the (doubled) schedule plus the final 0.
    public private(set) var sigmas: [Float] = []
    var position = SchedulePosition()
    /// Predictor state between the two evaluations (`prev_derivative`, `dt`, `sample`).
    var pending: (derivative: [Float], dt: Float, sample: [Float])?

    let name = "HeunDiscreteScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        noise = try NoiseSchedule(
            configuration: config, scheduler: "HeunDiscreteScheduler", betaStart: 0.00085, betaEnd: 0.012, betaSchedule: .linear,
            clampLastAlpha: false, allowedSchedules: [.linear, .scaledLinear, .squaredCosCapV2, .exp])
        prediction = try PredictionType.parse(config, scheduler: "HeunDiscreteScheduler")
        spacing = try config.choice("timestep_spacing", default: .linspace)
        stepsOffset = try config.int("steps_offset", default: 0)
        karras = try KarrasSigmaOptions(configuration: config, scheduler: "HeunDiscreteScheduler")
        clipSampleRange = try config.bool("clip_sample", default: false) ? Float(try config.double("clip_sample_range", default: 1)) : nil
    }

    public var order: Int { 2 }

    public var initNoiseSigma: Float { VENoise.initNoiseSigma(sigmas: sigmas, spacing: spacing) }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        // Karras timesteps come back rounded to float32, as Heun's float32 timestep tensor rounds them.
        let (points, levels) = SigmaSchedule.discrete(
            count: steps, noise: noise, spacing: spacing, stepsOffset: stepsOffset, karras: karras)
        let base = levels.map { Float($0) } + [0]
        // [σ0, σ1, σ1, …, σn−1, σn−1, 0] and [t0, t1, t1, …, tn−1, tn−1].
        sigmas = [base[0]] + base.dropFirst().dropLast().flatMap { [$0, $0] } + [base[base.count - 1]]
        let doubled = [points[0]] + points.dropFirst().flatMap { [$0, $0] }
        try position.install(doubled, steps: steps, strength: strength, order: order)
        pending = nil
    }

    /// `set_timesteps(timesteps=…)`: float32 timesteps, σ interpolated in the training table, then doubled as
    /// for a step count (diffusers refuses them with Karras σ).
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        guard case let .timesteps(values) = schedule else {
            throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "its set_timesteps takes timesteps, not sigmas")
        }
        try validateCustom(schedule, strength: strength)
        if karras.enabled { throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "timesteps with use_karras_sigmas") }
        let points = values.map { Double(Float($0)) }
        let table = noise.sigmas.map(Double.init)
        let base = points.map { Float(NumPy.interp($0, table: table)) } + [0]
        sigmas = [base[0]] + base.dropFirst().dropLast().flatMap { [$0, $0] } + [base[base.count - 1]]
        try installCustom([points[0]] + points.dropFirst().flatMap { [$0, $0] }, schedule: schedule, strength: strength)
        pending = nil
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try VENoise.scaleInput(sample, sigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let result: [Float]
        if let (previousDerivative, dt, start) = pending {
            let sigmaNext = sigmas[i]
            let denoised = clipped(prediction.denoised(sample: sample, output: modelOutput, sigma: sigmaNext, sigmaV: sigmaNext))
            let derivative = Elementwise.zip(sample, denoised) { x, x0 in (x - x0) / sigmaNext }
            let average = Elementwise.zip(previousDerivative, derivative) { a, b in (a + b) / 2 }
            result = Elementwise.zip(start, average) { x, d in x + d * dt }
            pending = nil
        } else {
            let sigma = sigmas[i]
            let sigmaNext = sigmas[i + 1]
            let denoised = clipped(prediction.denoised(sample: sample, output: modelOutput, sigma: sigma, sigmaV: sigma))
            let derivative = Elementwise.zip(sample, denoised) { x, x0 in (x - x0) / sigma }
            let dt = sigmaNext - sigma
            pending = (derivative, dt, sample)
            result = Elementwise.zip(sample, derivative) { x, d in x + d * dt }
        }
        position.current += 1
        return result
    }

    private func clipped(_ x: [Float]) -> [Float] {
        guard let limit = clipSampleRange else { return x }
        return Elementwise.clamp(x, limit)
    }

    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        return try VENoise.addNoise(original: original, noise: noise, sigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
    }
}
