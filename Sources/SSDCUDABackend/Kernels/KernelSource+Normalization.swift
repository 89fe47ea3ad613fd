extension KernelSource {
    /// Group norm (diffusers `nn.GroupNorm` over NHWC, optional fused SiLU), layer norm and softmax
    /// (optionally causal, CLIP's mask).
    ///
    /// Group norm runs in three launches: per (batch, row chunk, channel) the mean and centred sum of
    /// squares of the chunk; per (batch, group) Chan's parallel combination of those in double
    /// precision; then the normalisation, affine and activation.
    static let normalization = #"""
// grid (chunks, B); partial[((b*chunks + chunk)*C + c)*2 + {0,1}] = mean, M2 over the chunk's rows.
template <int T> __global__ void group_norm_partial_kernel(const void *x, float *partial, i64 HW, int C, int rowsPerChunk) {
    int chunk = blockIdx.x, b = blockIdx.y, chunks = gridDim.x;
    i64 r0 = (i64)chunk * rowsPerChunk, r1 = min(HW, r0 + rowsPerChunk);
    float n = (float)(r1 - r0);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const i64 base = (i64)b * HW * C + c;
        float sum = 0.0f;
        for (i64 r = r0; r < r1; ++r) sum += ldT<T>(x, base + r * C);
        float mean = sum / n, m2 = 0.0f;
        for (i64 r = r0; r < r1; ++r) { float d = ldT<T>(x, base + r * C) - mean; m2 += d * d; }
        i64 o = (((i64)b * chunks + chunk) * C + c) * 2;
        partial[o] = mean; partial[o + 1] = m2;
    }
}

// grid (B*G), block 256: stats[bg*2] = mean, stats[bg*2+1] = 1/sqrt(var + eps)
__global__ void group_norm_finalize_kernel(const float *partial, float *stats, i64 HW, int C, int G, int chunks,
                                           int rowsPerChunk, float eps) {
    __shared__ double sn[256], sm[256], sq[256];
    int bg = blockIdx.x, b = bg / G, g = bg % G, cpg = C / G;
    double n = 0.0, mean = 0.0, m2 = 0.0;
    i64 entries = (i64)chunks * cpg;
    for (i64 e = threadIdx.x; e < entries; e += blockDim.x) {
        int chunk = (int)(e / cpg), c = g * cpg + (int)(e % cpg);
        i64 r0 = (i64)chunk * rowsPerChunk;
        double nb = (double)(min(HW, r0 + rowsPerChunk) - r0);
        i64 o = (((i64)b * chunks + chunk) * C + c) * 2;
        double mb = partial[o], qb = partial[o + 1];
        double nt = n + nb, delta = mb - mean;
        mean += delta * nb / nt;
        m2 += qb + delta * delta * n * nb / nt;
        n = nt;
    }
    sn[threadIdx.x] = n; sm[threadIdx.x] = mean; sq[threadIdx.x] = m2;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            double na = sn[threadIdx.x], nb = sn[threadIdx.x + s];
            double nt = na + nb;
            if (nb > 0.0) {
                double delta = sm[threadIdx.x + s] - sm[threadIdx.x];
                sm[threadIdx.x] += delta * nb / nt;
                sq[threadIdx.x] += sq[threadIdx.x + s] + delta * delta * na * nb / nt;
                sn[threadIdx.x] = nt;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double var = sq[0] / sn[0];
        stats[bg * 2] = (float)sm[0];
        stats[bg * 2 + 1] = (float)(1.0 / sqrt(var + (double)eps));
    }
}

template <int T> __global__ void group_norm_apply_kernel(const void *x, void *y, const float *stats, const void *w, int wdt,
                                                         const void *bias, int bdt, i64 HW, int C, int G, int silu) {
    int cpg = C / G;
    // grid.y: batch element
    GRID_LOOP(i, HW * C) {
        i64 idx = (i64)blockIdx.y * HW * C + i;
        int c = (int)(i % C);
        int bg = blockIdx.y * G + c / cpg;
        float v = (ldT<T>(x, idx) - stats[bg * 2]) * stats[bg * 2 + 1] * ldAny(w, c, wdt) + ldAny(bias, c, bdt);
        if (silu) v = v / (1.0f + expf(-v));
        stT<T>(y, idx, v);
    }
}

// One warp per row of length C.
template <int T> __global__ void layer_norm_kernel(const void *x, void *y, const void *w, int wdt, const void *bias, int bdt,
                                                   i64 rows, int C, float eps) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    i64 base = row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += ldT<T>(x, base + c);
    float mean = warp_sum(s) / C;
    float q = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = ldT<T>(x, base + c) - mean; q += d * d; }
    float rstd = rsqrtf(warp_sum(q) / C + eps);
    for (int c = lane; c < C; c += 32)
        stT<T>(y, base + c, (ldT<T>(x, base + c) - mean) * rstd * ldAny(w, c, wdt) + ldAny(bias, c, bdt));
}

// One warp per row of length n. causal: row r is query (qOffset + r % nq); keys > query get 0.
template <int T> __global__ void softmax_kernel(const void *x, void *y, i64 rows, int n, int nq, int qOffset, int causal) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    i64 base = row * n;
    int valid = causal ? min(n, qOffset + (int)(row % nq) + 1) : n;
    float m = NEG_INF;
    for (int c = lane; c < valid; c += 32) m = fmaxf(m, ldT<T>(x, base + c));
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < valid; c += 32) s += expf(ldT<T>(x, base + c) - m);
    s = warp_sum(s);
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int c = lane; c < n; c += 32) stT<T>(y, base + c, c < valid ? expf(ldT<T>(x, base + c) - m) * inv : 0.0f);
}

"""#
}
