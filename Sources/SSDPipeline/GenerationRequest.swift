import SSDModels
import SSDSchedulers

/// Width and height in pixels (diffusers takes `(height, width)` tuples; we name the fields).
public struct ImageSize: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// A size of `width` × `height` pixels.
    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }
    public var description: String { "\(width)x\(height)" }
}

/// Top-left corner of the crop used as SDXL micro-conditioning (`crops_coords_top_left`).
public struct CropOffset: Sendable, Hashable, Codable {
    /// Left edge (diffusers' second number).
    public var x: Int
    /// Top edge (diffusers' first number).
    public var y: Int
    /// The crop offset (`crops_coords_top_left`) `x`, `y`.
    public init(x: Int, y: Int) {
        self.x = x
        self.y = y
    }
    /// No crop, the default.
    public static let zero = CropOffset(x: 0, y: 0)
}

/// Which sampler a request uses.
public enum SchedulerChoice: Sendable {
    /// The folder's own `scheduler/scheduler_config.json` class (Euler for SSD-1B).
    case folderDefault
    /// A named scheduler (`euler`, `euler-a`, `ddim`, `dpm++2m`, `dpm++2m-karras`, `dpm++2m-sde-karras`,
    /// `unipc`, `lcm`, `heun`), built from the folder's config with `overrides`, as diffusers'
    /// `Class.from_config(config, **overrides)`.
    case named(String, overrides: SchedulerConfiguration = SchedulerConfiguration())
    /// A scheduler supplied by the caller (it is copied; `setTimesteps` is called on the copy).
    case custom(any Scheduler)
}

/// A ControlNet's input for a generation (diffusers `StableDiffusionXLControlNetPipeline.__call__`'s
/// `image`, `controlnet_conditioning_scale`, `control_guidance_start` / `_end`, `guess_mode`); the
/// ControlNet itself is the matching entry of `PipelineConfiguration.controlNets`.
public struct ControlInput: Sendable {
    /// The control image (edges, depth, pose…), read as RGB in [0, 1] (not normalised to [−1, 1]), the
    /// same for every image of the request; another size than the request's is resized with PIL's Lanczos
    /// filter, as diffusers does (bit for bit).
    public var image: RGBImage
    /// Multiplies the ControlNet's residuals (`controlnet_conditioning_scale`, 1 by default).
    public var conditioningScale: Double = 1
    /// The fraction of the steps from which (`control_guidance_start`) and until which
    /// (`control_guidance_end`) the ControlNet is applied: step i of n is when i/n ≥ start and
    /// (i + 1)/n ≤ end.
    public var guidanceStart: Double = 0
    public var guidanceEnd: Double = 1
    /// Guess mode: the ControlNet sees only the conditional half of the guided batch (the unconditional
    /// half gets no residuals) and its residuals are scaled from 0.1 (first skip) up to 1 (mid block).
    public var guessMode = false
    /// The condition type for a ControlNet Union (diffusers `control_mode`, e.g. for xinsir's union 0 openpose,
    /// 1 depth, 2 hed/scribble, 3 canny/lineart, 4 normal, 5 segmentation): every input of a request with a union
    /// ControlNet names one and all of them go to that one model (`StableDiffusionXLControlNetUnionPipeline`);
    /// nil for a plain ControlNet.
    public var controlMode: Int?

    public init(image: RGBImage, conditioningScale: Double = 1, guidanceStart: Double = 0, guidanceEnd: Double = 1,
                guessMode: Bool = false, controlMode: Int? = nil) {
        self.image = image
        self.conditioningScale = conditioningScale
        self.guidanceStart = guidanceStart
        self.guidanceEnd = guidanceEnd
        self.guessMode = guessMode
        self.controlMode = controlMode
    }
}

