import SSDModels
import SSDTensor
import SSDTokenizer

/// Text conditioning of one generation, laid out as the UNet batch (`[uncond × K, cond × K]` with guidance).
struct Conditioning {
    /// `[rows, 77, 2048]` (CLIP-L ‖ bigG penultimate hidden states).
    var hiddenStates: Tensor
    /// `[rows, 1280]` pooled bigG projection (`add_text_embeds`).
    var pooled: Tensor
    /// `rows × 6` micro-conditioning numbers.
    var timeIDs: [Float]
    /// What the caller should know (prompts cut to CLIP's length, as diffusers' warning).
    var notes: [String] = []
}

/// `StableDiffusionXLPipeline.encode_prompt` (diffusers `pipeline_stable_diffusion_xl.py`).
struct PromptEncoding {
    let run: GenerationRun

    /// Both encoders' hidden states at one layer, concatenated, and the pooled vector (host arrays).
    struct Encoded {
        var hidden: [Float]
        var pooled: [Float]
        var sequence: Int
        var width: Int
    }

    func encode() throws -> Conditioning {
        let request = run.request
        let (positive, negative, notes) = try embeddings()
        let k = run.imageCount
        var hidden = [Float]()
        var pooled = [Float]()
        if let negative {
            for _ in 0..<k { hidden += negative.hidden; pooled += negative.pooled }
        }
        for _ in 0..<k { hidden += positive.hidden; pooled += positive.pooled }
        // Perturbed-attention guidance: the conditional rows once more (diffusers `_prepare_perturbed_attention_guidance`).
        if run.perturbedAttention != nil {
            for _ in 0..<k { hidden += positive.hidden; pooled += positive.pooled }
        }
        let rows = hidden.count / (positive.sequence * positive.width)
        let timeIDs = MicroConditioning.rows(for: request, rowsPerBranch: k, guidance: run.usesGuidance,
                                             aestheticScore: run.requiresAestheticsScore, perturbed: run.perturbedAttention != nil)
        run.inspect?("prompt_embeds", hidden)
        run.inspect?("add_text_embeds", pooled)
        run.inspect?("add_time_ids", timeIDs)
        let dtype = run.backend.activationDType(for: .unet)
        return Conditioning(
            hiddenStates: try run.backend.upload(hidden, shape: [rows, positive.sequence, positive.width], as: dtype),
            pooled: try run.backend.upload(pooled, shape: [rows, positive.pooled.count], as: dtype),
            timeIDs: timeIDs, notes: notes)
    }

    /// The positive and (with guidance) negative conditioning of one image, before the rows are laid
    /// out (diffusers `encode_prompt` for `num_images_per_prompt = 1`), and notes on truncated prompts.
    func embeddings() throws -> (positive: Encoded, negative: Encoded?, notes: [String]) {
        let request = run.request
        guard let encoder2 = run.models.textEncoder2 else {
            throw PipelineError.invalidArgument(name: "text encoders", message: "not loaded")
        }
        // A refiner folder has only the second tokenizer and encoder (diffusers then zips the texts
        // with one encoder: `prompt`, not `prompt_2`, goes to it).
        var encoders = [(run.tokenizers.second, encoder2)]
        if let tokenizer1 = run.tokenizers.first, let encoder1 = run.models.textEncoder { encoders.insert((tokenizer1, encoder1), at: 0) }
        // clip_skip k uses hidden_states[-(k + 2)]; the negative branch always uses [-2] (as diffusers).
        let layers = encoders.map(\.1.config.numHiddenLayers).min() ?? 0
        if let clipSkip = request.clipSkip, !(0..<layers).contains(clipSkip) {
            throw PipelineError.invalidArgument(
                name: "clipSkip", message: "\(clipSkip) must be less than the text encoders' \(layers) layers")
        }
        let layer = -((request.clipSkip ?? 0) + 2)
        let prompt2 = nonEmpty(request.prompt2) ?? request.prompt
        var notes: [String] = []
        let positive: Encoded
        if let given = request.promptEmbeddings {
            positive = Encoded(hidden: given.hiddenStates, pooled: given.pooled, sequence: given.tokens, width: given.width)
        } else {
            positive = try encode([request.prompt, prompt2], layer: layer, encoders)
            notes = truncationNotes("prompt", [request.prompt, prompt2], encoders)
        }

        var negative: Encoded?
        if run.usesGuidance {
            if let given = request.negativePromptEmbeddings {
                negative = Encoded(hidden: given.hiddenStates, pooled: given.pooled, sequence: given.tokens, width: given.width)
            } else if request.negativePrompt == nil && run.forceZerosForEmptyPrompt {
                negative = Encoded(
                    hidden: [Float](repeating: 0, count: positive.hidden.count),
                    pooled: [Float](repeating: 0, count: positive.pooled.count),
                    sequence: positive.sequence, width: positive.width)
            } else {
                let text = request.negativePrompt ?? ""
                let text2 = nonEmpty(request.negativePrompt2) ?? text
                negative = try encode([text, text2], layer: -2, encoders)
                notes += truncationNotes("negative prompt", [text, text2], encoders)
            }
        }
        if let width = run.models.unet.config.crossAttentionDim.expanded(1)?.first, positive.width != width {
            throw PipelineError.invalidArgument(
                name: request.promptEmbeddings != nil ? "promptEmbeddings" : "text encoders",
                message: "states \(positive.width) wide; the UNet's cross_attention_dim is \(width)")
        }
        let unet = run.models.unet.config
        if unet.additionEmbedType == "text_time", let total = unet.projectionClassEmbeddingsInputDim, let perID = unet.additionTimeEmbedDim {
            let pooledWidth = total - perID * (run.requiresAestheticsScore ? 5 : 6)
            guard positive.pooled.count == pooledWidth else {
                throw PipelineError.invalidArgument(
                    name: request.promptEmbeddings != nil ? "promptEmbeddings" : "text encoders",
                    message: "pooled vector of \(positive.pooled.count); the UNet's text_time input takes \(pooledWidth)")
            }
        }
        if let negative, negative.width != positive.width || negative.sequence != positive.sequence || negative.pooled.count != positive.pooled.count {
            throw PipelineError.invalidArgument(name: "negativePromptEmbeddings", message: "shape differs from the prompt's")
        }
        return (positive, negative, notes)
    }

