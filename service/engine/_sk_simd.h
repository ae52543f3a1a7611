/* Float32 building blocks of the compiled kernels: panel matvec, panel GEMM, LSTM gates, two dot products,
 * each with a portable scalar path and an AVX2+FMA path (target attributes; the caller sets g_use_avx2 at
 * import from __builtin_cpu_supports).  Included by both compiled kernels, _skimkernel.c and _antmankernel.c
 * (each extension gets its own copy of these static functions).  Layout and numerics: see _skimkernel.c's
 * head comment ("panels": rows padded to a multiple of 8, cut into panels of <= 64 rows stored column by
 * column).
 */
#ifndef SK_SIMD_H
#define SK_SIMD_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SK_X86 1
#include <immintrin.h>
#define SK_AVX2 __attribute__((target("avx2,fma")))
#else
#define SK_X86 0
#endif

#define PANEL 64

/* 64-byte aligned work space (freed with free(); MSVC has no aligned_alloc: plain malloc there) */
#ifdef _WIN32
#define SK_ALIGNED_ALLOC(n) malloc(n)
#else
#define SK_ALIGNED_ALLOC(n) aligned_alloc(64, (n))
#endif

static int g_use_avx2 = 0;

static inline int r8(int r) { return (r + 7) & ~7; }

/* ------------------------------------------------------------------ portable scalar path */

/* out = init + P v, P packed in panels (R8 rows, K columns) */
static void mv_scalar(const float *P, int R8, int K, const float *v, const float *init, float *out)
{
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        float acc[PANEL];
        for (int r = 0; r < w; r++) acc[r] = init[p0 + r];
        for (int k = 0; k < K; k++) {
            const float vk = v[k];
            const float *col = blk + (size_t)k * w;
            for (int r = 0; r < w; r++) acc[r] += col[r] * vk;
        }
        for (int r = 0; r < w; r++) out[p0 + r] = acc[r];
        blk += (size_t)K * w;
    }
}

/* out = init + P[:, k0:k1] v[k0:k1]: the columns k0..k1-1 of a panel-packed matrix (columns are contiguous
 * within a panel, so a column range is a sub-panel of the same width) */
static inline void mv_cols_scalar(const float *P, int R8, int K, int k0, int k1, const float *v, const float *init,
                           float *out)
{
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        mv_scalar(blk + (size_t)k0 * w, w, k1 - k0, v + k0, init + p0, out + p0);
        blk += (size_t)K * w;
    }
}

static inline float sigm_s(float z) { return 1.0f / (1.0f + expf(-z)); }

static void gates_scalar(const float *G, int n, float *c, float *h)
{
    for (int j = 0; j < n; j++) {
        float i = sigm_s(G[j]), f = sigm_s(G[n + j]), g = tanhf(G[2 * n + j]), o = sigm_s(G[3 * n + j]);
        float cn = f * c[j] + i * g;
        c[j] = cn;
        h[j] = o * tanhf(cn);
    }
}

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

/* ------------------------------------------------------------------ AVX2 + FMA path */
#if SK_X86

/* One panel of 8*N rows (N <= 8): out = init + panel . v.  The accumulators are named variables, not an
 * array: GCC keeps an array of __m256 on the stack and stores it back on every k, which halves the speed.
 * Narrow panels (N <= 6: the small cell, L1-resident) use two accumulator sets over even/odd k, so the
 * FMA latency does not bound them. */
#define SK_ACC_INIT(j) __m256 a##j = (NP > j) ? _mm256_loadu_ps(init + 8 * j) : _mm256_setzero_ps(); \
                       __m256 b##j = _mm256_setzero_ps();
