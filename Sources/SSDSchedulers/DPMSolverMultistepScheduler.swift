/// `DPMSolverMultistepScheduler` (diffusers `scheduling_dpmsolver_multistep.py`, 0.42; Lu et al.
/// 2022, DPM-Solver++): multistep exponential-integrator updates in λ = log(α/σ) on the x₀
/// prediction, orders 1–3, with the `sde-dpmsolver++` variant adding fresh noise every step.
///
/// Configuration keys: `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`,
/// `trained_betas`, `rescale_betas_zero_snr`, `solver_order` (2), `prediction_type`,
/// `algorithm_type` (dpmsolver++, sde-dpmsolver++; "deis" maps to dpmsolver++), `solver_type`
/// (midpoint, heun; bh1/bh2/logrho map to midpoint), `lower_order_final`, `euler_at_final`,
/// `use_karras_sigmas`, `use_lu_lambdas`, `sigma_min`, `sigma_max`, `final_sigmas_type`,
/// `lambda_min_clipped`, `variance_type` (none), `timestep_spacing` (linspace), `steps_offset`.
public struct DPMSolverMultistepScheduler: PositionedScheduler {
    /// `algorithm_type`.
    public enum Algorithm: String, Sendable {
        /// The deterministic DPM-Solver++ (data prediction).
        case dpmSolverPlusPlus = "dpmsolver++"
        /// Its stochastic variant (noise added each step from the generator).
        case sdeDPMSolverPlusPlus = "sde-dpmsolver++"
    }

    /// `solver_type` (the second-order formula).
    public enum SolverType: String, Sendable {
        /// The two second-order update formulas of the paper (diffusers' default: midpoint).
        case midpoint, heun
    }

    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `algorithm_type`.
    public let algorithm: Algorithm
    /// `solver_type`.
    public let solverType: SolverType
    /// `solver_order`.
    public let solverOrder: Int
    /// `lower_order_final`.
    public let lowerOrderFinal: Bool
    /// `euler_at_final`.
    public let eulerAtFinal: Bool
    /// `use_karras_sigmas`.
    public var useKarrasSigmas: Bool { karras.enabled }
    /// `use_lu_lambdas`.
    public let useLuLambdas: Bool
    /// `final_sigmas_type`.
    public let finalSigmas: FinalSigmasType
    /// `timestep_spacing`.
    public let spacing: TimestepSpacing
    /// `steps_offset`.
    public let stepsOffset: Int
    let lambdaMinClipped: Double
    let karras: KarrasSigmaOptions
    /// σ per timestep plus the final σ.
    public private(set) var sigmas: [Float] = []
    var position = SchedulePosition()
    /// The last `solverOrder` converted model outputs (x₀ predictions), oldest first.
    var history: [[Float]] = []
    var lowerOrderCount = 0

