import SSDModels
import SSDCPUBackend
import SSDCUDABackend
import SSDTensor

/// Which compute backend runs a pipeline.
public enum BackendChoice: Sendable {
    /// The fastest backend that can run here, chosen when the pipeline loads: CUDA, then CPU, then reference.
    case automatic
    /// The pure-Swift fp32 reference backend (slow; the correctness oracle).
    case reference
    /// The SIMD/OpenBLAS CPU backend.
    case cpu
    /// The CUDA/cuDNN backend (needs an NVIDIA GPU and its libraries at run time).
    case cuda
    /// A backend object supplied by the caller.
    case custom(any ComputeBackend)

    /// Short name (`reference`, `cpu`, `cuda`, or the custom backend's name).
    public var name: String {
        switch self {
        case .automatic: return "automatic"
        case .reference: return "reference"
        case .cpu: return "cpu"
        case .cuda: return "cuda"
        case let .custom(backend): return backend.name
        }
    }

    /// Parses `reference`, `cpu` or `cuda`.
    public init?(name: String) {
        switch name {
        case "reference": self = .reference
        case "cpu": self = .cpu
        case "cuda": self = .cuda
        case "automatic": self = .automatic
        default: return nil
        }
    }
}

/// Arithmetic precision of the denoising networks.
public enum Precision: String, Sendable, Hashable, CaseIterable {
    /// The backend's usual choice: fp16 on CUDA (diffusers' `torch_dtype=torch.float16` on a GPU),
    /// fp32 on the CPU and reference backends (the default). (With `BackendChoice.automatic`, a
    /// precision CUDA cannot run, bf16, makes the choice fall to the CPU.)
    case automatic
    /// fp32 everywhere (CUDA included: the text encoders and UNet compute in fp32, much slower).
    case fp32
    /// fp16 weights (CUDA computes in fp16; the CPU keeps weights fp16-resident and computes in fp32).
    case fp16
    /// bf16 weights and bf16 dot products with fp32 accumulation where the hardware has them (CPU;
    /// the CUDA backend refuses it with `backendUnavailable`).
    case bf16
    /// fp32 weights and activations; on CPUs with AMX the linear layers' products as three bf16
    /// products of operands split in two bf16 each (about 1e-5 relative; PyTorch's float32 matmul
    /// precision "high"). Elsewhere (CUDA included) the same as `fp32`.
    case fp32High = "fp32-high"
}

/// One textual inversion embedding file and the token it is written as (diffusers
/// `loaders/textual_inversion.py`, `load_textual_inversion`).
public struct TextualInversion: Sendable, Hashable {
    /// A `.safetensors` file with `clip_l` `[n, 768]` and `clip_g` `[n, 1280]` (a refiner needs only `clip_g`).
    public var path: String
    /// The token that stands for it in prompts (e.g. `"<unaestheticXL>"`).
    public var token: String
    /// The file at `path`, written in prompts as `token`.
    public init(path: String, token: String) {
        self.path = path
        self.token = token
    }
}

