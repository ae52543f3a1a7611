/* The tokenizer's regex (service/tokenizer.py, _TOKEN_RE) as a one-pass scanner.
 *
 * On ASCII input Python's `re` classes are simple ("\w" = [A-Za-z0-9_], "\s" = the characters for which
 * str.isspace() is true: \t \n \v \f \r \x1c-\x1f and space), so each alternative of the pattern can be
 * decided by looking at the run of word characters under the cursor. The alternatives, in the pattern's
 * order (the first that matches at a position wins, as in re.finditer):
 *   br   <br\s*\/?>                       skipped
 *   1    \w+(?=n't\b)                     "do" of "don't"
 *   2    n't\b
 *   3    \w+(?='(?:s|re|ve|ll|d|m)\b)     "it" of "it's"
 *   4    '(?:s|re|ve|ll|d|m)\b
 *   5    \w+(?:[-.']\w+)*
 *   6    \.\.\.
 *   7    [^\w\s]
 * Matching is case-insensitive; tokens come out lower-cased, with their [start, end) offsets (ASCII: the
 * lower-cased text has the same offsets). Other text is folded to one byte per character first
 * (fold_unicode) and runs through the same machine. tests/test_tokenizer_fast.py checks this scanner against the regex token for token
 * on every text of every shipped dataset and on generated strings of the tricky characters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static unsigned char is_word[128], is_space[128];

static void init_tables(void) {
    for (int c = 0; c < 128; c++) {
        is_word[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        is_space[c] = c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
    }
}

#define W(i) ((i) < n && is_word[s[i]])
#define S(i) ((i) < n && is_space[s[i]])
#define AT(i, ch) ((i) < n && s[i] == (ch))
/* \b after a word character at i-1: the end, or a non-word character at i */
#define BOUNDARY(i) (!W(i))

/* Length of the contraction suffix s|re|ve|ll|d|m starting at i (after the apostrophe), followed by \b;
 * 0 when there is none. The alternatives differ in their first letter, so at most one can match. */
static Py_ssize_t suffix_len(const unsigned char *s, Py_ssize_t n, Py_ssize_t i) {
    Py_ssize_t len = 0;
    if (AT(i, 's') || AT(i, 'd') || AT(i, 'm')) len = 1;
    else if ((AT(i, 'r') || AT(i, 'v')) && AT(i + 1, 'e')) len = 2;
    else if (AT(i, 'l') && AT(i + 1, 'l')) len = 2;
    return (len && BOUNDARY(i + len)) ? len : 0;
}

/* The pattern's alternatives over s[0:n] (lower-cased ASCII, or the folded form of other text, see
 * fold_unicode): appends int32 (start, end) pairs to spans (room for one token per character). */
#define EMIT(a, b) do { spans[2 * count] = (int32_t)(a); spans[2 * count + 1] = (int32_t)(b); count++; } while (0)

static Py_ssize_t machine(const unsigned char *s, Py_ssize_t n, int32_t *spans) {
    Py_ssize_t count = 0, p = 0;
    while (p < n) {
        unsigned char c = s[p];
        if (c == '<' && AT(p + 1, 'b') && AT(p + 2, 'r')) {   /* br: <br\s*\/?> */
            Py_ssize_t q = p + 3;
            while (S(q)) q++;
            if (AT(q, '/')) q++;
            if (AT(q, '>')) { p = q + 1; continue; }
        }
        if (is_word[c]) {
            Py_ssize_t q = p;             /* end of the word run */
            while (W(q)) q++;
            /* 1: the run ends "...n" followed by 't and \b, and "n" is not the whole run */
            if (q - 1 > p && s[q - 1] == 'n' && AT(q, '\'') && AT(q + 1, 't') && BOUNDARY(q + 2)) {
                EMIT(p, q - 1);
                p = q - 1;
                continue;
            }
            /* 2: n't\b here */
            if (c == 'n' && AT(p + 1, '\'') && AT(p + 2, 't') && BOUNDARY(p + 3)) {
                EMIT(p, p + 3);
                p += 3;
                continue;
            }
            /* 3: the run followed by a contraction suffix */
            if (AT(q, '\'') && suffix_len(s, n, q + 1)) {
                EMIT(p, q);
                p = q;
                continue;
            }
            /* 5: runs joined by single - . ' (greedy; nothing follows it in the pattern) */
            while ((AT(q, '-') || AT(q, '.') || AT(q, '\'')) && W(q + 1)) {
                q += 1;
                while (W(q)) q++;
            }
            EMIT(p, q);
            p = q;
            continue;
        }
        if (is_space[c]) { p++; continue; }
        Py_ssize_t len = 1;               /* 7: any other single symbol */
        if (c == '\'') {                  /* 4 */
            Py_ssize_t k = suffix_len(s, n, p + 1);
            if (k) len = 1 + k;
        } else if (c == '.' && AT(p + 1, '.') && AT(p + 2, '.')) {
            len = 3;                      /* 6 */
        }
        EMIT(p, p + len);
        p += len;
    }
    return count;
}

