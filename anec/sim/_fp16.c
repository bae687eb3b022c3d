/* fp16 storage kernels for the functional simulator (anec/sim/functional.py).

numpy converts between float32 and float16 with scalar loops (about 2 ns per element) and cannot
fuse the MAC port's epilogue; these kernels use the CPU's conversion instructions (F16C on x86-64)
and run each store in one pass, straight into a strided slot view. `anec.sim.fp16_kernels` holds
their numpy twins, which are the specification: tests/sim/test_fp16_kernels.py checks that both
give the same bits.

Every kernel takes same-shaped buffers of any strides (numpy views) and works on them span by span:
a span is up to SPAN contiguous elements of one row, gathered into a local array when the row is
strided. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_F16C_PATH 1
#endif

#define SPAN 512
#define MAX_DIMS 8

/* -- scalar conversions (the portable path, and the model the vector path must match) -------- */

static inline float bits_float(uint32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static inline uint32_t float_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1f)
        return bits_float(sign | 0x7f800000u | mantissa << 13);
    if (exponent == 0)  /* zero or denormal: mantissa * 2^-24, exact in float32 */
        return bits_float(sign | float_bits((float)mantissa * 0x1p-24f));
    return bits_float(sign | (exponent + 112) << 23 | mantissa << 13);
}

/* Round half to even; 65520 and above overflow to infinity; NaN stays NaN. */
static inline uint16_t float_to_half(float f) {
    uint32_t bits = float_bits(f), sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (magnitude >= 0x47800000u)  /* 2^16 and above (and infinity) */
        return (uint16_t)(sign | 0x7c00u);
    if (magnitude < 0x38800000u) {  /* below 2^-14: adding 0.5 puts the fp16 denormal quantum 2^-24
                                       in float32's last place, so the addition rounds there */
        uint32_t rounded = float_bits(bits_float(magnitude) + 0.5f) - 0x3f000000u;
        return (uint16_t)(sign | rounded);
    }
    uint32_t odd = (magnitude >> 13) & 1u;  /* rebias, then round the 13 dropped bits half to even */
    return (uint16_t)(sign | (magnitude - 0x38000000u + 0xfffu + odd) >> 13);
}

static inline int half_is_nan(uint16_t h) { return (h & 0x7fffu) > 0x7c00u; }

/* memcpy for the short rows of slot views (7 to 112 elements): fixed-size copies, the last one
   overlapping, compile to vector moves, where a memcpy of varying length is a call. Writes only
   [to, to + n). */
static inline void copy_bytes(void *to, const void *from, size_t n) {
    char *t = to;
    const char *f = from;
    if (n >= 32) {
        size_t i = 0;
        for (; i + 32 <= n; i += 32)
            memcpy(t + i, f + i, 32);
        if (i < n)
            memcpy(t + n - 32, f + n - 32, 32);
    } else if (n >= 16) {
        memcpy(t, f, 16);
        memcpy(t + n - 16, f + n - 16, 16);
    } else if (n >= 8) {
        memcpy(t, f, 8);
        memcpy(t + n - 8, f + n - 8, 8);
    } else if (n >= 4) {
        memcpy(t, f, 4);
        memcpy(t + n - 4, f + n - 4, 4);
    } else {
        memcpy(t, f, n);
    }
}

/* -- the kernels on one contiguous span ----------------------------------------------------- */

typedef struct {
    int flush;                 /* denormals become signed zero (MAC operands and results) */
    uint16_t saturation_bits;  /* the MAC port: rounded magnitudes of these fp16 bits or more become
                                  infinity (the least fp16 magnitude at or above the saturation) */
    int has_post_scale;
    float post_scale;
    const float *bias;         /* NULL, or the bias of this span's first element */
    Py_ssize_t bias_step;      /* 0: one bias for the span; 1: one per element */
    const uint16_t *table;     /* NULL, or fp16 bits -> fp16 bits (an activation), followed by one
                                  spare entry so that a 32-bit gather of the last entry stays inside */
    uint16_t indeterminate;    /* stored in place of NaN */
    const uint16_t *other;     /* `binary`: the second operand of this span, contiguous */
    int op;                    /* `binary`: one of BinaryOp */
    int apart;                 /* the destination shares no memory with the sources, so a span's last
                                  partial group of eight may be recomputed overlapping the one before */
} Params;

/* The elementwise operations `binary` fuses: their float32 results are exact IEEE operations
   (no signed-zero or NaN-payload choices), so C and numpy agree on every bit. */