#define SK_ACC_FMA(j, acc, kk) if (NP > j) acc##j = _mm256_fmadd_ps(_mm256_loadu_ps(col##kk + 8 * j), v##kk, acc##j);
#define SK_ACC_STORE(j) if (NP > j) _mm256_storeu_ps(out + 8 * j, (NP <= 6) ? _mm256_add_ps(a##j, b##j) : a##j);
#define MV_PANEL_FN(N)                                                                          \
    SK_AVX2 static inline void panel_##N(const float *blk, int K, const float *v,               \
                                         const float *init, float *out)                          \
    {                                                                                           \
        enum { NP = N };                                                                        \
        SK_ACC_INIT(0) SK_ACC_INIT(1) SK_ACC_INIT(2) SK_ACC_INIT(3)                             \
        SK_ACC_INIT(4) SK_ACC_INIT(5) SK_ACC_INIT(6) SK_ACC_INIT(7)                             \
        int k = 0;                                                                              \
        if (NP <= 6) {                                                                          \
            for (; k + 2 <= K; k += 2) {                                                        \
                const __m256 v0 = _mm256_broadcast_ss(v + k), v1 = _mm256_broadcast_ss(v + k + 1); \
                const float *col0 = blk + (size_t)k * (8 * NP), *col1 = col0 + 8 * NP;          \
                SK_ACC_FMA(0, a, 0) SK_ACC_FMA(1, a, 0) SK_ACC_FMA(2, a, 0)                     \
                SK_ACC_FMA(3, a, 0) SK_ACC_FMA(4, a, 0) SK_ACC_FMA(5, a, 0)                     \
                SK_ACC_FMA(0, b, 1) SK_ACC_FMA(1, b, 1) SK_ACC_FMA(2, b, 1)                     \
                SK_ACC_FMA(3, b, 1) SK_ACC_FMA(4, b, 1) SK_ACC_FMA(5, b, 1)                     \
            }                                                                                   \
        }                                                                                       \
        for (; k < K; k++) {                                                                    \
            const __m256 v0 = _mm256_broadcast_ss(v + k);                                       \
            const float *col0 = blk + (size_t)k * (8 * NP);                                     \
            SK_ACC_FMA(0, a, 0) SK_ACC_FMA(1, a, 0) SK_ACC_FMA(2, a, 0) SK_ACC_FMA(3, a, 0)     \
            SK_ACC_FMA(4, a, 0) SK_ACC_FMA(5, a, 0) SK_ACC_FMA(6, a, 0) SK_ACC_FMA(7, a, 0)     \
        }                                                                                       \
        SK_ACC_STORE(0) SK_ACC_STORE(1) SK_ACC_STORE(2) SK_ACC_STORE(3)                         \
        SK_ACC_STORE(4) SK_ACC_STORE(5) SK_ACC_STORE(6) SK_ACC_STORE(7)                         \
    }
MV_PANEL_FN(1)
MV_PANEL_FN(2)
MV_PANEL_FN(3)
MV_PANEL_FN(4)
MV_PANEL_FN(5)
MV_PANEL_FN(6)
MV_PANEL_FN(7)
MV_PANEL_FN(8)

SK_AVX2 static inline __attribute__((always_inline)) void panel_any(int w, const float *blk, int K, const float *v, const float *init, float *out)
{
    switch (w >> 3) {
    case 1: panel_1(blk, K, v, init, out); break;
    case 2: panel_2(blk, K, v, init, out); break;
    case 3: panel_3(blk, K, v, init, out); break;
    case 4: panel_4(blk, K, v, init, out); break;
    case 5: panel_5(blk, K, v, init, out); break;
    case 6: panel_6(blk, K, v, init, out); break;
    case 7: panel_7(blk, K, v, init, out); break;
    default: panel_8(blk, K, v, init, out); break;
    }
}

SK_AVX2 static void mv_avx2(const float *P, int R8, int K, const float *v, const float *init, float *out)
{
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        panel_any(w, blk, K, v, init + p0, out + p0);
        blk += (size_t)K * w;
    }
}

SK_AVX2 static inline void mv_cols_avx2(const float *P, int R8, int K, int k0, int k1, const float *v, const float *init,
                                 float *out)
{
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        panel_any(w, blk + (size_t)k0 * w, k1 - k0, v + k0, init + p0, out + p0);
        blk += (size_t)K * w;
    }
}

/* GEMM micro-kernel: 8*NV rows (NV <= 2) of a panel of width w, NT <= 6 tokens: 12 accumulators,
 * 2 weight loads and 6 broadcasts per k (the classic 6x16 shape for 16 ymm registers). */
#define GK_INIT(t, j) __m256 c##t##j = (TT > t && VV > j) ? _mm256_loadu_ps(bias + 8 * j) : _mm256_setzero_ps();
#define GK_ROW(t)                                                                                 \
    if (TT > t) {                                                                                 \
        const __m256 xt = _mm256_broadcast_ss(X + (size_t)t * ldx + k);                           \
        c##t##0 = _mm256_fmadd_ps(w0, xt, c##t##0);                                               \
        if (VV > 1) c##t##1 = _mm256_fmadd_ps(w1, xt, c##t##1);                                   \
    }
