#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor
import Testing
@testable import SSDModels

/// Copies a fixture component folder's config and rewrites its weights through `edit`.
func componentCopy(_ fixture: String, weightsFile: String, label: String,
                   edit: ([HostTensorView]) -> [HostTensorView]) throws -> String {
    let directory = try Fixtures.temporaryDirectory(label)
    try FileManager.default.copyItem(atPath: Fixtures.models(fixture) + "/config.json", toPath: directory + "/config.json")
    let original = try SafetensorsFile(path: Fixtures.models(fixture) + "/" + weightsFile)
    try SafetensorsWriter.write(edit(try original.views()), to: directory + "/" + weightsFile)
    return directory
}

/// A view of the same bytes with another name or shape.
func renamed(_ view: HostTensorView, _ name: String? = nil, shape: [Int]? = nil) -> HostTensorView {
    HostTensorView(name: name ?? view.name, shape: shape ?? view.shape, dtype: view.dtype, pointer: view.pointer, owner: view.owner)
}

/// fp16 copies of views (for variant tests).
func halfCopies(_ views: [HostTensorView]) -> [HostTensorView] {
    views.map { view in
        let buffer = HostBuffer(byteCount: view.count * 2)
        let out = buffer.pointer.assumingMemoryBound(to: UInt16.self)
        for i in 0..<view.count { out[i] = HalfConversion.f16FromFloat(view.float(at: i)) }
        return buffer.view(name: view.name, shape: view.shape, dtype: .f16)
    }
}

@Suite struct LoadingTests {
    @Test func mismatchedWeightsAreReportedByName() throws {
        let directory = try componentCopy("unet_crossmid", weightsFile: "diffusion_pytorch_model.safetensors", label: "mismatch") { views in
            var out = views.filter { $0.name != "conv_in.bias" && $0.name != "mid_block.resnets.1.norm1.weight" }
            out = out.map { $0.name == "conv_out.weight" ? renamed($0, shape: [4, 8, 3, 6]) : $0 }
            out.append(renamed(views[0], "extra.tensor"))
            return out
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect {
            _ = try UNet2DConditionModel.load(componentDirectory: directory, backend: ReferenceBackend())
        } throws: { error in
            guard case let ModelError.weightMismatch(model, source, missing, unexpected, wrongShape) = error else { return false }
            return model == "UNet2DConditionModel" && source.hasSuffix("diffusion_pytorch_model.safetensors")
                && missing.sorted() == ["conv_in.bias", "mid_block.resnets.1.norm1.weight"]
                && unexpected == ["extra.tensor"]
                && wrongShape == [.init(tensor: "conv_out.weight", expected: [4, 8, 3, 3], actual: [4, 8, 3, 6])]
        }
    }

    @Test func textEncoderAcceptsBothPrefixesAndIgnoresPositionIDs() throws {
        // clip_l is stored without `text_model.`; write it with the prefix plus a position_ids buffer.
        let directory = try componentCopy("clip_l", weightsFile: "model.safetensors", label: "prefix") { views in
            var out = views.map { renamed($0, "text_model." + $0.name) }
            let ids = HostBuffer(byteCount: 77 * 8)
            out.append(ids.view(name: "text_model.embeddings.position_ids", shape: [1, 77], dtype: .i64))
            return out
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let backend = ReferenceBackend()
        let prefixed = try CLIPTextModel.load(componentDirectory: directory, backend: backend)
        let plain = try CLIPTextModel.load(componentDirectory: Fixtures.models("clip_l"), backend: backend)
        let ids: [[Int32]] = [[498, 5, 7, 499, 499]]
        let a = try backend.download(prefixed.encode(inputIDs: ids, hiddenStateIndex: -2, pooled: false).hiddenStates)
        let b = try backend.download(plain.encode(inputIDs: ids, hiddenStateIndex: -2, pooled: false).hiddenStates)
        #expect(a == b)
    }

    @Test func projectionWeightOnPlainModelIsUnexpected() throws {
        #expect {
            _ = try CLIPTextModel.load(componentDirectory: Fixtures.models("clip_g"), backend: ReferenceBackend(), withProjection: false)
        } throws: { error in
            guard case let ModelError.weightMismatch(_, _, missing, unexpected, _) = error else { return false }
            return missing.isEmpty && unexpected == ["text_projection.weight"]
        }
    }

    @Test func fp16VariantIsChosenOnRequestAndShardsLoad() throws {
        let directory = try componentCopy("vae", weightsFile: "diffusion_pytorch_model.safetensors", label: "variant") { $0 }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let original = try SafetensorsFile(path: directory + "/diffusion_pytorch_model.safetensors")
        try SafetensorsWriter.write(halfCopies(try original.views()), to: directory + "/diffusion_pytorch_model.fp16.safetensors")
        let plain = try WeightFiles.locate(in: directory, baseNames: ["diffusion_pytorch_model"], variant: nil)
        let half = try WeightFiles.locate(in: directory, baseNames: ["diffusion_pytorch_model"], variant: "fp16")
        #expect(plain.source.hasSuffix("/diffusion_pytorch_model.safetensors"))
        #expect(half.source.hasSuffix("/diffusion_pytorch_model.fp16.safetensors"))
        #expect(half.bytesByDType.keys.sorted { $0.rawValue < $1.rawValue } == [.f16])

        let backend = ReferenceBackend()
        let io = try Fixtures.io("vae")
        let vae16 = try AutoencoderKL.load(componentDirectory: directory, backend: backend, variant: "fp16")
        let decoded = try backend.download(vae16.decode(io.upload("latents", to: backend)))
        #expect(relativeError(decoded, try io.floats("decoded")) < 1e-2)

        // Shards: split the fp32 file in two with an index, drop the single files.
        let views = try original.views()
        let half1 = Array(views.prefix(views.count / 2)), half2 = Array(views.dropFirst(views.count / 2))
        let sharded = try Fixtures.temporaryDirectory("sharded")
        defer { try? FileManager.default.removeItem(atPath: sharded) }
        try FileManager.default.copyItem(atPath: directory + "/config.json", toPath: sharded + "/config.json")
        try SafetensorsWriter.write(half1, to: sharded + "/diffusion_pytorch_model-00001-of-00002.safetensors")
        try SafetensorsWriter.write(half2, to: sharded + "/diffusion_pytorch_model-00002-of-00002.safetensors")
        var map: [String: String] = [:]
        for v in half1 { map[v.name] = "diffusion_pytorch_model-00001-of-00002.safetensors" }
        for v in half2 { map[v.name] = "diffusion_pytorch_model-00002-of-00002.safetensors" }
        let index = try JSONEncoder().encode(["metadata": [String: String](), "weight_map": map])
        try index.write(to: URL(filePath: sharded + "/diffusion_pytorch_model.safetensors.index.json"))
        let vaeSharded = try AutoencoderKL.load(componentDirectory: sharded, backend: backend)
        let decodedSharded = try backend.download(vaeSharded.decode(io.upload("latents", to: backend)))
        #expect(relativeError(decodedSharded, try io.floats("decoded")) <= 1e-4)
        // A shard named outside the component's folder is refused, not opened.
        for escape in ["../diffusion_pytorch_model-00001-of-00002.safetensors", sharded + "/diffusion_pytorch_model-00001-of-00002.safetensors"] {
            var bad = map
            bad[half1[0].name] = escape
            try JSONEncoder().encode(["metadata": [String: String](), "weight_map": bad])
                .write(to: URL(filePath: sharded + "/diffusion_pytorch_model.safetensors.index.json"))
            #expect {
                _ = try AutoencoderKL.load(componentDirectory: sharded, backend: backend)
            } throws: { error in
                guard case let ModelError.invalidShardIndex(_, message) = error else { return false }
                return message.contains("outside the component's folder")
            }
        }
    }

