#if canImport(Glibc)
import Foundation
import SSDTensor
import Testing
@testable import SSDCUDABackend

/// The NVRTC kernels run on the CPU emulator (`KernelEmulator`) against `ReferenceBackend`, with the
/// grids and arguments the backend launches them with. Skipped without a C++ compiler.

/// Host buffers standing in for device memory: fp16 bits or fp32 values.
final class HostBuffer {
    let bytes: UnsafeMutableRawPointer
    let count: Int
    let dtype: DType
    init(count: Int, dtype: DType) {
        self.count = count
        self.dtype = dtype
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(count * dtype.byteSize, 16), alignment: 256)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(count * dtype.byteSize, 16))
    }
    convenience init(_ values: [Float], dtype: DType) {
        self.init(count: values.count, dtype: dtype)
        for (i, v) in values.enumerated() { self[i] = v }
    }
    deinit { bytes.deallocate() }
    var pointer: KernelArgument { .pointer(UInt64(UInt(bitPattern: bytes))) }
    subscript(i: Int) -> Float {
        get {
            switch dtype {
            case .f16: return Float(Float16(bitPattern: bytes.load(fromByteOffset: 2 * i, as: UInt16.self)))
            case .bf16: return Float(bitPattern: UInt32(bytes.load(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            default: return bytes.load(fromByteOffset: 4 * i, as: Float.self)
            }
        }
        set {
            switch dtype {
            case .f16: bytes.storeBytes(of: Float16(newValue).bitPattern, toByteOffset: 2 * i, as: UInt16.self)
            case .bf16: bytes.storeBytes(of: UInt16(newValue.bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self)
            default: bytes.storeBytes(of: newValue, toByteOffset: 4 * i, as: Float.self)
            }
        }
    }
    var values: [Float] { (0..<count).map { self[$0] } }
}

/// Values in [-scale, scale), rounded to fp16 so that both sides see the same inputs.
func halfValues(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Float16(scale * (Float(state >> 40) / Float(1 << 24) * 2 - 1)))
    }
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return (num / max(den, 1e-30)).squareRoot()
}

/// The emulator for `group`, or nil (and the test returns) without a C++ compiler.
func emulator(_ group: KernelGroup) throws -> KernelEmulator? {
    guard KernelEmulator.compiler != nil else { return nil }
    return try KernelEmulator.load(group)
}

@Suite(.serialized) struct EmulatedKernelTests {
    let reference = ReferenceBackend()

    /// `CUDABackend.attention`'s fp16 paths: the double-buffered `ldmatrix` kernel (4 and 8 warps)
    /// and the first flash kernel (head dim padded to 64 or 128), partial tiles, causal or not.
    @Test(arguments: [
        (kernel: "flash_attention_fast_d64", d: 64, nq: 150, nk: 77, causal: false),
        (kernel: "flash_attention_fast_d64", d: 64, nq: 70, nk: 150, causal: true),
        (kernel: "flash_attention_fast_d64_w8", d: 64, nq: 150, nk: 130, causal: false),
        (kernel: "flash_attention_fast_d64_w8", d: 64, nq: 130, nk: 130, causal: true),
        (kernel: "flash_attention_d64", d: 40, nq: 90, nk: 77, causal: false),
        (kernel: "flash_attention_d128", d: 80, nq: 70, nk: 100, causal: true),
    ])
    func attention(_ c: (kernel: String, d: Int, nq: Int, nk: Int, causal: Bool)) throws {
        let group: KernelGroup = c.kernel.contains("fast") ? .fast : .attention
        guard let emu = try emulator(group) else { return }
        let b = 2, heads = 2, width = heads * c.d
        let q = halfValues(b * c.nq * width, seed: 1), k = halfValues(b * c.nk * width, seed: 2), v = halfValues(b * c.nk * width, seed: 3)
        let scale = 1 / Float(c.d).squareRoot()
        let qb = HostBuffer(q, dtype: .f16), kb = HostBuffer(k, dtype: .f16), vb = HostBuffer(v, dtype: .f16)
        let ob = HostBuffer(count: b * c.nq * width, dtype: .f16)
        let log2e: Float = 1.4426950408889634
        if group == .fast {
            let warps = c.kernel.hasSuffix("w8") ? 8 : 4
            try emu.launch(c.kernel, grid: (c.nq.ceilDiv(16 * warps), heads, b), block: 32 * warps,
                           [qb.pointer, kb.pointer, vb.pointer, ob.pointer, .i32(c.nq), .i32(c.nk), .i32(heads),
                            .float(scale * log2e), .i32(c.causal ? 1 : 0)])
        } else {
            try emu.launch(c.kernel, grid: ((c.nq + 63) / 64, heads, b), block: 128,
                           [qb.pointer, kb.pointer, vb.pointer, ob.pointer, .i32(c.nq), .i32(c.nk), .i32(heads), .i32(c.d),
                            .float(scale * log2e), .i32(c.causal ? 1 : 0), .i32(c.d % 8 == 0 ? 1 : 0)])
        }
        let expected = try reference.download(reference.attention(
            query: reference.upload(q, shape: [b, c.nq, width]), key: reference.upload(k, shape: [b, c.nk, width]),
            value: reference.upload(v, shape: [b, c.nk, width]), heads: heads, scale: scale, causal: c.causal))
        let error = relativeError(ob.values, expected)
        #expect(error < 4e-3, "\(c.kernel) d \(c.d) nq \(c.nq) nk \(c.nk) causal \(c.causal): \(error)")
    }
}
#endif