#define GK_STORE(t, j) if (TT > t && VV > j) _mm256_storeu_ps(out + (size_t)t * ldo + 8 * j, c##t##j);
#define GEMM_KERNEL(NV, NT)                                                                       \
    SK_AVX2 static void gk_##NV##_##NT(const float *pan, int w, int K, const float *X, size_t ldx,  \
                                      const float *bias, float *out, size_t ldo)                  \
    {                                                                                             \
        enum { VV = NV, TT = NT };                                                                \
        GK_INIT(0, 0) GK_INIT(1, 0) GK_INIT(2, 0) GK_INIT(3, 0) GK_INIT(4, 0) GK_INIT(5, 0)       \
        GK_INIT(0, 1) GK_INIT(1, 1) GK_INIT(2, 1) GK_INIT(3, 1) GK_INIT(4, 1) GK_INIT(5, 1)       \
        for (int k = 0; k < K; k++) {                                                             \
            const float *col = pan + (size_t)k * w;                                               \
            const __m256 w0 = _mm256_loadu_ps(col);                                               \
            const __m256 w1 = (VV > 1) ? _mm256_loadu_ps(col + 8) : _mm256_setzero_ps();          \
            GK_ROW(0) GK_ROW(1) GK_ROW(2) GK_ROW(3) GK_ROW(4) GK_ROW(5)                           \
        }                                                                                         \
        GK_STORE(0, 0) GK_STORE(1, 0) GK_STORE(2, 0) GK_STORE(3, 0) GK_STORE(4, 0) GK_STORE(5, 0) \
        GK_STORE(0, 1) GK_STORE(1, 1) GK_STORE(2, 1) GK_STORE(3, 1) GK_STORE(4, 1) GK_STORE(5, 1) \
    }
GEMM_KERNEL(1, 1) GEMM_KERNEL(1, 2) GEMM_KERNEL(1, 3) GEMM_KERNEL(1, 4) GEMM_KERNEL(1, 5) GEMM_KERNEL(1, 6)
GEMM_KERNEL(2, 1) GEMM_KERNEL(2, 2) GEMM_KERNEL(2, 3) GEMM_KERNEL(2, 4) GEMM_KERNEL(2, 5) GEMM_KERNEL(2, 6)

typedef void (*gk_fn)(const float *, int, int, const float *, size_t, const float *, float *, size_t);
static const gk_fn GK[2][6] = {{gk_1_1, gk_1_2, gk_1_3, gk_1_4, gk_1_5, gk_1_6},
                               {gk_2_1, gk_2_2, gk_2_3, gk_2_4, gk_2_5, gk_2_6}};

/* out[t] = P x[t] + bias for t < n, P in panels of R8 rows and K columns */
SK_AVX2 static void gemm_avx2(const float *P, int R8, int K, const float *X, size_t ldx, int n, const float *bias,
                              float *out, size_t ldo)
{
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        const int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        for (int t0 = 0; t0 < n; t0 += 6) {
            const int nt = n - t0 < 6 ? n - t0 : 6;
            for (int r = 0; r < w; r += 16) {
                const int nv = w - r >= 16 ? 2 : 1;
                GK[nv - 1][nt - 1](blk + r, w, K, X + (size_t)t0 * ldx, ldx, bias + p0 + r,
                                   out + (size_t)t0 * ldo + p0 + r, ldo);
            }
        }
        blk += (size_t)K * w;
    }
}

/* exp (Cephes-style range reduction + degree-6 polynomial, ~1 ulp) on x clamped to [-87.3, 88.3], where
 * 2^n is a normal float (exp below -87.3 returns ~1e-38 instead of less: harmless in 1/(1+e)) */
SK_AVX2 static inline __m256 exp_avx2(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    /* the degree-5 polynomial in Estrin's form (3 dependent steps instead of 5: the gates are latency-bound) */
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 p45 = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), x, _mm256_set1_ps(1.3981999507E-3f));
    const __m256 p23 = _mm256_fmadd_ps(_mm256_set1_ps(8.3334519073E-3f), x, _mm256_set1_ps(4.1665795894E-2f));
    const __m256 p01 = _mm256_fmadd_ps(_mm256_set1_ps(1.6666665459E-1f), x, _mm256_set1_ps(5.0000001201E-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, x2, p23), x2, p01);
    y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_cvtps_epi32(fx);
    __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(y, s);
}

/* 1 / a, correctly rounded.  Not the hardware estimate + a Newton step: its ~1e-7 error has a sign bias
 * that the cell state accumulates (f ~ 1 keeps adding it): on 650-token IMDb reviews the logits drifted by
 * 1e-5 from float64, against 1.5e-6 with the division, which measured no slower here. */
SK_AVX2 static inline __m256 recip_avx2(__m256 a)
{
    return _mm256_div_ps(_mm256_set1_ps(1.0f), a);
}

SK_AVX2 static inline __m256 sigm_avx2(__m256 z)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    return recip_avx2(_mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), z))));
}

/* tanh(z) = 2 sigmoid(2z) - 1 (absolute error ~1e-7) */
SK_AVX2 static inline __m256 tanh_avx2(__m256 z)
{
    const __m256 two = _mm256_set1_ps(2.0f);
    return _mm256_fmsub_ps(two, sigm_avx2(_mm256_mul_ps(two, z)), _mm256_set1_ps(1.0f));
}

