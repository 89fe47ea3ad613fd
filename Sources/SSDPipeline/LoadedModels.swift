import SSDModels
import SSDTensor

/// The four networks of a pipeline on one backend.
final class LoadedModels {
    var textEncoder: CLIPTextModel?
    var textEncoder2: CLIPTextModel?
    let unet: UNet2DConditionModel
    let vae: AutoencoderKL

    init(folder: PipelineFolder, backend: any ComputeBackend, configuration: PipelineConfiguration) throws {
        let variant = configuration.variant
        unet = try UNet2DConditionModel.load(componentDirectory: folder.componentDirectory("unet"), backend: backend, variant: variant)
        vae = try AutoencoderKL.load(componentDirectory: folder.componentDirectory("vae"), backend: backend, variant: variant)
        try reloadTextEncodersIfNeeded(folder: folder, backend: backend, configuration: configuration)
    }

    /// Maps the text encoders again after `releaseTextEncoders`.
    func reloadTextEncodersIfNeeded(folder: PipelineFolder, backend: any ComputeBackend, configuration: PipelineConfiguration) throws {
        if textEncoder == nil {
            textEncoder = try CLIPTextModel.load(
                componentDirectory: folder.componentDirectory("text_encoder"), backend: backend, variant: configuration.variant)
        }
        if textEncoder2 == nil {
            textEncoder2 = try CLIPTextModel.load(
                componentDirectory: folder.componentDirectory("text_encoder_2"), backend: backend, variant: configuration.variant)
        }
    }

    /// Frees the text encoders' prepared weights.
    func releaseTextEncoders() {
        textEncoder = nil
        textEncoder2 = nil
    }
}