/// Perturbed-attention guidance (diffusers `StableDiffusionXLPAGPipeline` and its img2img / inpaint variants:
/// `pag_scale`, `pag_adaptive_scale`, `pag_applied_layers`): the UNet also runs the conditional rows with the
/// chosen self-attention layers' attention maps replaced by the identity, and the prediction moves away from
/// that perturbed one by `scale` (`+ scale · (cond − perturbed)`).
public struct PerturbedAttentionGuidance: Sendable, Hashable {
    /// `pag_scale` (3 by default; 0 or less: off, as diffusers).
    public var scale: Double
    /// `pag_adaptive_scale`: the scale at timestep t is `max(scale − adaptiveScale · (1000 − t), 0)`; 0: constant.
    public var adaptiveScale: Double
    /// `pag_applied_layers`: regular expressions searched in the self-attention layers' module names
    /// (`"mid"`, diffusers' default, selects SDXL's mid block; SSD-1B's mid block has no attention, so name
    /// others, e.g. `"down_blocks.2"` or `"up_blocks.0.attentions.1"`); empty: off.
    public var layers: [String]

    /// diffusers' defaults: scale 3, no adaptive scaling, the mid block.
    public init(scale: Double = 3, adaptiveScale: Double = 0, layers: [String] = ["mid"]) {
        self.scale = scale
        self.adaptiveScale = adaptiveScale
        self.layers = layers
    }
}

/// A T2I-Adapter's input for a generation (diffusers `StableDiffusionXLAdapterPipeline.__call__`'s `image` and
/// `adapter_conditioning_scale`); the adapter itself is the matching entry of `PipelineConfiguration.t2iAdapters`.
public struct AdapterInput: Sendable {
    /// The adapter's image (sketch, canny edges, depth, pose…), read as 8-bit values / 255 (not normalised),
    /// the same for every image of the request; as greyscale (PIL's `convert("L")`) for a one-channel adapter.
    /// Another size than the request's is resized (diffusers: PIL's Lanczos).
    public var image: RGBImage
    /// Multiplies the adapter's feature maps (`adapter_conditioning_scale`; with several adapters, diffusers
    /// `MultiAdapter`'s weight of this one), 1 by default.
    public var conditioningScale: Double = 1

    /// One adapter's image and scale.
    public init(image: RGBImage, conditioningScale: Double = 1) {
        self.image = image
        self.conditioningScale = conditioningScale
    }
}

/// Text conditioning computed ahead for one prompt (diffusers `prompt_embeds` with `pooled_prompt_embeds`,
/// or the negative pair, of `pipeline_stable_diffusion_xl.py`'s `__call__` / `encode_prompt`), e.g. by
/// `DiffusionPipeline.encodePrompt` and then re-weighted or cached.
public struct PromptEmbeddings: Sendable, Hashable {
    /// Tokens (77 for SDXL).
    public var tokens: Int
    /// Width of each token's state (2048 for SDXL: CLIP-L ‖ bigG; 1280 for the refiner).
    public var width: Int
    /// `[tokens, width]`, row-major.
    public var hiddenStates: [Float]
    /// The pooled projection (`add_text_embeds`, 1280 for SDXL).
    public var pooled: [Float]

    /// Embeddings of `tokens × width` states and a pooled vector.
    public init(tokens: Int, width: Int, hiddenStates: [Float], pooled: [Float]) {
        self.tokens = tokens
        self.width = width
        self.hiddenStates = hiddenStates
        self.pooled = pooled
    }
}

/// One IP-Adapter's image prompt (diffusers `ip_adapter_image` entry of `pipeline_stable_diffusion_xl.py` and
/// `set_ip_adapter_scale` value of `loaders/ip_adapter.py`); the adapter is the matching entry of
/// `PipelineConfiguration.ipAdapters`.
public struct ImagePrompt: Sendable {
    /// The images (any size: resized and center-cropped as CLIPImageProcessor does); several are attended
    /// to together (their tokens side by side).
    public var images: [RGBImage]
    /// The image encoder's features computed ahead instead of `images` (diffusers `ip_adapter_image_embeds`;
    /// `DiffusionPipeline.encodeImagePrompts` makes them).
    public var embeddings: ImageEmbeddings?
    /// How strongly the image steers (diffusers' IP-Adapter scale; 0 turns the adapter off).
    public var scale: Double
    /// One mask per image (diffusers `ip_adapter_masks` made by `IPAdapterMaskProcessor`: greyscale, resized to
    /// the output size, white = where the image applies): each image is attended on its own and applied only
    /// inside its mask; empty: the images are attended together everywhere.
    public var masks: [RGBImage] = []
    /// With `masks`, one scale per image (diffusers `set_ip_adapter_scale([[s₁, s₂, …]])`); nil: `scale` for each.
    public var imageScales: [Double]?
    /// An image prompt of `images` at `scale`.
    public init(images: [RGBImage], scale: Double = 1) {
        self.images = images
        self.scale = scale
    }

