import SSDModels
import SSDPipeline
import SSDSchedulers
import SSDTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let generateUsage = """
    usage: ssd1b generate --model DIR --prompt TEXT [options]
      --prompt-2 TEXT              text for the second encoder (default: --prompt)
      --negative-prompt TEXT       negative text (default: none → zero embeddings, as diffusers)
      --negative-prompt-2 TEXT     negative text for the second encoder
      --width W --height H         output size, multiples of 8 (default 1024x1024; img2img and ControlNet inpainting:
                                   the init image's size rounded down to multiples of 8, as diffusers)
      --steps N                    denoising steps (default 50)
      --guidance G                 classifier-free guidance scale (default 9; off at <= 1)
      --guidance-rescale R         guidance rescale in [0, 1] (default 0)
      --eta E                      diffusers' eta: DDIM's η, TCD's γ in [0, 1] (default 0, as diffusers; TCD examples use 0.3)
      --seed S                     seed of the torch-compatible CPU generator (default: random, printed)
      --images K                   images per prompt (outputs PATH-1 … PATH-K)
      --scheduler NAME             euler, euler-a, ddim, dpm++2m, dpm++2m-karras, dpm++2m-sde, dpm++2m-sde-karras,
                                   unipc, lcm, heun, tcd (default: the folder's scheduler)
      --backend NAME               reference, cpu, cuda or automatic (default: the fastest available)
      --precision P                automatic, fp32, fp32-high, fp16 or bf16 (default automatic: fp32 on cpu/reference,
                                   fp16 on cuda; bf16 is cpu only;
                                   fp32-high: bf16×3 matrix products on CPUs with AMX, ~1e-5 from fp32)
      --variant fp16               prefer *.fp16.safetensors weight files
      --preview-decoder DIR        TAESD/TAESDXL folder (diffusers AutoencoderTiny, madebyollin/taesdxl) for step previews
      --preview-every N            decode a preview every N steps (default 5) and after the last, written to --preview
      --preview PATH               the latest preview PNG (first image), replaced as previews arrive
      --lora FILE[:SCALE]          fuse a LoRA (kohya/A1111 or diffusers/PEFT .safetensors) at SCALE (default 1);
                                   repeat for several
      --checkpoint FILE            weights from a single-file SGM/A1111 checkpoint (SSD-1B.safetensors); --model
                                   then only needs the configs, tokenizers and scheduler (diffusers from_single_file)
      --clip-skip N                skip the last N CLIP layers
      --original-size WxH  --crop-top-left X,Y  --target-size WxH          micro-conditioning
      --negative-original-size WxH  --negative-crop-top-left X,Y  --negative-target-size WxH
      --init-image PNG [--strength F]   img2img (strength default 0.3)
      --mask PNG                   inpainting mask (white = repaint; strength default 0.9999)
      --padding-mask-crop N        inpaint a crop around the mask grown by N pixels, pasted back (diffusers padding_mask_crop)
      --init-latents FILE          start from these latents (`latents` of a --save-latents file): the noise for
                                   text-to-image, or with --denoising-start a base run's latents for a refiner
      --denoising-end F            stop after this fraction of the schedule (save the latents for a refiner)
      --denoising-start F          start this far into the schedule (image-to-image, a refiner: --init-latents)
      --aesthetic-score F  --negative-aesthetic-score F   refiner micro-conditioning (default 6 and 2.5)
      --freeu S1,S2,B1,B2          FreeU (diffusers enable_freeu); `--freeu sdxl` for 0.6,0.4,1.1,1.2
      --textual-inversion FILE:TOKEN   an SDXL embedding (clip_l, clip_g) written as TOKEN (no ':') in prompts; repeatable
      --controlnet DIR             ControlNet folder (diffusers ControlNetModel, SDXL / SSD-1B) steering text-to-image, img2img or inpainting;
                                   repeat for several (their residuals add up, diffusers' MultiControlNetModel)
      --control-image PNG          its control image (edges, depth, pose…), the output size; one per --controlnet
      --control-scale F            controlnet_conditioning_scale (default 1)
      --control-start F  --control-end F   the fraction of steps it applies to (default 0 and 1)
                                   (these three: once for all ControlNets, or once per ControlNet)
      --guess-mode                 the ControlNet sees only the conditional half (residuals scaled 0.1 … 1)
      --control-mode N             with a ControlNet Union folder (diffusers ControlNetUnionModel, xinsir/controlnet-union-sdxl-1.0):
                                   the condition type of each --control-image (control_mode; xinsir: 0 openpose, 1 depth,
                                   2 hed/scribble, 3 canny/lineart, 4 normal, 5 segmentation); one --controlnet
      --ip-adapter FILE            IP-Adapter (h94 format .safetensors) conditioning on --ip-image; repeat for several
      --image-encoder DIR          the adapters' image encoder (CLIPVisionModelWithProjection folder)
      --ip-image PNG[,PNG…]        the image(s) of each --ip-adapter, in order (several: attended together)
      --ip-scale F                 IP-Adapter scale (default 1; once for all adapters, or once per adapter)
      --ip-mask PNG[,PNG…]|none    masks of each --ip-adapter's images (ip_adapter_masks: white = where the image
                                   applies; each image attended on its own); once per --ip-adapter, `none` for unmasked
      --ip-mask-scale S[,S…]|none  with --ip-mask: one scale per masked image (set_ip_adapter_scale([[s₁, s₂]])); once per --ip-adapter
      --t2i-adapter DIR            T2I-Adapter folder (diffusers T2IAdapter, e.g. an SDXL canny / sketch / depth one) steering
                                   text-to-image; repeat for several (summed with their scales as weights, MultiAdapter)
      --adapter-image PNG          its image (resized to the output size; greyscale for one-channel adapters); one per --t2i-adapter
      --adapter-scale F            adapter_conditioning_scale (default 1; once for all adapters, or once per adapter)
      --adapter-factor F           adapter_conditioning_factor: the fraction of steps the adapters apply to (default 1)
      --timesteps T,T,…|ays       a custom schedule (diffusers timesteps=; `ays`: Align Your Steps for SDXL, 10 steps);
                                   replaces --steps (Euler, Heun, DPM++ 2M without Karras)
      --sigmas S,S,…|ays          a custom schedule of noise levels, one per step plus the last (diffusers sigmas=; Euler)
      --pag-scale F                perturbed-attention guidance (diffusers' PAG pipelines, pag_scale; 3 is diffusers' default)
      --pag-layer REGEX            a pag_applied_layers pattern (repeatable; default mid, which SSD-1B's UNet lacks:
                                   e.g. down_blocks.2 or up_blocks.0.attentions.1)
      --pag-adaptive-scale F       pag_adaptive_scale (default 0)
      --vae-tiling                 decode (and encode) images larger than one tile in overlapping tiles, as
                                   diffusers' vae.enable_tiling() (VAE memory of one 1024² tile at any size)
      --vae-tile-size N            tile edge in pixels (default: the VAE's sample_size, 1024); implies --vae-tiling
      --output PATH                output PNG (default ssd1b-SEED.png)
      --save-latents PATH          final latents as safetensors (`latents`, F32 [K,4,H/8,W/8])
      --quiet                      no progress on stderr
      --release-text-encoders      free the text encoders after encoding the prompts (lower peak memory)
      --report-memory              print the backend's idle and peak memory on stderr
      --report-backend             print the backend's report (device, kernel and tuning choices) on stderr
      --repeat N                   run the generation N times in one process (memory-stability check);
                                   memory after each run goes to stderr, the last run's files are written
    """