/* Text beyond ASCII, folded to one byte per character so that `machine` decides on it exactly as `re`
 * (Unicode, IGNORECASE) decides on the text: what the pattern asks of a character is only whether it is
 * a word character (str.isalnum() or "_"), whitespace (str.isspace()), or one of the pattern's literals
 * matched case-insensitively (re folds with the simple lower-case mapping, and adds U+017F LONG S to "s").
 * So: ASCII lower-cased; a non-ASCII character whose lower case is an ASCII letter -> that letter (only
 * letters matter: the others are plain word characters either way); U+017F -> 's'; other word characters
 * -> 'x' (a word character that is no literal); whitespace -> ' '; anything else -> '#' (a symbol that is
 * no literal). tests/test_tokenizer_fast.py checks every code point against the regex. */
static void fold_unicode(const Py_UCS4 *u, Py_ssize_t n, unsigned char *s) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = u[i];
        if (c < 128) {
            s[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : (unsigned char)c;
        } else if (c == 0x17F) {
            s[i] = 's';
        } else if (Py_UNICODE_ISALNUM(c)) {
            Py_UCS4 low = Py_UNICODE_TOLOWER(c);
            s[i] = (low >= 'a' && low <= 'z') ? (unsigned char)low : 'x';
        } else if (Py_UNICODE_ISSPACE(c)) {
            s[i] = ' ';
        } else {
            s[i] = '#';
        }
    }
}

/* (first, spans as bytes of int32 pairs) */
static PyObject *pack(PyObject *first, const int32_t *spans, Py_ssize_t count) {
    PyObject *packed = PyBytes_FromStringAndSize((const char *)spans, (Py_ssize_t)(2 * sizeof(int32_t) * count));
    if (!packed) return NULL;
    PyObject *out = PyTuple_Pack(2, first, packed);
    Py_DECREF(packed);
    return out;
}

/* One text through the machine: s = its lowered (ASCII) or folded (other text) bytes, the token spans. */
typedef struct {
    int ascii;
    unsigned char *s;
    int32_t *spans;
    Py_ssize_t count;
} scanned;

static void scanned_free(scanned *r) {
    PyMem_Free(r->s);
    PyMem_Free(r->spans);
}

/* 0, or -1 with an exception (r's buffers are then already freed). text must be shorter than 2**31
 * characters; non-ASCII text must be NFC already (tokenizer.py does it). */
static int scan_text(PyObject *text, const char *who, scanned *r) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    r->s = NULL;
    r->spans = NULL;
    if (n > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: text too long", who);
        return -1;
    }
    r->ascii = PyUnicode_IS_ASCII(text);
    r->s = PyMem_Malloc(n ? (size_t)n : 1);
    r->spans = PyMem_Malloc(2 * sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!r->s || !r->spans) {
        scanned_free(r);
        PyErr_NoMemory();
        return -1;
    }
    if (r->ascii) {
        const unsigned char *src = PyUnicode_1BYTE_DATA(text);
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = src[i];
            r->s[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
    } else {
        Py_UCS4 *u = PyUnicode_AsUCS4Copy(text);
        if (!u) {
            scanned_free(r);
            return -1;
        }
        fold_unicode(u, n, r->s);
        PyMem_Free(u);
    }
    r->count = machine(r->s, n, r->spans);
    return 0;
}