    /// An image prompt of features computed ahead, at `scale`.
    public init(embeddings: ImageEmbeddings, scale: Double = 1) {
        self.images = []
        self.embeddings = embeddings
        self.scale = scale
    }
}

/// One IP-Adapter's image features computed ahead (diffusers `ip_adapter_image_embeds` entry, negative and
/// positive halves; `pipeline_stable_diffusion_xl.py` `prepare_ip_adapter_image_embeds`): what the image
/// encoder gives for the adapter's images, `image_embeds` `[n, E]` (ImageProjection) or the penultimate hidden
/// states `[n, tokens, width]` (Plus).
public struct ImageEmbeddings: Sendable, Hashable {
    /// `[n, E]` or `[n, tokens, width]`.
    public var shape: [Int]
    /// The images' features, row-major.
    public var positive: [Float]
    /// The negative features (zeros for ImageProjection, the encoding of an all-zero input for Plus);
    /// needed with guidance.
    public var negative: [Float]?
    /// Features of `shape` with their negative.
    public init(shape: [Int], positive: [Float], negative: [Float]?) {
        self.shape = shape
        self.positive = positive
        self.negative = negative
    }
}

/// An image to start from (img2img) and, optionally, the mask of the region to repaint.
public struct InitialImage: Sendable {
    /// The image; another size than the request's is resized with PIL's Lanczos filter, as diffusers'
    /// `VaeImageProcessor` does (bit for bit).
    public var image: RGBImage
    /// Inpainting mask: white (≥ 0.5 after conversion to grey) is repainted, black is kept.
    public var mask: RGBImage?
    /// How much noise is added: 0 keeps the image, 1 replaces it. nil → 0.3 for img2img, 0.9999 for inpainting
    /// (diffusers' defaults).
    public var strength: Double?
    /// Inpaint around the mask only (diffusers `padding_mask_crop`): the image, mask and control images are
    /// cropped to the mask's bounding box grown by this many pixels and widened to the output's aspect ratio,
    /// the crop is generated at the request's size, and the result is pasted back into `image` through the mask
    /// (the returned images then have `image`'s size). Needs a mask of `image`'s size; nil: the whole image.
    public var paddingMaskCrop: Int?
    /// img2img from `image`; with `mask`, inpainting; `strength` nil takes diffusers' default (0.3, or 0.9999 with a mask).
    public init(image: RGBImage, mask: RGBImage? = nil, strength: Double? = nil, paddingMaskCrop: Int? = nil) {
        self.image = image
        self.mask = mask
        self.strength = strength
        self.paddingMaskCrop = paddingMaskCrop
    }
}

/// Initial latents given by the caller instead of seeded noise (torch `latents=`), NCHW `[K, 4, H/8, W/8]`.
public struct LatentArray: Sendable, Hashable {
    /// `[batch, channels, height, width]`.
    public var shape: [Int]
    /// Row-major values.
    public var values: [Float]
    /// Latents of `shape` (`[images, channels, height/8, width/8]`) holding `values` in row-major order.
    public init(shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }
}

