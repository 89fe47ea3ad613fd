/// `EulerDiscreteScheduler` (SDXL's and SSD-1B's default) and `EulerAncestralDiscreteScheduler`
/// (diffusers `scheduling_euler_discrete.py`, `scheduling_euler_ancestral_discrete.py`, 0.42):
/// first-order steps of the probability-flow ODE in σ, x ← x + (x − x₀)/σ·(σ_next − σ); the
/// ancestral variant steps to σ_down and adds fresh noise of σ_up (k-diffusion `sample_euler_ancestral`).
///
/// Configuration keys: `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`,
/// `trained_betas`, `rescale_betas_zero_snr`, `prediction_type`, `timestep_spacing`, `steps_offset`;
/// Euler only: `use_karras_sigmas`, `sigma_min`, `sigma_max`, `final_sigmas_type`, `timestep_type`,
/// `interpolation_type` (linear). Churn (`s_churn`) is diffusers' step default, 0.
public struct EulerScheduler: PositionedScheduler {
    /// Which of the two diffusers classes this is.
    public enum Variant: String, Sendable {
        /// `EulerDiscreteScheduler`.
        case deterministic
        /// `EulerAncestralDiscreteScheduler`.
        case ancestral
    }

    /// Which diffusers class this scheduler is.
    public let variant: Variant
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
    /// `final_sigmas_type`.
    public let finalSigmas: FinalSigmasType
    /// `timestep_type == "continuous"` with v-prediction: timesteps are `0.25·log σ`.
    public let continuousTimesteps: Bool
    let karras: KarrasSigmaOptions
    /// σ for each entry of the full schedule plus the final σ.
    public private(set) var sigmas: [Float] = []
    var position = SchedulePosition()

    var name: String { variant == .deterministic ? "EulerDiscreteScheduler" : "EulerAncestralDiscreteScheduler" }

    /// Reads the diffusers configuration (defaults of the chosen class for absent keys).
    public init(configuration config: SchedulerConfiguration, variant: Variant = .deterministic) throws {
        self.variant = variant
        let name = variant == .deterministic ? "EulerDiscreteScheduler" : "EulerAncestralDiscreteScheduler"
        noise = try NoiseSchedule(
            configuration: config, scheduler: name, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: .linear, clampLastAlpha: true)
        prediction = try PredictionType.parse(
            config, scheduler: name, allowed: variant == .deterministic ? [.epsilon, .vPrediction, .sample] : [.epsilon, .vPrediction])
        spacing = try config.choice("timestep_spacing", default: .linspace)
        stepsOffset = try config.int("steps_offset", default: 0)
        if variant == .deterministic {
            karras = try KarrasSigmaOptions(configuration: config, scheduler: name)
            finalSigmas = try config.choice("final_sigmas_type", default: .zero)
            let timestepType = try config.string("timestep_type", default: "discrete")
            guard ["discrete", "continuous"].contains(timestepType) else {
                throw SchedulerError.invalidConfiguration(key: "timestep_type", value: "\"\(timestepType)\"", reason: "unknown value")
            }
            continuousTimesteps = timestepType == "continuous" && prediction == .vPrediction
            let interpolation = try config.string("interpolation_type", default: "linear")
            guard interpolation == "linear" else {
                throw SchedulerError.unsupportedConfiguration(scheduler: name, key: "interpolation_type", value: interpolation)
            }
        } else {
            karras = .off
            finalSigmas = .zero
            continuousTimesteps = false
        }
    }

    public var order: Int { 1 }

    /// `init_noise_sigma`: max σ, or √(max σ² + 1) for "leading" spacing (float32).
    public var initNoiseSigma: Float { VENoise.initNoiseSigma(sigmas: sigmas, spacing: spacing) }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        var (timesteps, levels) = SigmaSchedule.discrete(
            count: steps, noise: noise, spacing: spacing, stepsOffset: stepsOffset, karras: karras)
        let last: Float = finalSigmas == .zero ? 0 : noise.sigmaMinFinal
        sigmas = levels.map { Float($0) } + [last]
        if continuousTimesteps {
            timesteps = sigmas.dropLast().map { Double(0.25 * HostMath.log($0)) }
        }
        try position.install(timesteps, steps: steps, strength: strength, order: order)
    }

    /// `set_timesteps(timesteps=…)` (float32 timesteps, σ interpolated in the training table, the final σ
    /// appended) or `set_timesteps(sigmas=…)` (the σ as given, float32; timesteps `_sigma_to_t` of all but the
    /// last). diffusers refuses timesteps with Karras σ and with continuous v-prediction timesteps; the
    /// ancestral class takes neither.
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        guard variant == .deterministic else {
            throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "its set_timesteps takes a step count only")
        }
        try validateCustom(schedule, strength: strength)
        var timesteps: [Double]
        switch schedule {
        case let .timesteps(values):
            if karras.enabled { throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "timesteps with use_karras_sigmas") }
            if continuousTimesteps {
                throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "timesteps with timestep_type continuous and v_prediction")
            }
            timesteps = values.map { Double(Float($0)) }
            let table = noise.sigmas.map(Double.init)
            let last: Float = finalSigmas == .zero ? 0 : noise.sigmaMinFinal
            sigmas = timesteps.map { Float(NumPy.interp($0, table: table)) } + [last]
        case let .sigmas(values):
            sigmas = values.map { Float($0) }
            let logSigmas = noise.logSigmas
            timesteps = sigmas.dropLast().map { Double(Float(SigmaSchedule.timestep(forFloat32Sigma: $0, logSigmas: logSigmas))) }
        }
        if continuousTimesteps {
            timesteps = sigmas.dropLast().map { Double(0.25 * HostMath.log($0)) }
        }
        try installCustom(timesteps, schedule: schedule, strength: strength)
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try VENoise.scaleInput(sample, sigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let sigma = sigmas[i]
        let sigmaNext = sigmas[i + 1]
        let denoised = prediction.denoised(sample: sample, output: modelOutput, sigma: sigma, sigmaV: sigma)
        let derivative = Elementwise.zip(sample, denoised) { x, x0 in (x - x0) / sigma }
        var result: [Float]
        switch variant {
        case .deterministic:
            let dt = sigmaNext - sigma
            result = Elementwise.zip(sample, derivative) { x, d in x + d * dt }
        case .ancestral:
            let from2 = sigma * sigma
            let to2 = sigmaNext * sigmaNext
            let sigmaUp = (to2 * (from2 - to2) / from2).squareRoot()
            let sigmaDown = (to2 - sigmaUp * sigmaUp).squareRoot()
            let dt = sigmaDown - sigma
            result = Elementwise.zip(sample, derivative) { x, d in x + d * dt }
            let fresh = random.normal(count: sample.count)
            result = Elementwise.zip(result, fresh) { x, n in x + n * sigmaUp }
        }
        position.current += 1
        return result
    }

    /// `original + noise·σ` at the given timestep (diffusers `add_noise`).
    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        return try VENoise.addNoise(original: original, noise: noise, sigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
    }
}
