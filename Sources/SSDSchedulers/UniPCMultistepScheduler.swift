/// `UniPCMultistepScheduler` (diffusers `scheduling_unipc_multistep.py`, 0.42; Zhao et al. 2023):
/// a UniP predictor and UniC corrector in λ on the x₀ (or ε) prediction, B(h) variants bh1/bh2.
///
/// Configuration keys: `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`,
/// `trained_betas`, `rescale_betas_zero_snr`, `solver_order` (2), `prediction_type`, `predict_x0`,
/// `solver_type` (bh2; midpoint/heun/logrho map to bh2), `lower_order_final`, `disable_corrector`,
/// `use_karras_sigmas`, `sigma_min`, `sigma_max`, `timestep_spacing` (linspace), `steps_offset`,
/// `final_sigmas_type`.
public struct UniPCMultistepScheduler: PositionedScheduler {
    /// The training noise levels (`betas`, `alphas_cumprod`, σ table).
    public let noise: NoiseSchedule
    /// `prediction_type`.
    public let prediction: PredictionType
    /// `predict_x0`.
    public let predictX0: Bool
    /// `solver_type == "bh1"` (B(h) = h) rather than bh2 (B(h) = eʰ − 1).
    public let useBH1: Bool
    /// `solver_order`.
    public let solverOrder: Int
    /// `lower_order_final`.
    public let lowerOrderFinal: Bool
    /// `disable_corrector`.
    public let disableCorrector: Set<Int>
    /// `use_karras_sigmas`.
    public var useKarrasSigmas: Bool { karras.enabled }
    /// `final_sigmas_type`.
    public let finalSigmas: FinalSigmasType
    /// `timestep_spacing`.
    public let spacing: TimestepSpacing
    /// `steps_offset`.
    public let stepsOffset: Int
    let karras: KarrasSigmaOptions
    /// The sigmas of the current schedule (diffusers `self.sigmas`), one more than the timesteps.
    public private(set) var sigmas: [Float] = []
    var position = SchedulePosition()
    var history: [[Float]] = []
    var lowerOrderCount = 0
    var lastSample: [Float]?
    var lastOrder = 1

    let name = "UniPCMultistepScheduler"

