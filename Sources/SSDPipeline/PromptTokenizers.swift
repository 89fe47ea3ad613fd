import SSDModels
import SSDTokenizer

/// A pipeline folder's tokenizers: both for SDXL / SSD-1B, only `tokenizer_2` for a refiner folder
/// (`stable-diffusion-xl-refiner-1.0`: `tokenizer` and `text_encoder` are `[null, null]` in its model index).
struct PromptTokenizers: Sendable {
    /// `tokenizer/` (CLIP ViT-L), nil in a refiner folder.
    let first: CLIPTokenizer?
    /// `tokenizer_2/` (OpenCLIP bigG).
    let second: CLIPTokenizer

    init(folder: PipelineFolder) throws {
        first = folder.modelIndex.components["tokenizer"] == nil ? nil : try CLIPTokenizer(directory: folder.path + "/tokenizer")
        second = try CLIPTokenizer(directory: folder.path + "/tokenizer_2")
    }
}
