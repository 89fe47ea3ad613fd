import SSDSchedulers

/// Builds the request's scheduler from the folder's `scheduler_config.json`.
enum SchedulerSelection {
    static func make(_ choice: SchedulerChoice, configuration: SchedulerConfiguration) throws -> (any Scheduler, String) {
        switch choice {
        case .folderDefault:
            let scheduler = try SchedulerFactory.make(config: configuration)
            return (scheduler, configuration.className ?? "EulerDiscreteScheduler")
        case let .named(name, overrides):
            return (try SchedulerFactory.make(name: name, config: configuration, overrides: overrides), name)
        case let .custom(scheduler):
            return (scheduler, String(describing: type(of: scheduler)))
        }
    }
}
