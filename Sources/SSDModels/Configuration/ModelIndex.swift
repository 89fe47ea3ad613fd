/// `model_index.json` of a diffusers pipeline folder (diffusers `pipelines/pipeline_utils.py`):
/// the pipeline class, pipeline flags and, for each component folder, its library and class.
public struct ModelIndex: Codable, Sendable, Equatable {
    /// One component entry, e.g. `"unet": ["diffusers", "UNet2DConditionModel"]`.
    public struct Component: Sendable, Equatable {
        /// `"diffusers"` or `"transformers"`.
        public var library: String
        /// The class name, e.g. `"CLIPTextModelWithProjection"`.
        public var className: String
    }

    /// `_class_name`, e.g. `"StableDiffusionXLPipeline"`.
    public var className: String?
    /// `_diffusers_version` of the writer.
    public var diffusersVersion: String?
    /// Whether an unset negative prompt gives zero embeddings (SDXL: `true`, the pipeline default).
    public var forceZerosForEmptyPrompt: Bool
    /// Components keyed by folder name; entries written as `[null, null]` are left out.
    public var components: [String: Component]
    /// `requires_aesthetics_score` (the SDXL refiner: `add_time_ids` are original size, crop and an
    /// aesthetic score instead of the target size; default false).
    public var requiresAestheticsScore = false

    /// A model index with these fields (for tests and for writing folders).
    public init(className: String?, diffusersVersion: String?, forceZerosForEmptyPrompt: Bool, components: [String: Component]) {
        self.className = className
        self.diffusersVersion = diffusersVersion
        self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt
        self.components = components
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The component folders of SDXL-family pipelines (diffusers `StableDiffusionXLPipeline`'s modules).
    static let componentNames: Set<String> = [
        "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler", "image_encoder", "feature_extractor",
    ]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        className = try c.nullable(Key(stringValue: "_class_name"), default: nil)
        diffusersVersion = try c.nullable(Key(stringValue: "_diffusers_version"), default: nil)
        forceZerosForEmptyPrompt = try c.nullable(Key(stringValue: "force_zeros_for_empty_prompt"), default: true) ?? true
        requiresAestheticsScore = try c.nullable(Key(stringValue: "requires_aesthetics_score"), default: false) ?? false
        var components: [String: Component] = [:]
        for key in c.allKeys where !key.stringValue.hasPrefix("_") {
            // Component entries are two-element lists; other keys are pipeline flags. A known
            // component's entry of another form is an error (not a silently missing component).
            guard let pair = try? c.decode([String?].self, forKey: key), pair.count == 2 else {
                if Self.componentNames.contains(key.stringValue) {
                    throw DecodingError.typeMismatch([String?].self, .init(
                        codingPath: [key], debugDescription: "a component entry must be [library, class] or [null, null]"))
                }
                continue
            }
            if let library = pair[0], let className = pair[1] {
                components[key.stringValue] = Component(library: library, className: className)
            }
        }
        self.components = components
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encodeNullable(className, forKey: Key(stringValue: "_class_name"))
        try c.encodeNullable(diffusersVersion, forKey: Key(stringValue: "_diffusers_version"))
        try c.encode(forceZerosForEmptyPrompt, forKey: Key(stringValue: "force_zeros_for_empty_prompt"))
        if requiresAestheticsScore { try c.encode(true, forKey: Key(stringValue: "requires_aesthetics_score")) }
        for (name, component) in components {
            try c.encode([component.library, component.className], forKey: Key(stringValue: name))
        }
    }
}