/// Everything one generation needs (diffusers `StableDiffusionXLPipeline.__call__` arguments,
/// `pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py`).
/// Defaults follow the SSD-1B model card: 1024×1024, 50 steps, guidance 9.
public struct GenerationRequest: Sendable {
    /// Text for the first encoder (CLIP ViT-L), and the second unless `prompt2` is set.
    public var prompt: String
    /// Text for the second encoder (OpenCLIP bigG); nil or empty → `prompt` (diffusers' `prompt_2 or prompt`).
    public var prompt2: String?
    /// Negative text; nil with `force_zeros_for_empty_prompt` → zero embeddings (diffusers).
    public var negativePrompt: String?
    /// Negative text for the second encoder; nil or empty → `negativePrompt`.
    public var negativePrompt2: String?
    /// Output size in pixels; multiples of 8.
    public var size: ImageSize = .init(width: 1024, height: 1024)
    /// Denoising steps (`num_inference_steps`).
    public var steps: Int = 50
    /// Classifier-free guidance scale; guidance is off at ≤ 1.
    public var guidanceScale: Double = 9
    /// `guidance_rescale` φ (arXiv 2305.08891 §3.4); 0 disables.
    public var guidanceRescale: Double = 0
    /// diffusers' `eta` argument of the SDXL pipelines, which they pass to schedulers whose `step` takes it:
    /// DDIM's η and TCD's γ (in [0, 1]; TCD-SDXL-LoRA's examples use 0.3). 0 by default, as diffusers; other
    /// schedulers ignore it. Applied to named and folder-default schedulers (a `.custom` one keeps its own).
    public var eta: Double = 0
    /// Seed of the torch-compatible CPU generator; nil → a random seed (reported in the result).
    public var seed: UInt64?
    /// Use these instead of encoding `prompt` / `prompt2` (diffusers `prompt_embeds` and
    /// `pooled_prompt_embeds`); repeated for each image.
    public var promptEmbeddings: PromptEmbeddings?
    /// Use these as the negative conditioning (diffusers `negative_prompt_embeds` and
    /// `negative_pooled_prompt_embeds`); nil: from `negativePrompt` as usual (zeros when it is nil and the
    /// folder has `force_zeros_for_empty_prompt`).
    public var negativePromptEmbeddings: PromptEmbeddings?
    /// Stop after this fraction of the schedule (diffusers `denoising_end`, in (0, 1)): the result's
    /// latents are then the input of a refiner run with the same `denoisingStart` ("ensemble of expert
    /// denoisers"). nil: run every step.
    public var denoisingEnd: Double?
    /// Start this far into the schedule (diffusers `denoising_start`, in (0, 1); img2img only, `strength`
    /// is then ignored): from `initialLatents` as they are (a base run's latents), or from the VAE
    /// encoding of `initialImage` without added noise, as diffusers.
    public var denoisingStart: Double?
    /// The refiner's micro-conditioning (`requires_aesthetics_score` folders): `aesthetic_score` (6) and
    /// `negative_aesthetic_score` (2.5) take the place of the target sizes.
    public var aestheticScore: Double = 6
    /// See `aestheticScore`.
    public var negativeAestheticScore: Double = 2.5
    /// FreeU (diffusers `pipe.enable_freeu(s1=, s2=, b1=, b2=)`; `FreeU.sdxl` holds the values diffusers
    /// suggests for SDXL); nil: off.
    public var freeU: FreeU?
    /// Images per prompt (`num_images_per_prompt`).
    public var imagesPerPrompt: Int = 1
    /// The sampler.
    public var scheduler: SchedulerChoice = .folderDefault
    /// SDXL micro-conditioning; nil → the output size.
    public var originalSize: ImageSize?
    /// SDXL micro-conditioning crop; default (0, 0).
    public var cropTopLeft: CropOffset = .zero
    /// SDXL micro-conditioning; nil → the output size.
    public var targetSize: ImageSize?
    /// Negative micro-conditioning (text-to-image uses it only when both negative sizes are set).
    public var negativeOriginalSize: ImageSize?
    /// Negative crop (text-to-image only, and only with both negative sizes).
    public var negativeCropTopLeft: CropOffset = .zero
    /// Negative micro-conditioning target size.
    public var negativeTargetSize: ImageSize?
    /// Skip this many final CLIP layers (diffusers `clip_skip`: `hidden_states[-(clipSkip + 2)]`).
    public var clipSkip: Int?
    /// img2img / inpainting input.
    public var initialImage: InitialImage?
    /// diffusers' `latents=`: text-to-image and inpainting take them as the noise (started at noise ×
    /// init sigma, whatever the strength); img2img starts from them as they are (no image, no noise).
    public var initialLatents: LatentArray?
    /// Hand out the latents with every step event (costs a copy per step).
    public var reportsLatents: Bool = false
    /// Decode (and, for img2img and inpainting, encode) in overlapping tiles when the image is larger
    /// than one tile, as after diffusers' `pipe.vae.enable_tiling()`: the VAE's memory stays that of one
    /// tile (1024² by default) whatever the size, at the price of small differences near tile borders.
    /// nil (the default) → whole images, as diffusers' default.
    public var vaeTiling: VAETiling?
    /// Every this many steps (and after the last), decode the latents with the pipeline's preview decoder
    /// (`PipelineConfiguration.previewDecoder`, TAESD) into `StepProgress.previews`; 0 (the default): none.
    /// Previews are made only for a progress handler or the `run` stream (`generate` has no one to show
    /// them to); a step's `seconds` and `backendPeakBytes` do not include its preview.
    public var previewInterval: Int = 0
    /// Steers the generation with the pipeline's ControlNets (`PipelineConfiguration.controlNets`), one
    /// input per ControlNet in the same order (text-to-image, img2img and inpainting: diffusers'
    /// `StableDiffusionXLControlNet{,Img2Img,Inpaint}Pipeline`; all with the same `guessMode`); empty: none.
    public var controls: [ControlInput] = []
    /// Conditions the generation on images through the pipeline's IP-Adapters
    /// (`PipelineConfiguration.ipAdapters`), one prompt per adapter in the same order (diffusers
    /// `ip_adapter_image`); empty: the adapters are not used.
    public var imagePrompts: [ImagePrompt] = []
    /// Steers a text-to-image generation with the pipeline's T2I-Adapters (`PipelineConfiguration.t2iAdapters`),
    /// one input per adapter in the same order; several are summed, each weighted by its scale (diffusers
    /// `StableDiffusionXLAdapterPipeline` with a `T2IAdapter` or a `MultiAdapter`); empty: none.
    public var adapters: [AdapterInput] = []
    /// The fraction of the steps the T2I-Adapters are applied for, from the first (diffusers
    /// `adapter_conditioning_factor`: step i of n while i < ⌊n · factor⌋), 1 by default.
    public var adapterConditioningFactor: Double = 1
    /// A schedule instead of `steps` (diffusers' `timesteps=` / `sigmas=`, e.g. `.alignYourStepsSDXLTimesteps`
    /// with `dpm++2m`, or `.alignYourStepsSDXLSigmas` with `euler`); the scheduler must take it (Euler: both,
    /// Heun, DPM-Solver++ and LCM: timesteps; others: `invalidArgument(name: "customSchedule")`); nil: `steps`.
    public var customSchedule: CustomSchedule?
    /// Perturbed-attention guidance (PAG); nil: off. With classifier-free guidance the UNet batch has three
    /// parts (unconditional, conditional, perturbed), without it two.
    public var perturbedAttentionGuidance: PerturbedAttentionGuidance?

