/* The tokenizer's regex (service/tokenizer.py, _TOKEN_RE) as a one-pass scanner, for ASCII text only.
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
 * lower-cased text has the same offsets). Non-ASCII text never reaches this file: tokenizer.py keeps
 * the regex for it. tests/test_tokenizer_fast.py checks this scanner against the regex token for token
 * on every text of every shipped dataset and on generated strings of the tricky characters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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

/* spans: int32 (start, end) pairs, at most one token per character */
static int emit(PyObject *words, int32_t *spans, Py_ssize_t *count, const unsigned char *s, Py_ssize_t a,
                Py_ssize_t b) {
    PyObject *w = PyUnicode_FromStringAndSize((const char *)s + a, b - a);
    if (!w) return -1;
    int rc = PyList_Append(words, w);
    Py_DECREF(w);
    spans[2 * *count] = (int32_t)a;
    spans[2 * *count + 1] = (int32_t)b;
    ++*count;
    return rc;
}

/* scan(text) -> (words, spans): spans = bytes of int32 (start, end) pairs; text must be ASCII (ValueError
 * otherwise) and shorter than 2**31 characters. */
static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *text;
    if (!PyArg_ParseTuple(args, "U", &text)) return NULL;
    if (!PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "scan: text is not ASCII");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const unsigned char *src = PyUnicode_1BYTE_DATA(text);
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "scan: text too long");
        return NULL;
    }
    unsigned char *s = PyMem_Malloc(n ? (size_t)n : 1);
    int32_t *spans = PyMem_Malloc(2 * sizeof(int32_t) * (size_t)(n ? n : 1));
    Py_ssize_t count = 0;
    if (!s || !spans) {
        PyMem_Free(s);
        PyMem_Free(spans);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = src[i];
        s[i] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
    }
    PyObject *words = PyList_New(0);
    if (!words) goto fail;

    Py_ssize_t p = 0;
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
                if (emit(words, spans, &count, s, p, q - 1) < 0) goto fail;
                p = q - 1;
                continue;
            }
            /* 2: n't\b here */
            if (c == 'n' && AT(p + 1, '\'') && AT(p + 2, 't') && BOUNDARY(p + 3)) {
                if (emit(words, spans, &count, s, p, p + 3) < 0) goto fail;
                p += 3;
                continue;
            }
            /* 3: the run followed by a contraction suffix */
            if (AT(q, '\'') && suffix_len(s, n, q + 1)) {
                if (emit(words, spans, &count, s, p, q) < 0) goto fail;
                p = q;
                continue;
            }
            /* 5: runs joined by single - . ' (greedy; nothing follows it in the pattern) */
            while ((AT(q, '-') || AT(q, '.') || AT(q, '\'')) && W(q + 1)) {
                q += 1;
                while (W(q)) q++;
            }
            if (emit(words, spans, &count, s, p, q) < 0) goto fail;
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
        if (emit(words, spans, &count, s, p, p + len) < 0) goto fail;
        p += len;
    }
    PyMem_Free(s);
    PyObject *packed = PyBytes_FromStringAndSize((const char *)spans, (Py_ssize_t)(2 * sizeof(int32_t) * count));
    PyMem_Free(spans);
    if (!packed) {
        Py_DECREF(words);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, words, packed);
    Py_DECREF(words);
    Py_DECREF(packed);
    return out;
fail:
    PyMem_Free(s);
    PyMem_Free(spans);
    Py_XDECREF(words);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(ascii_text) -> (lower-cased tokens, int32 (start, end) pairs as bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tokenscan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__tokenscan(void) {
    init_tables();
    return PyModule_Create(&module);
}
