/* In-place per-channel PReLU for subpixel's inference runner (optional; see subpixel/native/__init__.py).
 *
 * x[o, c, i] = x < 0 ? round(x * slope[c]) : x, for x viewed as (outer, channels, inner): inner = 1 for a
 * channels-last tensor (a pixel's channels are adjacent), inner = the plane for a contiguous one. Values are
 * bfloat16 (rounded to nearest even, as PyTorch rounds a bfloat16 product) or float32. One pass over memory where
 * PyTorch's eager bfloat16 PReLU takes a scalar pass or, composed as max(x, 0) + a*min(x, 0), four.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
