extension KernelSource {
    /// Conversion, activations (diffusers `activations.py`), GEGLU, affine, broadcast binary ops,
    /// the GEMM/convolution bias + residual epilogue, copies (concat, slice), permute, nearest ×2
    /// upsampling and embedding gather.
    static let elementwise = #"""
__device__ __forceinline__ float activate(float v, int kind) {
    if (kind == 0) return v / (1.0f + expf(-v));                          // SiLU
    if (kind == 1) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); // GELU (erf)
    if (kind == 3) return v < 0.0f ? 0.0f : v;                             // ReLU (NaN stays NaN)
    if (kind == 4) return tanhf(v);                                        // tanh
    return v / (1.0f + expf(-1.702f * v));                                 // quick GELU
}

template <int TI, int TO> __global__ void convert_kernel(const void *x, void *y, i64 n) {
    GRID_LOOP(i, n) stT<TO>(y, i, ldT<TI>(x, i));
}

template <int T> __global__ void activation_kernel(const void *x, void *y, i64 n, int kind) {
    GRID_LOOP(i, n) stT<T>(y, i, activate(ldT<T>(x, i), kind));
}

// x [rows, 2n] -> y [rows, n] = x[:, :n] * GELU(x[:, n:])
template <int T> __global__ void geglu_kernel(const void *x, void *y, i64 rows, i64 n) {
    GRID_LOOP(i, rows * n) {
        i64 r = i / n, j = i - r * n;
        float h = ldT<T>(x, r * 2 * n + j), g = ldT<T>(x, r * 2 * n + n + j);
        stT<T>(y, i, h * activate(g, 1));
    }
}

template <int T> __global__ void affine_kernel(const void *x, void *y, i64 n, float scale, float shift) {
    GRID_LOOP(i, n) stT<T>(y, i, ldT<T>(x, i) * scale + shift);
}

// y = a op b, both of type T, with per-dimension element strides (0 where broadcast).
template <int T> __global__ void binary_kernel(const void *a, const void *b, void *y, i64 n, int rank,
                                               Dims6 shape, Dims6 sa, Dims6 sb, int op) {
    GRID_LOOP(i, n) {
        i64 ia = 0, ib = 0;
        if (rank == 1) {
            ia = i * sa.v[0]; ib = i * sb.v[0];
        } else {
            i64 rem = i;
            #pragma unroll
            for (int d = 5; d >= 0; --d) {
                if (d < rank) {
                    i64 s = shape.v[d], c = rem % s;
                    rem /= s;
                    ia += c * sa.v[d]; ib += c * sb.v[d];
                }
            }
        }
        float x = ldT<T>(a, ia), z = ldT<T>(b, ib), r;
        switch (op) { case 0: r = x + z; break; case 1: r = x - z; break; case 2: r = x * z; break; default: r = x / z; }
        stT<T>(y, i, r);
    }
}

// y [rows, C] += bias[C] (optional) + residual [rows, C] (optional)
template <int T> __global__ void bias_residual_kernel(void *y, const void *bias, const void *residual, i64 rows, i64 C) {
    GRID_LOOP(i, rows * C) {
        float v = ldT<T>(y, i);
        if (bias) v += ldT<T>(bias, i % C);
        if (residual) v += ldT<T>(residual, i);
        stT<T>(y, i, v);
    }
}

// Strided 2-D copy in units of S bytes (concat, slice): dst[dOff + r*dStride + c] = src[sOff + r*sStride + c].
template <int S> __global__ void copy2d_kernel(const void *src, void *dst, i64 rows, i64 cols,
                                               i64 srcStride, i64 srcOffset, i64 dstStride, i64 dstOffset) {
    typedef typename Word<S>::type W;
    const W *s = (const W *)src; W *d = (W *)dst;
    GRID_LOOP(i, rows * cols) {
        i64 r = i / cols, c = i - r * cols;
        d[dstOffset + r * dstStride + c] = s[srcOffset + r * srcStride + c];
    }
}

// y (contiguous, shape outShape) gathers x with inStride[d] = x's stride of the axis that becomes output axis d.
template <int S> __global__ void permute_kernel(const void *x, void *y, i64 n, int rank, Dims6 outShape, Dims6 inStride) {
    typedef typename Word<S>::type W;
    const W *s = (const W *)x; W *d = (W *)y;
    GRID_LOOP(i, n) {
        i64 rem = i, src = 0;
        #pragma unroll
        for (int k = 5; k >= 0; --k) {
            if (k < rank) {
                i64 e = outShape.v[k], c = rem % e;
                rem /= e;
                src += c * inStride.v[k];
            }
        }
        d[i] = s[src];
    }
}

// NHWC [B, H, W, C] -> [B, 2H, 2W, C]; a pixel's channels are Cu units of S bytes.
template <int S> __global__ void upsample2x_kernel(const void *x, void *y, i64 B, i64 H, i64 W, i64 Cu) {
    typedef typename Word<S>::type Wd;
    const Wd *s = (const Wd *)x; Wd *d = (Wd *)y;
    i64 W2 = 2 * W, H2 = 2 * H;
    GRID_LOOP(i, B * H2 * W2 * Cu) {
        i64 c = i % Cu, t = i / Cu;
        i64 ox = t % W2; t /= W2;
        i64 oy = t % H2; i64 b = t / H2;
        d[i] = s[((b * H + (oy >> 1)) * W + (ox >> 1)) * Cu + c];
    }
}

// y [count, dim] (type ydt) = table[ids[r], :] (type tdt); ids validated on the host.
__global__ void embedding_kernel(const void *table, int tdt, const int *ids, void *y, int ydt, i64 count, i64 dim) {
    GRID_LOOP(i, count * dim) {
        i64 r = i / dim, c = i - r * dim;
        stAny(y, i, ydt, ldAny(table, (i64)ids[r] * dim + c, tdt));
    }
}

"""#
}
