import SSDModels
import SSDTensor
import SSDTokenizer

/// A pipeline folder's tokenizers: both for SDXL / SSD-1B, only `tokenizer_2` for a refiner folder
/// (`stable-diffusion-xl-refiner-1.0`: `tokenizer` and `text_encoder` are `[null, null]` in its model index).
struct PromptTokenizers: Sendable {
    /// `tokenizer/` (CLIP ViT-L), nil in a refiner folder.
    let first: CLIPTokenizer?
    /// `tokenizer_2/` (OpenCLIP bigG).
    let second: CLIPTokenizer

    init(folder: PipelineFolder, textualInversions: [TextualInversion] = []) throws {
        var first = folder.modelIndex.components["tokenizer"] == nil ? nil : try CLIPTokenizer(directory: folder.path + "/tokenizer")
        var second = try CLIPTokenizer(directory: folder.path + "/tokenizer_2")
        for inversion in textualInversions {
            let embeddings = try TextualInversionFile(inversion)
            do {
                if first != nil { first = try first?.addingTokens(embeddings.tokens(for: .first)) }
                second = try second.addingTokens(embeddings.tokens(for: .second))
            } catch {
                throw PipelineError.invalidArgument(name: "textualInversions", message: "\(inversion.path) as \"\(inversion.token)\": \(error)")
            }
        }
        self.first = first
        self.second = second
    }

    /// diffusers `maybe_convert_prompt`: each multi-vector textual inversion token the tokenizer finds in
    /// `text` is replaced (Python `str.replace`, on the text as written) by `token token_1 … token_{n−1}`.
    static func expandingTextualInversions(_ text: String, _ tokenizer: CLIPTokenizer) -> String {
        let found = Set(tokenizer.tokenIDs(text))
        var text = text
        for (token, id) in tokenizer.addedTokenIDs.sorted(by: { $0.value < $1.value }) where found.contains(id) {
            var replacement = token
            var i = 1
            while tokenizer.addedTokenIDs["\(token)_\(i)"] != nil {
                replacement += " \(token)_\(i)"
                i += 1
            }
            if i > 1 { text = text.replacing(token, with: replacement) }
        }
        return text
    }
}

/// An SDXL textual inversion file (`clip_l`, `clip_g`): per encoder its vectors, and the tokens they get
/// (diffusers `_extend_tokens_and_embeddings`: `token`, then `token_1` … for more vectors).
struct TextualInversionFile {
    enum Encoder { case first, second }
    let token: String
    let first: [[Float]]
    let second: [[Float]]

    init(_ inversion: TextualInversion) throws {
        let file = try SafetensorsFile(path: inversion.path)
        func rows(_ key: String) throws -> [[Float]] {
            guard file.contains(key) else { return [] }
            let view = try file.view(key)
            let values = view.floats()
            let (n, d) = view.shape.count == 2 ? (view.shape[0], view.shape[1]) : (1, values.count)
            guard n > 0, d > 0, n * d == values.count else {
                throw PipelineError.invalidArgument(name: "textualInversions", message: "\(inversion.path): \(key) has shape \(view.shape)")
            }
            return (0..<n).map { Array(values[($0 * d)..<(($0 + 1) * d)]) }
        }
        token = inversion.token
        first = try rows("clip_l")
        second = try rows("clip_g")
        guard !second.isEmpty else {
            throw PipelineError.invalidArgument(
                name: "textualInversions", message: "\(inversion.path) has no clip_g tensor (an SDXL embedding holds clip_l and clip_g)")
        }
    }

    func tokens(for encoder: Encoder) -> [String] {
        let count = encoder == .first ? first.count : second.count
        return count == 0 ? [] : [token] + (1..<max(count, 1)).map { "\(token)_\($0)" }
    }
}
