/* Compiled AntMan LSTM / Skim-LSTM kernel for skimserve (CPython extension, no numpy headers): the layers of
 * cells 'antman-lstm' and 'antman-skim-lstm', whose big cell's products W_ih x and W_hh h are AntMan modules
 * (service/cells/antman_modules.py is the NumPy oracle; service/engine/fast_antman.py packs and calls).
 *
 * A module is a chain of at most 3 "stages"; a stage is a block-diagonal product of g blocks (rows x cols
 * each; g = 1: a dense matrix), each block packed in the panel layout of _sk_simd.h, optionally followed by
 * the LGP shuffle:
 *   dense        [W]                         lgp-shuffle  [blocks + shuffle]
 *   lgp-dense    [mix, blocks] (n <= m) or [blocks, mix] (m < n)
 *   lowrank-lgp  [in_blocks, mix, out_blocks]
 * - block-diagonal, one token: g panel matvecs, block k reading v[k*cols ..] and writing out[k*rows ..];
 *   many tokens (the input projections of a block of tokens): g panel GEMMs over the tokens.  A block's
 *   output is written r8(rows) long (its padded rows are zero weights: they hold the init value) and the
 *   next block overwrites the overhang, so blocks must run in order and every buffer has 8 floats of slack.
 * - shuffle: y[j*g + k] = init[j*g + k] + V[k*rows + j] (a transpose by index arithmetic; no permutation
 *   matrix, no arithmetic beyond the add of the init).
 * - low-rank middle: a stage with g = 1 (small dense products).
 *
 * Loops (as _skimkernel.c's, same decision rule and the same outputs as the reference's gated loop):
 *   dense form (a plain layer, or a threshold no p_skim can exceed): per block of TBLOCK tokens the input
 *     projections W_ih x_t + b by the batched stages, then per step W_hh h_{t-1} on top and the gates (a skim
 *     layer also gets p_skim: two dot products on x_t and two on h_{t-1}); both products LGP-shuffle with
 *     the same g: no shuffles, the gates block by block (dense_loop_blocks);
 *   skim loop: per step the decision on [x_t; h_{t-1}] (float32 p_skim = 1/(1+expf(-(z_skim - z_read))),
 *     skim iff p_skim > threshold); a skimmed step runs the dense small cell on h[:d'], c[:d']; a read step
 *     the two module products for that token and the gates.  No input projection of a skimmed token.
 *
 * Entry points: run(blob, meta, x, T, threshold, hs, skim, p) -> int (-1: dense form, 0: skim loop);
 * has_avx2(), set_avx2(bool) as in _skimkernel.  The GIL is released while computing.
 * Numerics: float32, sums in another order than NumPy's (agreement to rounding); the gate math is _sk_simd.h's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_sk_simd.h"

/* meta = [version, e, d, ds, skims, off_b, off_sih, off_sbs, off_sh, off_wd, off_bd,
 *         W_ih: n_stages, (g, rows, cols, shuffle, off) x 3,  W_hh: the same]
 * offsets in floats into the blob; b and bs padded to r8(4d) + 8 and r8(4d') + 8 floats; sih / sh: panels of
 * Ws_ih (r8(4d') rows, K = e) and Ws_hh (K = d); wd: Wd row-major (2 x (e + d)); bd: 2 floats.  The skim
 * parts are -1 for a plain layer.  A stage's g blocks are packed one after another, each r8(rows) * cols. */
#define META_VERSION 1
#define MAX_STAGES 3
#define PROD_LEN (1 + 5 * MAX_STAGES)
#define META_LEN (11 + 2 * PROD_LEN)
#define TBLOCK 48

typedef struct {
    int g, rows, cols, shuffle;
    const float *P;        /* block k at P + k * stride */
    size_t stride;
} Stage;

typedef struct {
    int ns, n, m, maxw;    /* stages, input size, output size, widest stage output */
    Stage st[MAX_STAGES];
} Prod;

typedef struct {
    int e, d, ds, skims, RS, maxw;
    const float *b, *sih, *sbs, *sh, *wd, *bd;
    Prod ih, hh;
} Weights;