typedef enum { OP_ADD, OP_SUB, OP_MUL } BinaryOp;
static const char *const BINARY_OPS[] = {"add", "sub", "mul", NULL};

static inline float apply(int op, float a, float b) { return op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b; }

static inline float flushed(float v, int flush) {
    return flush && fabsf(v) < 0x1p-14f ? copysignf(0.0f, v) : v;
}

static void widen_scalar(const uint16_t *src, float *dst, Py_ssize_t n, const Params *p) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = flushed(half_to_float(src[i]), p->flush);
}

static inline uint16_t finish(uint16_t h, const Params *p) {
    if (p->table)
        h = p->table[h];
    return half_is_nan(h) ? p->indeterminate : h;
}

static void narrow_scalar(const float *src, uint16_t *dst, Py_ssize_t n, const Params *p) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = finish(float_to_half(src[i]), p);
}

static void lookup_scalar(const uint16_t *src, uint16_t *dst, Py_ssize_t n, const Params *p) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = finish(src[i], p);
}

static void binary_scalar(const uint16_t *src, uint16_t *dst, Py_ssize_t n, const Params *p) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = finish(float_to_half(apply(p->op, half_to_float(src[i]), half_to_float(p->other[i]))), p);
}

/* The MAC port's saturation and flush, on the rounded value's fp16 bits (magnitudes order as their
   bits do); NaN stays NaN. */
static inline uint16_t saturated_and_flushed(uint16_t h, const Params *p) {
    uint16_t sign = h & 0x8000u, magnitude = h & 0x7fffu;
    if (magnitude >= p->saturation_bits && magnitude <= 0x7c00u)
        return sign | 0x7c00u;
    return p->flush && magnitude < 0x0400u ? sign : h;
}

static void mac_port_scalar(const float *acc, uint16_t *dst, Py_ssize_t n, const Params *p) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float v = half_to_float(saturated_and_flushed(float_to_half(acc[i]), p));
        if (p->has_post_scale)
            v = half_to_float(float_to_half(v * p->post_scale));
        if (p->bias)
            v += p->bias[i * p->bias_step];
        dst[i] = finish(float_to_half(v), p);
    }
}

#ifdef HAVE_F16C_PATH
/* The same kernels, eight lanes at a time; a span's partial last group overlaps the one before it
   or goes through a padded local block, so every element takes the vector path. */
#define VECTOR __attribute__((target("avx2,f16c")))
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

VECTOR static inline __m256 flushed8(__m256 v, int flush) {
    if (!flush)
        return v;
    __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 tiny = _mm256_cmp_ps(_mm256_andnot_ps(sign, v), _mm256_set1_ps(0x1p-14f), _CMP_LT_OQ);
    return _mm256_blendv_ps(v, _mm256_and_ps(v, sign), tiny);
}

VECTOR static inline __m128i finish8(__m128i h, const Params *p) {
    if (p->table) {  /* gather 32 bits at each entry, keep the low 16 (little-endian) */
        __m256i entries = _mm256_i32gather_epi32((const int *)p->table, _mm256_cvtepu16_epi32(h), 2);
        entries = _mm256_and_si256(entries, _mm256_set1_epi32(0xffff));
        h = _mm_packus_epi32(_mm256_castsi256_si128(entries), _mm256_extracti128_si256(entries, 1));
    }
    __m128i nan = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00));
    return _mm_blendv_epi8(h, _mm_set1_epi16((short)p->indeterminate), nan);
}

VECTOR static inline void widen8(const uint16_t *src, float *dst, const Params *p) {
    _mm256_storeu_ps(dst, flushed8(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)src)), p->flush));
}

VECTOR static void widen_vector(const uint16_t *src, float *dst, Py_ssize_t n, const Params *p) {
    Py_ssize_t whole = n - n % 8;
    for (Py_ssize_t i = 0; i < whole; i += 8)
        widen8(src + i, dst + i, p);
    if (whole == n)
        return;
    if (p->apart && n >= 8) {
        widen8(src + n - 8, dst + n - 8, p);
        return;
    }
    uint16_t in[8] = {0};
    float out[8];
    memcpy(in, src + whole, (size_t)(n - whole) * 2);
    widen8(in, out, p);
    memcpy(dst + whole, out, (size_t)(n - whole) * 4);
}

VECTOR static inline __m256 round8(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, RNE)); }

