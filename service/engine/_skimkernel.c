/* Compiled per-token Skim-LSTM / LSTM / skip-LSTM (d' = 0) kernel for skimserve (CPython extension, no numpy
 * headers).
 *
 * Built by setup.py (`pip install -e .`) with -O3 and no -march flag: the AVX2+FMA functions are compiled
 * with a target attribute and chosen at run time (__builtin_cpu_supports); other CPUs run the portable
 * scalar path.  service/engine/fast.py packs the weights and calls the entry points below.
 *
 * Layout.  The Python side packs each weight matrix once into "panels": the rows of an (R, K) matrix are
 * padded with zeros to a multiple of 8 and cut into panels of at most 64 rows; a panel is stored column by
 * column (K x width floats, contiguous).  A matvec then streams the weights linearly and keeps one AVX2
 * accumulator per 8 rows in registers (no horizontal sums); the input projection of many tokens (a GEMM)
 * runs panel by panel, 16 rows x 6 tokens at a time, while the panel sits in L1.
 * Gate order inside a gate vector is PyTorch's i, f, g, o, each block n long (n = d or d').
 *
 * Entry points (arrays are C-contiguous float32 buffers unless stated; blob/meta: see unpack()):
 *   run(blob, meta, x, T, threshold, mask, hs, skim, p, pre_reads[, allowance, read_cost, skim_cost]) -> int
 *       hs: T x d floats (every state), or exactly d floats for the last state only (a classifier's head
 *       reads nothing else: no T x d buffer to fault in per request).
 *       one layer in its cheaper form: dense_loop when no token can be skimmed (plain LSTM, threshold >= 1
 *       or NaN, no budget; returns -1), else the per-token skim loop (skim_loop; returns how many
 *       input-projection windows it computed).  mask: empty -> decide by threshold; T bytes -> forced
 *       decisions (benchmarks).  allowance >= 0: the FLOP budget (service/engine/budget.py, integers): a
 *       read step happens only if spent + read_cost + (T - t - 1) * skim_cost <= allowance; -1: none.
 *   has_avx2() -> bool: which code path runs;  set_avx2(bool) -> bool: force the scalar path (tests).
 * The GIL is released while computing.  Work buffers live in a per-thread work space reused across calls.
 *
 * Numerics: float32 throughout, sums in another order than NumPy's (agreement to rounding, ~1e-7); the
 * AVX2 gate math uses a Cephes-style exp (~1 ulp) and correctly rounded divisions.
 * p_skim itself is computed as the reference does, 1 / (1 + expf(-(z_skim - z_read))) in scalar float32,
 * and the decision is the canonical float32(p_skim) > float32(threshold).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_sk_simd.h"  /* the float32 primitives (matvec, GEMM, gates, dot products), shared with _antmankernel.c */

/* ------------------------------------------------------------------ packed weights */

/* The Python side passes one float32 blob holding every packed part and an int32 "meta" array:
 * meta = [version, e, d, ds, skims, off_big_x, off_big_h, off_big_b, off_sx, off_sx_b, off_sh, off_wdh]
 * (offsets in floats; skims = 1 for a layer with a decision layer; the skim-only offsets are -1 for a plain
 * LSTM layer, skims = 0 and ds = 0).  A skim layer with ds = 0 is a skip layer: a skimmed (skipped) step
 * carries h and c over and costs only the decision (sh is empty, RS = 0).  RB = r8(4d),
 * RS = r8(4d'), RX = RS + 8 (the decision's two rows sit at RS, RS+1 of the small parts):
 *   big_x   panels of W_ih                      RB rows, K = e       (input projections as a GEMM)
 *   big_h   panels of W_hh                      RB rows, K = d
 *   big_b   b padded to RB
 *   sx      panels of [Ws_ih ; 0 ; Wd[:, :e]]   RX rows, K = e: input parts of the small cell and the
 *           decision, for all tokens in one GEMM (the decision needs its part on every step)
 *   sx_b    [bs ; 0 ; bd ; 0]                   RX
 *   sh      panels of Ws_hh                     RS rows, K = d: the small cell's recurrent part
 *   wdh     Wd[:, e:] (2 x d, row-major)        the decision's recurrent part (two dot products) */
