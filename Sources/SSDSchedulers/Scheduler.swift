/// A diffusion sampler, modelled on diffusers' `SchedulerMixin` API (`schedulers/scheduling_utils.py`)
/// but with value semantics and host float32 arrays (latents flattened in NCHW order; every
/// operation is elementwise, so only element counts matter).
///
/// The denoising loop is the same for every scheduler, including second-order ones whose
/// `timesteps` repeat entries (Heun): one network evaluation and one `step` per entry.
/// ```swift
/// try scheduler.setTimesteps(steps, strength: strength)   // strength: img2img, nil: text-to-image
/// var latents = noise.map { $0 * scheduler.initNoiseSigma }  // text-to-image
/// // img2img instead: latents = try scheduler.addNoise(original: imageLatents, noise: noise)
/// for (i, t) in scheduler.timesteps.enumerated() {
///     let input = try scheduler.scaleModelInput(latents, timestepIndex: i)
///     let output = unet(input, t)                            // + classifier-free guidance
///     latents = try scheduler.step(modelOutput: output, sample: latents, random: &generator)
/// }
/// ```
/// Types outside this module can conform and be passed wherever `any Scheduler` is taken.
public protocol Scheduler: Sendable {
    /// The timesteps to evaluate the network at, in order (diffusers `scheduler.timesteps` after the
    /// img2img pipeline's `get_timesteps` slicing); empty before `setTimesteps`.
    var timesteps: [Double] { get }
    /// The factor for text-to-image initial noise (`init_noise_sigma`).
    var initNoiseSigma: Float { get }
    /// Network evaluations per solver step (2 for Heun; `order` in diffusers).
    var order: Int { get }
    /// Index into `timesteps` of the next `step` call.
    var stepIndex: Int { get }

    /// `set_timesteps(steps)`; with `strength` (img2img, in [0, 1]) the schedule then starts where
    /// diffusers' img2img pipeline starts it: `t_start = steps − min(⌊steps·strength⌋, steps)`,
    /// `timesteps[t_start·order...]`, `set_begin_index(t_start·order)`. Clears all step state.
    mutating func setTimesteps(_ steps: Int, strength: Double?) throws
    /// `set_timesteps(steps)` started where diffusers' SDXL img2img pipeline starts it for
    /// `denoising_start` (a refiner going on from a base run cut at `denoising_end`): at the first timestep
    /// below `round(T · (1 − denoisingStart))` (T = `num_train_timesteps`; one step earlier for
    /// second-order schedulers when the count would be even), `set_begin_index` there. Schedulers outside
    /// this module get a default that throws `SchedulerError.denoisingStartUnsupported`.
    mutating func setTimesteps(_ steps: Int, denoisingStart: Double) throws
    /// `set_timesteps(timesteps=…)` or `set_timesteps(sigmas=…)` (diffusers pipelines' `timesteps=` / `sigmas=`,
    /// e.g. Align Your Steps schedules), then `strength`'s img2img start as `setTimesteps(_:strength:)` with
    /// `steps` = the number of timesteps set (diffusers' `retrieve_timesteps`: Heun's 2n − 1). Schedulers outside this module, and those diffusers gives no such
    /// argument, throw `SchedulerError.customScheduleUnsupported`.
    mutating func setTimesteps(_ schedule: CustomSchedule, strength: Double?) throws
    /// A caller's schedule (`setTimesteps(_:strength:)` without strength) started for `denoising_start` as
    /// `setTimesteps(_:denoisingStart:)` starts a regular one (diffusers' SDXL img2img pipeline: `retrieve_timesteps`,
    /// then `get_timesteps` with `denoising_start`). Schedulers outside this module throw
    /// `SchedulerError.customScheduleUnsupported`.
    mutating func setTimesteps(_ schedule: CustomSchedule, denoisingStart: Double) throws
    /// `scale_model_input` for the network call at `timesteps[timestepIndex]`.
    func scaleModelInput(_ sample: [Float], timestepIndex: Int) throws -> [Float]
    /// `step(model_output, t, sample, generator=…)` for `timesteps[stepIndex]`; returns the new
    /// sample (`prev_sample`) and advances `stepIndex`. Ancestral and SDE samplers draw
    /// `sample.count` normals from `random`.
    mutating func step<R: RandomSource>(modelOutput: [Float], sample: [Float], random: inout R) throws -> [Float]
    /// `add_noise(original, noise, timesteps[timestepIndex])`: img2img latents at that timestep.
    func addNoise(original: [Float], noise: [Float], timestepIndex: Int) throws -> [Float]
    /// Returns to the start of the current schedule (as a fresh `setTimesteps` with the same arguments).
    mutating func reset()
}