/* str.lower() of text[a:b], as the regex path lower-cases a match (non-ASCII text) */
static PyObject *lower_slice(PyObject *text, Py_ssize_t a, Py_ssize_t b) {
    PyObject *slice = PyUnicode_Substring(text, a, b);
    PyObject *w = slice ? PyObject_CallMethod(slice, "lower", NULL) : NULL;
    Py_XDECREF(slice);
    return w;
}

/* scan(text) -> (words, spans): spans = bytes of int32 (start, end) pairs into text; words = each token
 * lower-cased (ASCII: from the lowered copy; other text: str.lower() of the slice). */
static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *text, *words, *out = NULL;
    scanned r;
    if (!PyArg_ParseTuple(args, "U", &text) || scan_text(text, "scan", &r) < 0) return NULL;
    words = PyList_New(r.count);
    if (!words) goto done;
    for (Py_ssize_t k = 0; k < r.count; k++) {
        Py_ssize_t a = r.spans[2 * k], b = r.spans[2 * k + 1];
        PyObject *w = r.ascii ? PyUnicode_FromStringAndSize((const char *)r.s + a, b - a) : lower_slice(text, a, b);
        if (!w) goto done;
        PyList_SET_ITEM(words, k, w);
    }
    out = pack(words, r.spans, r.count);
done:
    scanned_free(&r);
    Py_XDECREF(words);
    return out;
}

/* ids(words, index, unk) -> bytes of int64: index[w] for each word of the list, unk where it has none.
 * The dict lookup for word lists (the fallback of scan_ids, and lists built elsewhere). */
static PyObject *ids(PyObject *self, PyObject *args) {
    PyObject *words, *index;
    long long unk;
    if (!PyArg_ParseTuple(args, "O!O!L", &PyList_Type, &words, &PyDict_Type, &index, &unk)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(words);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * n);
    if (!out) return NULL;
    int64_t *dst = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(index, PyList_GET_ITEM(words, i));  /* borrowed */
        if (v == NULL) {
            if (PyErr_Occurred()) goto fail;
            dst[i] = (int64_t)unk;
            continue;
        }
        long long id = PyLong_AsLongLong(v);
        if (id == -1 && PyErr_Occurred()) goto fail;
        dst[i] = (int64_t)id;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* A vocabulary as one compact bytes object (about 1.4 MB for 35k words, against several MB of dict, entries
 * and str objects scattered over the heap). Layout:
 *   uint32 magic, n_words, mask (entries - 1), pool bytes | vocab_entry entries[mask + 1]
 *   | uint32 offsets[n_words + 1] into the pool | the words' UTF-8 bytes.
 * Open addressing, FNV-1a over the UTF-8 bytes, linear probing, load at most 2/3. An entry holds the id, the
 * length and the first ENTRY_HEAD bytes of its word, so a word of up to ENTRY_HEAD bytes (nearly every
 * token of English text) is found with one random memory access, four entries per cache line for the
 * probes; only longer words compare the rest in the pool (before, every lookup read a slot, then the
 * word's offset, then its bytes: three cache misses a token in a table larger than L2). A word listed
 * twice maps to its last id, as {w: i for i, w in enumerate(vocab)} does. */
#define VOCAB_MAGIC 0x574b5353u  /* "SSKW" */
#define ENTRY_HEAD 11

typedef struct {
    uint32_t id1;                   /* id + 1; 0: empty */
    uint8_t len;                    /* the word's length in bytes, 255 for 255 and more */
    unsigned char head[ENTRY_HEAD]; /* its first bytes (zero-padded) */
} vocab_entry;
_Static_assert(sizeof(vocab_entry) == 16, "four entries per cache line");

static uint32_t fnv1a(const unsigned char *p, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

typedef struct {
    uint32_t n_words, mask;
    const vocab_entry *entries;
    const uint32_t *offsets;
    const unsigned char *pool;
} vocab_view;

static int vocab_of(PyObject *table, vocab_view *v) {
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) < 16) goto bad;
    const uint32_t *h = (const uint32_t *)PyBytes_AS_STRING(table);
    if (h[0] != VOCAB_MAGIC) goto bad;
    v->n_words = h[1];
    v->mask = h[2];
    Py_ssize_t need = 16 + (Py_ssize_t)sizeof(vocab_entry) * ((Py_ssize_t)v->mask + 1) +
                      4 * ((Py_ssize_t)v->n_words + 1) + (Py_ssize_t)h[3];
    if (PyBytes_GET_SIZE(table) != need) goto bad;
    v->entries = (const vocab_entry *)(h + 4);
    v->offsets = (const uint32_t *)(v->entries + v->mask + 1);
    v->pool = (const unsigned char *)(v->offsets + v->n_words + 1);
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "not a vocabulary table (build it with vocab_table)");
    return -1;
}