static int bad(const char *msg)
{
    PyErr_SetString(PyExc_ValueError, msg);
    return 0;
}

static int part(const float *base, Py_ssize_t n, int32_t off, Py_ssize_t size, const float **dst)
{
    if (off < 0 || (Py_ssize_t)off + size > n) return 0;
    *dst = base + off;
    return 1;
}

static int unpack_prod(const int32_t *m, const float *base, Py_ssize_t nblob, int n_in, int n_out, Prod *P)
{
    P->ns = m[0];
    if (P->ns < 1 || P->ns > MAX_STAGES) return bad("meta: a product needs 1 to 3 stages");
    P->n = n_in;
    P->maxw = 0;
    int width = n_in;
    for (int s = 0; s < P->ns; s++) {
        const int32_t *q = m + 1 + 5 * s;
        Stage *st = &P->st[s];
        st->g = q[0]; st->rows = q[1]; st->cols = q[2]; st->shuffle = q[3];
        if (st->g < 1 || st->rows < 1 || st->cols < 1 || st->rows > (1 << 20) || st->cols > (1 << 20) ||
            (st->shuffle != 0 && st->shuffle != 1) || (st->shuffle && s != P->ns - 1))
            return bad("meta: bad stage");
        if ((Py_ssize_t)st->g * st->cols != width) return bad("meta: a stage does not take its input's size");
        st->stride = (size_t)r8(st->rows) * st->cols;
        if (!part(base, nblob, q[4], (Py_ssize_t)st->g * (Py_ssize_t)st->stride, &st->P))
            return bad("meta: a stage lies outside the blob");
        width = st->g * st->rows;
        if (width > P->maxw) P->maxw = width;
    }
    if (width != n_out) return bad("meta: a product's output is not 4d");
    P->m = width;
    return 1;
}

static int unpack(Py_buffer *blob, Py_buffer *meta, Weights *W)
{
    if (meta->len != META_LEN * 4) return bad("meta: wrong length");
    const int32_t *m = (const int32_t *)meta->buf;
    if (m[0] != META_VERSION) return bad("meta: packing version mismatch");
    const int e = m[1], d = m[2], ds = m[3], skims = m[4];
    if (e <= 0 || d <= 0 || ds < 0 || ds >= d || e > (1 << 20) || d > (1 << 20) || (skims != 0 && skims != 1) ||
        (!skims && ds) || (skims && ds < 1))
        return bad("meta: bad sizes");
    W->e = e; W->d = d; W->ds = ds; W->skims = skims; W->RS = r8(4 * ds);
    const float *base = (const float *)blob->buf;
    const Py_ssize_t n = blob->len / 4;
    if (!part(base, n, m[5], r8(4 * d) + 8, &W->b)) return bad("meta: b outside the blob");
    W->sih = W->sbs = W->sh = W->wd = W->bd = NULL;
    if (skims && (!part(base, n, m[6], (Py_ssize_t)W->RS * e, &W->sih) ||
                  !part(base, n, m[7], W->RS + 8, &W->sbs) || !part(base, n, m[8], (Py_ssize_t)W->RS * d, &W->sh) ||
                  !part(base, n, m[9], 2 * (Py_ssize_t)(e + d), &W->wd) || !part(base, n, m[10], 2, &W->bd)))
        return bad("meta: a skim part lies outside the blob");
    if (!unpack_prod(m + 11, base, n, e, 4 * d, &W->ih) || !unpack_prod(m + 11 + PROD_LEN, base, n, d, 4 * d, &W->hh))
        return 0;
    W->maxw = W->ih.maxw > W->hh.maxw ? W->ih.maxw : W->hh.maxw;
    return 1;
}

/* ------------------------------------------------------------------ one module product */