/* One step of the MAC port on eight lanes (`bias` points at this step's first lane). Saturation and
   flushing act on the rounded value's fp16 bits (magnitudes order as their bits do): integer
   operations on 128 bits, and no conversion back unless a post-scale or bias follows. */
VECTOR static inline __m128i mac_port8(__m256 v, const float *bias, const Params *p) {
    __m128i h = _mm256_cvtps_ph(v, RNE), sign = _mm_set1_epi16((short)0x8000);
    __m128i magnitude = _mm_andnot_si128(sign, h), infinity = _mm_set1_epi16(0x7c00);
    __m128i saturated = _mm_andnot_si128(_mm_cmpgt_epi16(magnitude, infinity),  /* NaN stays NaN */
                                         _mm_cmpgt_epi16(magnitude, _mm_set1_epi16((short)(p->saturation_bits - 1))));
    h = _mm_blendv_epi8(h, _mm_or_si128(_mm_and_si128(h, sign), infinity), saturated);
    if (p->flush)
        h = _mm_andnot_si128(_mm_andnot_si128(sign, _mm_cmpgt_epi16(_mm_set1_epi16(0x0400), magnitude)), h);
    if (!p->has_post_scale && !bias)
        return h;
    v = _mm256_cvtph_ps(h);
    if (p->has_post_scale)
        v = round8(_mm256_mul_ps(v, _mm256_set1_ps(p->post_scale)));
    if (bias)
        v = _mm256_add_ps(v, p->bias_step ? _mm256_loadu_ps(bias) : _mm256_set1_ps(*bias));
    return _mm256_cvtps_ph(v, RNE);
}

VECTOR static inline __m256 apply8(int op, __m256 a, __m256 b) {
    return op == OP_ADD ? _mm256_add_ps(a, b) : op == OP_SUB ? _mm256_sub_ps(a, b) : _mm256_mul_ps(a, b);
}

/* The kernels that produce fp16: `step` turns eight lanes of the source `s` (with the bias `b` and
   the second operand `o` of those lanes) into fp16 bits. Whole groups of eight are read in place; so
   is a partial last group when it can overlap the one before it (n >= 8, destination apart from
   the sources); otherwise it is copied into zero-padded local lanes. */
#define NARROWING_KERNEL(name, source_type, step)                                                   \
    VECTOR static inline void name##_group(const source_type *s, const float *b, const uint16_t *o, \
                                           uint16_t *d, const Params *p) {                          \
        (void)b, (void)o;                                                                           \
        _mm_storeu_si128((__m128i *)d, finish8(step, p));                                           \
    }                                                                                               \
    VECTOR static void name(const source_type *src, uint16_t *dst, Py_ssize_t n, const Params *p) { \
        Py_ssize_t whole = n - n % 8;                                                               \
        for (Py_ssize_t i = 0; i < whole; i += 8)                                                   \
            name##_group(src + i, p->bias ? p->bias + i * p->bias_step : NULL,                      \
                         p->other ? p->other + i : NULL, dst + i, p);                               \
        if (whole == n)                                                                             \
            return;                                                                                 \
        if (p->apart && n >= 8) {                                                                   \
            Py_ssize_t i = n - 8;                                                                   \
            name##_group(src + i, p->bias ? p->bias + i * p->bias_step : NULL,                      \
                         p->other ? p->other + i : NULL, dst + i, p);                               \
            return;                                                                                 \
        }                                                                                           \
        Py_ssize_t lanes = n - whole;                                                               \
        source_type s[8] = {0};                                                                     \
        float bias[8] = {0};                                                                        \
        uint16_t other[8] = {0}, out[8];                                                            \
        memcpy(s, src + whole, (size_t)lanes * sizeof(source_type));                                \
        const float *b = p->bias ? p->bias + whole * p->bias_step : NULL;                           \
        if (b && p->bias_step) { memcpy(bias, b, (size_t)lanes * 4); b = bias; }                    \
        if (p->other) memcpy(other, p->other + whole, (size_t)lanes * 2);                           \
        name##_group(s, b, p->other ? other : NULL, out, p);                                        \
        memcpy(dst + whole, out, (size_t)lanes * 2);                                                \
    }