/* Does entry e hold the word w of n bytes? */
static inline int entry_is(const vocab_view *v, const vocab_entry *e, const unsigned char *w, Py_ssize_t n) {
    if (e->len != (n < 255 ? (uint8_t)n : 255) || memcmp(e->head, w, (size_t)(n < ENTRY_HEAD ? n : ENTRY_HEAD)))
        return 0;
    if (n <= ENTRY_HEAD) return 1;
    uint32_t id = e->id1 - 1, a = v->offsets[id], b = v->offsets[id + 1];
    return (Py_ssize_t)(b - a) == n && memcmp(v->pool + a, w, (size_t)n) == 0;
}

/* id of the word's bytes, or -1 */
static long long vocab_find(const vocab_view *v, const unsigned char *w, Py_ssize_t n) {
    uint32_t i = fnv1a(w, n) & v->mask;
    for (;;) {
        const vocab_entry *e = v->entries + i;
        if (!e->id1) return -1;
        if (entry_is(v, e, w, n)) return (long long)e->id1 - 1;
        i = (i + 1) & v->mask;
    }
}

/* vocab_table(words) -> bytes (the layout above) */
static PyObject *vocab_table(PyObject *self, PyObject *args) {
    PyObject *words;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &words)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(words), pool = 0;
    if (n >= (Py_ssize_t)1 << 28) {
        PyErr_SetString(PyExc_ValueError, "vocab_table: too many words");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        if (!PyUnicode_Check(PyList_GET_ITEM(words, i))) {
            PyErr_SetString(PyExc_TypeError, "vocab_table: words must be str");
            return NULL;
        }
        if (!PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(words, i), &len)) return NULL;
        pool += len;
    }
    if (pool > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "vocab_table: words too long");
        return NULL;
    }
    uint32_t cap = 16;
    while (cap < (3 * (uint64_t)n) / 2 + 1) cap <<= 1;  /* load <= 2/3 */
    Py_ssize_t size = 16 + (Py_ssize_t)sizeof(vocab_entry) * cap + 4 * (n + 1) + pool;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (!out) return NULL;
    uint32_t *h = (uint32_t *)PyBytes_AS_STRING(out);
    h[0] = VOCAB_MAGIC; h[1] = (uint32_t)n; h[2] = cap - 1; h[3] = (uint32_t)pool;
    vocab_entry *entries = (vocab_entry *)(h + 4);
    uint32_t *offsets = (uint32_t *)(entries + cap);
    unsigned char *dst = (unsigned char *)(offsets + n + 1);
    memset(entries, 0, sizeof(vocab_entry) * (size_t)cap);
    uint32_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *w = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(words, i), &len);
        offsets[i] = at;
        memcpy(dst + at, w, (size_t)len);
        at += (uint32_t)len;
    }
    offsets[n] = at;
    vocab_view v = {(uint32_t)n, cap - 1, entries, offsets, dst};
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *w = dst + offsets[i];
        Py_ssize_t len = offsets[i + 1] - offsets[i];
        uint32_t k = fnv1a(w, len) & v.mask;
        for (;;) {
            vocab_entry *e = entries + k;
            if (!e->id1) {
                e->len = len < 255 ? (uint8_t)len : 255;
                memcpy(e->head, w, (size_t)(len < ENTRY_HEAD ? len : ENTRY_HEAD));
                e->id1 = (uint32_t)i + 1;
                break;
            }
            if (entry_is(&v, e, w, len)) {
                e->id1 = (uint32_t)i + 1;  /* a repeated word: the last id wins */
                break;
            }
            k = (k + 1) & v.mask;
        }
    }
    return out;
}

/* scan_ids(text, table, unk) -> (ids, spans): the vocabulary ids (int64 bytes) and spans (int32 pairs) of
 * text's tokens in one pass, no str object per token (ASCII: the lowered bytes are looked up directly;
 * other text, NFC already: str.lower() of each token's slice, as the regex path, then its UTF-8). */