extension Scheduler {
    /// Throws `denoisingStartUnsupported`: a scheduler must say where its schedule starts for it.
    public mutating func setTimesteps(_ steps: Int, denoisingStart: Double) throws {
        throw SchedulerError.denoisingStartUnsupported(scheduler: "\(type(of: self))")
    }

    /// How many of `timesteps` diffusers' SDXL pipelines run with `denoising_end` (the rest is left to
    /// a refiner): those at or above `round(T · (1 − denoisingEnd))`, T = `trainTimesteps`.
    public func stepCount(denoisingEnd: Double, trainTimesteps: Int) -> Int {
        let cutoff = (Double(trainTimesteps) - denoisingEnd * Double(trainTimesteps)).rounded(.toNearestOrEven)
        return timesteps.filter { $0 >= cutoff }.count
    }

    /// `setTimesteps(steps, strength: nil)` (text-to-image).
    public mutating func setTimesteps(_ steps: Int) throws { try setTimesteps(steps, strength: nil) }

    /// `scaleModelInput` for the next step.
    public func scaleModelInput(_ sample: [Float]) throws -> [Float] {
        try scaleModelInput(sample, timestepIndex: stepIndex)
    }

    /// `addNoise` at the first timestep of the schedule (the img2img start).
    public func addNoise(original: [Float], noise: [Float]) throws -> [Float] {
        try addNoise(original: original, noise: noise, timestepIndex: 0)
    }

    /// `step` for schedulers that draw no noise (uses a throwaway generator otherwise).
    public mutating func step(modelOutput: [Float], sample: [Float]) throws -> [Float] {
        var unused = TorchCPUGenerator(seed: 0)
        return try step(modelOutput: modelOutput, sample: sample, random: &unused)
    }

    /// The number of `step` calls left.
    public var remainingSteps: Int { max(timesteps.count - stepIndex, 0) }
}

/// A built-in scheduler: its schedule bookkeeping lives in `position`, which supplies the
/// `Scheduler` members that only read it (`timesteps`, `stepIndex`, `reset`).
protocol PositionedScheduler: Scheduler {
    /// The diffusers class name, for errors.
    var name: String { get }
    /// The schedule and step index.
    var position: SchedulePosition { get set }
    /// The training noise levels.
    var noise: NoiseSchedule { get }
}

extension PositionedScheduler {
    /// `timesteps` from the img2img start on.
    public var timesteps: [Double] { position.visibleTimesteps }
    /// The step index relative to the img2img start.
    public var stepIndex: Int { position.relativeIndex }

    /// Checks that a step may run now and returns its absolute index (diffusers `step_index`).
    func beginStep(modelOutput: [Float], sample: [Float]) throws -> Int {
        try position.checkStep(scheduler: name, modelOutput: modelOutput, sample: sample)
        return position.current
    }

    /// `scale_model_input` of the schedulers that leave the sample as it is: checks the index only.
    func unscaledInput(_ sample: [Float], timestepIndex: Int) throws -> [Float] {
        _ = try position.absolute(timestepIndex, scheduler: name)
        return sample
    }

    /// A fresh `setTimesteps` with the last arguments (nothing before the first).
    public mutating func reset() {
        guard position.isSet else { return }
        if let custom = position.requestedCustom, let start = position.requestedDenoisingStart {
            try? setTimesteps(custom, denoisingStart: start)
        } else if let custom = position.requestedCustom {
            try? setTimesteps(custom, strength: position.requestedStrength)
        } else if let start = position.requestedDenoisingStart {
            try? setTimesteps(position.requestedSteps, denoisingStart: start)
        } else {
            try? setTimesteps(position.requestedSteps, strength: position.requestedStrength)
        }
    }

    /// `setTimesteps(steps, strength: nil)`, then the start `denoisingStart` asks for.
    public mutating func setTimesteps(_ steps: Int, denoisingStart: Double) throws {
        guard denoisingStart > 0, denoisingStart < 1 else { throw SchedulerError.invalidDenoisingStart(denoisingStart) }
        try setTimesteps(steps, strength: nil)
        try start(denoisingStart: denoisingStart, steps: steps)
    }

    /// `setTimesteps(schedule, strength: nil)`, then the start `denoisingStart` asks for.
    public mutating func setTimesteps(_ schedule: CustomSchedule, denoisingStart: Double) throws {
        guard denoisingStart > 0, denoisingStart < 1 else { throw SchedulerError.invalidDenoisingStart(denoisingStart) }
        try setTimesteps(schedule, strength: nil)
        try start(denoisingStart: denoisingStart, steps: position.allTimesteps.count)
    }

