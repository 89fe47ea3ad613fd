import SSDSchedulers

/// Builds the request's scheduler from the folder's `scheduler_config.json`.
enum SchedulerSelection {
    /// `eta`: the request's (diffusers' pipeline `eta`), given to DDIM and TCD built here.
    static func make(_ choice: SchedulerChoice, configuration: SchedulerConfiguration, eta: Double = 0) throws -> (any Scheduler, String) {
        switch choice {
        case .folderDefault:
            let scheduler = try SchedulerFactory.make(config: configuration)
            return (try withEta(scheduler, eta), configuration.className ?? "EulerDiscreteScheduler")
        case let .named(name, overrides):
            return (try withEta(SchedulerFactory.make(name: name, config: configuration, overrides: overrides), eta), name)
        case let .custom(scheduler):
            return (scheduler, String(describing: type(of: scheduler)))
        }
    }

    /// diffusers' `prepare_extra_step_kwargs`: `eta` reaches the schedulers whose `step` takes it.
    static func withEta(_ scheduler: any Scheduler, _ eta: Double) throws -> any Scheduler {
        switch scheduler {
        case var ddim as DDIMScheduler:
            ddim.eta = Float(eta)
            return ddim
        case var tcd as TCDScheduler:
            guard eta <= 1 else { throw PipelineError.invalidArgument(name: "eta", message: "\(eta): TCD's gamma must lie in [0, 1]") }
            tcd.eta = Float(eta)
            return tcd
        default:
            return scheduler
        }
    }
}