    /// Reads a diffusers configuration (this class's defaults for absent keys).
    public init(configuration config: SchedulerConfiguration) throws {
        let name = "UniPCMultistepScheduler"
        noise = try NoiseSchedule(
            configuration: config, scheduler: name, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: .linear, clampLastAlpha: true)
        prediction = try PredictionType.parse(config, scheduler: name)
        predictX0 = try config.bool("predict_x0", default: true)
        let solverText = try config.string("solver_type", default: "bh2")
        switch solverText {
        case "bh1": useBH1 = true
        case "bh2", "midpoint", "heun", "logrho": useBH1 = false
        default: throw SchedulerError.invalidConfiguration(key: "solver_type", value: "\"\(solverText)\"", reason: "unknown value")
        }
        solverOrder = try config.int("solver_order", default: 2)
        guard (1...3).contains(solverOrder) else {
            throw SchedulerError.invalidConfiguration(key: "solver_order", value: String(solverOrder), reason: "must be 1, 2 or 3")
        }
        lowerOrderFinal = try config.bool("lower_order_final", default: true)
        disableCorrector = Set((try config.doubles("disable_corrector") ?? []).map { Int($0) })
        karras = try KarrasSigmaOptions(
            configuration: config, scheduler: name, unsupported: ["use_flow_sigmas", "thresholding", "use_dynamic_shifting"])
        finalSigmas = try config.choice("final_sigmas_type", default: .zero)
        spacing = try config.choice("timestep_spacing", default: .linspace)
        stepsOffset = try config.int("steps_offset", default: 0)
    }

    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }

    public mutating func setTimesteps(_ steps: Int, strength: Double?) throws {
        try SchedulePosition.validate(scheduler: name, steps: steps, strength: strength, trainTimesteps: noise.trainTimesteps)
        var values = SigmaSchedule.multistepTimesteps(
            count: steps, lastTimestep: noise.trainTimesteps, trainTimesteps: noise.trainTimesteps, spacing: spacing,
            stepsOffset: stepsOffset)
        if useKarrasSigmas {
            let levels: [Double]
            (values, levels) = SigmaSchedule.multistepKarras(count: steps, noise: noise, karras: karras)
            let last = finalSigmas == .zero ? 0 : levels[levels.count - 1]
            sigmas = (levels + [last]).map { Float($0) }
        } else {
            let last: Float = finalSigmas == .zero ? 0 : noise.sigmaMinFinal
            let table = noise.sigmas.map(Double.init)
            sigmas = values.map { Float(NumPy.interp($0, table: table)) } + [last]
        }
        try position.install(values, steps: steps, strength: strength, order: order)
        history = []
        lowerOrderCount = 0
        lastSample = nil
        lastOrder = 1
    }

    public func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        try unscaledInput(sample, timestepIndex: timestepIndex)
    }

    public mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float] {
        let i = try beginStep(modelOutput: modelOutput, sample: sample)
        let level = VPNoiseLevel(karrasSigma: sigmas[i])
        let converted = predictX0
            ? prediction.denoised(sample: sample, output: modelOutput, alpha: level.alpha, sigma: level.sigma)
            : prediction.noise(sample: sample, output: modelOutput, alpha: level.alpha, sigma: level.sigma)
        var current = sample
        if i > 0, !disableCorrector.contains(i - 1), let last = lastSample {
            current = corrector(modelOutput: converted, lastSample: last, sample: sample, order: lastOrder)
        }
        history.append(converted)
        if history.count > solverOrder { history.removeFirst() }
        let count = position.allTimesteps.count
        let wanted = lowerOrderFinal ? min(solverOrder, count - i) : solverOrder
        lastOrder = min(wanted, lowerOrderCount + 1)
        lastSample = current
        let result = predictor(sample: current, order: lastOrder)
        if lowerOrderCount < solverOrder { lowerOrderCount += 1 }
        position.current += 1
        return result
    }

    /// The shared coefficient setup of `multistep_uni_p_bh_update`/`multistep_uni_c_bh_update`:
    /// h, the ratios rₖ, h·φ₁, B(h), and the `R`, `b` of the order conditions.
    private func coefficients(target: VPNoiseLevel, source: VPNoiseLevel, previousSigmas: [Float], order: Int)
        -> (h: Float, ratios: [Float], hPhi1: Float, bh: Float, matrix: [[Float]], rhs: [Float])
    {
        let h = target.lambda - source.lambda
        var ratios = previousSigmas.map { (VPNoiseLevel(karrasSigma: $0).lambda - source.lambda) / h }
        ratios.append(1)
        let hh = predictX0 ? -h : h
        let hPhi1 = HostMath.expm1(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial = 1
        let bh = useBH1 ? hh : HostMath.expm1(hh)
        var matrix: [[Float]] = []
        var rhs: [Float] = []
        for k in 1...order {
            matrix.append(ratios.map { k == 1 ? 1 : k == 2 ? $0 : $0 * $0 })
            rhs.append(hPhiK * Float(factorial) / bh)
            factorial *= k + 1
            hPhiK = hPhiK / hh - Float(1.0 / Double(factorial))
        }
        return (h, ratios, hPhi1, bh, matrix, rhs)
    }

    /// `multistep_uni_p_bh_update`.
    func predictor(sample x: [Float], order: Int) -> [Float] {
        let i = position.current
        let target = VPNoiseLevel(karrasSigma: sigmas[i + 1])
        let source = VPNoiseLevel(karrasSigma: sigmas[i])
        let m0 = history[history.count - 1]
        let previous = (1..<max(order, 1)).map { sigmas[i - $0] }
        let c = coefficients(target: target, source: source, previousSigmas: previous, order: order)
        let differences = (1..<max(order, 1)).map { k -> [Float] in
            let rk = c.ratios[k - 1]
            return Elementwise.zip(history[history.count - 1 - k], m0) { mi, m in (mi - m) / rk }
        }
        var rhos: [Float] = []
        if !differences.isEmpty {
            rhos = order == 2 ? [0.5] : Self.solve(Array(c.matrix.dropLast().map { Array($0.dropLast()) }), Array(c.rhs.dropLast()))
        }
        let base = baseUpdate(x: x, m0: m0, target: target, source: source, hPhi1: c.hPhi1)
        guard !differences.isEmpty else { return base }
        let residual = weightedSum(rhos, differences)
        let scale = (predictX0 ? target.alpha : target.sigma) * c.bh
        return Elementwise.zip(base, residual) { b, r in b - scale * r }
    }

    /// `multistep_uni_c_bh_update`: corrects the sample the last predictor produced using the new output.
    func corrector(modelOutput modelT: [Float], lastSample x: [Float], sample: [Float], order: Int) -> [Float] {
        let i = position.current
        let target = VPNoiseLevel(karrasSigma: sigmas[i])
        let source = VPNoiseLevel(karrasSigma: sigmas[i - 1])
        let m0 = history[history.count - 1]
        let previous = (1..<max(order, 1)).map { sigmas[i - ($0 + 1)] }
        let c = coefficients(target: target, source: source, previousSigmas: previous, order: order)
        let differences = (1..<max(order, 1)).map { k -> [Float] in
            let rk = c.ratios[k - 1]
            return Elementwise.zip(history[history.count - 1 - k], m0) { mi, m in (mi - m) / rk }
        }
        let rhos: [Float] = order == 1 ? [0.5] : Self.solve(c.matrix, c.rhs)
        let base = baseUpdate(x: x, m0: m0, target: target, source: source, hPhi1: c.hPhi1)
        let lastRho = rhos[rhos.count - 1]
        let correctionTerm = Elementwise.zip(modelT, m0) { mt, m in lastRho * (mt - m) }
        let total = differences.isEmpty
            ? Elementwise.map(correctionTerm) { 0 + $0 }
            : Elementwise.add(weightedSum(Array(rhos.dropLast()), differences), correctionTerm)
        let scale = (predictX0 ? target.alpha : target.sigma) * c.bh
        return Elementwise.zip(base, total) { b, r in b - scale * r }
    }

    /// `σ_t/σ_s·x − α_t·hφ₁·m0` (x₀ form) or `α_t/α_s·x − σ_t·hφ₁·m0` (ε form).
    private func baseUpdate(x: [Float], m0: [Float], target: VPNoiseLevel, source: VPNoiseLevel, hPhi1: Float) -> [Float] {
        let sampleScale = predictX0 ? target.sigma / source.sigma : target.alpha / source.alpha
        let outputScale = (predictX0 ? target.alpha : target.sigma) * hPhi1
        return Elementwise.zip(x, m0) { a, m in sampleScale * a - outputScale * m }
    }

    /// `einsum("k,bkc...->bc...", rhos, D1s)`: Σₖ ρₖ·Dₖ, summed in k order.
    private func weightedSum(_ rhos: [Float], _ terms: [[Float]]) -> [Float] {
        var result = Elementwise.scale(terms[0], rhos[0])
        for k in 1..<terms.count {
            let rho = rhos[k]
            result = Elementwise.zip(result, terms[k]) { r, d in r + rho * d }
        }
        return result
    }

    /// `torch.linalg.solve` for the tiny order-condition systems: Gaussian elimination with partial
    /// pivoting in float32 (LAPACK `sgesv`'s algorithm).
    static func solve(_ matrix: [[Float]], _ rhs: [Float]) -> [Float] {
        var a = matrix
        var b = rhs
        let n = b.count
        for column in 0..<n {
            var pivot = column
            for row in column..<n where abs(a[row][column]) > abs(a[pivot][column]) { pivot = row }
            a.swapAt(column, pivot)
            b.swapAt(column, pivot)
            for row in (column + 1)..<n {
                let factor = a[row][column] / a[column][column]
                for k in column..<n { a[row][k] -= factor * a[column][k] }
                b[row] -= factor * b[column]
            }
        }
        var x = [Float](repeating: 0, count: n)
        for row in stride(from: n - 1, through: 0, by: -1) {
            var value = b[row]
            for k in (row + 1)..<n { value -= a[row][k] * x[k] }
            x[row] = value / a[row][row]
        }
        return x
    }

    /// `α_t·original + σ_t·noise` (`add_noise`).
    public func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float] {
        try checkCounts(noise, "noise", original, "original")
        return try VPNoiseLevel(karrasSigma: sigmas[position.absolute(timestepIndex, scheduler: name)])
            .addNoise(original: original, noise: noise)
    }
}