    let name = "DPMSolverMultistepScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        let name = "DPMSolverMultistepScheduler"
        noise = try NoiseSchedule(
            configuration: config, scheduler: name, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: .linear, clampLastAlpha: true)
        prediction = try PredictionType.parse(config, scheduler: name)
        let algorithmText = try config.string("algorithm_type", default: "dpmsolver++")
        guard let algorithm = Algorithm(rawValue: algorithmText == "deis" ? "dpmsolver++" : algorithmText) else {
            throw SchedulerError.unsupportedConfiguration(scheduler: name, key: "algorithm_type", value: algorithmText)
        }
        self.algorithm = algorithm
        let solverText = try config.string("solver_type", default: "midpoint")
        guard let solverType = SolverType(rawValue: ["logrho", "bh1", "bh2"].contains(solverText) ? "midpoint" : solverText) else {
            throw SchedulerError.invalidConfiguration(key: "solver_type", value: "\"\(solverText)\"", reason: "unknown value")
        }
        self.solverType = solverType
        solverOrder = try config.int("solver_order", default: 2)
        guard (1...3).contains(solverOrder) else {
            throw SchedulerError.invalidConfiguration(key: "solver_order", value: String(solverOrder), reason: "must be 1, 2 or 3")
        }
        lowerOrderFinal = try config.bool("lower_order_final", default: true)
        eulerAtFinal = try config.bool("euler_at_final", default: false)
        karras = try KarrasSigmaOptions(
            configuration: config, scheduler: name, unsupported: ["use_flow_sigmas", "thresholding", "use_dynamic_shifting"])
        useLuLambdas = try config.bool("use_lu_lambdas", default: false)
        if let variance = try config.optionalString("variance_type") {
            throw SchedulerError.unsupportedConfiguration(scheduler: name, key: "variance_type", value: variance)
        }
        finalSigmas = try config.choice("final_sigmas_type", default: .zero)
        spacing = try config.choice("timestep_spacing", default: .linspace)
        stepsOffset = try config.int("steps_offset", default: 0)
        lambdaMinClipped = try config.double("lambda_min_clipped", default: -Double.infinity)
    }

    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        // lambda_min_clipped: how many of the smallest-λ training steps to cut off the end.
        let lambdas = noise.alphasCumprod.map { a -> Float in
            HostMath.log(a.squareRoot()) - HostMath.log((1 - a).squareRoot())
        }
        let clipped = lambdas.reversed().filter { Double($0) < lambdaMinClipped }.count
        let lastTimestep = noise.trainTimesteps - clipped
        var values = SigmaSchedule.multistepTimesteps(
            count: steps, lastTimestep: lastTimestep, trainTimesteps: noise.trainTimesteps, spacing: spacing, stepsOffset: stepsOffset)
        var levels: [Double]
        if useKarrasSigmas {
            (values, levels) = SigmaSchedule.multistepKarras(count: steps, noise: noise, karras: karras)
        } else if useLuLambdas {
            let logSigmas = noise.logSigmas
            let lambdaMin = Double(logSigmas[0])
            let lambdaMax = Double(logSigmas[logSigmas.count - 1])
            levels = NumPy.linspace(0, 1, steps).map { HostMath.exp(lambdaMax + $0 * (lambdaMin - lambdaMax)) }
            values = SigmaSchedule.roundedTimesteps(forSigmas: levels, logSigmas: logSigmas)
        } else {
            let table = noise.sigmas.map(Double.init)
            levels = values.map { NumPy.interp($0, table: table) }
        }
        let last: Float = finalSigmas == .zero ? 0 : noise.sigmaMinFinal
        sigmas = levels.map { Float($0) } + [last]
        try position.install(values, steps: steps, strength: strength, order: order)
        history = []
        lowerOrderCount = 0
    }

    /// `set_timesteps(timesteps=…)`: the timesteps cast to integers (`astype(np.int64)`, toward zero), σ
    /// interpolated in the training table, the final σ appended (diffusers refuses them with Karras σ or Lu
    /// lambdas).
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        guard case let .timesteps(values) = schedule else {
            throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "its set_timesteps takes timesteps, not sigmas")
        }
        try validateCustom(schedule, strength: strength)
        if useKarrasSigmas || useLuLambdas {
            throw SchedulerError.customScheduleUnsupported(scheduler: name, reason: "timesteps with \(useKarrasSigmas ? "use_karras_sigmas" : "use_lu_lambdas")")
        }
        let points = values.map { $0.rounded(.towardZero) }
        let table = noise.sigmas.map(Double.init)
        let last: Float = finalSigmas == .zero ? 0 : noise.sigmaMinFinal
        sigmas = points.map { Float(NumPy.interp($0, table: table)) } + [last]
        try installCustom(points, schedule: schedule, strength: strength)
        history = []
        lowerOrderCount = 0
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try unscaledInput(sample, timestepIndex: timestepIndex)
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let count = position.allTimesteps.count
        let finalLowOrder = i == count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmas == .zero)
        let secondLowOrder = i == count - 2 && lowerOrderFinal && count < 15
        let level = VPNoiseLevel(karrasSigma: sigmas[i])
        let denoised = prediction.denoised(sample: sample, output: modelOutput, alpha: level.alpha, sigma: level.sigma)
        history.append(denoised)
        if history.count > solverOrder { history.removeFirst() }
        let fresh: [Float]? = algorithm == .sdeDPMSolverPlusPlus ? random.normal(count: sample.count) : nil
        let result: [Float]
        if solverOrder == 1 || lowerOrderCount < 1 || finalLowOrder {
            result = firstOrderUpdate(sample: sample, noise: fresh)
        } else if solverOrder == 2 || lowerOrderCount < 2 || secondLowOrder {
            result = secondOrderUpdate(sample: sample, noise: fresh)
        } else {
            result = thirdOrderUpdate(sample: sample, noise: fresh)
        }
        if lowerOrderCount < solverOrder { lowerOrderCount += 1 }
        position.current += 1
        return result
    }

    /// `dpm_solver_first_order_update` (DDIM in λ).
    func firstOrderUpdate(sample: [Float], noise: [Float]?) -> [Float] {
        let i = position.current
        let t = VPNoiseLevel(karrasSigma: sigmas[i + 1])
        let s = VPNoiseLevel(karrasSigma: sigmas[i])
        let h = t.lambda - s.lambda
        let m0 = history[history.count - 1]
        if let noise {
            let sampleScale = t.sigma / s.sigma * HostMath.exp(-h)
            let outputScale = t.alpha * (1 - HostMath.exp(-2.0 * h))
            let noiseScale = t.sigma * (1.0 - HostMath.exp(-2 * h)).squareRoot()
            return combine(sample, sampleScale, [(m0, outputScale)], noise: noise, noiseScale)
        }
        let sampleScale = t.sigma / s.sigma
        let outputScale = t.alpha * (HostMath.exp(-h) - 1.0)
        return combine(sample, sampleScale, [(m0, -outputScale)])
    }

    /// `multistep_dpm_solver_second_order_update`.
    func secondOrderUpdate(sample: [Float], noise: [Float]?) -> [Float] {
        let i = position.current
        let t = VPNoiseLevel(karrasSigma: sigmas[i + 1])
        let s0 = VPNoiseLevel(karrasSigma: sigmas[i])
        let s1 = VPNoiseLevel(karrasSigma: sigmas[i - 1])
        let m0 = history[history.count - 1]
        let m1 = history[history.count - 2]
        let h = t.lambda - s0.lambda
        let h0 = s0.lambda - s1.lambda
        let r0 = h0 / h
        let inverseR0 = 1.0 / r0
        let d1 = Elementwise.zip(m0, m1) { a, b in inverseR0 * (a - b) }
        if let noise {
            let decay = 1 - HostMath.exp(-2.0 * h)
            let sampleScale = t.sigma / s0.sigma * HostMath.exp(-h)
            let d0Scale = t.alpha * decay
            let d1Scale = solverType == .midpoint ? 0.5 * (t.alpha * decay) : t.alpha * ((1.0 - HostMath.exp(-2.0 * h)) / (-2.0 * h) + 1.0)
            let noiseScale = t.sigma * (1.0 - HostMath.exp(-2 * h)).squareRoot()
            return combine(sample, sampleScale, [(m0, d0Scale), (d1, d1Scale)], noise: noise, noiseScale)
        }
        let sampleScale = t.sigma / s0.sigma
        let d0Scale = t.alpha * (HostMath.exp(-h) - 1.0)
        switch solverType {
        case .midpoint:
            return combine(sample, sampleScale, [(m0, -d0Scale), (d1, -(0.5 * d0Scale))])
        case .heun:
            let d1Scale = t.alpha * ((HostMath.exp(-h) - 1.0) / h + 1.0)
            return combine(sample, sampleScale, [(m0, -d0Scale), (d1, d1Scale)])
        }
    }

    /// `multistep_dpm_solver_third_order_update`.
    func thirdOrderUpdate(sample: [Float], noise: [Float]?) -> [Float] {
        let i = position.current
        let t = VPNoiseLevel(karrasSigma: sigmas[i + 1])
        let s0 = VPNoiseLevel(karrasSigma: sigmas[i])
        let s1 = VPNoiseLevel(karrasSigma: sigmas[i - 1])
        let s2 = VPNoiseLevel(karrasSigma: sigmas[i - 2])
        let m0 = history[history.count - 1]
        let m1 = history[history.count - 2]
        let m2 = history[history.count - 3]
        let h = t.lambda - s0.lambda
        let h0 = s0.lambda - s1.lambda
        let h1 = s1.lambda - s2.lambda
        let r0 = h0 / h
        let r1 = h1 / h
        let inverseR0 = 1.0 / r0
        let inverseR1 = 1.0 / r1
        let d10 = Elementwise.zip(m0, m1) { a, b in inverseR0 * (a - b) }
        let d11 = Elementwise.zip(m1, m2) { a, b in inverseR1 * (a - b) }
        let mix = r0 / (r0 + r1)
        let d1 = Elementwise.zip(d10, d11) { a, b in a + mix * (a - b) }
        let inverseSum = 1.0 / (r0 + r1)
        let d2 = Elementwise.zip(d10, d11) { a, b in inverseSum * (a - b) }
        if let noise {
            let e2h = HostMath.exp(-2.0 * h)
            let sampleScale = t.sigma / s0.sigma * HostMath.exp(-h)
            let d0Scale = t.alpha * (1.0 - e2h)
            let d1Scale = t.alpha * ((1.0 - e2h) / (-2.0 * h) + 1.0)
            let d2Scale = t.alpha * ((1.0 - e2h - 2.0 * h) / ((2.0 * h) * (2.0 * h)) - 0.5)
            let noiseScale = t.sigma * (1.0 - HostMath.exp(-2 * h)).squareRoot()
            return combine(sample, sampleScale, [(m0, d0Scale), (d1, d1Scale), (d2, d2Scale)], noise: noise, noiseScale)
        }
        let eh = HostMath.exp(-h)
        let sampleScale = t.sigma / s0.sigma
        let d0Scale = t.alpha * (eh - 1.0)
        let d1Scale = t.alpha * ((eh - 1.0) / h + 1.0)
        let d2Scale = t.alpha * ((eh - 1.0 + h) / (h * h) - 0.5)
        return combine(sample, sampleScale, [(m0, -d0Scale), (d1, d1Scale), (d2, -d2Scale)])
    }

    /// `a·x + Σ cₖ·yₖ (+ s·noise)`, each product and sum rounded in float32 left to right as the
    /// diffusers expressions evaluate. A negative coefficient stands for a subtracted term
    /// (`x − c·y` and `x + (−c)·y` round identically).
    func combine(_ x: [Float], _ a: Float, _ terms: [([Float], Float)], noise: [Float]? = nil, _ noiseScale: Float = 0) -> [Float] {
        var result = Elementwise.scale(x, a)
        for (values, coefficient) in terms {
            result = Elementwise.zip(result, values) { r, v in r + coefficient * v }
        }
        if let noise { result = Elementwise.zip(result, noise) { r, n in r + noiseScale * n } }
        return result
    }

    /// `α_t·original + σ_t·noise` at the given timestep (`add_noise`).
    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        return try VPNoiseLevel(karrasSigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
            .addNoise(original: original, noise: noise)
    }
}
