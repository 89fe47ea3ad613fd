import SSDModels
import SSDTensor

/// The ControlNet's part of each denoising step (diffusers `StableDiffusionXLControlNetPipeline.__call__`):
/// the control image prepared once (`prepare_image`: RGB in [0, 1], repeated per image and, with
/// guidance outside guess mode, for both halves of the batch), which steps it applies to
/// (`controlnet_keep`), and its residuals for the UNet.
struct ControlStep {
    let controlNet: ControlNetModel
    let control: ControlInput
    let backend: any ComputeBackend
    /// The ControlNet's inputs (the conditional half only in guess mode with guidance).
    let image: Tensor
    let hiddenStates: Tensor
    let pooled: Tensor
    let timeIDs: [Float]
    /// Rows of the UNet batch, and of the ControlNet's (fewer in guess mode with guidance).
    let unetRows: Int
    let rows: Int
    let inspect: ((String, [Float]) -> Void)?
    /// Whether the residuals of a call were handed to `inspect` yet.
    private let inspected = Flag()

    /// nil when the request has no `control`.
    init?(run: GenerationRun, conditioning: Conditioning) throws {
        guard let control = run.request.control, let controlNet = run.models.controlNet else { return nil }
        self.control = control
        self.controlNet = controlNet
        backend = run.backend
        inspect = run.inspect
        unetRows = run.usesGuidance ? 2 * run.imageCount : run.imageCount
        let conditionalOnly = control.guessMode && run.usesGuidance
        rows = conditionalOnly ? run.imageCount : unetRows
        let pixels = control.image.pixels.map { Float($0) / 255 }
        image = try backend.upload(Array([[Float]](repeating: pixels, count: rows).joined()),
                                   shape: [rows, control.image.height, control.image.width, 3],
                                   as: backend.activationDType(for: .unet))
        if conditionalOnly {
            let half = run.imageCount..<unetRows
            hiddenStates = try backend.slice(conditioning.hiddenStates, axis: 0, range: half)
            pooled = try backend.slice(conditioning.pooled, axis: 0, range: half)
            let perRow = conditioning.timeIDs.count / unetRows
            timeIDs = Array(conditioning.timeIDs[(run.imageCount * perRow)...])
        } else {
            (hiddenStates, pooled, timeIDs) = (conditioning.hiddenStates, conditioning.pooled, conditioning.timeIDs)
        }
    }

    /// `controlnet_keep[i]`: 1 while step i of n lies inside [start, end], else 0.
    func keep(_ i: Int, of n: Int) -> Bool {
        !(Double(i) / Double(n) < control.guidanceStart || Double(i + 1) / Double(n) > control.guidanceEnd)
    }

    /// The residuals for the UNet call of step `stepIndex` on `sample` (the UNet's scaled input), or nil
    /// where the step lies outside the guidance window or the scale is 0 (diffusers then adds zeros).
    func residuals(sample: Tensor, timestep: Float, stepIndex: Int, stepCount: Int) throws -> ControlNetResiduals? {
        let scale = Float(control.conditioningScale)
        guard keep(stepIndex, of: stepCount), scale != 0 else { return nil }
        let input = rows == unetRows ? sample : try backend.slice(sample, axis: 0, range: (unetRows - rows)..<unetRows)
        var out = try controlNet(
            sample: input, timesteps: [Float](repeating: timestep, count: rows), encoderHiddenStates: hiddenStates,
            controlImage: image, conditioningScale: scale, guessMode: control.guessMode, textEmbeds: pooled, timeIDs: timeIDs)
        if let inspect, inspected.set() {
            let flat = try out.down.flatMap { try nchw($0) }
            inspect("controlnet_down", flat)
            inspect("controlnet_mid", try nchw(out.mid))
        }
        if rows < unetRows {
            // Guess mode: no residuals for the unconditional half.
            func padded(_ t: Tensor) throws -> Tensor { try backend.concat([backend.affine(t, scale: 0, shift: 0), t], axis: 0) }
            out = ControlNetResiduals(down: try out.down.map(padded), mid: try padded(out.mid))
        }
        return out
    }

    private func nchw(_ t: Tensor) throws -> [Float] {
        Layout.nhwcToNCHW(try backend.download(t), t.shape[0], t.shape[3], t.shape[1], t.shape[2])
    }
}

/// A flag set once (a class, so that the non-mutating step can set it).
private final class Flag {
    private var isSet = false
    /// Sets the flag; true the first time.
    func set() -> Bool {
        defer { isSet = true }
        return !isSet
    }
}
