/* fp16 storage kernels for the functional simulator (anec/sim/functional.py).

numpy converts between float32 and float16 with scalar loops (about 2 ns per element) and cannot
fuse the MAC port's epilogue; these kernels use the CPU's conversion instructions (F16C on x86-64)
and run each store in one pass, straight into a strided slot view. `anec.sim.fp16_kernels` holds
their numpy twins, which are the specification: tests/sim/test_fp16_kernels.py checks that both
give the same bits.

Every kernel takes same-shaped buffers of any strides (numpy views) and works on them span by span:
a span is up to SPAN contiguous elements of one row, gathered into a local array when the row is
strided. Large kernels share their rows among a pool of threads; the MAC tasks' matrix products run
on the same pool, through numpy's own sgemm. */
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

/* -- a pool of worker threads ---------------------------------------------------------------- */

/* A kernel large enough to share splits its work into parts: the calling thread runs part 0 and the
   pool's workers the others, all at once. After a job a worker spins a little while for the next
   one (the simulator calls kernels back to back) before it sleeps. Two callers never share the
   pool: a call that finds it busy runs all its work itself. */
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define HAVE_THREADS 1
#endif
#define MAX_THREADS 16
#define PARALLEL_MIN 16384  /* elements: a smaller kernel runs on the calling thread */
#define SPIN_ROUNDS 20000   /* a worker's pauses between jobs before it sleeps (about 0.5 ms measured) */

typedef void (*PartFn)(void *context, int part, int parts);

static int pool_threads = 1;  /* the threads a job may use, the caller's included (`set_threads`) */

static inline void cpu_relax(void) {
#ifdef HAVE_F16C_PATH
    _mm_pause();
#endif
}

#ifdef HAVE_THREADS
static struct {
    pthread_mutex_t busy, lock;
    pthread_cond_t wake;
    int started;           /* workers running; worker i runs part i */
    unsigned first[MAX_THREADS];  /* the generation current when worker i was started */
    unsigned generation;   /* one more for each job */
    int pending;           /* workers yet to finish the job */
    PartFn fn;
    void *context;
    int parts;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, 0, 0, NULL, NULL, 0};