static PyObject *scan_ids(PyObject *self, PyObject *args) {
    PyObject *text, *table, *idbytes, *out = NULL;
    long long unk;
    vocab_view v;
    scanned r;
    if (!PyArg_ParseTuple(args, "UOL", &text, &table, &unk) || vocab_of(table, &v) < 0 ||
        scan_text(text, "scan_ids", &r) < 0)
        return NULL;
    idbytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * r.count);
    if (!idbytes) goto done;
    int64_t *dst = (int64_t *)PyBytes_AS_STRING(idbytes);
    for (Py_ssize_t k = 0; k < r.count; k++) {
        Py_ssize_t a = r.spans[2 * k], b = r.spans[2 * k + 1];
        long long id;
        if (r.ascii) {
            id = vocab_find(&v, r.s + a, b - a);
        } else {
            PyObject *w = lower_slice(text, a, b);
            if (!w) goto done;
            Py_ssize_t len;
            const char *utf8 = PyUnicode_AsUTF8AndSize(w, &len);
            id = utf8 ? vocab_find(&v, (const unsigned char *)utf8, len) : -1;
            Py_DECREF(w);
            if (!utf8) goto done;
        }
        dst[k] = id < 0 ? (int64_t)unk : (int64_t)id;
    }
    out = pack(idbytes, r.spans, r.count);
done:
    scanned_free(&r);
    Py_XDECREF(idbytes);
    return out;
}

/* gather(table, ids) -> bytearray: the rows ids[0], ids[1], ... of a C-contiguous float32 (rows, cols)
 * table (any buffer), as one float32 (n, cols) block. The embedding lookup of a request: its rows are
 * scattered over a table of MBs, mostly not in cache, so the loop prefetches rows a few ids ahead (a
 * fancy index waits for each miss in turn). An id outside the table is an IndexError. */
static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *table_obj, *ids_obj;
    Py_ssize_t cols;
    if (!PyArg_ParseTuple(args, "OOn", &table_obj, &ids_obj, &cols)) return NULL;
    Py_buffer tb, ib;
    if (PyObject_GetBuffer(table_obj, &tb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(ids_obj, &ib, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&tb);
        return NULL;
    }
    PyObject *out = NULL;
    if (cols <= 0 || tb.len % (Py_ssize_t)(sizeof(float) * cols) || ib.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "gather: table is not float32 rows of `cols`, or ids not int64");
        goto done;
    }
    Py_ssize_t rows = tb.len / (Py_ssize_t)(sizeof(float) * cols), n = ib.len / (Py_ssize_t)sizeof(int64_t);
    const float *t = (const float *)tb.buf;
    const int64_t *id = (const int64_t *)ib.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (id[i] < 0 || id[i] >= rows) {
            PyErr_Format(PyExc_IndexError, "gather: id %lld outside a table of %zd rows", (long long)id[i], rows);
            goto done;
        }
    }
    out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)sizeof(float) * cols * n);
    if (!out) goto done;
    float *dst = (float *)PyByteArray_AS_STRING(out);
    const Py_ssize_t ahead = 32, row_bytes = (Py_ssize_t)sizeof(float) * cols;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + ahead < n) {
            const char *next = (const char *)(t + id[i + ahead] * cols);
            for (Py_ssize_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(next + off);
        }
        memcpy(dst + i * cols, t + id[i] * cols, (size_t)row_bytes);
    }
done:
    PyBuffer_Release(&tb);
    PyBuffer_Release(&ib);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(text) -> (lower-cased tokens, int32 (start, end) pairs as bytes)"},
    {"ids", ids, METH_VARARGS, "ids(words, index, unk) -> int64 ids as bytes (unk for words not in index)"},
    {"vocab_table", vocab_table, METH_VARARGS, "vocab_table(words) -> bytes: a compact vocabulary for scan_ids"},
    {"gather", gather, METH_VARARGS, "gather(float32 table, int64 ids, cols) -> bytearray of the rows"},
    {"scan_ids", scan_ids, METH_VARARGS, "scan_ids(text, table, unk) -> (int64 ids bytes, int32 spans bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tokenscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__tokenscan(void) {
    init_tables();
    return PyModule_Create(&module);
}
