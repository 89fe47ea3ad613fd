/// diffusers `timestep_spacing` (Table 2 of "Common Diffusion Noise Schedules and Sample Steps are
/// Flawed").
public enum TimestepSpacing: String, Sendable, CaseIterable {
    /// Evenly spaced from the first to the last training step, rounded; `leading`: multiples of
    /// `num_train_timesteps / steps` from 0 (plus `steps_offset`); `trailing`: counted down from the last.
    case linspace, leading, trailing
}

/// diffusers `final_sigmas_type`: the σ after the last step.
public enum FinalSigmasType: String, Sendable, CaseIterable {
    /// σ = 0: the last step returns the denoised sample.
    case zero
    /// The smallest training σ.
    case sigmaMin = "sigma_min"
}

/// NumPy's float64 array helpers exactly as diffusers calls them (`numpy/_core/function_base.py`
/// `linspace`, `ctors.c` `arange`, `compiled_base.c` `interp`, `np.round` half to even).
enum NumPy {
    /// `np.linspace(start, stop, count, endpoint=endpoint)` in float64.
    static func linspace(_ start: Double, _ stop: Double, _ count: Int, endpoint: Bool = true) -> [Double] {
        guard count > 0 else { return [] }
        let divisions = endpoint ? count - 1 : count
        let delta = stop - start
        var values: [Double]
        if divisions > 0 {
            let step = delta / Double(divisions)
            values = step == 0
                ? (0..<count).map { Double($0) / Double(divisions) * delta }
                : (0..<count).map { Double($0) * step }
        } else {
            values = (0..<count).map { Double($0) * delta }
        }
        values = values.map { $0 + start }
        if endpoint && count > 1 { values[count - 1] = stop }
        return values
    }

    /// `np.arange(start, stop, step)` with a float step: length `ceil((stop − start)/step)`, then
    /// `start + i·((start + step) − start)` as NumPy's `DOUBLE_fill` does.
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let length = Int(((stop - start) / step).rounded(.up))
        guard length > 0 else { return [] }
        if length == 1 { return [start] }
        let delta = (start + step) - start
        return (0..<length).map { i in i == 0 ? start : i == 1 ? start + step : start + Double(i) * delta }
    }

    /// `np.round` (half to even).
    static func round(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

    /// `np.interp(x, np.arange(len(table)), table)`.
    static func interp(_ x: Double, table: [Double]) -> Double {
        let last = table.count - 1
        if x.isNaN { return x }
        if x <= 0 { return table[0] }
        if x >= Double(last) { return table[last] }
        let j = Int(x.rounded(.down))
        if Double(j) == x { return table[j] }
        let slope = (table[j + 1] - table[j]) / 1.0
        return slope * (x - Double(j)) + table[j]
    }
}

/// The sigma-schedule pieces diffusers' discrete schedulers share (`_sigma_to_t`,
/// `_convert_to_karras`), in float64 as diffusers computes them with NumPy.
enum SigmaSchedule {
    /// `_sigma_to_t`: the fractional training timestep whose log-σ (linearly interpolated) is `sigma`'s.
    /// `logSigmas` is float32 as in diffusers (`np.log` of the float32 σ table), so `low − high` is a
    /// float32 difference while the rest is float64. NumPy's own float32 `log` is a SIMD polynomial
    /// that is not correctly rounded (it differs from the C library's `logf` by an ulp for about a
    /// fifth of the table, and by CPU), so non-integer (Karras) timesteps agree with diffusers to
    /// about 1e-7 relative, not bit for bit.
    static func timestep(forSigma sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = HostMath.log(max(sigma, 1e-10))
        var low = 0
        for (index, value) in logSigmas.enumerated() where logSigma - Double(value) >= 0 { low = index }
        low = min(low, logSigmas.count - 2)
        let high = low + 1
        let lowValue = logSigmas[low]
        let highValue = logSigmas[high]
        var w = (Double(lowValue) - logSigma) / Double(lowValue - highValue)
        w = min(max(w, 0), 1)
        return (1 - w) * Double(low) + w * Double(high)
    }

    /// `_sigma_to_t` of a float32 σ (a caller's `sigmas=`): NumPy then takes the log and the interpolation
    /// weight in float32 and the weighted index sum in float64.
    static func timestep(forFloat32Sigma sigma: Float, logSigmas: [Float]) -> Double {
        let logSigma = HostMath.log(max(sigma, 1e-10))
        var low = 0
        for (index, value) in logSigmas.enumerated() where logSigma - value >= 0 { low = index }
        low = min(low, logSigmas.count - 2)
        let high = low + 1
        var w = (logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[high])
        w = min(max(w, 0), 1)
        return Double(1 - w) * Double(low) + Double(w) * Double(high)
    }

    /// `_convert_to_karras` (ρ = 7) between the config's `sigma_min`/`sigma_max` or the ends of `sigmas`.
    static func karras(count: Int, sigmaMin: Double, sigmaMax: Double) -> [Double] {
        let rho = 7.0
        let ramp = NumPy.linspace(0, 1, count)
        let minInvRho = HostMath.pow(sigmaMin, 1 / rho)
        let maxInvRho = HostMath.pow(sigmaMax, 1 / rho)
        return ramp.map { HostMath.pow(maxInvRho + $0 * (minInvRho - maxInvRho), rho) }
    }

