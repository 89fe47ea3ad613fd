// `ssd1b tokenize`: filled in by the tokenizer work.
func runTokenize(_ arguments: [String]) -> Int32 { printError("tokenize: not implemented yet"); return 1 }
