/// Errors of the SSDSchedulers module; each names the scheduler, argument or configuration key.
public enum SchedulerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `setTimesteps` was given fewer than one step.
    case invalidStepCount(scheduler: String, steps: Int)
    /// More inference steps than the model's training timesteps (`num_train_timesteps`).
    case tooManySteps(scheduler: String, steps: Int, trainTimesteps: Int)
    /// A step count the scheduler's own schedule cannot produce (LCM's `original_inference_steps`).
    case incompatibleStepCount(scheduler: String, steps: Int, reason: String)
    /// img2img strength outside [0, 1].
    case invalidStrength(Double)
    /// The strength leaves no denoising step (diffusers img2img raises the same).
    case noStepsForStrength(steps: Int, strength: Double)
    /// `denoising_start` outside (0, 1).
    case invalidDenoisingStart(Double)
    /// `denoising_start` leaves no denoising step.
    case noStepsForDenoisingStart(steps: Int, denoisingStart: Double)
    /// A scheduler from outside this module has no `setTimesteps(_:denoisingStart:)`.
    case denoisingStartUnsupported(scheduler: String)
    /// No scheduler has this CLI/API name.
    case unknownName(String, valid: [String])
    /// No scheduler implements this diffusers class.
    case unknownClassName(String, valid: [String])
    /// A configuration key holds a value of the wrong type or out of range.
    case invalidConfiguration(key: String, value: String, reason: String)
    /// A configuration value diffusers accepts but this library does not implement.
    case unsupportedConfiguration(scheduler: String, key: String, value: String)
    /// The configuration file could not be read or parsed.
    case unreadableConfiguration(path: String, reason: String)
    /// `step`, `scaleModelInput` or `addNoise` was called before `setTimesteps`.
    case timestepsNotSet(scheduler: String)
    /// `step` was called more times than there are timesteps.
    case stepPastEnd(scheduler: String, stepIndex: Int, count: Int)
    /// A timestep index outside the schedule.
    case timestepIndexOutOfRange(scheduler: String, index: Int, count: Int)
    /// Two arrays that must have the same element count do not.
    case countMismatch(argument: String, expected: Int, actual: Int)
    /// The scheduler does not take a caller's schedule of this kind (as diffusers' `set_timesteps` has no
    /// such argument, or refuses it with this configuration).
    case customScheduleUnsupported(scheduler: String, reason: String)
    /// A caller's schedule that cannot be used (empty, not finite, negative σ).
    case invalidCustomSchedule(String)

    public var description: String {
        switch self {
        case let .invalidStepCount(scheduler, steps):
            return "\(scheduler): the number of inference steps must be at least 1, got \(steps)"
        case let .tooManySteps(scheduler, steps, train):
            return "\(scheduler): \(steps) inference steps exceed num_train_timesteps \(train)"
        case let .incompatibleStepCount(scheduler, steps, reason):
            return "\(scheduler): \(steps) inference steps: \(reason)"
        case let .invalidStrength(strength):
            return "strength must lie in [0, 1], got \(strength)"
        case let .noStepsForStrength(steps, strength):
            return "strength \(strength) with \(steps) inference steps leaves no denoising step"
        case let .invalidDenoisingStart(start):
            return "denoising start must lie strictly between 0 and 1, got \(start)"
        case let .noStepsForDenoisingStart(steps, start):
            return "denoising start \(start) with \(steps) inference steps leaves no denoising step"
        case let .customScheduleUnsupported(scheduler, reason):
            return "\(scheduler) does not take this custom schedule: \(reason)"
        case let .invalidCustomSchedule(reason):
            return "invalid custom schedule: \(reason)"
        case let .denoisingStartUnsupported(scheduler):
            return "\(scheduler) does not implement setTimesteps(_:denoisingStart:)"
        case let .unknownName(name, valid):
            return "unknown scheduler name '\(name)'; valid names: \(valid.joined(separator: ", "))"
        case let .unknownClassName(name, valid):
            return "unknown scheduler class '\(name)'; supported classes: \(valid.joined(separator: ", "))"
        case let .invalidConfiguration(key, value, reason):
            return "scheduler configuration key '\(key)' = \(value): \(reason)"
        case let .unsupportedConfiguration(scheduler, key, value):
            return "\(scheduler): configuration '\(key)' = \(value) is not supported"
        case let .unreadableConfiguration(path, reason):
            return "cannot read scheduler configuration '\(path)': \(reason)"
        case let .timestepsNotSet(scheduler):
            return "\(scheduler): call setTimesteps before stepping"
        case let .stepPastEnd(scheduler, index, count):
            return "\(scheduler): step \(index) called but the schedule has \(count) timesteps"
        case let .timestepIndexOutOfRange(scheduler, index, count):
            return "\(scheduler): timestep index \(index) outside 0..<\(count)"
        case let .countMismatch(argument, expected, actual):
            return "argument '\(argument)' has \(actual) elements, expected \(expected)"
        }
    }
}
