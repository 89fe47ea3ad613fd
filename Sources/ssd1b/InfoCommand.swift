// `ssd1b info --model DIR [--json] [--variant fp16]`: components of a diffusers pipeline folder,
// their configs in brief, parameter counts (from the configs), weight dtypes and bytes.
import SSDModels

private let infoUsage = """
    usage: ssd1b info --model DIR [--json] [--variant NAME]
      --model DIR      diffusers pipeline folder (model_index.json + component folders)
      --json           print one JSON object {"components": {name: {class, parameters, dtype, bytes}}}
      --variant NAME   weight file variant to describe (e.g. fp16: *.fp16.safetensors)
    """

func runInfo(_ arguments: [String]) -> Int32 {
    var model: String?
    var json = false
    var variant: String?
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        switch argument {
        case "--model", "--variant":
            guard index + 1 < arguments.count else {
                printError("info: \(argument) needs a value\n" + infoUsage)
                return 2
            }
            if argument == "--model" { model = arguments[index + 1] } else { variant = arguments[index + 1] }
            index += 2
        case "--json":
            json = true
            index += 1
        case "-h", "--help":
            print(infoUsage)
            return 0
        default:
            printError("info: unknown argument \(argument)\n" + infoUsage)
            return 2
        }
    }
    guard let model else {
        printError("info: --model is required\n" + infoUsage)
        return 2
    }
    do {
        let folder = try PipelineFolder(path: model)
        let components = try folder.inspect(variant: variant)
        if json {
            print(infoJSON(components))
        } else {
            print(infoText(folder, components))
        }
        return 0
    } catch {
        printError("info: \(error)")
        return 1
    }
}

private func infoText(_ folder: PipelineFolder, _ components: [ComponentInfo]) -> String {
    var lines = ["\(folder.path): \(folder.modelIndex.className ?? "pipeline")"
        + " (force_zeros_for_empty_prompt \(folder.modelIndex.forceZerosForEmptyPrompt))"]
    for c in components {
        if c.dtype == nil {
            lines.append("  \(c.name): \(c.className)")
            continue
        }
        lines.append("  \(c.name): \(c.className), \(grouped(c.parameters)) parameters, \(c.dtype ?? "-"), \(grouped(c.bytes)) bytes")
        lines.append("    \(c.summary)")
    }
    let total = components.reduce(0) { $0 + $1.parameters }
    let bytes = components.reduce(0) { $0 + $1.bytes }
    lines.append("  total: \(grouped(total)) parameters, \(grouped(bytes)) bytes")
    return lines.joined(separator: "\n")
}

private func infoJSON(_ components: [ComponentInfo]) -> String {
    let entries = components.map { c in
        let dtype = c.dtype.map { "\"\(jsonEscaped($0))\"" } ?? "null"
        return "\"\(jsonEscaped(c.name))\": {\"class\": \"\(jsonEscaped(c.className))\", \"parameters\": \(c.parameters), "
            + "\"dtype\": \(dtype), \"bytes\": \(c.bytes), \"config\": \"\(jsonEscaped(c.summary))\"}"
    }
    return "{\"components\": {" + entries.joined(separator: ", ") + "}}"
}

private func jsonEscaped(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case _ where scalar.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// 1234567 → "1,234,567".
private func grouped(_ value: Int) -> String {
    let digits = String(value)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return out
}
