#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SSDTensor

/// OpenBLAS opened at run time (`dlopen("libopenblas.so.0")`); only `cblas_sgemm` is used.
final class OpenBLAS: Sendable {
    typealias SGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                      UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float,
                                      UnsafeMutablePointer<Float>?, Int32) -> Void
    let sgemm: SGEMM
    /// `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    let config: String

    private init(sgemm: SGEMM, config: String) {
        self.sgemm = sgemm
        self.config = config
    }

    /// Library names tried in order.
    static let candidates = ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"]

    /// Opens OpenBLAS; throws `TensorError.backendUnavailable` naming what is missing.
    static func load() throws -> OpenBLAS {
        #if canImport(Glibc) || canImport(Darwin)
        for name in candidates {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let sym = dlsym(handle, "cblas_sgemm") else {
                throw TensorError.backendUnavailable(backend: "cpu", reason: "\(name) has no cblas_sgemm")
            }
            var config = name
            if let cfg = dlsym(handle, "openblas_get_config") {
                typealias Config = @convention(c) () -> UnsafePointer<CChar>?
                if let s = unsafeBitCast(cfg, to: Config.self)() { config = String(cString: s) }
            }
            return OpenBLAS(sgemm: unsafeBitCast(sym, to: SGEMM.self), config: config)
        }
        throw TensorError.backendUnavailable(backend: "cpu", reason: "OpenBLAS (\(candidates.joined(separator: ", "))) could not be opened")
        #else
        throw TensorError.backendUnavailable(backend: "cpu", reason: "dlopen is not available on this platform")
        #endif
    }

    /// Row-major `C[m × n] = alpha · op(A) · op(B) + beta · C`.
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        sgemm(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
              a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