#define META_LEN 12
#define META_VERSION 5
#define N_PARTS 7

typedef struct {
    int e, d, ds, skims, RB, RS, RX;
    const float *big_x, *big_h, *big_b, *sx, *sx_b, *sh, *wdh;
} Weights;

static int unpack(Py_buffer *blob, Py_buffer *meta, Weights *W)
{
    if (meta->len != META_LEN * 4) { PyErr_SetString(PyExc_ValueError, "meta: expected 12 int32"); return 0; }
    const int32_t *m = (const int32_t *)meta->buf;
    if (m[0] != META_VERSION) { PyErr_SetString(PyExc_ValueError, "meta: packing version mismatch"); return 0; }
    const int e = m[1], d = m[2], ds = m[3], skims = m[4];
    if (e <= 0 || d <= 0 || ds < 0 || ds >= d || e > (1 << 20) || d > (1 << 20) || (skims != 0 && skims != 1) ||
        (!skims && ds)) {
        PyErr_SetString(PyExc_ValueError, "meta: bad sizes");
        return 0;
    }
    W->e = e; W->d = d; W->ds = ds; W->skims = skims; W->RB = r8(4 * d);
    W->RS = r8(4 * ds);
    W->RX = skims ? W->RS + 8 : 0;
    const Py_ssize_t n = blob->len / 4;
    const float *base = (const float *)blob->buf;
    const Py_ssize_t RB = W->RB, RX = W->RX;
    const Py_ssize_t sizes[N_PARTS] = {RB * e, RB * d, RB, RX * e, RX, W->RS * d, 2 * (Py_ssize_t)d};
    const float **dst[N_PARTS] = {&W->big_x, &W->big_h, &W->big_b, &W->sx, &W->sx_b, &W->sh, &W->wdh};
    for (int i = 0; i < N_PARTS; i++) {
        const Py_ssize_t off = m[5 + i];
        *dst[i] = NULL;
        if (i >= 3 && !skims) continue;            /* plain LSTM: no skim parts */
        if (off < 0 || off + sizes[i] > n) {
            PyErr_Format(PyExc_ValueError, "meta: part %d out of the blob", i);
            return 0;
        }
        *dst[i] = base + off;
    }
    return 1;
}

/* ------------------------------------------------------------------ the two loops */

#define CHUNK 6    /* the GEMM micro-kernel's token count: one pass over W_ih serves 6 tokens */
#define TBLOCK 96  /* tokens per block of precomputed input projections (a multiple of CHUNK) */

/* Per-thread work space, grown on demand and reused across calls: no allocation per call or per token,
 * and no fresh pages to fault in (a call's buffers are bounded by TBLOCK, not by T). */
static __thread float *g_ws = NULL;
static __thread size_t g_ws_cap = 0;

static float *workspace(size_t nfloats)
{
    if (nfloats > g_ws_cap) {
        free(g_ws);
        /* 64-byte aligned: the buffers carved from it sit 64 bytes apart, so their 32-byte loads never
         * straddle cache lines */
        g_ws = SK_ALIGNED_ALLOC((nfloats * sizeof(float) + 64 + 63) / 64 * 64);
        g_ws_cap = g_ws ? nfloats : 0;
    }
    return g_ws;
}

static inline size_t r16(size_t n) { return (n + 15) & ~(size_t)15; }  /* 64-byte steps between buffers */

