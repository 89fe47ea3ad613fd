// `ssd1b tokenize`: the token ids both SDXL tokenizers give a prompt, one JSON object per prompt per line.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTokenizer

private let tokenizeUsage = """
    usage: ssd1b tokenize --model DIR (--prompt TEXT | --prompts-file FILE)
      --model DIR          a diffusers pipeline folder (reads DIR/tokenizer and DIR/tokenizer_2)
      --prompt TEXT        a prompt (may be repeated)
      --prompts-file FILE  UTF-8 text, one prompt per line
    prints {"prompt": ..., "input_ids": [77 ids], "input_ids_2": [77 ids]} per prompt
    (padding="max_length", truncation=True, as diffusers' StableDiffusionXLPipeline tokenizes)
    """

func runTokenize(_ arguments: [String]) -> Int32 {
    var model: String? = nil
    var prompts: [String] = []
    var promptsFile: String? = nil
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "-h" || argument == "--help" {
            print(tokenizeUsage)
            return 0
        }
        guard ["--model", "--prompt", "--prompts-file"].contains(argument) else {
            printError("tokenize: unknown argument \(argument)\n\(tokenizeUsage)")
            return 2
        }
        guard index + 1 < arguments.count else {
            printError("tokenize: \(argument) needs a value\n\(tokenizeUsage)")
            return 2
        }
        let value = arguments[index + 1]
        switch argument {
        case "--model": model = value
        case "--prompt": prompts.append(value)
        default: promptsFile = value
        }
        index += 2
    }
    guard let model else {
        printError("tokenize: --model is required\n\(tokenizeUsage)")
        return 2
    }
    if let promptsFile {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: promptsFile)) else {
            printError("tokenize: cannot read prompts file \(promptsFile)")
            return 1
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            printError("tokenize: prompts file \(promptsFile) is not valid UTF-8")
            return 1
        }
        prompts.append(contentsOf: promptLines(text))
    }
    guard !prompts.isEmpty || promptsFile != nil else {
        printError("tokenize: give --prompt or --prompts-file\n\(tokenizeUsage)")
        return 2
    }
    let tokenizers: SDXLTokenizers
    do {
        tokenizers = try SDXLTokenizers(pipelineDirectory: model)
    } catch {
        printError("tokenize: \(error)")
        return 1
    }
    for prompt in prompts {
        let (first, second) = tokenizers.encode(prompt)
        print("{\"prompt\": \(jsonString(prompt)), \"input_ids\": \(jsonArray(first.inputIDs)), \"input_ids_2\": \(jsonArray(second.inputIDs))}")
    }
    return 0
}

/// The lines of a prompts file without their line breaks (`\n` or `\r\n`); a final line break ends the last line.
func promptLines(_ text: String) -> [String] {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
        $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
    }
    if text.hasSuffix("\n") { lines.removeLast() }
    return text.isEmpty ? [] : lines
}

private func jsonArray(_ values: [Int32]) -> String {
    "[" + values.map(String.init).joined(separator: ", ") + "]"
}

/// A JSON string literal (RFC 8259): quotes, backslashes and control characters escaped; so are DEL, the C1
/// controls and U+2028/U+2029, which some line-oriented tools take for line breaks.
func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case "\u{08}": result += "\\b"
        case "\u{0C}": result += "\\f"
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029:
            let hex = String(scalar.value, radix: 16)
            result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
