/// A schedule given by the caller instead of a step count: diffusers pipelines' `timesteps=` and `sigmas=`
/// arguments (`retrieve_timesteps`), as used for "Align Your Steps" (`AysSchedules` in
/// `schedulers/scheduling_utils.py`).
public enum CustomSchedule: Sendable, Hashable {
    /// Training timesteps, one per step, in the order they run (`timesteps=`; `EulerDiscreteScheduler`,
    /// `HeunDiscreteScheduler`, `DPMSolverMultistepScheduler`, `LCMScheduler` take them).
    case timesteps([Double])
    /// Noise levels, one per step plus the final one (`sigmas=`; `EulerDiscreteScheduler` takes them).
    case sigmas([Double])

    /// diffusers' `AysSchedules["StableDiffusionXLTimesteps"]` (10 steps).
    public static let alignYourStepsSDXLTimesteps = CustomSchedule.timesteps([999, 845, 730, 587, 443, 310, 193, 116, 53, 13])
    /// diffusers' `AysSchedules["StableDiffusionXLSigmas"]` (10 steps).
    public static let alignYourStepsSDXLSigmas = CustomSchedule.sigmas([14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.0])

    /// The number of solver steps n (diffusers' `num_inference_steps` after `retrieve_timesteps` is the number of
    /// timesteps set, which for Heun is 2n − 1).
    public var stepCount: Int {
        switch self {
        case let .timesteps(values): return values.count
        case let .sigmas(values): return max(values.count - 1, 0)
        }
    }

    /// Checks the values: at least one step, finite, σ not negative, timesteps in [0, `trainTimesteps`).
    public func validate(trainTimesteps: Int) throws {
        switch self {
        case let .timesteps(values):
            guard !values.isEmpty else { throw SchedulerError.invalidCustomSchedule("no timesteps") }
            guard values.allSatisfy({ $0.isFinite && $0 >= 0 && $0 < Double(trainTimesteps) }) else {
                throw SchedulerError.invalidCustomSchedule("timesteps \(values) must lie in [0, \(trainTimesteps))")
            }
        case let .sigmas(values):
            guard values.count >= 2 else { throw SchedulerError.invalidCustomSchedule("needs at least two sigmas (one step and the final level)") }
            guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw SchedulerError.invalidCustomSchedule("sigmas \(values) must be finite and not negative")
            }
        }
    }

    var kind: String {
        switch self {
        case .timesteps: return "timesteps"
        case .sigmas: return "sigmas"
        }
    }
}

extension Scheduler {
    /// Throws `customScheduleUnsupported`: a scheduler must say how it takes a caller's schedule.
    public mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws {
        throw SchedulerError.customScheduleUnsupported(scheduler: "\(type(of: self))", reason: "no set_timesteps(\(schedule.kind)=…)")
    }

    /// Throws `customScheduleUnsupported`: a scheduler must say how it takes a caller's schedule.
    public mutating func setTimesteps(_ schedule: CustomSchedule, denoisingStart: Double) throws {
        throw SchedulerError.customScheduleUnsupported(scheduler: "\(type(of: self))", reason: "no set_timesteps(\(schedule.kind)=…) with denoising_start")
    }
}

extension PositionedScheduler {
    /// The checks every built-in scheduler makes before taking a caller's schedule.
    func validateCustom(_ schedule: CustomSchedule, strength: Double?) throws {
        try schedule.validate(trainTimesteps: noise.trainTimesteps)
        if let strength, !(strength >= 0 && strength <= 1) { throw SchedulerError.invalidStrength(strength) }
    }

    /// Installs `timesteps` of a caller's schedule with `strength`'s img2img start; `reset` repeats it. As
    /// diffusers' `retrieve_timesteps` sets `num_inference_steps = len(scheduler.timesteps)`, the img2img start
    /// counts entries of `timesteps` (Heun's doubled ones too).
    mutating func installCustom(_ timesteps: [Double], schedule: CustomSchedule, strength: Double?) throws {
        try position.install(timesteps, steps: timesteps.count, strength: strength, order: order)
        position.requestedCustom = schedule
    }
}