/// A command-line usage error: one line on stderr, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// Hand-written option parsing: `--name value` pairs and boolean flags.
struct OptionParser {
    private(set) var values: [String: String] = [:]
    /// Every value of an option given more than once (`values` keeps the last).
    private(set) var allValues: [String: [String]] = [:]
    private(set) var flags: Set<String> = []

    init(_ arguments: [String], flags allowedFlags: Set<String>, options allowedOptions: Set<String>) throws {
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if allowedFlags.contains(argument) {
                flags.insert(argument)
                i += 1
            } else if allowedOptions.contains(argument) {
                guard i + 1 < arguments.count else { throw UsageError(description: "\(argument) needs a value") }
                values[argument] = arguments[i + 1]
                allValues[argument, default: []].append(arguments[i + 1])
                i += 2
            } else {
                throw UsageError(description: "unknown option \(argument)")
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    func int(_ name: String) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text) else { throw UsageError(description: "\(name): \(text) is not an integer") }
        return value
    }

    func double(_ name: String) throws -> Double? {
        guard let text = values[name] else { return nil }
        guard let value = Double(text) else { throw UsageError(description: "\(name): \(text) is not a number") }
        guard value.isFinite else { throw UsageError(description: "\(name): \(text) must be a finite number") }
        return value
    }

