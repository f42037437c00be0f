/* In-place per-channel PReLU for subpixel's inference runner (optional; see subpixel/native/__init__.py).
 *
 * x[o, c, i] = x < 0 ? round(x * slope[c]) : x, for x viewed as (outer, channels, inner): inner = 1 for a
 * channels-last tensor (a pixel's channels are adjacent), inner = the plane for a contiguous one. Values are
 * bfloat16 (rounded to nearest even, as PyTorch rounds a bfloat16 product) or float32. One pass over memory where
 * PyTorch's eager bfloat16 PReLU takes a scalar pass or, composed as max(x, 0) + a*min(x, 0), four.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef int64_t i64;

#define LANES 16 /* channels-last: slopes tiled over LANES pixels, so the inner loop has no modulo */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN, as c10::BFloat16 */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void prelu_bf16_run(uint16_t *restrict x, i64 n, const float *restrict t) {
    for (i64 j = 0; j < n; j++) {
        float v = bf16_to_f32(x[j]);
        uint16_t p = f32_to_bf16(v * t[j]);
        x[j] = v < 0.0f ? p : x[j];
    }
}

static void prelu_f32_run(float *restrict x, i64 n, const float *restrict t) {
    for (i64 j = 0; j < n; j++) {
        float v = x[j];
        x[j] = v < 0.0f ? v * t[j] : v;
    }
}

static void prelu_bf16_plane(uint16_t *restrict x, i64 n, float a) {
    for (i64 j = 0; j < n; j++) {
        float v = bf16_to_f32(x[j]);
        uint16_t p = f32_to_bf16(v * a);
        x[j] = v < 0.0f ? p : x[j];
    }
}

static void prelu_f32_plane(float *restrict x, i64 n, float a) {
    for (i64 j = 0; j < n; j++) {
        float v = x[j];
        x[j] = v < 0.0f ? v * a : v;
    }
}

/* x: (outer, channels, inner) dense; slope: channels float32 values (already rounded to x's type); elsize 2
 * (bfloat16) or 4 (float32). Returns 0, -1 for arguments the kernel does not take, -2
 * when memory for the slope table cannot be had. */
int sp_prelu_inplace(void *x, i64 outer, i64 channels, i64 inner, const float *slope, i64 elsize, i64 threads) {
    if (outer < 0 || channels < 1 || inner < 1 || (elsize != 2 && elsize != 4)) return -1;
    if (threads < 1) threads = 1;
    if (inner == 1) {
        const i64 width = LANES * channels; /* elements in a block of LANES pixels */
        float *table = malloc((size_t)width * sizeof(float));
        if (table == NULL) return -2;
        for (i64 j = 0; j < width; j++) table[j] = slope[j % channels];
        const float *t = table;
        const i64 blocks = (outer + LANES - 1) / LANES;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
        for (i64 b = 0; b < blocks; b++) {
            i64 pixels = (b + 1) * LANES <= outer ? LANES : outer - b * LANES;
            i64 start = b * width;
            if (elsize == 2) prelu_bf16_run((uint16_t *)x + start, pixels * channels, t);
            else prelu_f32_run((float *)x + start, pixels * channels, t);
        }
        free(table);
        return 0;
    }
    const i64 planes = outer * channels;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 p = 0; p < planes; p++) {
        float a = slope[p % channels];
        if (elsize == 2) prelu_bf16_plane((uint16_t *)x + p * inner, inner, a);
        else prelu_f32_plane((float *)x + p * inner, inner, a);
    }
    return 0;
}

/* PReLU then quantization to uint8, channels-last bfloat16 in, uint8 out (the int8 runner's activation):
 * y = clamp(round_half_even(prelu(x) / scale) + zero, 0, 255), computed as prelu(x) * (1 / scale) + zero in
 * float32. x, y: (pixels, channels) dense; slope: channels float32 values; inv = 1 / scale.
 * Returns 0, -1 for arguments the kernel does not take, -2 when memory for the slope table cannot be had. */
static void prelu_quantize_scalar(const uint16_t *restrict x, uint8_t *restrict y, i64 n, const float *restrict t,
                                  float inv, float zero) {
    for (i64 j = 0; j < n; j++) {
        float v = bf16_to_f32(x[j]);
        float f = (v < 0.0f ? v * t[j] : v * inv) + zero;
        f = f < 0.0f ? 0.0f : (f > 255.0f ? 255.0f : f);
        y[j] = (uint8_t)nearbyintf(f);
    }
}

int sp_prelu_quantize_u8(const void *x, void *y, i64 pixels, i64 channels, const float *slope, float inv,
                         float zero, i64 threads) {
    if (pixels < 0 || channels < 1 || !(inv > 0.0f) || !(zero >= 0.0f && zero <= 255.0f)) return -1;
    if (threads < 1) threads = 1;
    const i64 width = LANES * channels; /* a block of LANES pixels: a whole number of 16-float vectors */
    float *table = aligned_alloc(64, ((size_t)width * sizeof(float) + 63) / 64 * 64);
    if (table == NULL) return -2;
    for (i64 j = 0; j < width; j++) table[j] = slope[j % channels] * inv; /* the negative side's factor */
    const float *t = table;
    const uint16_t *src = x;
    uint8_t *dst = y;
    const i64 blocks = (pixels + LANES - 1) / LANES;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 b = 0; b < blocks; b++) {
        const i64 count = ((b + 1) * LANES <= pixels ? LANES : pixels - b * LANES) * channels;
        const uint16_t *s = src + b * width;
        uint8_t *d = dst + b * width;
#ifdef __AVX512F__
        if (count == width) {
            const __m512 vinv = _mm512_set1_ps(inv), vzero = _mm512_set1_ps(zero), nil = _mm512_setzero_ps();
            for (i64 j = 0; j < width; j += 16) {
                __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + j)));
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
                __mmask16 neg = _mm512_cmp_ps_mask(v, nil, _CMP_LT_OQ);
                __m512 r = _mm512_mask_mul_ps(_mm512_mul_ps(v, vinv), neg, v, _mm512_load_ps(t + j));
                /* rounds half to even (the default MXCSR mode); below 0 to 0, above 255 saturated */
                __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_add_ps(r, vzero)), _mm512_setzero_si512());
                _mm_storeu_si128((__m128i *)(d + j), _mm512_cvtusepi32_epi8(q));
            }
            continue;
        }
#endif
        prelu_quantize_scalar(s, d, count, t, inv, zero);
    }
    free(table);
    return 0;
}