NARROWING_KERNEL(narrow_vector, float, _mm256_cvtps_ph(_mm256_loadu_ps(s), RNE))
NARROWING_KERNEL(lookup_vector, uint16_t, _mm_loadu_si128((const __m128i *)s))
NARROWING_KERNEL(mac_port_vector, float, mac_port8(_mm256_loadu_ps(s), b, p))
NARROWING_KERNEL(binary_vector, uint16_t,
                 _mm256_cvtps_ph(apply8(p->op, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s)),
                                        _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o))), RNE))
#endif

/* -- strided traversal ---------------------------------------------------------------------- */

typedef void (*SpanKernel)(const void *src, void *dst, Py_ssize_t n, const Params *p);

typedef struct {
    const char *name;
    SpanKernel scalar, vector;
    char src_format, dst_format;  /* buffer-protocol formats: 'e' fp16, 'f' float32 */
} Kernel;

static int has_vector_path(void) {
#ifdef HAVE_F16C_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

static int vector_path = -1;  /* -1: not decided yet; `use_vector_path` lets tests choose */

static int vector_path_on(void) {
    if (vector_path < 0)
        vector_path = has_vector_path();
    return vector_path;
}

static SpanKernel pick(const Kernel *k) { return vector_path_on() ? k->vector : k->scalar; }

static int item_size(char format) { return format == 'f' ? 4 : 2; }

static int check_format(const Py_buffer *view, char format, const char *what, const char *kernel) {
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (f[0] != format || f[1] != 0 || view->itemsize != item_size(format)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s, got format '%s'", kernel, what,
                     format == 'f' ? "float32" : "float16", view->format ? view->format : "B");
        return -1;
    }
    return 0;
}

/* Short or strided rows are packed: their pieces are gathered into one local span (with a bias and
   a second operand per element), converted together, and scattered back. Contiguous rows are
   converted in place: rows of 8 or more when the destination is apart from the sources, of DIRECT
   or more otherwise (a partial group of eight then goes through local lanes). */
#define DIRECT 32

typedef struct {
    SpanKernel span;
    Params packed;  /* the call's parameters, with the bias and the second operand (if any) read per
                       element from bias_local and other_local */
    Py_ssize_t src_item, dst_item, src_step, dst_step, other_step;
    Py_ssize_t used, pieces;
    char *piece_dst[SPAN];
    Py_ssize_t piece_size[SPAN];
    float src_local[SPAN];  /* room for SPAN elements of either format */
    uint16_t dst_local[SPAN * 2];
    float bias_local[SPAN];
    uint16_t other_local[SPAN];
} Packer;

/* Copy `n` items of `item` bytes, `from_step` bytes apart, to `to_step` bytes apart: a packed
   piece's gather (to_step == item) or scatter (from_step == item). */
static void copy_items(char *to, Py_ssize_t to_step, const char *from, Py_ssize_t from_step, Py_ssize_t n, Py_ssize_t item) {
    if (to_step == item && from_step == item)
        copy_bytes(to, from, (size_t)(n * item));
    else
        for (Py_ssize_t j = 0; j < n; j++)
            memcpy(to + j * to_step, from + j * from_step, (size_t)item);
}

static void flush_packed(Packer *q) {
    if (!q->used)
        return;
    q->span(q->src_local, q->dst_local, q->used, &q->packed);
    const char *out = (const char *)q->dst_local;
    for (Py_ssize_t i = 0; i < q->pieces; i++) {
        copy_items(q->piece_dst[i], q->dst_step, out, q->dst_item, q->piece_size[i], q->dst_item);
        out += q->piece_size[i] * q->dst_item;
    }
    q->used = q->pieces = 0;
}

/* Add `n` elements starting at `s` (destination `t`, bias `bias` per element or one for all, second
   operand `o` if any). */
static void pack(Packer *q, const char *s, const char *o, char *t, Py_ssize_t n, const float *bias, Py_ssize_t bias_step) {
    if (q->used + n > SPAN)
        flush_packed(q);
    copy_items((char *)q->src_local + q->used * q->src_item, q->src_item, s, q->src_step, n, q->src_item);
    if (o)
        copy_items((char *)(q->other_local + q->used), 2, o, q->other_step, n, 2);
    if (bias)
        for (Py_ssize_t j = 0; j < n; j++)
            q->bias_local[q->used + j] = bias[j * bias_step];
    q->piece_dst[q->pieces] = t;
    q->piece_size[q->pieces++] = n;
    q->used += n;
}

