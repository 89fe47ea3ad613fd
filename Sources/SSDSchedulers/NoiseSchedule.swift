/// diffusers `beta_schedule`.
public enum BetaSchedule: String, Sendable, CaseIterable {
    /// `torch.linspace(beta_start, beta_end, n)`.
    case linear
    /// `torch.linspace(beta_start**0.5, beta_end**0.5, n) ** 2` (SDXL's).
    case scaledLinear = "scaled_linear"
    /// `betas_for_alpha_bar` with the cosine transform (Glide).
    case squaredCosCapV2 = "squaredcos_cap_v2"
    /// `betas_for_alpha_bar(alpha_transform_type="exp")` (HeunDiscreteScheduler only).
    case exp
}

/// The training noise levels every diffusers discrete scheduler builds in `__init__`: `betas`,
/// `alphas_cumprod` (float32, as torch computes them) and the Karras-style σ of each training
/// timestep, `((1 − ᾱ)/ᾱ)^½` (diffusers `schedulers/scheduling_euler_discrete.py` and siblings,
/// `betas_for_alpha_bar`).
public struct NoiseSchedule: Sendable, Hashable {
    /// `num_train_timesteps`.
    public let trainTimesteps: Int
    /// `betas`.
    public let betas: [Float]
    /// `alphas_cumprod` (ᾱ).
    public let alphasCumprod: [Float]
    /// `((1 − ᾱ)/ᾱ) ** 0.5`, ascending in t, computed in float32 as diffusers does on the tensor.
    public let sigmas: [Float]

    /// Builds the schedule from a configuration. `defaults` are the scheduler class's own
    /// defaults for `beta_start`, `beta_end`, `beta_schedule`; `clampLastAlpha` applies
    /// `alphas_cumprod[-1] = 2**-24` after zero-SNR rescaling (Euler, DPM, UniPC do; DDIM, LCM don't).
    init(
        configuration config: SchedulerConfiguration, scheduler: String,
        betaStart: Double, betaEnd: Double, betaSchedule: BetaSchedule, clampLastAlpha: Bool,
        allowedSchedules: Set<BetaSchedule> = [.linear, .scaledLinear, .squaredCosCapV2]
    ) throws {
        let count = try config.int("num_train_timesteps", default: 1000)
        guard count >= 2 else {
            throw SchedulerError.invalidConfiguration(key: "num_train_timesteps", value: String(count), reason: "must be at least 2")
        }
        var betas: [Float]
        if let trained = try config.doubles("trained_betas") {
            guard trained.count == count else {
                throw SchedulerError.invalidConfiguration(
                    key: "trained_betas", value: "\(trained.count) values", reason: "expected num_train_timesteps = \(count) values")
            }
            betas = trained.map { Float($0) }
        } else {
            let start = try config.double("beta_start", default: betaStart)
            let end = try config.double("beta_end", default: betaEnd)
            let schedule: BetaSchedule = try config.choice("beta_schedule", default: betaSchedule)
            guard allowedSchedules.contains(schedule) else {
                throw SchedulerError.unsupportedConfiguration(scheduler: scheduler, key: "beta_schedule", value: schedule.rawValue)
            }
            switch schedule {
            case .linear:
                betas = Self.torchLinspace(Float(start), Float(end), count)
            case .scaledLinear:
                betas = Self.torchLinspace(Float(start.squareRoot()), Float(end.squareRoot()), count).map { $0 * $0 }
            case .squaredCosCapV2:
                betas = Self.betasForAlphaBar(count) { t in
                    let c = HostMath.cos((t + 0.008) / 1.008 * Double.pi / 2)
                    return c * c
                }
            case .exp:
                betas = Self.betasForAlphaBar(count) { t in HostMath.exp(t * -12.0) }
            }
        }
        let rescale = try config.bool("rescale_betas_zero_snr", default: false)
        if rescale { betas = Self.rescaleZeroTerminalSNR(betas) }
        var alphasCumprod = Self.cumprod(betas.map { 1 - $0 })
        if rescale && clampLastAlpha { alphasCumprod[count - 1] = 1.0 / 16_777_216.0 }
        self.trainTimesteps = count
        self.betas = betas
        self.alphasCumprod = alphasCumprod
        self.sigmas = alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
    }

    /// `np.log(sigmas)` on the float32 table (float32 result).
    var logSigmas: [Float] { sigmas.map { HostMath.log($0) } }

    /// σ of the first training timestep (`final_sigmas_type="sigma_min"`), float32.
    var sigmaMinFinal: Float {
        let a = alphasCumprod[0]
        return ((1 - a) / a).squareRoot()
    }

    /// `torch.linspace(start, end, count, dtype=torch.float32)` (`RangeFactoriesKernel.cpp`: the
    /// step in float, the first half counted up from `start` and the second down from `end`, each
    /// value a fused multiply-add as GCC compiles it for PyTorch's x86-64 kernels).
    static func torchLinspace(_ start: Float, _ end: Float, _ count: Int) -> [Float] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (end - start) / Float(count - 1)
        let halfway = count / 2
        return (0..<count).map { index in
            index < halfway
                ? start.addingProduct(step, Float(index))
                : end.addingProduct(-step, Float(count - index - 1))
        }
    }

    /// `torch.cumprod` on float32: the running product is kept in double (`acc_type<float>`).
    static func cumprod(_ values: [Float]) -> [Float] {
        var running = 1.0
        return values.map { value in
            running *= Double(value)
            return Float(running)
        }
    }

    /// diffusers `betas_for_alpha_bar`: float64 math, then a float32 tensor.
    static func betasForAlphaBar(_ count: Int, maxBeta: Double = 0.999, _ alphaBar: (Double) -> Double) -> [Float] {
        (0..<count).map { i in
            let t1 = Double(i) / Double(count)
            let t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), maxBeta))
        }
    }

    /// diffusers `rescale_zero_terminal_snr`, float32 tensor ops.
    static func rescaleZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        let cumulative = cumprod(betas.map { 1 - $0 })
        var roots = cumulative.map { $0.squareRoot() }
        let first = roots[0]
        let last = roots[roots.count - 1]
        let factor = first / (first - last)
        roots = roots.map { ($0 - last) * factor }
        let alphaBar = roots.map { $0 * $0 }
        var alphas = [alphaBar[0]]
        for i in 1..<alphaBar.count { alphas.append(alphaBar[i] / alphaBar[i - 1]) }
        return alphas.map { 1 - $0 }
    }
}