/* out = init + A v.  t0, t1: scratch of maxw + 8 floats; zeros: maxw + 8 zeros.  out must not be t0 / t1. */
static void apply_vec(const Prod *A, const float *v, const float *init, float *out, float *t0, float *t1,
                      const float *zeros)
{
    const float *in = v;
    for (int s = 0; s < A->ns; s++) {
        const Stage *st = &A->st[s];
        const int last = s == A->ns - 1, direct = last && !st->shuffle;
        float *dst = direct ? out : (s & 1 ? t1 : t0);
        const float *ini = direct ? init : zeros;
        const int R8 = r8(st->rows);
        for (int k = 0; k < st->g; k++)   /* in order: block k+1 overwrites block k's overhang */
            mv(st->P + k * st->stride, R8, st->cols, in + (size_t)k * st->cols, ini + (size_t)k * st->rows,
               dst + (size_t)k * st->rows);
        if (last && st->shuffle) {
            const int g = st->g, rows = st->rows;
            for (int j = 0; j < rows; j++)
                for (int k = 0; k < g; k++) out[j * g + k] = init[j * g + k] + dst[k * rows + j];
        }
        in = dst;
    }
}

/* out[t] = bias + A X[t] for t < n (rows ldx / ldo apart).  T0, T1: n x ldt scratch (ldt >= maxw + 8),
 * zeros: maxw + 8 zeros, bias: m + 8 floats.  unshuffled: a final shuffle is left out (out and bias in the
 * block order, see block_local). */
static void apply_batch(const Prod *A, const float *X, size_t ldx, int n, const float *bias, float *out,
                        size_t ldo, float *T0, float *T1, size_t ldt, const float *zeros, int unshuffled)
{
    const float *in = X;
    size_t ldi = ldx;
    for (int s = 0; s < A->ns; s++) {
        const Stage *st = &A->st[s];
        const int last = s == A->ns - 1, direct = last && (!st->shuffle || unshuffled);
        float *dst = direct ? out : (s & 1 ? T1 : T0);
        const size_t ldd = direct ? ldo : ldt;
        const float *bia = direct ? bias : zeros;
        const int R8 = r8(st->rows);
        for (int k = 0; k < st->g; k++)
            gemm(st->P + k * st->stride, R8, st->cols, in + (size_t)k * st->cols, ldi, n,
                 bia + (size_t)k * st->rows, dst + (size_t)k * st->rows, ldd);
        if (last && st->shuffle && !unshuffled) {
            const int g = st->g, rows = st->rows;
            for (int t = 0; t < n; t++) {
                const float *V = dst + (size_t)t * ldd;
                float *o = out + (size_t)t * ldo;
                for (int j = 0; j < rows; j++)
                    for (int k = 0; k < g; k++) o[j * g + k] = bias[j * g + k] + V[k * rows + j];
            }
        }
        in = dst;
        ldi = ldd;
    }
}

/* ------------------------------------------------------------------ the two loops */

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

static inline size_t r16(size_t n) { return (n + 15) & ~(size_t)15; }

typedef struct {
    float *h, *c, *G, *A, *S, *t0, *t1, *zeros, *XP, *T0, *T1;
    size_t ldp, ldt;
} Buffers;

static int buffers(const Weights *W, int batch, Buffers *B)
{
    const size_t nh = r16(W->d + 8), nG = r16(r8(4 * W->d) + 8), nS = r16(W->RS + 8), nw = r16(W->maxw + 8);
    B->ldp = nG;
    B->ldt = nw;
    const size_t nbatch = batch ? (size_t)TBLOCK * (nG + 2 * nw) : 0;
    const size_t total = 2 * nh + 2 * nG + nS + 3 * nw + nbatch;
    float *ws = workspace(total);
    if (!ws) return 0;
    memset(ws, 0, (2 * nh + 2 * nG + nS + 3 * nw) * sizeof(float));   /* h, c = 0; zeros */
    B->h = ws; B->c = B->h + nh; B->G = B->c + nh; B->A = B->G + nG; B->S = B->A + nG;
    B->t0 = B->S + nS; B->t1 = B->t0 + nw; B->zeros = B->t1 + nw;
    B->XP = B->zeros + nw; B->T0 = B->XP + (size_t)TBLOCK * nG; B->T1 = B->T0 + (size_t)TBLOCK * nw;
    return 1;
}

