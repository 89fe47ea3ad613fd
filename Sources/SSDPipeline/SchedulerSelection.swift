import SSDSchedulers

/// Builds the request's scheduler from the folder's `scheduler_config.json`.
enum SchedulerSelection {
    static func make(_ choice: SchedulerChoice, configuration: SchedulerConfiguration) throws -> (any Scheduler, String) {
        switch choice {
        case .folderDefault:
            let scheduler = try SchedulerFactory.make(className: configuration.className, configuration: configuration)
            return (scheduler, configuration.className)
        case let .named(name, overrides):
            return (try SchedulerFactory.make(name: name, configuration: configuration, overrides: overrides), name)
        case let .custom(scheduler):
            return (scheduler, String(describing: type(of: scheduler)))
        }
    }
}