    func size(_ name: String) throws -> ImageSize? {
        guard let text = values[name] else { return nil }
        let parts = text.split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else {
            throw UsageError(description: "\(name): \(text) is not WIDTHxHEIGHT")
        }
        return ImageSize(width: parts[0], height: parts[1])
    }

    func crop(_ name: String) throws -> CropOffset? {
        guard let text = values[name] else { return nil }
        let parts = text.split(separator: ",").compactMap { Int($0) }
        guard parts.count == 2, parts[0] >= 0, parts[1] >= 0 else { throw UsageError(description: "\(name): \(text) is not X,Y") }
        return CropOffset(x: parts[0], y: parts[1])
    }
}

func runGenerate(_ arguments: [String]) async -> Int32 {
    if arguments.contains("--help") || arguments.contains("-h") { print(generateUsage); return 0 }
    do {
        let options = try OptionParser(
            arguments, flags: ["--quiet", "--report-memory", "--report-backend", "--release-text-encoders", "--vae-tiling", "--guess-mode"],
            options: ["--model", "--prompt", "--prompt-2", "--negative-prompt", "--negative-prompt-2", "--width",
                      "--height", "--steps", "--guidance", "--guidance-rescale", "--eta", "--seed", "--images", "--scheduler",
                      "--backend", "--precision", "--variant", "--checkpoint", "--lora", "--clip-skip", "--original-size", "--crop-top-left",
                      "--target-size", "--negative-original-size", "--negative-crop-top-left",
                      "--negative-target-size", "--init-image", "--strength", "--mask", "--output", "--save-latents", "--repeat",
                      "--vae-tile-size",
                      "--padding-mask-crop",
                      "--preview-decoder", "--preview-every", "--preview",
                      "--controlnet", "--control-image", "--control-scale", "--control-start", "--control-end", "--control-mode",
                      "--ip-adapter", "--image-encoder", "--ip-image", "--ip-scale", "--ip-mask", "--ip-mask-scale",
                      "--t2i-adapter", "--adapter-image", "--adapter-scale", "--adapter-factor",
                      "--pag-scale", "--pag-layer", "--pag-adaptive-scale", "--timesteps", "--sigmas",
                      "--init-latents", "--denoising-end", "--denoising-start", "--aesthetic-score", "--negative-aesthetic-score",
                      "--freeu", "--textual-inversion"])
        guard let model = options.string("--model") else { throw UsageError(description: "--model DIR is required") }
        guard let prompt = options.string("--prompt") else { throw UsageError(description: "--prompt TEXT is required") }
        var request = GenerationRequest(prompt: prompt)
        request.prompt2 = options.string("--prompt-2")
        request.negativePrompt = options.string("--negative-prompt")
        request.negativePrompt2 = options.string("--negative-prompt-2")
        request.size = ImageSize(width: try options.int("--width") ?? 1024, height: try options.int("--height") ?? 1024)
        request.steps = try options.int("--steps") ?? 50
        request.guidanceScale = try options.double("--guidance") ?? 9
        request.guidanceRescale = try options.double("--guidance-rescale") ?? 0
        request.eta = try options.double("--eta") ?? 0
        guard (0...1).contains(request.guidanceRescale) else {
            throw UsageError(description: "--guidance-rescale: \(request.guidanceRescale) must be between 0 and 1")
        }
        if let seed = options.string("--seed") {
            guard let value = UInt64(seed) else { throw UsageError(description: "--seed: \(seed) is not a non-negative integer") }
            request.seed = value
        } else {
            request.seed = UInt64.random(in: 0...UInt64(UInt32.max))
        }
        request.imagesPerPrompt = try options.int("--images") ?? 1
        if let name = options.string("--scheduler") {
            guard SchedulerFactory.names.contains(name) else {
                throw UsageError(description: "--scheduler: unknown name \(name); valid names: \(SchedulerFactory.names.joined(separator: ", "))")
            }
            request.scheduler = .named(name)
        }
        request.clipSkip = try options.int("--clip-skip")
        if let clipSkip = request.clipSkip, clipSkip < 0 { throw UsageError(description: "--clip-skip: \(clipSkip) must not be negative") }
        request.originalSize = try options.size("--original-size")
        request.cropTopLeft = try options.crop("--crop-top-left") ?? .zero
        request.targetSize = try options.size("--target-size")
        request.negativeOriginalSize = try options.size("--negative-original-size")
        request.negativeCropTopLeft = try options.crop("--negative-crop-top-left") ?? .zero
        request.negativeTargetSize = try options.size("--negative-target-size")
        let strength = try options.double("--strength")
        if let strength, !(0...1).contains(strength) { throw UsageError(description: "--strength: \(strength) must be between 0 and 1") }
        /// A PNG named by `flag`, its errors naming the flag and the file.
        func png(_ flag: String, _ path: String) throws -> RGBImage {
            do { return try RGBImage(pngData: FileIO.readAll(path)) } catch let error as FileError {
                throw UsageError(description: "\(flag): \(error)")
            } catch {
                throw UsageError(description: "\(flag) \(path): \(error)")
            }
        }
        if let initPath = options.string("--init-image") {
            let image = try png("--init-image", initPath)
            let mask = try options.string("--mask").map { try png("--mask", $0) }
            request.initialImage = InitialImage(image: image, mask: mask, strength: strength,
                                                paddingMaskCrop: try options.int("--padding-mask-crop"))
            if let pad = request.initialImage?.paddingMaskCrop {
                guard mask != nil else { throw UsageError(description: "--padding-mask-crop needs --mask") }
                guard pad >= 0 else { throw UsageError(description: "--padding-mask-crop: \(pad) must not be negative") }
            }
            // diffusers' img2img pipelines take no size and the ControlNet inpainting one defaults to the image's:
            // the image's size rounded down to multiples of 8 (VaeImageProcessor.get_default_height_width).
            if options.string("--width") == nil, options.string("--height") == nil,
               mask == nil || options.string("--control-image") != nil {
                request.size = ImageSize(width: image.width - image.width % 8, height: image.height - image.height % 8)
                guard request.size.width > 0, request.size.height > 0 else {
                    throw UsageError(description: "--init-image: \(image.width)x\(image.height) is under 8 pixels on a side; give --width and --height")
                }
            }
        } else if options.string("--mask") != nil || strength != nil || options.string("--padding-mask-crop") != nil {
            throw UsageError(description: "--mask, --strength and --padding-mask-crop need --init-image")
        }

        let controlNets = options.allValues["--controlnet"] ?? [], controlImages = options.allValues["--control-image"] ?? []
        let controlOptions = ["--control-scale", "--control-start", "--control-end"].filter { options.string($0) != nil }
        let controlModes = try (options.allValues["--control-mode"] ?? []).map { text in
            guard let mode = Int(text), mode >= 0 else { throw UsageError(description: "--control-mode: \(text) must be a condition type index (0, 1, …)") }
            return mode
        }
        if !controlImages.isEmpty {
            if controlModes.isEmpty {
                guard controlNets.count == controlImages.count else {
                    throw UsageError(description: "--control-image: \(controlImages.count) images for \(controlNets.count) --controlnet folders (one each)")
                }
            } else {
                // A ControlNet Union: one folder, one --control-mode per --control-image.
                guard controlNets.count == 1, controlModes.count == controlImages.count else {
                    throw UsageError(description: "--control-mode: a ControlNet Union takes one --controlnet and one --control-mode per --control-image (\(controlNets.count) folders, \(controlModes.count) modes, \(controlImages.count) images)")
                }
            }
            /// The i-th value of a flag given once for all control images or once per control image.
            func perNet(_ flag: String, _ i: Int, default value: Double) throws -> Double {
                let values = options.allValues[flag] ?? []
                guard values.count <= 1 || values.count == controlImages.count else {
                    throw UsageError(description: "\(flag): give it once or once per --control-image (\(controlImages.count))")
                }
                guard let text = values.count == 1 ? values[0] : values.isEmpty ? nil : values[i] else { return value }
                guard let number = Double(text), number.isFinite else { throw UsageError(description: "\(flag): \(text) must be a finite number") }
                return number
            }
            let settings = try controlImages.indices.map { i in
                (try perNet("--control-scale", i, default: 1), try perNet("--control-start", i, default: 0), try perNet("--control-end", i, default: 1))
            }
            request.controls = try zip(controlImages, settings).enumerated().map { i, pair in
                let (path, setting) = pair
                return ControlInput(image: try png("--control-image", path), conditioningScale: setting.0, guidanceStart: setting.1,
                                    guidanceEnd: setting.2, guessMode: options.flags.contains("--guess-mode"),
                                    controlMode: controlModes.isEmpty ? nil : controlModes[i])
            }
        } else if !controlNets.isEmpty || !controlOptions.isEmpty || !controlModes.isEmpty || options.flags.contains("--guess-mode") {
            throw UsageError(description: "--controlnet, --control-scale, --control-start, --control-end, --control-mode and --guess-mode need --control-image")
        }

        request.denoisingEnd = try options.double("--denoising-end")
        request.denoisingStart = try options.double("--denoising-start")
        if let score = try options.double("--aesthetic-score") { request.aestheticScore = score }
        if let score = try options.double("--negative-aesthetic-score") { request.negativeAestheticScore = score }
        if let text = options.string("--freeu") {
            let values = text == "sdxl" ? [0.6, 0.4, 1.1, 1.2] : text.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
            guard values.count == 4, values.allSatisfy(\.isFinite) else {
                throw UsageError(description: "--freeu: \(text) must be four numbers S1,S2,B1,B2 or sdxl")
            }
            request.freeU = FreeU(s1: values[0], s2: values[1], b1: values[2], b2: values[3])
        }
        if let path = options.string("--init-latents") {
            do {
                let view = try SafetensorsFile(path: path).view("latents")
                request.initialLatents = LatentArray(shape: view.shape, values: view.floats())
            } catch {
                throw UsageError(description: "--init-latents: \(error)")
            }
        }

        let ipAdapters = options.allValues["--ip-adapter"] ?? [], ipImages = options.allValues["--ip-image"] ?? []
        let ipScales = options.allValues["--ip-scale"] ?? []
        if !ipImages.isEmpty {
            guard ipImages.count == ipAdapters.count else {
                throw UsageError(description: "--ip-image: \(ipImages.count) given for \(ipAdapters.count) --ip-adapter files (one each)")
            }
            guard ipScales.count <= 1 || ipScales.count == ipAdapters.count else {
                throw UsageError(description: "--ip-scale: give it once or once per --ip-adapter (\(ipAdapters.count))")
            }
            let ipMasks = options.allValues["--ip-mask"] ?? [], ipMaskScales = options.allValues["--ip-mask-scale"] ?? []
            guard ipMasks.isEmpty || ipMasks.count == ipAdapters.count else {
                throw UsageError(description: "--ip-mask: give it once per --ip-adapter (\(ipAdapters.count); `none` for an unmasked one)")
            }
            guard ipMaskScales.isEmpty || (ipMaskScales.count == ipAdapters.count && !ipMasks.isEmpty) else {
                throw UsageError(description: "--ip-mask-scale: give it once per --ip-adapter (\(ipAdapters.count)), with --ip-mask")
            }
            request.imagePrompts = try ipImages.enumerated().map { i, paths in
                let text = ipScales.isEmpty ? "1" : ipScales.count == 1 ? ipScales[0] : ipScales[i]
                guard let scale = Double(text), scale.isFinite else { throw UsageError(description: "--ip-scale: \(text) must be a finite number") }
                let images = try paths.split(separator: ",").map { try png("--ip-image", String($0)) }
                var prompt = ImagePrompt(images: images, scale: scale)
                if i < ipMasks.count, ipMasks[i] != "none" {
                    prompt.masks = try ipMasks[i].split(separator: ",").map { try png("--ip-mask", String($0)) }
                    guard prompt.masks.count == images.count else {
                        throw UsageError(description: "--ip-mask: \(prompt.masks.count) masks for the \(images.count) images of --ip-image \(paths)")
                    }
                    if i < ipMaskScales.count, ipMaskScales[i] != "none" {
                        let scales = ipMaskScales[i].split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
                        guard scales.count == images.count, scales.allSatisfy(\.isFinite) else {
                            throw UsageError(description: "--ip-mask-scale: \(ipMaskScales[i]) must be \(images.count) numbers, one per image")
                        }
                        prompt.imageScales = scales
                    }
                }
                return prompt
            }
        } else if !ipAdapters.isEmpty || !ipScales.isEmpty || options.string("--ip-mask") != nil {
            throw UsageError(description: "--ip-adapter, --ip-scale and --ip-mask need --ip-image")
        }

        let t2iAdapters = options.allValues["--t2i-adapter"] ?? [], adapterImages = options.allValues["--adapter-image"] ?? []
        let adapterScales = options.allValues["--adapter-scale"] ?? []
        if !adapterImages.isEmpty {
            guard adapterImages.count == t2iAdapters.count else {
                throw UsageError(description: "--adapter-image: \(adapterImages.count) given for \(t2iAdapters.count) --t2i-adapter folders (one each)")
            }
            guard adapterScales.count <= 1 || adapterScales.count == t2iAdapters.count else {
                throw UsageError(description: "--adapter-scale: give it once or once per --t2i-adapter (\(t2iAdapters.count))")
            }
            request.adapters = try adapterImages.enumerated().map { i, path in
                let text = adapterScales.isEmpty ? "1" : adapterScales.count == 1 ? adapterScales[0] : adapterScales[i]
                guard let scale = Double(text), scale.isFinite else { throw UsageError(description: "--adapter-scale: \(text) must be a finite number") }
                return AdapterInput(image: try png("--adapter-image", path), conditioningScale: scale)
            }
            if let factor = try options.double("--adapter-factor") {
                guard (0...1).contains(factor) else { throw UsageError(description: "--adapter-factor: \(factor) must be between 0 and 1") }
                request.adapterConditioningFactor = factor
            }
        } else if !t2iAdapters.isEmpty || !adapterScales.isEmpty || options.string("--adapter-factor") != nil {
            throw UsageError(description: "--t2i-adapter, --adapter-scale and --adapter-factor need --adapter-image")
        }

        for (flag, ays) in [("--timesteps", CustomSchedule.alignYourStepsSDXLTimesteps), ("--sigmas", .alignYourStepsSDXLSigmas)] {
            guard let text = options.string(flag) else { continue }
            guard request.customSchedule == nil else { throw UsageError(description: "--timesteps and --sigmas: give one of them") }
            if text == "ays" {
                request.customSchedule = ays
                continue
            }
            let values = text.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
            guard !values.isEmpty, values.allSatisfy(\.isFinite) else {
                throw UsageError(description: "\(flag): \(text) must be comma-separated numbers or ays")
            }
            request.customSchedule = flag == "--timesteps" ? .timesteps(values) : .sigmas(values)
        }

        if let scale = try options.double("--pag-scale") {
            let adaptive = try options.double("--pag-adaptive-scale") ?? 0
            guard adaptive >= 0 else { throw UsageError(description: "--pag-adaptive-scale: \(adaptive) must not be negative") }
            request.perturbedAttentionGuidance = PerturbedAttentionGuidance(
                scale: scale, adaptiveScale: adaptive, layers: options.allValues["--pag-layer"] ?? ["mid"])
        } else if options.string("--pag-layer") != nil || options.string("--pag-adaptive-scale") != nil {
            throw UsageError(description: "--pag-layer and --pag-adaptive-scale need --pag-scale")
        }

        if let tileSize = try options.int("--vae-tile-size") {
            guard tileSize > 0 else { throw UsageError(description: "--vae-tile-size: \(tileSize) must be positive") }
            request.vaeTiling = VAETiling(tileSampleSize: tileSize)
        } else if options.flags.contains("--vae-tiling") {
            request.vaeTiling = VAETiling()
        }

        var configuration = PipelineConfiguration()
        if let name = options.string("--backend") {
            guard let choice = BackendChoice(name: name) else {
                throw UsageError(description: "--backend: \(name) is not one of reference, cpu, cuda, automatic")
            }
            configuration.backend = choice
        }
        if let name = options.string("--precision") {
            guard let precision = Precision(rawValue: name) else {
                throw UsageError(description: "--precision: \(name) is not one of automatic, fp32, fp32-high, fp16, bf16")
            }
            configuration.precision = precision
        }
        configuration.variant = options.string("--variant")
        configuration.singleFileCheckpoint = options.string("--checkpoint")
        configuration.previewDecoder = options.string("--preview-decoder")
        configuration.controlNets = controlNets
        configuration.ipAdapters = ipAdapters
        configuration.t2iAdapters = t2iAdapters
        configuration.textualInversions = try (options.allValues["--textual-inversion"] ?? []).map { value in
            guard let colon = value.lastIndex(of: ":"), colon != value.startIndex, value.index(after: colon) != value.endIndex else {
                throw UsageError(description: "--textual-inversion: \(value) must be FILE:TOKEN")
            }
            return TextualInversion(path: String(value[..<colon]), token: String(value[value.index(after: colon)...]))
        }
        configuration.imageEncoder = options.string("--image-encoder")
        let previewPath = options.string("--preview")
        if configuration.previewDecoder != nil || previewPath != nil {
            guard configuration.previewDecoder != nil, previewPath != nil else {
                throw UsageError(description: "--preview-decoder and --preview go together")
            }
            let every = try options.int("--preview-every") ?? 5
            guard every >= 1 else { throw UsageError(description: "--preview-every: \(every) must be at least 1") }
            request.previewInterval = every
        } else if options.string("--preview-every") != nil {
            throw UsageError(description: "--preview-every needs --preview-decoder and --preview")
        }
        configuration.loras = try (options.allValues["--lora"] ?? []).map { spec in
            // FILE:SCALE when the text after the last colon is a number, else the whole text is the file.
            if let colon = spec.lastIndex(of: ":"), let scale = Double(spec[spec.index(after: colon)...]) {
                guard scale.isFinite else { throw UsageError(description: "--lora \(spec): the scale must be a finite number") }
                return LoRAWeights(path: String(spec[..<colon]), scale: scale)
            }
            return LoRAWeights(path: spec)
        }
        configuration.releasesTextEncodersAfterEncoding = options.flags.contains("--release-text-encoders")

        let seed = request.seed ?? 0
        let output = options.string("--output") ?? "ssd1b-\(seed).png"
        let quiet = options.flags.contains("--quiet")
        // Fail on bad arguments before the (slow) model load.
        if request.steps < 1 { throw UsageError(description: "--steps: \(request.steps) must be at least 1") }
        if request.imagesPerPrompt < 1 { throw UsageError(description: "--images: must be at least 1") }
        if request.size.width % 8 != 0 || request.size.height % 8 != 0 || request.size.width <= 0 || request.size.height <= 0 {
            throw UsageError(description: "--width/--height: \(request.size) must be positive multiples of 8")
        }

        // Output files are checked before the (slow) work: their folders exist, no path is used twice.
        guard request.imagesPerPrompt <= 10_000 else {
            throw UsageError(description: "--images: \(request.imagesPerPrompt) must be at most 10000")
        }
        let paths = outputPaths(output, count: request.imagesPerPrompt)
        let latentsPath = options.string("--save-latents")
        let allPaths = paths + (latentsPath.map { [$0] } ?? [])
        if Set(allPaths).count != allPaths.count {
            throw UsageError(description: "--output / --save-latents: a path is used twice (\(allPaths.joined(separator: ", ")))")
        }
        for path in allPaths {
            do { try FileIO.checkFolder(of: path) } catch {
                throw UsageError(description: "\(path == latentsPath ? "--save-latents" : "--output"): \(error)")
            }
        }

        let pipeline = try await DiffusionPipeline(contentsOf: model, configuration: configuration)
        if !quiet { printError("ssd1b: backend \(await pipeline.backendName), seed \(seed)") }
        let reportsMemory = options.flags.contains("--report-memory")
        if reportsMemory {
            let idle = await pipeline.memoryStatistics()
            printError("memory idle: \(idle.currentBytes / (1 << 20)) MiB")
            await pipeline.resetPeakMemory()
        }
        let repeats = try options.int("--repeat") ?? 1
        guard repeats >= 1 else { throw UsageError(description: "--repeat: must be at least 1") }
        var result: GenerationResult?
        var denoisingPeak = 0
        for run in 1...repeats {
            let progress = ProgressBar(enabled: !quiet)
            for try await event in pipeline.run(request) {
                switch event {
                case let .started(total, _): progress.start(total: total)
                case let .step(step):
                    progress.update(step)
                    denoisingPeak = step.backendPeakBytes
                    if let previewPath, let preview = step.previews?.first {
                        do { try FileIO.writeAtomically(preview.pngData(textChunks: []), to: previewPath) } catch {
                            throw UsageError(description: "--preview \(previewPath): \(error)")
                        }
                    }
                case let .finished(finished): result = finished
                }
            }
            progress.finish()
            if repeats > 1 {
                let memory = await pipeline.memoryStatistics()
                printError("run \(run)/\(repeats): memory now \(memory.currentBytes) bytes, peak \(memory.peakBytes) bytes")
            }
        }
        if reportsMemory {
            let memory = await pipeline.memoryStatistics()
            printError("memory peak: denoising \(denoisingPeak / (1 << 20)) MiB, whole generation \(memory.peakBytes / (1 << 20)) MiB, now \(memory.currentBytes / (1 << 20)) MiB")
        }
        if options.flags.contains("--report-backend") {
            for line in await pipeline.backendReport.split(separator: "\n") { printError("backend: \(line)") }
        }
        if !quiet {
            for report in await pipeline.loraReports {
                let layers = report.layers.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }
                let unmatched = report.unmatched.values.reduce(0) { $0 + $1.count }
                printError("ssd1b: LoRA \(report.path): layers changed: \(layers.joined(separator: ", "))"
                           + (unmatched == 0 ? "" : "; \(unmatched) naming no layer of this model (skipped)"))
            }
        }
        guard let result else { throw UsageError(description: "generation ended without images") }
        if !quiet { for note in result.notes { printError("ssd1b: note: \(note)") } }

        let modelName = model.split(separator: "/").last.map(String.init) ?? model
        let parameters = GenerationMetadata.parameters(
            request: request, seed: result.seed, sampler: result.schedulerName, model: modelName)
        // Every file is written, or none (each to a temporary name first, renamed when all are whole).
        var files = zip(result.images, paths).map { image, path in
            (path: path, bytes: image.pngData(textChunks: [("parameters", parameters)]))
        }
        if let latentsPath {
            let buffer = HostBuffer(floats: result.latents.values)
            let view = buffer.view(name: "latents", shape: result.latents.shape, dtype: .f32)
            files.append((path: latentsPath, bytes: try SafetensorsWriter.serialize([view], metadata: ["seed": "\(result.seed)"])))
        }
        try FileIO.writeAllAtomically(files)
        for file in files { print(file.path) }
        return 0
    } catch let error as UsageError {
        printError("ssd1b generate: \(error.description)")
        return 2
    } catch is CancellationError {
        printError("ssd1b generate: cancelled")
        return 130
    } catch {
        printError("ssd1b generate: \(error)")
        return 1
    }
}