/// Load-time options of a pipeline.
public struct PipelineConfiguration: Sendable {
    /// The compute backend.
    public var backend: BackendChoice = .automatic
    /// Weight and compute precision of the text encoders and UNet (default: the backend's usual one).
    public var precision: Precision = .automatic
    /// Weight file variant to prefer (`"fp16"` → `*.fp16.safetensors`), falling back to the plain files.
    public var variant: String?
    /// Drop the text encoders (and an IP-Adapter image encoder) after each prompt encoding (they are
    /// re-mapped on the next request).
    public var releasesTextEncodersAfterEncoding = false
    /// A single-file checkpoint in the original SGM / LDM layout (`SSD-1B.safetensors`, A1111 / ComfyUI
    /// files) to take the weights from instead of the folder's component files (diffusers
    /// `from_single_file(path, config=folder)`): the folder then only needs `model_index.json`, the
    /// configs, tokenizers and scheduler. A component the file lacks (a file without its VAE) is loaded
    /// from the folder's weights.
    public var singleFileCheckpoint: String?
    /// LoRAs fused into the UNet's and text encoders' weights at load (diffusers `load_lora_weights` with
    /// the LoRA scale; kohya-ss / A1111 and diffusers / PEFT files). `DiffusionPipeline.loraReports`
    /// says what each changed; `setLoRAs` changes them.
    public var loras: [LoRAWeights] = []
    /// A TAESD / TAESDXL folder (diffusers `AutoencoderTiny`, e.g. `madebyollin/taesdxl`) that decodes
    /// the step previews `GenerationRequest.previewInterval` asks for (nil: no previews).
    public var previewDecoder: String?
    /// ControlNet folders (diffusers `ControlNetModel`, e.g. `diffusers/controlnet-canny-sdxl-1.0`, or
    /// ones trained for SSD-1B) that `GenerationRequest.controls` steer generations with, one input per
    /// ControlNet; several are summed (diffusers `MultiControlNetModel`). Empty: none.
    public var controlNets: [String] = []
    /// IP-Adapter files in the h94 format (`ip-adapter_sdxl.safetensors`, `ip-adapter-plus_sdxl_vit-h.safetensors`,
    /// or ones numbered for SSD-1B) that `GenerationRequest.imagePrompts` condition generations with, one
    /// prompt per adapter (diffusers `load_ip_adapter`, several as a list). The h94 SDXL files hold 70
    /// layers and do not fit SSD-1B's 34 (diffusers refuses them too). Needs `imageEncoder`.
    public var ipAdapters: [String] = []
    /// The image encoder folder the IP-Adapters read images with (transformers
    /// `CLIPVisionModelWithProjection`: `h94/IP-Adapter` `sdxl_models/image_encoder` (ViT-bigG) for
    /// `ip-adapter_sdxl`, `models/image_encoder` (ViT-H) for the `vit-h` ones). One for all adapters, as
    /// in diffusers' pipelines; each adapter must take its output width.
    public var imageEncoder: String?
    /// T2I-Adapter folders (diffusers `T2IAdapter`, e.g. `TencentARC/t2i-adapter-canny-sdxl-1.0`) that
    /// `GenerationRequest.adapters` steer text-to-image generations with, one input per adapter; several are
    /// summed with their scales as weights (diffusers `MultiAdapter`: all with the same downscale factor).
    public var t2iAdapters: [String] = []

    /// Textual inversion embeddings for SDXL (`clip_l` and `clip_g` tensors in one `.safetensors` file, as
    /// SDXL embeddings are published), each under its token (diffusers `load_textual_inversion(state_dict["clip_l"],
    /// token=…, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)` and the same with `clip_g` for the
    /// second encoder). Write the token in prompts; several vectors expand to `token token_1 …`.
    public var textualInversions: [TextualInversion] = []

    /// Defaults: fastest backend at its usual precision (fp16 on CUDA, fp32 on CPUs), plain weight files.
    public init() {}
}

/// Makes backend objects from a `BackendChoice`.
public enum BackendFactory {
    /// Creates the backend, or throws `PipelineError.backendUnavailable` saying what is missing.
    public static func make(_ choice: BackendChoice, precision: Precision) throws -> any ComputeBackend {
        try makeReporting(choice, precision: precision).backend
    }

    /// `make`, and for `.automatic` why each faster backend was passed over (e.g. "cuda: libcuda.so.1
    /// not found"), for reports.
    public static func makeReporting(_ choice: BackendChoice, precision: Precision) throws
        -> (backend: any ComputeBackend, passedOver: [String])
    {
        var passedOver: [String] = []
        func attempt(_ make: () throws -> any ComputeBackend) -> (any ComputeBackend)? {
            do { return try make() } catch { passedOver.append("\(error)"); return nil }
        }
        switch choice {
        case .automatic:
            if let cuda = attempt({ try makeCUDABackend(precision: precision) }) { return (cuda, passedOver) }
            if let cpu = attempt({ try makeCPUBackend(precision: precision) }) { return (cpu, passedOver) }
            return (ReferenceBackend(), passedOver)
        case .reference:
            return (ReferenceBackend(), [])
        case .cpu:
            return (try makeCPUBackend(precision: precision), [])
        case .cuda:
            return (try makeCUDABackend(precision: precision), [])
        case let .custom(backend):
            return (backend, [])
        }
    }
}
