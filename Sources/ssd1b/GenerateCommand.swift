// `ssd1b generate`: filled in by the pipeline work.
func runGenerate(_ arguments: [String]) async -> Int32 { printError("generate: not implemented yet"); return 1 }
