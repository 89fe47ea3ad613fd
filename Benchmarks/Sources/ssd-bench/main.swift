// The benchmark runner.