/* The gates of 8 units j..j+7 of n (the lanes >= n are computed on whatever follows and not stored:
 * every buffer has 8 floats of slack).  Full-width loads and stores, no masked ones: AMD CPUs run masked
 * stores slowly and cannot forward them to the next step's loads. */
SK_AVX2 static inline void gates_avx2(const float *G, int n, float *c, float *h)
{
    for (int j = 0; j < n; j += 8) {
        const __m256 gi = _mm256_loadu_ps(G + j), gf = _mm256_loadu_ps(G + n + j);
        const __m256 gg = _mm256_loadu_ps(G + 2 * n + j), go = _mm256_loadu_ps(G + 3 * n + j);
        const __m256 c0 = _mm256_loadu_ps(c + j), h0 = _mm256_loadu_ps(h + j);
        __m256 cn = _mm256_fmadd_ps(sigm_avx2(gf), c0, _mm256_mul_ps(sigm_avx2(gi), tanh_avx2(gg)));
        __m256 hn = _mm256_mul_ps(sigm_avx2(go), tanh_avx2(cn));
        if (j + 8 > n) {
            const __m256 keep = _mm256_castsi256_ps(
                _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
            cn = _mm256_blendv_ps(c0, cn, keep);
            hn = _mm256_blendv_ps(h0, hn, keep);
        }
        _mm256_storeu_ps(c + j, cn);
        _mm256_storeu_ps(h + j, hn);
    }
}

SK_AVX2 static float hsum_avx2(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* (a0 . v, a1 . v) in one pass over v */
SK_AVX2 static void dot2_avx2(const float *a0, const float *a1, const float *v, int n, float *r0, float *r1)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m256 v0 = _mm256_loadu_ps(v + k), v1 = _mm256_loadu_ps(v + k + 8);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k), v0, s0);
        t0 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k), v0, t0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k + 8), v1, s1);
        t1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k + 8), v1, t1);
    }
    for (; k + 8 <= n; k += 8) {
        const __m256 v0 = _mm256_loadu_ps(v + k);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k), v0, s0);
        t0 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k), v0, t0);
    }
    float x0 = hsum_avx2(_mm256_add_ps(s0, s1)), x1 = hsum_avx2(_mm256_add_ps(t0, t1));
    for (; k < n; k++) { x0 += a0[k] * v[k]; x1 += a1[k] * v[k]; }
    *r0 = x0;
    *r1 = x1;
}
#endif /* SK_X86 */

/* ------------------------------------------------------------------ dispatch */

static inline void mv(const float *P, int R8, int K, const float *v, const float *init, float *out)
{
#if SK_X86
    if (g_use_avx2) { mv_avx2(P, R8, K, v, init, out); return; }
#endif
    mv_scalar(P, R8, K, v, init, out);
}

static inline void mv_cols(const float *P, int R8, int K, int k0, int k1, const float *v, const float *init,
                           float *out)
{
#if SK_X86
    if (g_use_avx2) { mv_cols_avx2(P, R8, K, k0, k1, v, init, out); return; }
#endif
    mv_cols_scalar(P, R8, K, k0, k1, v, init, out);
}

/* out[t] = P x[t] + bias for t < n (out rows ldo apart) */
static void gemm(const float *P, int R8, int K, const float *X, size_t ldx, int n, const float *bias, float *out,
                 size_t ldo)
{
#if SK_X86
    if (g_use_avx2) { gemm_avx2(P, R8, K, X, ldx, n, bias, out, ldo); return; }
#endif
    const float *blk = P;
    for (int p0 = 0; p0 < R8; p0 += PANEL) {
        const int w = R8 - p0 < PANEL ? R8 - p0 : PANEL;
        for (int t = 0; t < n; t++) mv_scalar(blk, w, K, X + t * ldx, bias + p0, out + t * ldo + p0);
        blk += (size_t)K * w;
    }
}

static inline void gates(const float *G, int n, float *c, float *h)
{
#if SK_X86
    if (g_use_avx2) { gates_avx2(G, n, c, h); return; }
#endif
    gates_scalar(G, n, c, h);
}

static inline void dot2(const float *a0, const float *a1, const float *v, int n, float *r0, float *r1)
{
#if SK_X86
    if (g_use_avx2) { dot2_avx2(a0, a1, v, n, r0, r1); return; }
#endif
    *r0 = dot_scalar(a0, v, n);
    *r1 = dot_scalar(a1, v, n);
}

/* the reference's p_skim = sigmoid(z_skim - z_read), in float32 */
static inline float p_skim(float z_read, float z_skim) { return 1.0f / (1.0f + expf(-(z_skim - z_read))); }

#endif /* SK_SIMD_H */