static void *worker(void *arg) {
    int part = (int)(intptr_t)arg;
    unsigned seen = pool.first[part];
    for (;;) {
        unsigned now = seen;
        for (int round = 0; round < SPIN_ROUNDS && now == seen; round++) {
            cpu_relax();
            now = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE);
        }
        if (now == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((now = __atomic_load_n(&pool.generation, __ATOMIC_ACQUIRE)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = now;
        if (part < pool.parts)
            pool.fn(pool.context, part, pool.parts);
        __atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* A forked child has none of its parent's workers. */
static void forget_workers(void) {
    pthread_mutex_t unlocked = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
    pool.busy = pool.lock = unlocked;
    pool.wake = idle;
    pool.started = 0;
}

/* Run fn(context, part, parts) for every part, on up to `parts` threads at once. */
static void parallel(PartFn fn, void *context, int parts) {
    parts = parts < pool_threads ? parts : pool_threads;
    if (parts > 1 && pthread_mutex_trylock(&pool.busy) == 0) {
        while (pool.started < parts - 1) {
            pthread_t thread;
            pool.first[pool.started + 1] = pool.generation;
            if (pthread_create(&thread, NULL, worker, (void *)(intptr_t)(pool.started + 1)) != 0)
                break;
            pthread_detach(thread);
            pool.started++;
        }
        parts = parts < pool.started + 1 ? parts : pool.started + 1;
        if (parts > 1) {
            pool.fn = fn;
            pool.context = context;
            pool.parts = parts;
            __atomic_store_n(&pool.pending, pool.started, __ATOMIC_RELAXED);
            pthread_mutex_lock(&pool.lock);
            __atomic_add_fetch(&pool.generation, 1, __ATOMIC_RELEASE);
            pthread_cond_broadcast(&pool.wake);
            pthread_mutex_unlock(&pool.lock);
            fn(context, 0, parts);
            while (__atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0)
                cpu_relax();
            pthread_mutex_unlock(&pool.busy);
            return;
        }
        pthread_mutex_unlock(&pool.busy);
    }
    fn(context, 0, 1);
}
#else
static void parallel(PartFn fn, void *context, int parts) { (void)parts, fn(context, 0, 1); }
#endif

/* The parts a job of `elements` elements in `units` indivisible units is worth splitting into. */
static int parts_for(Py_ssize_t elements, Py_ssize_t units) {
    if (elements < PARALLEL_MIN || units < 2)
        return 1;
    return units < pool_threads ? (int)units : pool_threads;
}

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

/* Whether `source` may be read by one part while other parts write `dst`: it shares no memory with
   `dst`, or it is `dst` itself, element for element. */
static int separate_or_same(const Py_buffer *source, const Py_buffer *dst) {
    return apart(source, dst) || (source->buf == dst->buf && same_shape(source, dst)
                                  && memcmp(source->strides, dst->strides, sizeof(Py_ssize_t) * (size_t)dst->ndim) == 0);
}

typedef struct {
    const Kernel *k;
    const Py_buffer *src, *other, *dst;
    Params params;
    const float *bias;
    int bias_axis, direct, failed;
    Py_ssize_t rows, inner;  /* rows: the product of the outer extents */
} Traversal;

/* One part of a traversal: a range of whole rows. */
static void traverse_rows(void *context, int part, int parts) {
    Traversal *w = context;
    const Py_buffer *src = w->src, *other = w->other, *dst = w->dst;
    Py_ssize_t begin = w->rows * part / parts, end = w->rows * (part + 1) / parts, index[MAX_DIMS] = {0};
    if (begin == end)
        return;
    Packer *q = PyMem_RawMalloc(sizeof(Packer));
    if (!q) {
        w->failed = 1;
        return;
    }
    int ndim = src->ndim;
    Params p = w->params;
    q->span = pick(w->k);
    q->packed = p;
    q->packed.apart = 1;  /* packed spans work on local copies */
    if (w->bias) {
        q->packed.bias = q->bias_local;
        q->packed.bias_step = 1;
    }
    q->src_item = item_size(w->k->src_format);
    q->dst_item = item_size(w->k->dst_format);
    q->src_step = ndim ? src->strides[ndim - 1] : q->src_item;
    q->dst_step = ndim ? dst->strides[ndim - 1] : q->dst_item;
    q->other_step = other && ndim ? other->strides[ndim - 1] : 2;
    if (other)
        q->packed.other = q->other_local;
    q->used = q->pieces = 0;
    const char *s = src->buf, *o = other ? other->buf : NULL;
    char *t = dst->buf;
    for (Py_ssize_t d = ndim - 2, rest = begin; d >= 0; d--) {  /* the odometer at row `begin` */
        index[d] = rest % src->shape[d];
        rest /= src->shape[d];
        s += index[d] * src->strides[d];
        t += index[d] * dst->strides[d];
        if (o)
            o += index[d] * other->strides[d];
    }
    Py_ssize_t inner = w->inner, bias_step = p.bias_step;
    for (Py_ssize_t row = begin; row < end; row++) {
        const float *row_bias = w->bias && w->bias_axis < ndim - 1 ? w->bias + index[w->bias_axis] : w->bias;
        for (Py_ssize_t start = 0; start < inner; start += SPAN) {
            Py_ssize_t n = inner - start < SPAN ? inner - start : SPAN;
            const float *span_bias = row_bias ? row_bias + start * bias_step : NULL;
            const char *span_other = o ? o + start * q->other_step : NULL;
            if (w->direct) {
                p.bias = span_bias;
                p.other = (const uint16_t *)span_other;
                q->span(s + start * q->src_step, t + start * q->dst_step, n, &p);
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
    PyMem_RawFree(q);
}

/* Apply `k` to same-shaped strided buffers; `bias` (one per index of `bias_axis`) and the second
   fp16 operand `other` are optional. Rows are shared among the pool's threads when every source is
   apart from the destination or is the destination itself. */
static int traverse(const Kernel *k, Py_buffer *src, Py_buffer *other, Py_buffer *dst, Params *p, const float *bias, int bias_axis) {
    int ndim = src->ndim;
    if (ndim > MAX_DIMS || !same_shape(src, dst) || (other && !same_shape(src, other))) {
        PyErr_Format(PyExc_ValueError, "%s: operands and destination must have the same shape (up to %d axes)", k->name, MAX_DIMS);
        return -1;
    }
    Traversal w = {.k = k, .src = src, .other = other, .dst = dst, .bias = bias, .bias_axis = bias_axis,
                   .inner = ndim ? src->shape[ndim - 1] : 1, .rows = 1};
    for (int d = 0; d < ndim - 1; d++)
        w.rows *= src->shape[d];
    if (w.inner == 0 || w.rows == 0)
        return 0;
    p->apart = apart(src, dst) && (!other || apart(other, dst));
    w.params = *p;
    Py_ssize_t src_item = item_size(k->src_format), dst_item = item_size(k->dst_format);
    w.direct = w.inner >= (p->apart ? 8 : DIRECT) && (!ndim || (src->strides[ndim - 1] == src_item && dst->strides[ndim - 1] == dst_item
                                                                && (!other || other->strides[ndim - 1] == 2)));
    int parts = separate_or_same(src, dst) && (!other || separate_or_same(other, dst)) ? parts_for(w.rows * w.inner, w.rows) : 1;
    Py_BEGIN_ALLOW_THREADS
    parallel(traverse_rows, &w, parts);
    Py_END_ALLOW_THREADS
    if (w.failed) {
        PyErr_NoMemory();
        return -1;
    }
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
   copies its rows out of it. The pool's threads share the planes. */
typedef struct {
    const Py_buffer *src, *cols;
    Py_ssize_t kh, kw, sy, sx, py, px, dy, dx, rows, width;  /* rows, width: the local plane's */
    int flush, failed;
} Windows;

static void gather_planes(void *context, int part, int parts) {
    Windows *g = context;
    const Py_buffer *src = g->src, *cols = g->cols;
    Py_ssize_t channels = src->shape[1], h = src->shape[2], w = src->shape[3], ho = cols->shape[4], wo = cols->shape[5];
    Py_ssize_t planes = src->shape[0] * channels, begin = planes * part / parts, end = planes * (part + 1) / parts;
    float *plane = PyMem_RawCalloc((size_t)(g->rows * g->width), 4);
    if (!plane) {
        g->failed = 1;
        return;
    }
    Params p = {.flush = g->flush, .apart = 1};  /* the local plane is apart from the source */
    SpanKernel widen_span = pick(&WIDEN);
    uint16_t line[SPAN];
    float *out = (float *)cols->buf + begin * g->kh * g->kw * ho * wo;
    for (Py_ssize_t index = begin; index < end; index++) {
        const char *base = (const char *)src->buf + (index / channels) * src->strides[0] + (index % channels) * src->strides[1];
        for (Py_ssize_t y = 0; y < h; y++) {
            const char *row = base + y * src->strides[2];
            float *target = plane + (g->py + y) * g->width + g->px;
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
        for (Py_ssize_t i = 0; i < g->kh; i++)
            for (Py_ssize_t j = 0; j < g->kw; j++)
                for (Py_ssize_t y = 0; y < ho; y++, out += wo)
                    copy_row(out, plane + (y * g->sy + i * g->dy) * g->width + j * g->dx, wo, g->sx);
    }
    PyMem_RawFree(plane);
}

static int gather_windows(Py_buffer *src, Py_buffer *cols, const Py_ssize_t *geometry, int flush) {
    Windows g = {.src = src, .cols = cols, .kh = geometry[0], .kw = geometry[1], .sy = geometry[2], .sx = geometry[3],
                 .py = geometry[4], .px = geometry[5], .dy = geometry[6], .dx = geometry[7], .flush = flush};
    if (src->ndim != 4 || cols->ndim != 6 || cols->shape[0] != src->shape[0] || cols->shape[1] != src->shape[1]
        || cols->shape[2] != g.kh || cols->shape[3] != g.kw || !PyBuffer_IsContiguous(cols, 'C') || g.py < 0 || g.px < 0) {
        PyErr_SetString(PyExc_ValueError, "windows: the source must be [N, C, H, W] and the columns a C-contiguous [N, C, kh, kw, ho, wo]");
        return -1;
    }
    if (cols->len == 0)
        return 0;
    Py_ssize_t ho = cols->shape[4], wo = cols->shape[5];
    /* the local plane covers the source and every window: rows, columns */
    g.rows = (ho - 1) * g.sy + (g.kh - 1) * g.dy + 1;
    g.width = (wo - 1) * g.sx + (g.kw - 1) * g.dx + 1;
    g.rows = g.rows > g.py + src->shape[2] ? g.rows : g.py + src->shape[2];
    g.width = g.width > g.px + src->shape[3] ? g.width : g.px + src->shape[3];
    Py_ssize_t planes = src->shape[0] * src->shape[1];
    Py_BEGIN_ALLOW_THREADS
    parallel(gather_planes, &g, parts_for(cols->len / 4, planes));
    Py_END_ALLOW_THREADS
    if (g.failed) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* -- matrix products through the BLAS numpy uses --------------------------------------------- */

/* numpy's OpenBLAS (ILP64 CBLAS), found by `use_blas`. The pool's threads share a product, each
   calling sgemm on its part while the caller holds OpenBLAS to one thread (Python's
   `single_threaded_blas`): OpenBLAS's own threads would keep spinning on the other cores after
   every product, where the kernels above need them.
   The parts depend on the shapes alone, never on the thread count, so the bits do not either: the
   entries of a batch, or bands of a lone product's output (see `bands`). */
typedef void (*Sgemm)(int order, int transpose_a, int transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
static Sgemm sgemm;
enum { ROW_MAJOR = 101, NO_TRANSPOSE = 111, TRANSPOSE = 112 };
#define BAND_ALIGN 16       /* a band's first row or column is a multiple of this */
#define BAND_WORK (1 << 22) /* multiply-adds: a product is split in bands of at least about this many */
#define MAX_BANDS 2

typedef struct {
    const char *a, *b;
    char *out;
    Py_ssize_t batch, m, n, k, a_batch, b_batch;  /* the batch strides in bytes (0: broadcast) */
    int transpose_a, transpose_b, bands;
    int64_t lda, ldb;
} Product;

/* How BLAS reads a matrix of `rows` x `cols` float32 elements with these byte strides: row-major
   (0) or transposed (1), its leading dimension in `ld`; -1 when it needs a copy. */
static int blas_layout(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row_stride, Py_ssize_t col_stride, int64_t *ld) {
    if ((col_stride == 4 || cols == 1) && (rows == 1 || (row_stride % 4 == 0 && row_stride >= 4 * cols))) {
        *ld = rows == 1 ? cols : row_stride / 4;
        return 0;
    }
    if ((row_stride == 4 || rows == 1) && (cols == 1 || (col_stride % 4 == 0 && col_stride >= 4 * rows))) {
        *ld = cols == 1 ? rows : col_stride / 4;
        return 1;
    }
    return -1;
}

/* The bands of a lone m x n product summing over k: a power of two, at most MAX_BANDS, each about
   BAND_WORK multiply-adds or more and BAND_ALIGN lines or more, along the output's longer axis
   (columns when n >= m). fp16_kernels.bands is the same rule. */
static int bands(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t extent = n >= m ? n : m;
    double work = (double)m * (double)n * (double)k;
    int count = 1;
    while (count < MAX_BANDS && work >= 2.0 * count * BAND_WORK && extent >= 2 * count * BAND_ALIGN)
        count *= 2;
    return count;
}

static Py_ssize_t band_start(Py_ssize_t extent, int band, int count) {
    return band == count ? extent : extent * band / count / BAND_ALIGN * BAND_ALIGN;
}

/* out[b][r0:r1, c0:c1] of batch entry b. */
static void product_block(const Product *g, Py_ssize_t b, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1) {
    const float *a = (const float *)(g->a + b * g->a_batch), *bb = (const float *)(g->b + b * g->b_batch);
    a += g->transpose_a ? r0 : r0 * g->lda;
    bb += g->transpose_b ? c0 * g->ldb : c0;
    float *out = (float *)g->out + b * g->m * g->n + r0 * g->n + c0;
    sgemm(ROW_MAJOR, g->transpose_a ? TRANSPOSE : NO_TRANSPOSE, g->transpose_b ? TRANSPOSE : NO_TRANSPOSE, r1 - r0, c1 - c0,
          g->k, 1.0f, a, g->lda, bb, g->ldb, 0.0f, out, g->n);
}

/* One part: a share of the batch entries, or of the bands. */
static void product_part(void *context, int part, int parts) {
    const Product *g = context;
    Py_ssize_t units = g->batch > 1 ? g->batch : g->bands;
    for (Py_ssize_t unit = units * part / parts; unit < units * (part + 1) / parts; unit++) {
        if (g->batch > 1)
            product_block(g, unit, 0, g->m, 0, g->n);
        else if (g->n >= g->m)
            product_block(g, 0, 0, g->m, band_start(g->n, (int)unit, g->bands), band_start(g->n, (int)unit + 1, g->bands));
        else
            product_block(g, 0, band_start(g->m, (int)unit, g->bands), band_start(g->m, (int)unit + 1, g->bands), 0, g->n);
    }
}

static PyObject *matmul(PyObject *self, PyObject *args) {
    PyObject *a, *b, *out;
    if (!PyArg_ParseTuple(args, "OOO:matmul", &a, &b, &out))
        return NULL;
    if (!sgemm)
        Py_RETURN_FALSE;
    Buffers v;
    memset(&v, 0, sizeof v);
    PyObject *result = NULL;
    if (PyObject_GetBuffer(a, &v.src, PyBUF_STRIDES | PyBUF_FORMAT) < 0 || PyObject_GetBuffer(b, &v.other, PyBUF_STRIDES | PyBUF_FORMAT) < 0
        || PyObject_GetBuffer(out, &v.dst, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0
        || check_format(&v.src, 'f', "a", "matmul") < 0 || check_format(&v.other, 'f', "b", "matmul") < 0
        || check_format(&v.dst, 'f', "out", "matmul") < 0)
        goto done;
    const Py_buffer *x = &v.src, *y = &v.other, *z = &v.dst;
    if (x->ndim != 3 || y->ndim != 3 || z->ndim != 3 || x->shape[0] != z->shape[0] || y->shape[0] != z->shape[0]
        || x->shape[1] != z->shape[1] || y->shape[2] != z->shape[2] || x->shape[2] != y->shape[1]) {
        PyErr_SetString(PyExc_ValueError, "matmul: a [B, M, K], b [B, K, N] and out [B, M, N] must agree");
        goto done;
    }
    Product g = {.a = x->buf, .b = y->buf, .out = z->buf, .batch = z->shape[0], .m = z->shape[1], .n = z->shape[2],
                 .k = x->shape[2], .a_batch = x->strides[0], .b_batch = y->strides[0]};
    g.transpose_a = blas_layout(g.m, g.k, x->strides[1], x->strides[2], &g.lda);
    g.transpose_b = blas_layout(g.k, g.n, y->strides[1], y->strides[2], &g.ldb);
    if (g.transpose_a < 0 || g.transpose_b < 0 || g.m < 2 || g.n < 2 || g.k == 0) {
        result = Py_NewRef(Py_False);  /* numpy's: a copy, a vector product (gemv) or nothing to do */
        goto done;
    }
    g.bands = bands(g.m, g.n, g.k);
    int parts = parts_for(g.m * g.n * g.k * g.batch, g.batch > 1 ? g.batch : g.bands);
    Py_BEGIN_ALLOW_THREADS
    parallel(product_part, &g, parts);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_True);
done:
    release(&v);
    return result;
}

static PyObject *use_blas(PyObject *self, PyObject *args) {
    unsigned long long sgemm_address;
    if (!PyArg_ParseTuple(args, "K:use_blas", &sgemm_address))
        return NULL;
    sgemm = (Sgemm)(uintptr_t)sgemm_address;
    Py_RETURN_NONE;
}

static PyObject *set_threads(PyObject *self, PyObject *arg) {
    long threads = PyLong_AsLong(arg);
    if (threads == -1 && PyErr_Occurred())
        return NULL;
    pool_threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : (int)threads;
    Py_RETURN_NONE;
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
    {"matmul", matmul, METH_VARARGS,
     "matmul(a: f32 [B,M,K], b: f32 [B,K,N], out: f32 [B,M,N] C-contiguous) -> whether it ran (BLAS found, layouts BLAS reads)."},
    {"use_blas", use_blas, METH_VARARGS, "use_blas(sgemm): the address of numpy's ILP64 cblas_sgemm (0: none; `matmul` then declines)."},
    {"set_threads", set_threads, METH_O, "set_threads(n): the threads a kernel may use (1 to 16)."},
    {"use_vector_path", use_vector_path, METH_O, "use_vector_path(flag): run the AVX2/F16C kernels (True) or the portable scalar ones."},
    {"uses_vector_path", uses_vector_path, METH_NOARGS, "Whether the kernels run the AVX2/F16C vector path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fp16", "fp16 storage kernels for the functional simulator.", -1, methods};

PyMODINIT_FUNC PyInit__fp16(void) {
#ifdef HAVE_THREADS
    pthread_atfork(NULL, NULL, forget_workers);
#endif
    return PyModule_Create(&module);
}
