// Tokenizer throughput: both SDXL tokenizers on the fixture vocabulary (or SSD_TOKENIZER_PIPELINE, a diffusers
// pipeline folder). Not a test: reports timings only.
import SSDTokenizer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads both tokenizers and times `encode` on 77-token prompts, with the per-word BPE cache warm and with
/// words never seen before; returns one report line.
func runTokenizerBenchmark() -> String {
    let pipeline: String
    if let override = getenv("SSD_TOKENIZER_PIPELINE") {
        pipeline = String(cString: override)
    } else {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(4)  // Benchmarks/Sources/ssd-bench/TokenizerBenchmark.swift
        pipeline = parts.joined(separator: "/") + "/Tests/Fixtures/tokenizer/pipeline"
    }
    let clock = ContinuousClock()
    let tokenizers: SDXLTokenizers
    let loadStart = clock.now
    do {
        tokenizers = try SDXLTokenizers(pipelineDirectory: pipeline)
    } catch {
        return "tokenizer: cannot load \(pipeline): \(error)"
    }
    let loadTime = clock.now - loadStart

    // A typical prompt of exactly 75 text tokens (77 with start and end).
    let words = ["a", "photo", "of", "an", "astronaut", "riding", "a", "horse", "on", "mars", ",", "highly",
                 "detailed", ",", "8k", ",", "cinematic", "lighting", ",", "trending", "on", "artstation"]
    var prompt = ""
    while tokenizers.tokenizer.encodeUntruncated(prompt).count < 77 {
        prompt += (prompt.isEmpty ? "" : " ") + words[prompt.count % words.count]
    }
    while tokenizers.tokenizer.encodeUntruncated(prompt).count > 77 { prompt.removeLast() }
    let tokens = tokenizers.tokenizer.encodeUntruncated(prompt).count

    var checksum: Int32 = 0
    let repetitions = 2_000
    let warmStart = clock.now
    for _ in 0..<repetitions {
        let (first, second) = tokenizers.encode(prompt)
        checksum &+= first.inputIDs[5] &+ second.inputIDs[6]
    }
    let warm = (clock.now - warmStart) / (2 * repetitions)

    // Words never seen before: every BPE call misses the cache.
    var generator = SystemRandomNumberGenerator()
    let letters = Array("abcdefghijklmnopqrstuvwxyz")
    let coldPrompts = (0..<200).map { _ in
        (0..<25).map { _ in String((0..<Int.random(in: 4...9, using: &generator)).map { _ in letters.randomElement(using: &generator)! }) }
            .joined(separator: " ")
    }
    var coldTokens = 0
    let coldStart = clock.now
    for coldPrompt in coldPrompts {
        let ids = tokenizers.tokenizer2.encodeUntruncated(coldPrompt)
        coldTokens += ids.count
        checksum &+= ids[1]
    }
    let cold = clock.now - coldStart

    func microseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
    }
    let coldPerPrompt = microseconds(cold) / Double(coldPrompts.count)
    let coldTokensPerSecond = Double(coldTokens) / (microseconds(cold) / 1e6)
    let warmTokensPerSecond = Double(tokens) / (microseconds(warm) / 1e6)
    func format(_ value: Double, _ digits: Int = 1) -> String {
        let scale = Double([1, 10, 100, 1000][min(digits, 3)])
        return String(Double((value * scale).rounded()) / scale)
    }
    return "tokenizer: load both \(format(microseconds(loadTime) / 1000)) ms; \(tokens)-token prompt "
        + "\(format(microseconds(warm))) µs per tokenizer (\(format(warmTokensPerSecond / 1e6, 2))M tokens/s, words cached); "
        + "unseen words \(format(coldPerPrompt)) µs per prompt (\(format(coldTokensPerSecond / 1e6, 2))M tokens/s) "
        + "[checksum \(checksum & 1)]"
}