/* Per-token Skim-LSTM loop.
 * Per block of TBLOCK tokens: XS = input parts of the small cell and of the decision (one GEMM).
 * Every step: the decision's logits z = XS[t][RS:RS+2] + Wd_h h_{t-1} (two dot products) and the small
 * cell's gate inputs S = XS[t][:RS] + Ws_hh h_{t-1} (one small matvec, independent of the decision: both
 * run together; their parts over h[d':] kept across skims, below), p_skim, the decision; then a skim
 * step applies the small cell's gates to S (h[:d'], c[:d']
 * change; with d' = 0, a skip layer, there is no small cell: the step is the decision only, h and c carry
 * over) and a read step runs the big cell in the cheaper of two forms:
 *   (A) W_ih x_t + b, then + W_hh h_{t-1}: two matvecs streaming the big weights, nothing precomputed;
 *   (B) W_hh h_{t-1} on top of a precomputed input projection.  At a read step not yet covered, when at
 *       least pre_reads of the last CHUNK steps (this one included) were reads, the input projections of
 *       tokens t .. t+CHUNK-1 are computed by one GEMM pass (about the cost of two form-A input matvecs,
 *       for CHUNK tokens), and the reads among them use form B.
 * Reads in runs are thus served at GEMM speed and isolated reads stream the weights once; the choice
 * depends only on the sequence's own decisions (deterministic).  Both forms compute the same sums in
 * another order.  FLOPs beyond service/flops.py's count: the small cell's recurrent matvec over h[:d'] on
 * read steps (8 d'^2 per read) and, in form B, the projections of tokens of a window that end up skimmed.
 * FLOPs below it: along a run of skims, the decision's and the small cell's parts over h[d':] are computed
 * once, after the read before it (a skim step leaves h[d':] as it was), so a skim step costs about
 * d'/d of the count's recurrent part. */
typedef struct { long long allowance, read, skim; } Budget;  /* allowance < 0: no budget */

static int skim_loop(const Weights *W, const float *x, int T, float thr, const uint8_t *mask, int pre_reads,
                     const Budget *B, float *hs, size_t hs_step, uint8_t *skim, float *p, int *n_pre)
{
    const int e = W->e, d = W->d, ds = W->ds, RB = W->RB, RS = W->RS, RX = W->RX;
    const size_t nh = r16(d + 8), nG = r16(RB + 8), nS = r16(RS + 8), nXS = r16((size_t)TBLOCK * RX + 8);
    float *ws = workspace(2 * nh + nG + 4 * nS + nXS + r16((size_t)CHUNK * RB + 8));
    if (!ws) return -1;
    float *h = ws, *c = h + nh, *G = c + nh, *S = G + nG, *SB = S + nS, *SI = SB + nS, *Z = SI + nS;
    float *XS = Z + nS, *XB = XS + nXS;
    memset(ws, 0, (2 * nh + nG + 4 * nS) * sizeof(float));
    unsigned recent = 0;                       /* bit i: step t-i was a read */
    int pre_from = 0, pre_to = 0, pre_windows = 0;
    long long spent = 0;
    /* A skim step changes h[:d'] only, so the parts of the decision and of the small cell's recurrent
     * matvec over h[d':] (zb0, zb1, SB) stay valid along a run of skims: computed again only after a read
     * (stale), each step then adds the parts over h[:d'] (d' of d columns). The sums run in another order
     * than one pass over h (agreement to rounding, as before). */
    float zb0 = 0.0f, zb1 = 0.0f;
    int stale = 1;
    for (int t = 0; t < T; t++) {
        const int tb = t % TBLOCK;
        if (tb == 0) {
            const int n = T - t < TBLOCK ? T - t : TBLOCK;
            gemm(W->sx, RX, e, x + (size_t)t * e, (size_t)e, n, W->sx_b, XS, (size_t)RX);
        }
        const float *xs = XS + (size_t)tb * RX;
        if (stale) {
            dot2(W->wdh + ds, W->wdh + d + ds, h + ds, d - ds, &zb0, &zb1);
            if (ds) mv_cols(W->sh, RS, d, ds, d, h, Z, SB);
            stale = 0;
        }
        float z0, z1;
        dot2(W->wdh, W->wdh + d, h, ds, &z0, &z1);
        z0 += zb0;
        z1 += zb1;
        if (ds) {
            for (int r = 0; r < RS; r++) SI[r] = xs[r] + SB[r];
            mv_cols(W->sh, RS, d, 0, ds, h, SI, S);
        }
        const float ps = p_skim(xs[RS] + z0, xs[RS + 1] + z1);
        int sk = mask ? (mask[t] != 0) : (ps > thr);
        if (B->allowance >= 0) {   /* the budget caps: read only if the rest can still be skimmed within it */
            if (!sk && spent + B->read + (long long)(T - t - 1) * B->skim > B->allowance) sk = 1;
            spent += sk ? B->skim : B->read;
        }
        p[t] = ps;
        skim[t] = (uint8_t)sk;
        recent = ((recent << 1) | (unsigned)!sk) & ((1u << CHUNK) - 1);
        if (sk) {
            if (ds) gates(S, ds, c, h);    /* only h[:d'], c[:d'] change; d' = 0 (skip): nothing does */
        } else {
            if (t >= pre_to && __builtin_popcount(recent) >= pre_reads) {
                const int n = T - t < CHUNK ? T - t : CHUNK;
                gemm(W->big_x, RB, e, x + (size_t)t * e, (size_t)e, n, W->big_b, XB, (size_t)RB);
                pre_from = t;
                pre_to = t + n;
                pre_windows++;
            }
            if (t < pre_to) {
                mv(W->big_h, RB, d, h, XB + (size_t)(t - pre_from) * RB, G);
            } else {
                mv(W->big_x, RB, e, x + (size_t)t * e, W->big_b, G);
                mv(W->big_h, RB, d, h, G, G);
            }
            gates(G, d, c, h);
            stale = 1;
        }
        if (hs_step || t == T - 1) memcpy(hs + (size_t)t * hs_step, h, (size_t)d * sizeof(float));
    }
    if (n_pre) *n_pre = pre_windows;
    return 0;
}