    /// A request with the model card's defaults.
    public init(prompt: String) {
        self.prompt = prompt
    }
}

/// One step of progress.
public struct StepProgress: Sendable {
    /// 1-based step number.
    public var step: Int
    /// Total steps of this generation.
    public var totalSteps: Int
    /// The scheduler timestep just evaluated.
    public var timestep: Double
    /// Seconds the step took.
    public var seconds: Double
    /// The backend's peak memory so far (weights plus activations), in bytes.
    public var backendPeakBytes: Int
    /// The latents after the step (NCHW), when the request asked for them.
    public var latents: LatentArray?
    /// TAESD's decode of the latents after the step, one image per image of the request, on the steps
    /// `previewInterval` names (nil otherwise).
    public var previews: [RGBImage]?
}

/// What a finished generation returns.
public struct GenerationResult: Sendable {
    /// The images, `imagesPerPrompt` of them.
    public var images: [RGBImage]
    /// Final latents before the VAE (NCHW `[K, 4, H/8, W/8]`; diffusers' `output_type="latent"`).
    public var latents: LatentArray
    /// The seed used.
    public var seed: UInt64
    /// The scheduler's name, for metadata.
    public var schedulerName: String
    /// What the caller should know about the run (e.g. a prompt cut to CLIP's 77 tokens, which
    /// diffusers logs as a warning); empty when nothing is worth saying.
    public var notes: [String] = []
}

/// Events of `DiffusionPipeline.run(_:)`.
public enum GenerationEvent: Sendable {
    /// Prompts are encoded and the loop is about to start.
    case started(totalSteps: Int, seed: UInt64)
    /// A denoising step finished.
    case step(StepProgress)
    /// The images are ready.
    case finished(GenerationResult)
}
