/// `InitialImage.paddingMaskCrop` in a generation (diffusers `padding_mask_crop`): the crop region, the overlay
/// of the results, the request's checks. The image operations are in MaskCrop.swift.

extension GenerationRun {
    /// The region `InitialImage.paddingMaskCrop` crops to (diffusers' `crops_coords`); nil without it.
    var maskCrop: CropRegion? {
        guard let initial = request.initialImage, let pad = initial.paddingMaskCrop, let mask = initial.mask else { return nil }
        return ImageProcessing.cropRegion(mask: mask, width: request.size.width, height: request.size.height, pad: pad)
    }

    /// The decoded images, with `paddingMaskCrop` pasted back into the init image through the mask (diffusers
    /// `apply_overlay` after `postprocess`), at the init image's size.
    func overlaid(_ images: [RGBImage]) throws -> [RGBImage] {
        guard let region = maskCrop, let initial = request.initialImage, let mask = initial.mask else { return images }
        return try images.map { try ImageProcessing.overlay(mask: mask, original: initial.image, generated: $0, region: region) }
    }
}

extension RequestValidation {
    /// `InitialImage.paddingMaskCrop`: not negative, with a mask of the image's size (diffusers' `apply_overlay`
    /// pastes through it) that has a nonzero pixel, and a crop region that fills the output.
    static func validatePaddingMaskCrop(_ initial: InitialImage, size: ImageSize) throws {
        guard let pad = initial.paddingMaskCrop else { return }
        func fail(_ name: String, _ message: String) -> PipelineError { .invalidArgument(name: name, message: message) }
        guard pad >= 0 else { throw fail("paddingMaskCrop", "\(pad) must not be negative") }
        guard let mask = initial.mask else {
            throw fail("paddingMaskCrop", "needs a mask (it crops the image around the mask's white region)")
        }
        let image = initial.image
        guard mask.width == image.width, mask.height == image.height else {
            throw fail("mask", "is \(mask.width)x\(mask.height), the image \(image.width)x\(image.height): with paddingMaskCrop the result is pasted back into the image through the mask (diffusers apply_overlay), so they must be the same size")
        }
        guard let region = ImageProcessing.cropRegion(mask: mask, width: size.width, height: size.height, pad: pad) else {
            throw fail("mask", "is black everywhere: paddingMaskCrop needs a region to repaint")
        }
        let filled = ImageProcessing.filledSize(width: region.width, height: region.height, in: size)
        guard filled.width > 0, filled.height > 0 else {
            throw fail("paddingMaskCrop", "the crop region \(region.width)x\(region.height) is too narrow to fill \(size) (it would be resized to \(filled.width)x\(filled.height))")
        }
    }
}