/* Whether two buffers' bytes are disjoint (compared by the span from lowest to highest element). */
static int apart(const Py_buffer *a, const Py_buffer *b) {
    const char *lo[2], *hi[2];
    const Py_buffer *buffers[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        lo[i] = hi[i] = buffers[i]->buf;
        for (int d = 0; d < buffers[i]->ndim; d++) {
            Py_ssize_t reach = (buffers[i]->shape[d] - 1) * buffers[i]->strides[d];
            if (reach < 0)
                lo[i] += reach;
            else
                hi[i] += reach;
        }
        hi[i] += buffers[i]->itemsize;
    }
    return hi[0] <= lo[1] || hi[1] <= lo[0];
}

static int same_shape(const Py_buffer *a, const Py_buffer *b) {
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(Py_ssize_t) * (size_t)a->ndim) == 0;
}

/* Apply `k` to same-shaped strided buffers; `bias` (one per index of `bias_axis`) and the second
   fp16 operand `other` are optional. */
static int traverse(const Kernel *k, Py_buffer *src, Py_buffer *other, Py_buffer *dst, Params *p, const float *bias, int bias_axis) {
    int ndim = src->ndim;
    if (ndim > MAX_DIMS || !same_shape(src, dst) || (other && !same_shape(src, other))) {
        PyErr_Format(PyExc_ValueError, "%s: operands and destination must have the same shape (up to %d axes)", k->name, MAX_DIMS);
        return -1;
    }
    Py_ssize_t inner = ndim ? src->shape[ndim - 1] : 1, rows = 1, index[MAX_DIMS] = {0};
    for (int d = 0; d < ndim - 1; d++)
        rows *= src->shape[d];
    if (inner == 0 || rows == 0)
        return 0;
    Packer *q = PyMem_RawMalloc(sizeof(Packer));
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    q->span = pick(k);
    p->apart = apart(src, dst) && (!other || apart(other, dst));
    q->packed = *p;
    q->packed.apart = 1;  /* packed spans work on local copies */
    if (bias) {
        q->packed.bias = q->bias_local;
        q->packed.bias_step = 1;
    }
    q->src_item = item_size(k->src_format);
    q->dst_item = item_size(k->dst_format);
    q->src_step = ndim ? src->strides[ndim - 1] : q->src_item;
    q->dst_step = ndim ? dst->strides[ndim - 1] : q->dst_item;
    q->other_step = other && ndim ? other->strides[ndim - 1] : 2;
    if (other)
        q->packed.other = q->other_local;
    q->used = q->pieces = 0;
    int direct = inner >= (p->apart ? 8 : DIRECT) && q->src_step == q->src_item && q->dst_step == q->dst_item && q->other_step == 2;
    Py_ssize_t bias_step = p->bias_step;
    Py_BEGIN_ALLOW_THREADS
    const char *s = src->buf, *o = other ? other->buf : NULL;
    char *t = dst->buf;
    for (Py_ssize_t row = 0; row < rows; row++) {
        const float *row_bias = bias && bias_axis < ndim - 1 ? bias + index[bias_axis] : bias;
        for (Py_ssize_t start = 0; start < inner; start += SPAN) {
            Py_ssize_t n = inner - start < SPAN ? inner - start : SPAN;
            const float *span_bias = row_bias ? row_bias + start * bias_step : NULL;
            const char *span_other = o ? o + start * q->other_step : NULL;
            if (direct) {
                p->bias = span_bias;
                p->other = (const uint16_t *)span_other;
                q->span(s + start * q->src_step, t + start * q->dst_step, n, p);
            } else {
                pack(q, s + start * q->src_step, span_other, t + start * q->dst_step, n, span_bias, bias_step);
            }
        }
        for (int d = ndim - 2; d >= 0; d--) {  /* the next row: step the outer indices like an odometer */
            s += src->strides[d];
            t += dst->strides[d];
            if (o)
                o += other->strides[d];
            if (++index[d] < src->shape[d])
                break;
            s -= src->shape[d] * src->strides[d];
            t -= dst->shape[d] * dst->strides[d];
            if (o)
                o -= other->shape[d] * other->strides[d];
            index[d] = 0;
        }
    }
    flush_packed(q);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(q);
    return 0;
}

