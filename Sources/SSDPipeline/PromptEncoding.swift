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
        guard let encoder1 = run.models.textEncoder, let encoder2 = run.models.textEncoder2 else {
            throw PipelineError.invalidArgument(name: "text encoders", message: "not loaded")
        }
        // clip_skip k uses hidden_states[-(k + 2)]; the negative branch always uses [-2] (as diffusers).
        let layers = min(encoder1.config.numHiddenLayers, encoder2.config.numHiddenLayers)
        if let clipSkip = request.clipSkip, !(0..<layers).contains(clipSkip) {
            throw PipelineError.invalidArgument(
                name: "clipSkip", message: "\(clipSkip) must be less than the text encoders' \(layers) layers")
        }
        let layer = -((request.clipSkip ?? 0) + 2)
        let prompt2 = nonEmpty(request.prompt2) ?? request.prompt
        let positive = try encode(request.prompt, prompt2, layer: layer, encoder1, encoder2)
        var notes = truncationNotes("prompt", request.prompt, prompt2)

        var negative: Encoded?
        if run.usesGuidance {
            if request.negativePrompt == nil && run.forceZerosForEmptyPrompt {
                negative = Encoded(
                    hidden: [Float](repeating: 0, count: positive.hidden.count),
                    pooled: [Float](repeating: 0, count: positive.pooled.count),
                    sequence: positive.sequence, width: positive.width)
            } else {
                let text = request.negativePrompt ?? ""
                let text2 = nonEmpty(request.negativePrompt2) ?? text
                negative = try encode(text, text2, layer: -2, encoder1, encoder2)
                notes += truncationNotes("negative prompt", text, text2)
            }
        }
        let k = run.imageCount
        var hidden = [Float]()
        var pooled = [Float]()
        if let negative {
            for _ in 0..<k { hidden += negative.hidden; pooled += negative.pooled }
        }
        for _ in 0..<k { hidden += positive.hidden; pooled += positive.pooled }
        let rows = hidden.count / (positive.sequence * positive.width)
        let timeIDs = MicroConditioning.rows(for: request, rowsPerBranch: k, guidance: run.usesGuidance)
        run.inspect?("prompt_embeds", hidden)
        run.inspect?("add_text_embeds", pooled)
        run.inspect?("add_time_ids", timeIDs)
        let dtype = run.backend.activationDType(for: .unet)
        return Conditioning(
            hiddenStates: try run.backend.upload(hidden, shape: [rows, positive.sequence, positive.width], as: dtype),
            pooled: try run.backend.upload(pooled, shape: [rows, positive.pooled.count], as: dtype),
            timeIDs: timeIDs, notes: notes)
    }

    /// diffusers' warning "The following part of your input was truncated because CLIP can only handle
    /// sequences up to 77 tokens", as notes: one per text whose tokens do not fit (start and end tokens
    /// take two of the places).
    private func truncationNotes(_ label: String, _ text: String, _ text2: String) -> [String] {
        var notes: [String] = []
        for (name, value, tokenizer) in [(label, text, run.tokenizers.tokenizer), (label + " 2", text2, run.tokenizers.tokenizer2)] {
            if name != label && value == text { continue }  // the same text, already counted
            let count = tokenizer.tokenIDs(value).count, room = tokenizer.maxLength - 2
            if count > room {
                notes.append("\(name): \(count - room) of its \(count) tokens are beyond CLIP's \(tokenizer.maxLength)-token limit and were dropped")
            }
        }
        return notes
    }

    private func encode(
        _ text: String, _ text2: String, layer: Int, _ encoder1: CLIPTextModel, _ encoder2: CLIPTextModel
    ) throws -> Encoded {
        let ids1 = run.tokenizers.tokenizer.encode(text).inputIDs.map { Int32($0) }
        let ids2 = run.tokenizers.tokenizer2.encode(text2).inputIDs.map { Int32($0) }
        let first = try encoder1.encode(inputIDs: [ids1], hiddenStateIndex: layer, pooled: false)
        let second = try encoder2.encode(inputIDs: [ids2], hiddenStateIndex: layer, pooled: true)
        guard let pooledTensor = second.pooled else {
            throw PipelineError.invalidModelFolder(path: "text_encoder_2", message: "has no text projection (pooled output)")
        }
        let h1 = try run.backend.download(first.hiddenStates)
        let h2 = try run.backend.download(second.hiddenStates)
        let sequence = first.hiddenStates.shape[1]
        let w1 = first.hiddenStates.shape[2], w2 = second.hiddenStates.shape[2]
        var hidden = [Float](repeating: 0, count: sequence * (w1 + w2))
        for s in 0..<sequence {
            for c in 0..<w1 { hidden[s * (w1 + w2) + c] = h1[s * w1 + c] }
            for c in 0..<w2 { hidden[s * (w1 + w2) + w1 + c] = h2[s * w2 + c] }
        }
        return Encoded(hidden: hidden, pooled: try run.backend.download(pooledTensor), sequence: sequence, width: w1 + w2)
    }

    private func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}