    /// diffusers' warning "The following part of your input was truncated because CLIP can only handle
    /// sequences up to 77 tokens", as notes: one per text whose tokens do not fit (start and end tokens
    /// take two of the places).
    private func truncationNotes(_ label: String, _ texts: [String], _ encoders: [(CLIPTokenizer, CLIPTextModel)]) -> [String] {
        var notes: [String] = []
        for (i, (value, (tokenizer, _))) in zip(texts, encoders).enumerated() {
            if i > 0 && value == texts[0] { continue }  // the same text, already counted
            let name = i == 0 ? label : label + " 2"
            let count = tokenizer.tokenIDs(PromptTokenizers.expandingTextualInversions(value, tokenizer)).count
            let room = tokenizer.maxLength - 2
            if count > room {
                notes.append("\(name): \(count - room) of its \(count) tokens are beyond CLIP's \(tokenizer.maxLength)-token limit and were dropped")
            }
        }
        return notes
    }

    /// Each text through its tokenizer and encoder (`zip`: with one encoder only the first text), the
    /// hidden states at `layer` concatenated on the width, and the last encoder's pooled output.
    private func encode(_ texts: [String], layer: Int, _ encoders: [(CLIPTokenizer, CLIPTextModel)]) throws -> Encoded {
        var states = [(values: [Float], width: Int)]()
        var pooled: [Float] = []
        var sequence = 0
        for (i, (text, (tokenizer, encoder))) in zip(texts, encoders).enumerated() {
            let ids = tokenizer.encode(PromptTokenizers.expandingTextualInversions(text, tokenizer)).inputIDs.map { Int32($0) }
            let last = i == encoders.count - 1
            let out = try encoder.encode(inputIDs: [ids], hiddenStateIndex: layer, pooled: last)
            if last {
                guard let pooledTensor = out.pooled else {
                    throw PipelineError.invalidModelFolder(path: "text_encoder_2", message: "has no text projection (pooled output)")
                }
                pooled = try run.backend.download(pooledTensor)
            }
            sequence = out.hiddenStates.shape[1]
            states.append((try run.backend.download(out.hiddenStates), out.hiddenStates.shape[2]))
        }
        let width = states.map(\.width).reduce(0, +)
        var hidden = [Float](repeating: 0, count: sequence * width)
        var offset = 0
        for (values, w) in states {
            for s in 0..<sequence {
                for c in 0..<w { hidden[s * width + offset + c] = values[s * w + c] }
            }
            offset += w
        }
        return Encoded(hidden: hidden, pooled: pooled, sequence: sequence, width: width)
    }

    private func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}