/// `out.png` → `out-1.png` … `out-K.png` when K > 1.
func outputPaths(_ path: String, count: Int) -> [String] {
    guard count > 1 else { return [path] }
    let stem: Substring, ext: Substring
    if let dot = path.lastIndex(of: "."), !path[dot...].contains("/") {
        stem = path[..<dot]
        ext = path[dot...]
    } else {
        stem = path[...]
        ext = ""
    }
    return (1...count).map { "\(stem)-\($0)\(ext)" }
}

/// A progress bar with step time and ETA on stderr.
final class ProgressBar: @unchecked Sendable {
    let enabled: Bool
    var total = 0
    var elapsed = 0.0
    /// Each step's seconds, for the summary line.
    var steps: [Double] = []
    init(enabled: Bool) { self.enabled = enabled }

    func start(total: Int) { self.total = total }

    func update(_ step: StepProgress) {
        guard enabled else { return }
        elapsed += step.seconds
        steps.append(step.seconds)
        let width = 30
        let filled = total > 0 ? width * step.step / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let eta = step.step > 0 ? elapsed / Double(step.step) * Double(total - step.step) : 0
        let line = "\r[\(bar)] \(step.step)/\(total)  \(format(step.seconds)) s/step  ETA \(format(eta)) s" + (step.step == total ? "" : "")
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    /// Ends the bar's line; with three steps or more, a line with the mean of steps 3… (the first warms
    /// up, the second may record a CUDA graph), the figure diffusers' benchmarks and Segmind's table use.
    func finish() {
        guard enabled, total > 0 else { return }
        var text = "\n"
        if steps.count >= 3 {
            let mean = steps.dropFirst(2).reduce(0, +) / Double(steps.count - 2)
            let ms = (mean * 1e4).rounded() / 10
            let rate = (100 / mean).rounded() / 100
            text += "steps 3–\(steps.count): mean \(ms) ms/step, \(rate) it/s\n"
        }
        _ = text.withCString { write(2, $0, strlen($0)) }
    }

    private func format(_ x: Double) -> String {
        if x < 1 {  // 0.1 ms resolution: a step at 1024² and batch 1 takes ~20 ms on a GPU
            let tenths = Int((x * 10_000).rounded())
            let frac = String(tenths % 10_000)
            return "0." + String(repeating: "0", count: 4 - frac.count) + frac
        }
        if x < 10 {
            let ms = Int((x * 1000).rounded())
            let frac = String(ms % 1000)
            return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
        }
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}
