/// diffusers `prediction_type`: what the denoising network predicts.
public enum PredictionType: String, Sendable, CaseIterable {
    /// The added noise ε.
    case epsilon
    /// v = α·ε − σ·x₀ (Salimans & Ho).
    case vPrediction = "v_prediction"
    /// x₀ itself (`"sample"`; Euler also accepts `"original_sample"`).
    case sample

    static func parse(_ config: SchedulerConfiguration, scheduler: String, allowed: Set<PredictionType> = Set(allCases)) throws
        -> PredictionType
    {
        let text = try config.string("prediction_type", default: "epsilon")
        guard let value = PredictionType(rawValue: text == "original_sample" ? "sample" : text) else {
            throw SchedulerError.invalidConfiguration(key: "prediction_type", value: "\"\(text)\"", reason: "unknown value")
        }
        guard allowed.contains(value) else {
            throw SchedulerError.unsupportedConfiguration(scheduler: scheduler, key: "prediction_type", value: text)
        }
        return value
    }

    /// x₀ from a network output in the variance-exploding parametrisation x = x₀ + σ·ε used by the
    /// Euler and Heun schedulers (`EulerDiscreteScheduler.step`): ε → `x − σ·out`,
    /// v → `out·(−σ/√(σ²+1)) + x/(σ²+1)`. `sigmaV` is the σ the v formula uses (Euler uses σ, not σ̂).
    func denoised(sample: [Float], output: [Float], sigma: Float, sigmaV: Float) -> [Float] {
        switch self {
        case .epsilon:
            return Elementwise.zip(sample, output) { x, e in x - sigma * e }
        case .vPrediction:
            let variance = sigmaV * sigmaV + 1
            let outputScale = -sigmaV / variance.squareRoot()
            return Elementwise.zip(sample, output) { x, v in v * outputScale + x / variance }
        case .sample:
            return output
        }
    }

    /// x₀ in the variance-preserving parametrisation x = α·x₀ + σ·ε (DDIM, LCM, DPM-Solver, UniPC
    /// `convert_model_output`): ε → `(x − σ·out)/α`, v → `α·x − σ·out`.
    func denoised(sample: [Float], output: [Float], alpha: Float, sigma: Float) -> [Float] {
        switch self {
        case .epsilon:
            return Elementwise.zip(sample, output) { x, e in (x - sigma * e) / alpha }
        case .vPrediction:
            return Elementwise.zip(sample, output) { x, v in alpha * x - sigma * v }
        case .sample:
            return output
        }
    }

    /// ε in the variance-preserving parametrisation, given the network output and (for x₀
    /// prediction) the x₀ it implies: ε → `out`, v → `α·out + σ·x`, x₀ → `(x − α·x₀)/σ`.
    func noise(sample: [Float], output: [Float], alpha: Float, sigma: Float) -> [Float] {
        switch self {
        case .epsilon:
            return output
        case .vPrediction:
            return Elementwise.zip(sample, output) { x, v in alpha * v + sigma * x }
        case .sample:
            return Elementwise.zip(sample, output) { x, x0 in (x - alpha * x0) / sigma }
        }
    }
}

/// α and σ of the variance-preserving process at a Karras σ (`_sigma_to_alpha_sigma_t`):
/// α = 1/√(σ²+1), σ_t = σ·α, and λ = log α − log σ_t; float32 as on 0-dim tensors.
struct VPNoiseLevel {
    let alpha: Float
    let sigma: Float
    var lambda: Float { HostMath.log(alpha) - HostMath.log(sigma) }

    init(karrasSigma: Float) {
        alpha = 1 / (karrasSigma * karrasSigma + 1).squareRoot()
        sigma = karrasSigma * alpha
    }
}

extension VPNoiseLevel {
    /// `α_t·original + σ_t·noise` (the multistep schedulers' `add_noise`).
    func addNoise(original: [Float], noise: [Float]) -> [Float] {
        Elementwise.zip(original, noise) { x, n in alpha * x + sigma * n }
    }
}

/// The variance-exploding parametrisation x = x₀ + σ·ε of the Euler and Heun schedulers
/// (`scheduling_euler_discrete.py`, `scheduling_heun_discrete.py`).
enum VENoise {
    /// `init_noise_sigma`: max σ, or √(max σ² + 1) for "leading" spacing (float32); 1 before `set_timesteps`.
    static func initNoiseSigma(sigmas: [Float], spacing: TimestepSpacing) -> Float {
        guard let maxSigma = sigmas.max() else { return 1 }
        return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }

    /// `scale_model_input`: `sample / √(σ² + 1)`.
    static func scaleInput(_ sample: [Float], sigma: Float) -> [Float] {
        Elementwise.divide(sample, (sigma * sigma + 1).squareRoot())
    }

    /// `add_noise`: `original + noise·σ`.
    static func addNoise(original: [Float], noise: [Float], sigma: Float) -> [Float] {
        Elementwise.zip(original, noise) { x, n in x + n * sigma }
    }
}