static inline float decision(const Weights *W, const float *x, const float *h)
{
    const int e = W->e, d = W->d;
    const float *wd = W->wd;   /* row 0: z_read, row 1: z_skim; [x-part (e) | h-part (d)] */
    float ax0, ax1, ah0, ah1;
    dot2(wd, wd + e + d, x, e, &ax0, &ax1);
    dot2(wd + e, wd + e + d + e, h, d, &ah0, &ah1);
    return p_skim(W->bd[0] + ax0 + ah0, W->bd[1] + ax1 + ah1);
}

/* The dense form without shuffles, for W_hh an LGP-shuffle and W_ih ending in the same shuffle (g blocks of
 * rows = 4c, c = d / g).  The shuffle sends row j = q*c + i of block k to gate q of unit i*g + k, so each
 * block's output holds the four gates of its own c units: the gates run block by block on the block's
 * output (in L1), the cell state is kept in that block order, and only h is put back in unit order (d
 * floats a step, where the shuffles moved 4d for each product).  The blocks are independent, so they run
 * forwards and backwards on alternate steps: the start of W_hh, still in L2 from the step before, is read
 * first (W_hh is about L2's size at d = 800, g = 10; a cyclic sweep of a cache-sized array misses
 * throughout).  The input projections are the blocks' outputs unshuffled, the bias permuted alike. */
static int block_local(const Weights *W)
{
    const Stage *sh = &W->hh.st[0], *sx = &W->ih.st[W->ih.ns - 1];
    return W->hh.ns == 1 && sh->shuffle && sx->shuffle && sx->g == sh->g && sx->rows == sh->rows &&
           sh->rows % 4 == 0 && (sh->rows / 4) * sh->g == W->d;
}

static void dense_loop_blocks(const Weights *W, const float *x, int T, float *hs, float *p, const Buffers *B)
{
    const int e = W->e, d = W->d;
    const Stage *st = &W->hh.st[0];
    const int g = st->g, rows = st->rows, c = rows / 4, cols = st->cols, R8 = r8(rows);
    float *bv = B->A, *hb = B->h;   /* bias in block order (A is free in the dense form); h in block order */
    for (int k = 0; k < g; k++)
        for (int j = 0; j < rows; j++) bv[k * rows + j] = W->b[j * g + k];
    for (int t0 = 0; t0 < T; t0 += TBLOCK) {
        const int n = T - t0 < TBLOCK ? T - t0 : TBLOCK;
        apply_batch(&W->ih, x + (size_t)t0 * e, (size_t)e, n, bv, B->XP, B->ldp, B->T0, B->T1, B->ldt, B->zeros, 1);
        for (int i = 0; i < n; i++) {
            const int t = t0 + i;
            const float *hp = t ? hs + (size_t)(t - 1) * d : B->zeros;   /* h_{t-1} in unit order */
            if (W->skims) p[t] = decision(W, x + (size_t)t * e, hp);
            const float *xp = B->XP + (size_t)i * B->ldp;
            for (int q = 0; q < g; q++) {
                const int k = t & 1 ? g - 1 - q : q;
                mv(st->P + k * st->stride, R8, cols, hp + (size_t)k * cols, xp + (size_t)k * rows, B->G);
                gates(B->G, c, B->c + (size_t)k * c, hb + (size_t)k * c);
            }
            float *ht = hs + (size_t)t * d;
            for (int j = 0; j < c; j++)
                for (int k = 0; k < g; k++) ht[j * g + k] = hb[k * c + j];
        }
    }
}