#ifdef HAVE_F16C_PATH
#define KERNEL(name, src, dst) {#name, (SpanKernel)name##_scalar, (SpanKernel)name##_vector, src, dst}
#else
#define KERNEL(name, src, dst) {#name, (SpanKernel)name##_scalar, (SpanKernel)name##_scalar, src, dst}
#endif
static const Kernel WIDEN = KERNEL(widen, 'e', 'f');
static const Kernel NARROW = KERNEL(narrow, 'f', 'e');
static const Kernel LOOKUP = KERNEL(lookup, 'e', 'e');
static const Kernel MAC_PORT = KERNEL(mac_port, 'f', 'e');
static const Kernel BINARY = KERNEL(binary, 'e', 'e');

/* -- Python entry points -------------------------------------------------------------------- */

typedef struct {
    Py_buffer src, other, dst, bias, table;
    uint16_t *padded_table;
} Buffers;

static void release(Buffers *b) {
    PyMem_RawFree(b->padded_table);
    PyBuffer_Release(&b->src);
    PyBuffer_Release(&b->other);
    PyBuffer_Release(&b->dst);
    PyBuffer_Release(&b->bias);
    PyBuffer_Release(&b->table);
}

static PyObject *run(const Kernel *k, PyObject *src, PyObject *other, PyObject *dst, PyObject *bias, int bias_axis, PyObject *table, Params *p) {
    Buffers b;
    memset(&b, 0, sizeof b);
    PyObject *result = NULL;
    if (PyObject_GetBuffer(src, &b.src, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
        goto done;
    if (PyObject_GetBuffer(dst, &b.dst, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        goto done;
    if (check_format(&b.src, k->src_format, "source", k->name) < 0 || check_format(&b.dst, k->dst_format, "destination", k->name) < 0)
        goto done;
    if (other != Py_None && (PyObject_GetBuffer(other, &b.other, PyBUF_STRIDES | PyBUF_FORMAT) < 0
                             || check_format(&b.other, 'e', "second operand", k->name) < 0))
        goto done;
    if (bias != Py_None) {
        if (PyObject_GetBuffer(bias, &b.bias, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0 || check_format(&b.bias, 'f', "bias", k->name) < 0)
            goto done;
        if (bias_axis < 0 || bias_axis >= b.src.ndim || b.bias.len / 4 != b.src.shape[bias_axis]) {
            PyErr_Format(PyExc_ValueError, "%s: the bias must hold one value per index of axis %d", k->name, bias_axis);
            goto done;
        }
        p->bias_step = bias_axis == b.src.ndim - 1;
    }
    if (table != Py_None) {
        if (PyObject_GetBuffer(table, &b.table, PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (b.table.len != 65536 * 2) {
            PyErr_Format(PyExc_ValueError, "%s: the table must hold 65536 uint16 values", k->name);
            goto done;
        }
        if (!(b.padded_table = PyMem_RawCalloc(65536 + 1, 2))) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(b.padded_table, b.table.buf, 65536 * 2);
        p->table = b.padded_table;
    }
    if (traverse(k, &b.src, other != Py_None ? &b.other : NULL, &b.dst, p, bias != Py_None ? b.bias.buf : NULL, bias_axis) == 0)
        result = Py_NewRef(Py_None);
done:
    release(&b);
    return result;
}

/* out[x] = tap[x * step] for x < n: a row of a convolution's columns. A stride of 2 gets its own
   loop, which the compiler vectorizes. */
static inline void copy_row(float *out, const float *tap, Py_ssize_t n, Py_ssize_t step) {
    if (step == 1) {
        copy_bytes(out, tap, (size_t)n * 4);
    } else if (step == 2) {
        for (Py_ssize_t x = 0; x < n; x++)
            out[x] = tap[2 * x];
    } else {
        for (Py_ssize_t x = 0; x < n; x++)
            out[x] = tap[x * step];
    }
}

/* The windows of a convolution, widened: cols[n, c, i, j, y, x] = src[n, c, y*sy + i*dy - py,
   x*sx + j*dx - px] as float32 (denormals flushed with `flush`), zero outside the source: the columns
   a GEMM multiplies. Each plane is widened once into a zero-bordered local plane, then every tap
   copies its rows out of it. */
static int gather_windows(Py_buffer *src, Py_buffer *cols, const Py_ssize_t *geometry, int flush) {
    Py_ssize_t kh = geometry[0], kw = geometry[1], sy = geometry[2], sx = geometry[3];
    Py_ssize_t py = geometry[4], px = geometry[5], dy = geometry[6], dx = geometry[7];
    if (src->ndim != 4 || cols->ndim != 6 || cols->shape[0] != src->shape[0] || cols->shape[1] != src->shape[1]
        || cols->shape[2] != kh || cols->shape[3] != kw || !PyBuffer_IsContiguous(cols, 'C') || py < 0 || px < 0) {
        PyErr_SetString(PyExc_ValueError, "windows: the source must be [N, C, H, W] and the columns a C-contiguous [N, C, kh, kw, ho, wo]");
        return -1;
    }
    Py_ssize_t channels = src->shape[1], h = src->shape[2], w = src->shape[3], ho = cols->shape[4], wo = cols->shape[5];
    if (cols->len == 0)
        return 0;
    /* the local plane covers the source and every window: rows, columns */
    Py_ssize_t rows = (ho - 1) * sy + (kh - 1) * dy + 1, width = (wo - 1) * sx + (kw - 1) * dx + 1;
    rows = rows > py + h ? rows : py + h;
    width = width > px + w ? width : px + w;
    float *plane = PyMem_RawCalloc((size_t)(rows * width), 4);
    if (!plane) {
        PyErr_NoMemory();
        return -1;
    }
    Params p = {.flush = flush, .apart = 1};  /* the local plane is apart from the source */
    SpanKernel widen_span = pick(&WIDEN);
    uint16_t line[SPAN];
    float *out = cols->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t index = 0; index < src->shape[0] * channels; index++) {
        const char *base = (const char *)src->buf + (index / channels) * src->strides[0] + (index % channels) * src->strides[1];
        for (Py_ssize_t y = 0; y < h; y++) {
            const char *row = base + y * src->strides[2];
            float *target = plane + (py + y) * width + px;
            for (Py_ssize_t start = 0; start < w; start += SPAN) {
                Py_ssize_t n = w - start < SPAN ? w - start : SPAN;
                const char *in = row + start * src->strides[3];
                if (src->strides[3] != 2) {
                    copy_items((char *)line, 2, in, src->strides[3], n, 2);
                    in = (const char *)line;
                }
                widen_span(in, target + start, n, &p);
            }
        }
        for (Py_ssize_t i = 0; i < kh; i++)
            for (Py_ssize_t j = 0; j < kw; j++)
                for (Py_ssize_t y = 0; y < ho; y++, out += wo)
                    copy_row(out, plane + (y * sy + i * dy) * width + j * dx, wo, sx);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(plane);
    return 0;
}

static uint16_t indeterminate_bits(double value) { return float_to_half((float)value); }

/* The least fp16 magnitude (bits) at or above `limit`: |v| >= limit on fp16 values, as bits. */
static uint16_t least_half_at_or_above(float limit) {
    if (isnan(limit) || limit <= 0.0f)  /* never true, or always */
        return isnan(limit) ? 0x7fffu : 0u;
    uint16_t bits = float_to_half(limit);
    return bits < 0x7c00u && half_to_float(bits) < limit ? bits + 1 : bits;
}

static PyObject *widen(PyObject *self, PyObject *args) {
    PyObject *src, *dst;
    int flush;
    if (!PyArg_ParseTuple(args, "OOp:widen", &src, &dst, &flush))
        return NULL;
    Params p = {.flush = flush};
    return run(&WIDEN, src, Py_None, dst, Py_None, 0, Py_None, &p);
}

static PyObject *narrow(PyObject *self, PyObject *args) {
    PyObject *src, *dst;
    double indeterminate;
    if (!PyArg_ParseTuple(args, "OOd:narrow", &src, &dst, &indeterminate))
        return NULL;
    Params p = {.indeterminate = indeterminate_bits(indeterminate)};
    return run(&NARROW, src, Py_None, dst, Py_None, 0, Py_None, &p);
}

static PyObject *lookup(PyObject *self, PyObject *args) {
    PyObject *src, *dst, *table;
    double indeterminate;
    if (!PyArg_ParseTuple(args, "OOOd:lookup", &src, &dst, &table, &indeterminate))
        return NULL;
    Params p = {.indeterminate = indeterminate_bits(indeterminate)};
    return run(&LOOKUP, src, Py_None, dst, Py_None, 0, table, &p);
}

static PyObject *mac_port(PyObject *self, PyObject *args) {
    PyObject *acc, *dst, *bias, *post_scale, *table;
    int bias_axis, flush;
    double saturation, indeterminate;
    if (!PyArg_ParseTuple(args, "OOOiOdpOd:mac_port", &acc, &dst, &bias, &bias_axis, &post_scale, &saturation, &flush, &table, &indeterminate))
        return NULL;
    Params p = {.flush = flush, .saturation_bits = least_half_at_or_above((float)saturation),
                .indeterminate = indeterminate_bits(indeterminate)};
    if (post_scale != Py_None) {
        p.has_post_scale = 1;
        p.post_scale = (float)PyFloat_AsDouble(post_scale);
        if (PyErr_Occurred())
            return NULL;
    }
    return run(&MAC_PORT, acc, Py_None, dst, bias, bias_axis, table, &p);
}

static PyObject *binary(PyObject *self, PyObject *args) {
    const char *op;
    PyObject *a, *b, *dst;
    double indeterminate;
    if (!PyArg_ParseTuple(args, "sOOOd:binary", &op, &a, &b, &dst, &indeterminate))
        return NULL;
    Params p = {.indeterminate = indeterminate_bits(indeterminate), .op = -1};
    for (int i = 0; BINARY_OPS[i]; i++)
        if (strcmp(op, BINARY_OPS[i]) == 0)
            p.op = i;
    if (p.op < 0) {
        PyErr_Format(PyExc_ValueError, "binary: no fused operation '%s' (add, sub or mul)", op);
        return NULL;
    }
    return run(&BINARY, a, b, dst, Py_None, 0, Py_None, &p);
}

static PyObject *windows(PyObject *self, PyObject *args) {
    PyObject *src, *cols;
    Py_ssize_t geometry[8];
    int flush;
    if (!PyArg_ParseTuple(args, "OO(nn)(nn)(nn)(nn)p:windows", &src, &cols, &geometry[0], &geometry[1], &geometry[2], &geometry[3],
                          &geometry[4], &geometry[5], &geometry[6], &geometry[7], &flush))
        return NULL;
    Buffers b;
    memset(&b, 0, sizeof b);
    PyObject *result = NULL;
    if (PyObject_GetBuffer(src, &b.src, PyBUF_STRIDES | PyBUF_FORMAT) == 0
        && PyObject_GetBuffer(cols, &b.dst, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) == 0
        && check_format(&b.src, 'e', "source", "windows") == 0 && check_format(&b.dst, 'f', "columns", "windows") == 0
        && gather_windows(&b.src, &b.dst, geometry, flush) == 0)
        result = Py_NewRef(Py_None);
    release(&b);
    return result;
}

static PyObject *use_vector_path(PyObject *self, PyObject *flag) {
    int want = PyObject_IsTrue(flag);
    if (want < 0)
        return NULL;
    if (want && !has_vector_path()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no AVX2/F16C vector path");
        return NULL;
    }
    vector_path = want;
    Py_RETURN_NONE;
}

static PyObject *uses_vector_path(PyObject *self, PyObject *unused) { return PyBool_FromLong(vector_path_on()); }

static PyMethodDef methods[] = {
    {"widen", widen, METH_VARARGS, "widen(src: f16, dst: f32, flush): dst = src as float32, denormals flushed if asked."},
    {"narrow", narrow, METH_VARARGS, "narrow(src: f32, dst: f16, indeterminate): dst = src rounded half to even; NaN -> indeterminate."},
    {"lookup", lookup, METH_VARARGS, "lookup(src: f16, dst: f16, table, indeterminate): dst = table[src bits]; NaN -> indeterminate."},
    {"mac_port", mac_port, METH_VARARGS,
     "mac_port(acc: f32, dst: f16, bias, bias_axis, post_scale, saturation, flush, table, indeterminate): the MAC port's epilogue."},
    {"binary", binary, METH_VARARGS,
     "binary(op, a: f16, b: f16, dst: f16, indeterminate): dst = a op b (add, sub or mul) in float32, rounded; NaN -> indeterminate."},
    {"windows", windows, METH_VARARGS,
     "windows(src: f16 [N,C,H,W], cols: f32 [N,C,kh,kw,ho,wo], kernel, strides, pads, dilations, flush): a convolution's columns."},
    {"use_vector_path", use_vector_path, METH_O, "use_vector_path(flag): run the AVX2/F16C kernels (True) or the portable scalar ones."},
    {"uses_vector_path", uses_vector_path, METH_NOARGS, "Whether the kernels run the AVX2/F16C vector path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fp16", "fp16 storage kernels for the functional simulator.", -1, methods};

PyMODINIT_FUNC PyInit__fp16(void) { return PyModule_Create(&module); }