    @Test func missingPiecesGiveTypedErrors() throws {
        let nowhere = "/nonexistent/ssd1b-folder"
        #expect(throws: ModelError.folderNotFound(path: nowhere)) { _ = try PipelineFolder(path: nowhere) }
        let empty = try Fixtures.temporaryDirectory("empty")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: ModelError.configNotFound(path: empty + "/model_index.json")) { _ = try PipelineFolder(path: empty) }
        #expect(throws: ModelError.configNotFound(path: empty + "/config.json")) {
            _ = try UNet2DConditionModel.load(componentDirectory: empty, backend: ReferenceBackend())
        }
        try FileManager.default.copyItem(atPath: Fixtures.models("vae") + "/config.json", toPath: empty + "/config.json")
        #expect {
            _ = try AutoencoderKL.load(componentDirectory: empty, backend: ReferenceBackend())
        } throws: { error in
            guard case let ModelError.weightsNotFound(directory, tried) = error else { return false }
            return directory == empty && tried.contains("diffusion_pytorch_model.safetensors")
        }
        let folder = try PipelineFolder(path: Fixtures.tinyPipeline)
        #expect(throws: ModelError.componentNotFound(component: "image_encoder", folder: Fixtures.tinyPipeline)) {
            _ = try folder.componentDirectory("image_encoder")
        }
    }

    @Test func tinyPipelineLoadsAndInspects() throws {
        let folder = try PipelineFolder(path: Fixtures.tinyPipeline)
        #expect(folder.modelIndex.forceZerosForEmptyPrompt)
        let backend = ReferenceBackend()
        let unet = try UNet2DConditionModel.load(componentDirectory: folder.componentDirectory("unet"), backend: backend)
        let vae = try AutoencoderKL.load(componentDirectory: folder.componentDirectory("vae"), backend: backend)
        let te1 = try CLIPTextModel.load(componentDirectory: folder.componentDirectory("text_encoder"), backend: backend)
        let te2 = try CLIPTextModel.load(componentDirectory: folder.componentDirectory("text_encoder_2"), backend: backend)
        #expect(unet.config.midBlockType == "UNetMidBlock2D")
        #expect(vae.config.scalingFactor == 0.13025)
        #expect(!te1.hasProjection && te2.hasProjection)
        let info = try folder.inspect()
        #expect(info.map(\.name) == ["scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae"])
        let unetInfo = try #require(info.first { $0.name == "unet" })
        let specs = try UNet2DConditionModel.parameterSpecs(config: unet.config)
        #expect(unetInfo.parameters == count(specs))
        let bytesPerElement = ["float32": 4, "float16": 2, "bfloat16": 2][unetInfo.dtype ?? ""]
        #expect(bytesPerElement.map { unetInfo.bytes == count(specs) * $0 } == true)
    }
}