    /// The Euler/Heun family's schedule before the final σ (`EulerDiscreteScheduler.set_timesteps`):
    /// `discreteTimesteps` with σ interpolated in the training table, or with `karras` Karras σ
    /// between its bounds (default: the interpolated ends) and their `_sigma_to_t` timesteps
    /// rounded to float32, as the float32 timestep tensor holds them.
    static func discrete(
        count: Int, noise: NoiseSchedule, spacing: TimestepSpacing, stepsOffset: Int, karras: KarrasSigmaOptions
    ) -> (timesteps: [Double], sigmas: [Double]) {
        var timesteps = discreteTimesteps(count: count, trainTimesteps: noise.trainTimesteps, spacing: spacing, stepsOffset: stepsOffset)
            .map(Double.init)
        let table = noise.sigmas.map(Double.init)
        var levels = timesteps.map { NumPy.interp($0, table: table) }
        if karras.enabled {
            levels = Self.karras(count: count, sigmaMin: karras.sigmaMin ?? levels[levels.count - 1], sigmaMax: karras.sigmaMax ?? levels[0])
            let logSigmas = noise.logSigmas
            timesteps = levels.map { Double(Float(timestep(forSigma: $0, logSigmas: logSigmas))) }
        }
        return (timesteps, levels)
    }

    /// The multistep family's Karras σ (`DPMSolverMultistepScheduler`, `UniPCMultistepScheduler`)
    /// between the configured bounds or the training table's ends, with rounded `_sigma_to_t` timesteps.
    static func multistepKarras(count: Int, noise: NoiseSchedule, karras: KarrasSigmaOptions) -> (timesteps: [Double], sigmas: [Double]) {
        let levels = Self.karras(
            count: count, sigmaMin: karras.sigmaMin ?? Double(noise.sigmas[0]),
            sigmaMax: karras.sigmaMax ?? Double(noise.sigmas[noise.sigmas.count - 1]))
        return (roundedTimesteps(forSigmas: levels, logSigmas: noise.logSigmas), levels)
    }

    /// `np.round(_sigma_to_t(σ))` for each σ (the multistep family's integer timesteps).
    static func roundedTimesteps(forSigmas levels: [Double], logSigmas: [Float]) -> [Double] {
        levels.map { NumPy.round(timestep(forSigma: $0, logSigmas: logSigmas)) }
    }

    /// The Euler/Heun family's timesteps (`EulerDiscreteScheduler.set_timesteps`): `count` float32 values, descending.
    static func discreteTimesteps(count: Int, trainTimesteps: Int, spacing: TimestepSpacing, stepsOffset: Int) -> [Float] {
        switch spacing {
        case .linspace:
            return NumPy.linspace(0, Double(trainTimesteps - 1), count).reversed().map { Float($0) }
        case .leading:
            let ratio = trainTimesteps / count
            return (0..<count).reversed().map { Float($0 * ratio) + Float(stepsOffset) }
        case .trailing:
            let ratio = Double(trainTimesteps) / Double(count)
            return NumPy.arange(Double(trainTimesteps), 0, -ratio).map { Float(NumPy.round($0)) - 1 }
        }
    }

    /// The multistep family's integer timesteps (`DPMSolverMultistepScheduler`, `UniPCMultistepScheduler`):
    /// `count + 1` points with the last dropped, for linspace and leading.
    static func multistepTimesteps(
        count: Int, lastTimestep: Int, trainTimesteps: Int, spacing: TimestepSpacing, stepsOffset: Int
    ) -> [Double] {
        switch spacing {
        case .linspace:
            let points = NumPy.linspace(0, Double(lastTimestep - 1), count + 1).map(NumPy.round)
            return Array(points.reversed().dropLast())
        case .leading:
            let ratio = lastTimestep / (count + 1)
            return (1...count).reversed().map { Double($0 * ratio + stepsOffset) }
        case .trailing:
            let ratio = Double(trainTimesteps) / Double(count)
            return NumPy.arange(Double(lastTimestep), 0, -ratio).map { NumPy.round($0) - 1 }
        }
    }

    /// DDIM's integer timesteps (`DDIMScheduler.set_timesteps`).
    static func ddimTimesteps(count: Int, trainTimesteps: Int, spacing: TimestepSpacing, stepsOffset: Int) -> [Double] {
        switch spacing {
        case .linspace:
            return NumPy.linspace(0, Double(trainTimesteps - 1), count).map(NumPy.round).reversed()
        case .leading:
            let ratio = trainTimesteps / count
            return (0..<count).reversed().map { Double($0 * ratio + stepsOffset) }
        case .trailing:
            let ratio = Double(trainTimesteps) / Double(count)
            return NumPy.arange(Double(trainTimesteps), 0, -ratio).map { NumPy.round($0) - 1 }
        }
    }
}

/// The σ-schedule options of the Euler, Heun, DPM-Solver and UniPC configurations
/// (`use_karras_sigmas`, `sigma_min`, `sigma_max`); the other σ schedules diffusers offers
/// (`use_exponential_sigmas`, `use_beta_sigmas`) are rejected.
struct KarrasSigmaOptions: Sendable, Hashable {
    /// `use_karras_sigmas`.
    let enabled: Bool
    /// `sigma_min` (nil: the schedule's own end).
    let sigmaMin: Double?
    /// `sigma_max` (nil: the schedule's own end).
    let sigmaMax: Double?

    /// Karras σ off, no bounds (classes without these keys).
    static let off = KarrasSigmaOptions(enabled: false, sigmaMin: nil, sigmaMax: nil)
}

extension KarrasSigmaOptions {
    /// Reads the keys; `unsupported` are further boolean keys that must be false for `scheduler`.
    init(configuration config: SchedulerConfiguration, scheduler: String, unsupported: [String] = []) throws {
        enabled = try config.bool("use_karras_sigmas", default: false)
        for key in ["use_exponential_sigmas", "use_beta_sigmas"] + unsupported where try config.bool(key, default: false) {
            throw SchedulerError.unsupportedConfiguration(scheduler: scheduler, key: key, value: "true")
        }
        sigmaMin = try config.optionalDouble("sigma_min")
        sigmaMax = try config.optionalDouble("sigma_max")
    }
}