static int dense_loop(const Weights *W, const float *x, int T, float *hs, float *p)
{
    const int e = W->e, d = W->d;
    Buffers B;
    if (!buffers(W, 1, &B)) return -1;
    if (block_local(W)) {
        dense_loop_blocks(W, x, T, hs, p, &B);
        return 0;
    }
    for (int t0 = 0; t0 < T; t0 += TBLOCK) {
        const int n = T - t0 < TBLOCK ? T - t0 : TBLOCK;
        apply_batch(&W->ih, x + (size_t)t0 * e, (size_t)e, n, W->b, B.XP, B.ldp, B.T0, B.T1, B.ldt, B.zeros, 0);
        for (int i = 0; i < n; i++) {
            const int t = t0 + i;
            if (W->skims) p[t] = decision(W, x + (size_t)t * e, B.h);
            apply_vec(&W->hh, B.h, B.XP + (size_t)i * B.ldp, B.G, B.t0, B.t1, B.zeros);
            gates(B.G, d, B.c, B.h);
            memcpy(hs + (size_t)t * d, B.h, (size_t)d * sizeof(float));
        }
    }
    return 0;
}

static int skim_loop(const Weights *W, const float *x, int T, float thr, float *hs, uint8_t *skim, float *p)
{
    const int e = W->e, d = W->d, ds = W->ds, RS = W->RS;
    Buffers B;
    if (!buffers(W, 0, &B)) return -1;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * e;
        const float ps = decision(W, xt, B.h);
        const int sk = ps > thr;
        p[t] = ps;
        skim[t] = (uint8_t)sk;
        if (sk) {   /* the small cell: sees the whole h_{t-1}, updates h[:d'], c[:d'] */
            mv(W->sih, RS, e, xt, W->sbs, B.S);
            mv(W->sh, RS, d, B.h, B.S, B.S);
            gates(B.S, ds, B.c, B.h);
        } else {
            apply_vec(&W->ih, xt, W->b, B.A, B.t0, B.t1, B.zeros);
            apply_vec(&W->hh, B.h, B.A, B.G, B.t0, B.t1, B.zeros);
            gates(B.G, d, B.c, B.h);
        }
        memcpy(hs + (size_t)t * d, B.h, (size_t)d * sizeof(float));
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

static PyObject *py_run(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer blob, meta, x, hs, sk, p;
    int T;
    float thr;
    if (!PyArg_ParseTuple(args, "y*y*y*ifw*w*w*", &blob, &meta, &x, &T, &thr, &hs, &sk, &p)) return NULL;
    PyObject *ret = NULL;
    Weights W;
    if (!unpack(&blob, &meta, &W)) goto done;
    if (T < 0) { PyErr_SetString(PyExc_ValueError, "T < 0"); goto done; }
    if (!need(&x, (Py_ssize_t)T * W.e * 4, "x") || !need(&hs, (Py_ssize_t)T * W.d * 4, "hs") ||
        !need(&sk, T, "skim") || !need(&p, (Py_ssize_t)T * 4, "p"))
        goto done;
    const int dense = !W.skims || !(thr < 1.0f);   /* !(thr < 1): thr >= 1 or NaN, no p_skim exceeds it */
    int rc;
    Py_BEGIN_ALLOW_THREADS
    if (dense) {
        memset(sk.buf, 0, (size_t)T);
        if (!W.skims) memset(p.buf, 0, (size_t)T * 4);
        rc = dense_loop(&W, x.buf, T, hs.buf, p.buf);
    } else {
        rc = skim_loop(&W, x.buf, T, thr, hs.buf, sk.buf, p.buf);
    }
    Py_END_ALLOW_THREADS
    if (rc) { PyErr_NoMemory(); goto done; }
    ret = PyLong_FromLong(dense ? -1 : 0);
done:
    PyBuffer_Release(&blob); PyBuffer_Release(&meta); PyBuffer_Release(&x);
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
    {"run", py_run, METH_VARARGS, "One AntMan layer: the dense form or the skim loop (see the source)."},
    {"has_avx2", py_has_avx2, METH_NOARGS, "True if the AVX2+FMA path is in use."},
    {"set_avx2", py_set_avx2, METH_VARARGS, "Enable (if the CPU allows) or disable the AVX2 path; returns the state."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_antmankernel", "Compiled AntMan LSTM kernel.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__antmankernel(void)
{
#if SK_X86
    __builtin_cpu_init();
    g_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return PyModule_Create(&moddef);
}
