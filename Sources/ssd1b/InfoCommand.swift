// `ssd1b info`: filled in by the models work.
func runInfo(_ arguments: [String]) -> Int32 { printError("info: not implemented yet"); return 1 }
