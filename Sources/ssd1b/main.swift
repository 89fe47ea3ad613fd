// ssd1b: the command-line tool. Subcommands live in their own files; each returns an exit code.
// stdout carries only results (paths, JSON lines); messages and progress go to stderr.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let usage = """
    usage: ssd1b <command> [options]
      generate   prompt to PNG (ssd1b generate --help)
      tokenize   token ids of both SDXL tokenizers as JSON lines
      info       components, parameter counts, dtypes and bytes of a model folder
    """

/// Writes one line to stderr.
func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let status: Int32
switch arguments.first {
case "generate": status = await runGenerate(Array(arguments.dropFirst()))
case "tokenize": status = runTokenize(Array(arguments.dropFirst()))
case "info": status = runInfo(Array(arguments.dropFirst()))
case "-h", "--help", "help": print(usage); status = 0
default: printError(usage); status = 2
}
exit(status)