/* Every token read: per block of TBLOCK tokens, the input projections as one GEMM, then per step W_hh h_{t-1}
 * and the gates.  A skim layer (decide != 0) also gets p_skim (its input part from the same kind of GEMM). */
static int dense_loop(const Weights *W, const float *x, int T, int decide, float *hs, size_t hs_step, float *p)
{
    const int e = W->e, d = W->d, RB = W->RB, RS = W->RS, RX = W->RX;
    const size_t nh = r16(d + 8), nG = r16(RB + 8), nXP = r16((size_t)TBLOCK * RB + 8);
    float *ws = workspace(2 * nh + nG + nXP + (decide ? r16((size_t)TBLOCK * RX + 8) : 0));
    if (!ws) return -1;
    float *h = ws, *c = h + nh, *G = c + nh, *XP = G + nG, *XS = XP + nXP;
    memset(ws, 0, (2 * nh + nG) * sizeof(float));
    for (int t = 0; t < T; t++) {
        const int tb = t % TBLOCK;
        if (tb == 0) {
            const int n = T - t < TBLOCK ? T - t : TBLOCK;
            gemm(W->big_x, RB, e, x + (size_t)t * e, (size_t)e, n, W->big_b, XP, (size_t)RB);
            if (decide) gemm(W->sx, RX, e, x + (size_t)t * e, (size_t)e, n, W->sx_b, XS, (size_t)RX);
        }
        if (decide) {
            const float *xs = XS + (size_t)tb * RX;
            float z0, z1;
            dot2(W->wdh, W->wdh + d, h, d, &z0, &z1);
            p[t] = p_skim(xs[RS] + z0, xs[RS + 1] + z1);
        }
        mv(W->big_h, RB, d, h, XP + (size_t)tb * RB, G);
        gates(G, d, c, h);
        if (hs_step || t == T - 1) memcpy(hs + (size_t)t * hs_step, h, (size_t)d * sizeof(float));
    }
    return 0;
}

/* ------------------------------------------------------------------ Python wrappers */

static int need(Py_buffer *b, Py_ssize_t nbytes, const char *what)
{
    if (b->len < nbytes) {
        PyErr_Format(PyExc_ValueError, "%s: buffer has %zd bytes, need %zd", what, b->len, nbytes);
        return 0;
    }
    return 1;
}