    /// diffusers' `get_timesteps` with `denoising_start` on the schedule just set: the timesteps below
    /// the cutoff (one more for second-order schedulers when their count is even), `set_begin_index`.
    private mutating func start(denoisingStart: Double, steps: Int) throws {
        let cutoff = (Double(noise.trainTimesteps) - denoisingStart * Double(noise.trainTimesteps)).rounded(.toNearestOrEven)
        var count = position.allTimesteps.filter { $0 < cutoff }.count
        if order == 2 && count % 2 == 0 { count += 1 }
        let start = position.allTimesteps.count - count
        guard count >= 1, start >= 0 else { throw SchedulerError.noStepsForDenoisingStart(steps: steps, denoisingStart: denoisingStart) }
        position.beginIndex = start
        position.current = start
        position.requestedDenoisingStart = denoisingStart
    }
}

/// Bookkeeping every built-in scheduler shares: the full schedule, diffusers' `begin_index`
/// (img2img start) and `step_index`.
struct SchedulePosition: Sendable, Hashable {
    /// All timesteps of `set_timesteps` (before img2img slicing).
    var allTimesteps: [Double] = []
    /// `begin_index`: where the img2img schedule starts in `allTimesteps`.
    var beginIndex = 0
    /// `step_index`, absolute in `allTimesteps`.
    var current = 0
    /// The last `setTimesteps` arguments, for `reset`.
    var requestedSteps = 0
    var requestedStrength: Double?
    var requestedDenoisingStart: Double?
    var requestedCustom: CustomSchedule?

    var isSet: Bool { !allTimesteps.isEmpty }
    var visibleTimesteps: [Double] { isSet ? Array(allTimesteps[beginIndex...]) : [] }
    var relativeIndex: Int { current - beginIndex }

    /// Validates a step request (`steps ≥ 1`, `steps ≤ trainTimesteps`, strength in [0, 1]).
    static func validate(scheduler: String, steps: Int, strength: Double?, trainTimesteps: Int) throws {
        guard steps >= 1 else { throw SchedulerError.invalidStepCount(scheduler: scheduler, steps: steps) }
        guard steps <= trainTimesteps else {
            throw SchedulerError.tooManySteps(scheduler: scheduler, steps: steps, trainTimesteps: trainTimesteps)
        }
        if let strength, !(strength >= 0 && strength <= 1) { throw SchedulerError.invalidStrength(strength) }
    }

    /// Installs a fresh schedule and applies the img2img pipeline's `get_timesteps` slicing.
    mutating func install(_ timesteps: [Double], steps: Int, strength: Double?, order: Int) throws {
        var begin = 0
        if let strength {
            let initTimestep = min(Int(Double(steps) * strength), steps)
            let start = max(steps - initTimestep, 0)
            // (with a custom schedule a second-order scheduler counts its 2n − 1 timesteps as steps, as diffusers'
            // `retrieve_timesteps`, so `start · order` can run past them: no step left)
            guard steps - start >= 1, start * order < timesteps.count else {
                throw SchedulerError.noStepsForStrength(steps: steps, strength: strength)
            }
            begin = start * order
        }
        allTimesteps = timesteps
        beginIndex = begin
        current = begin
        requestedSteps = steps
        requestedStrength = strength
        requestedDenoisingStart = nil
        requestedCustom = nil
    }

    /// The absolute index for `timesteps[index]`, checked.
    func absolute(_ index: Int, scheduler: String) throws -> Int {
        guard isSet else { throw SchedulerError.timestepsNotSet(scheduler: scheduler) }
        let count = allTimesteps.count - beginIndex
        guard index >= 0 && index < count else {
            throw SchedulerError.timestepIndexOutOfRange(scheduler: scheduler, index: index, count: count)
        }
        return beginIndex + index
    }

    /// Checks that a step may run now and that the arrays agree.
    func checkStep(scheduler: String, modelOutput: [Float], sample: [Float]) throws {
        guard isSet else { throw SchedulerError.timestepsNotSet(scheduler: scheduler) }
        guard current < allTimesteps.count else {
            throw SchedulerError.stepPastEnd(scheduler: scheduler, stepIndex: relativeIndex, count: allTimesteps.count - beginIndex)
        }
        try checkCounts(modelOutput, "modelOutput", sample, "sample")
    }
}

/// Throws `countMismatch` unless both arrays have the same element count.
func checkCounts(_ a: [Float], _ aName: String, _ b: [Float], _ bName: String) throws {
    guard a.count == b.count else { throw SchedulerError.countMismatch(argument: aName, expected: b.count, actual: a.count) }
}
