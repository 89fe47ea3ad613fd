/// Builds schedulers by CLI/API name or diffusers class name from a folder's
/// `scheduler_config.json`, as diffusers' `Class.from_config(config, **overrides)` does
/// (diffusers `configuration_utils.py`, `schedulers/scheduling_*.py`).
public enum SchedulerFactory {
    /// A named sampler: the diffusers class and the configuration keys the name implies.
    public struct Preset: Sendable, Hashable {
        /// The preset name.
        public let name: String
        /// The diffusers class.
        public let className: String
        /// The configuration keys the name implies.
        public let overrides: SchedulerConfiguration
    }

    /// The names the CLI and API accept, in display order.
    public static let presets: [Preset] = [
        Preset(name: "euler", className: "EulerDiscreteScheduler", overrides: .init()),
        Preset(name: "euler-a", className: "EulerAncestralDiscreteScheduler", overrides: .init()),
        Preset(name: "ddim", className: "DDIMScheduler", overrides: .init()),
        Preset(
            name: "dpm++2m", className: "DPMSolverMultistepScheduler",
            overrides: .init(["algorithm_type": .string("dpmsolver++"), "solver_order": .number(2)])),
        Preset(
            name: "dpm++2m-karras", className: "DPMSolverMultistepScheduler",
            overrides: .init(["algorithm_type": .string("dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(true)])),
        Preset(
            name: "dpm++2m-sde", className: "DPMSolverMultistepScheduler",
            overrides: .init(["algorithm_type": .string("sde-dpmsolver++"), "solver_order": .number(2)])),
        Preset(
            name: "dpm++2m-sde-karras", className: "DPMSolverMultistepScheduler",
            overrides: .init([
                "algorithm_type": .string("sde-dpmsolver++"), "solver_order": .number(2), "use_karras_sigmas": .bool(true),
            ])),
        Preset(name: "unipc", className: "UniPCMultistepScheduler", overrides: .init()),
        Preset(name: "lcm", className: "LCMScheduler", overrides: .init()),
        Preset(name: "heun", className: "HeunDiscreteScheduler", overrides: .init()),
        Preset(name: "tcd", className: "TCDScheduler", overrides: .init()),
    ]

    /// Every accepted name.
    public static var names: [String] { presets.map(\.name) }

    /// The diffusers classes this library implements.
    public static let classNames = [
        "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler",
        "UniPCMultistepScheduler", "LCMScheduler", "HeunDiscreteScheduler", "TCDScheduler",
    ]

    /// The scheduler called `name` (see `names`), configured from `config` (the model folder's
    /// `scheduler_config.json`, whatever its class) with the name's own keys and then `overrides`
    /// applied on top. Unknown names throw `SchedulerError.unknownName` listing the valid ones.
    public static func make(name: String, config: SchedulerConfiguration, overrides: SchedulerConfiguration = .init()) throws
        -> any Scheduler
    {
        guard let preset = presets.first(where: { $0.name == name.lowercased() }) else {
            throw SchedulerError.unknownName(name, valid: names)
        }
        return try make(className: preset.className, config: config.merging(preset.overrides).merging(overrides))
    }

    /// The diffusers class `className` built from `config` with `overrides`
    /// (`Class.from_config(config, **overrides)`).
    public static func make(className: String, config: SchedulerConfiguration, overrides: SchedulerConfiguration = .init()) throws
        -> any Scheduler
    {
        let merged = config.merging(overrides)
        switch className {
        case "EulerDiscreteScheduler": return try EulerScheduler(configuration: merged, variant: .deterministic)
        case "EulerAncestralDiscreteScheduler": return try EulerScheduler(configuration: merged, variant: .ancestral)
        case "DDIMScheduler": return try DDIMScheduler(configuration: merged)
        case "DPMSolverMultistepScheduler": return try DPMSolverMultistepScheduler(configuration: merged)
        case "UniPCMultistepScheduler": return try UniPCMultistepScheduler(configuration: merged)
        case "LCMScheduler": return try LCMScheduler(configuration: merged)
        case "HeunDiscreteScheduler": return try HeunScheduler(configuration: merged)
        case "TCDScheduler": return try TCDScheduler(configuration: merged)
        default: throw SchedulerError.unknownClassName(className, valid: classNames)
        }
    }

    /// The configuration's own class (`_class_name`; the folder's default sampler), EulerDiscreteScheduler if absent.
    public static func make(config: SchedulerConfiguration, overrides: SchedulerConfiguration = .init()) throws -> any Scheduler {
        try make(className: config.className ?? "EulerDiscreteScheduler", config: config, overrides: overrides)
    }
}