/* run(blob, meta, x, T, threshold, mask, hs, skim, p, pre_reads) -> int: the layer's cheaper form.
 * A plain LSTM layer, or a skim layer whose threshold cannot be exceeded (float32 threshold >= 1 or NaN:
 * p_skim <= 1 is never greater), runs dense_loop and returns -1; otherwise skim_loop, which returns how
 * many input-projection windows it computed.  mask (T bytes, skim layers only) forces the decisions. */
static PyObject *py_run(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer blob, meta, x, mask, hs, sk, p;
    int T, pre_reads;
    float thr;
    Budget B = {-1, 0, 0};
    if (!PyArg_ParseTuple(args, "y*y*y*ify*w*w*w*i|LLL", &blob, &meta, &x, &T, &thr, &mask, &hs, &sk, &p,
                          &pre_reads, &B.allowance, &B.read, &B.skim))
        return NULL;
    PyObject *ret = NULL;
    Weights W;
    if (!unpack(&blob, &meta, &W)) goto done;
    if (T < 0) { PyErr_SetString(PyExc_ValueError, "T < 0"); goto done; }
    /* hs of exactly d floats: the last state only (hs_step 0) */
    const size_t hs_step = (hs.len == (Py_ssize_t)W.d * 4 && T > 1) ? 0 : (size_t)W.d;
    if (!need(&x, (Py_ssize_t)T * W.e * 4, "x") || !need(&hs, (Py_ssize_t)(hs_step ? T : 1) * W.d * 4, "hs") ||
        !need(&sk, T, "skim") || !need(&p, (Py_ssize_t)T * 4, "p"))
        goto done;
    if (mask.len != 0 && (!W.skims || !need(&mask, T, "mask"))) {
        if (!W.skims) PyErr_SetString(PyExc_ValueError, "forced decisions need a skim layer");
        goto done;
    }
    if (B.allowance >= 0 && (!W.skims || B.read < 0 || B.skim < 0)) {
        PyErr_SetString(PyExc_ValueError, W.skims ? "budget: negative step cost" : "a budget needs a skim layer");
        goto done;
    }
    /* !(thr < 1): thr >= 1 or NaN */
    const int dense = !W.skims || (mask.len == 0 && !(thr < 1.0f) && B.allowance < 0);
    int rc, n_pre = -1;
    Py_BEGIN_ALLOW_THREADS
    if (dense) {
        memset(sk.buf, 0, (size_t)T);
        if (!W.skims) memset(p.buf, 0, (size_t)T * 4);
        rc = dense_loop(&W, x.buf, T, W.skims, hs.buf, hs_step, p.buf);
    } else {
        rc = skim_loop(&W, x.buf, T, thr, mask.len ? (const uint8_t *)mask.buf : NULL, pre_reads, &B, hs.buf,
                       hs_step, sk.buf, p.buf, &n_pre);
    }
    Py_END_ALLOW_THREADS
    if (rc) { PyErr_NoMemory(); goto done; }
    ret = PyLong_FromLong(n_pre);
done:
    PyBuffer_Release(&blob); PyBuffer_Release(&meta); PyBuffer_Release(&x); PyBuffer_Release(&mask);
    PyBuffer_Release(&hs); PyBuffer_Release(&sk); PyBuffer_Release(&p);
    return ret;
}

static PyObject *py_has_avx2(PyObject *self, PyObject *args)
{
    (void)self; (void)args;
    return PyBool_FromLong(g_use_avx2);
}

static PyObject *py_set_avx2(PyObject *self, PyObject *args)
{
    (void)self;
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
#if SK_X86
    g_use_avx2 = on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    (void)on;
    g_use_avx2 = 0;
#endif
    return PyBool_FromLong(g_use_avx2);
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "One layer in its cheaper form: the skim loop or the dense form (see the source)."},
    {"has_avx2", py_has_avx2, METH_NOARGS, "True if the AVX2+FMA path is in use."},
    {"set_avx2", py_set_avx2, METH_VARARGS, "Enable (if the CPU allows) or disable the AVX2 path; returns the state."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_skimkernel", "Compiled Skim-LSTM kernel.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__skimkernel(void)
{
#if SK_X86
    __builtin_cpu_init();
    g_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return PyModule_Create(&moddef);
}
