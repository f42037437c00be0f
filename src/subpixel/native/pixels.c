/* Image-path kernels for subpixel's upscaling (optional; see subpixel/native/__init__.py).
 *
 * sp_quantize: float samples in [0, 1] -> uint8 / uint16 exactly as subpixel.imageio.quantize rounds them.
 * sp_colour_quantize: a 3x3 colour affine (YCbCr -> RGB, say) and the same rounding, in one pass.
 * sp_bicubic_upscale: MATLAB's bicubic upscaling by an integer factor (edges repeated), separably.
 * Strides are in elements, so an (h, w, C) image seen as (C, h, w) needs no copy. Rows are split among threads;
 * within a row the work goes in chunks of CHUNK pixels through small local buffers, so that the arithmetic runs
 * on contiguous arrays (vectorized) and only the final interleaving store is strided.
 */
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef int64_t i64;

#define CHUNK 256

/* subpixel.imageio.quantize for one sample: NaN -> 0, clamped to [0, 1], times top, rounded half up, in double
 * (written as the two comparisons a vector max and min compute, so that the loops calling it vectorize). */
static inline int32_t round_unit(double v, double top) {
    v = v + 0.0; /* a computed value: GCC 12 if-converts (vectorizes) the comparisons then, not on a loaded one */
    v = v > 0.0 ? v : 0.0; /* NaN -> 0 too */
    v = v < 1.0 ? v : 1.0;
    return (int32_t)(v * top + 0.5);
}

/* q[c * CHUNK + k] -> dst[c * dc + k * dx] for k < n, as uint8 (bits 8) or uint16. */
static void store_chunk(const int32_t *q, i64 n, i64 channels, void *dst, i64 dc, i64 dx, i64 bits) {
    if (bits == 8) {
        uint8_t *d = dst;
        for (i64 k = 0; k < n; k++)
            for (i64 c = 0; c < channels; c++) d[c * dc + k * dx] = (uint8_t)q[c * CHUNK + k];
    } else {
        uint16_t *d = dst;
        for (i64 k = 0; k < n; k++)
            for (i64 c = 0; c < channels; c++) d[c * dc + k * dx] = (uint16_t)q[c * CHUNK + k];
    }
}

static inline void *advance(void *dst, i64 elements, i64 bits) {
    return bits == 8 ? (void *)((uint8_t *)dst + elements) : (void *)((uint16_t *)dst + elements);
}

/* dst[c, y, x] = quantize(src[c, y, x]) for c < channels (at most 4); dst uint8 (bits 8, top 255) or uint16
 * (bits 16, top 65535). Returns 0, or -1 for arguments it does not take. */
int sp_quantize(const float *src, i64 sc, i64 sy, i64 sx, void *dst, i64 dc, i64 dy, i64 dx, i64 channels,
                i64 height, i64 width, i64 bits, i64 threads) {
    if (channels < 1 || channels > 4 || height < 0 || width < 0 || (bits != 8 && bits != 16)) return -1;
    if (threads < 1) threads = 1;
    const double top = bits == 8 ? 255.0 : 65535.0;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 y = 0; y < height; y++) {
        int32_t q[4 * CHUNK];
        for (i64 x0 = 0; x0 < width; x0 += CHUNK) {
            const i64 n = width - x0 < CHUNK ? width - x0 : CHUNK;
            for (i64 c = 0; c < channels; c++) {
                const float *s = src + c * sc + y * sy + x0 * sx;
                int32_t *o = q + c * CHUNK;
                if (sx == 1)
                    for (i64 k = 0; k < n; k++) o[k] = round_unit((double)s[k], top);
                else
                    for (i64 k = 0; k < n; k++) o[k] = round_unit((double)s[k * sx], top);
            }
            store_chunk(q, n, channels, advance(dst, y * dy + x0 * dx, bits), dc, dx, bits);
        }
    }
    return 0;
}

/* dst[c, y, x] = quantize(m[c][0] * src[0, y, x] + m[c][1] * src[1, y, x] + m[c][2] * src[2, y, x] + b[c]) for
 * c < 3, in double (the products and sums in that order, each rounded once); dst as in sp_quantize. */
int sp_colour_quantize(const float *src, i64 sc, i64 sy, i64 sx, const double *m, const double *b, void *dst,
                       i64 dc, i64 dy, i64 dx, i64 height, i64 width, i64 bits, i64 threads) {
    if (height < 0 || width < 0 || (bits != 8 && bits != 16)) return -1;
    if (threads < 1) threads = 1;
    const double top = bits == 8 ? 255.0 : 65535.0;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 y = 0; y < height; y++) {
        int32_t q[3 * CHUNK];
        double v0[CHUNK], v1[CHUNK], v2[CHUNK];
        for (i64 x0 = 0; x0 < width; x0 += CHUNK) {
            const i64 n = width - x0 < CHUNK ? width - x0 : CHUNK;
            const float *s0 = src + y * sy + x0 * sx, *s1 = s0 + sc, *s2 = s1 + sc;
            for (i64 k = 0; k < n; k++) v0[k] = (double)s0[k * sx], v1[k] = (double)s1[k * sx], v2[k] = (double)s2[k * sx];
            for (i64 c = 0; c < 3; c++) {
                const double m0 = m[3 * c], m1 = m[3 * c + 1], m2 = m[3 * c + 2], bc = b[c];
                int32_t *o = q + c * CHUNK;
                for (i64 k = 0; k < n; k++) o[k] = round_unit(m0 * v0[k] + m1 * v1[k] + m2 * v2[k] + bc, top);
            }
            store_chunk(q, n, 3, advance(dst, y * dy + x0 * dx, bits), dc, dx, bits);
        }
    }
    return 0;
}

static inline i64 clamp_index(i64 i, i64 n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

/* One output row's horizontal pass: d[(j * r + q) * dx] = sum_b taps[q][b] * t[j + b], t the vertically
 * interpolated LR row with two repeated samples on each side. */
static void horizontal(const float *restrict t, i64 width, i64 r, const float *taps, float *restrict phase,
                       float *d, i64 dx) {
    for (i64 q = 0; q < r; q++) {
        const float u0 = taps[5 * q], u1 = taps[5 * q + 1], u2 = taps[5 * q + 2], u3 = taps[5 * q + 3],
                    u4 = taps[5 * q + 4];
        float *o = phase + q * width;
        for (i64 j = 0; j < width; j++) o[j] = u0 * t[j] + u1 * t[j + 1] + u2 * t[j + 2] + u3 * t[j + 3] + u4 * t[j + 4];
    }
    if (dx == 1 && r == 2) {
        for (i64 j = 0; j < width; j++) d[2 * j] = phase[j], d[2 * j + 1] = phase[width + j];
    } else if (dx == 1 && r == 3) {
        for (i64 j = 0; j < width; j++)
            d[3 * j] = phase[j], d[3 * j + 1] = phase[width + j], d[3 * j + 2] = phase[2 * width + j];
    } else if (dx == 1 && r == 4) {
        for (i64 j = 0; j < width; j++)
            d[4 * j] = phase[j], d[4 * j + 1] = phase[width + j], d[4 * j + 2] = phase[2 * width + j],
                  d[4 * j + 3] = phase[3 * width + j];
    } else {
        for (i64 j = 0; j < width; j++)
            for (i64 q = 0; q < r; q++) d[(j * r + q) * dx] = phase[q * width + j];
    }
}

/* dst[p, Y, X] = sum_a sum_b taps[Y % r][a] * taps[X % r][b] * src[p, clamp(Y / r + a - 2), clamp(X / r + b - 2)]
 * for p < planes, Y < height * r, X < width * r: the vertical pass first (float32), then the horizontal one.
 * taps: r rows of 5 float32 weights. Returns 0, -1 for arguments it does not take, -2 when memory for the row
 * buffers cannot be had. */
int sp_bicubic_upscale(const float *src, i64 sp, i64 sy, i64 sx, float *dst, i64 dp, i64 dy, i64 dx, i64 planes,
                       i64 height, i64 width, i64 r, const float *taps, i64 threads) {
    if (planes < 0 || height < 1 || width < 1 || r < 1) return -1;
    if (threads < 1) threads = 1;
    const i64 rows = planes * height * r;
    int failed = 0;
#pragma omp parallel num_threads((int)threads) if (threads > 1)
    {
        float *t = malloc((size_t)(width + 4 + r * width) * sizeof(float));
        if (t == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (i64 row = 0; row < rows; row++) {
            if (t == NULL) continue;
            const i64 p = row / (height * r), y = row % (height * r), i = y / r;
            const float *w = taps + 5 * (y % r);
            const float *s = src + p * sp;
            const float *r0 = s + clamp_index(i - 2, height) * sy, *r1 = s + clamp_index(i - 1, height) * sy,
                        *r2 = s + i * sy, *r3 = s + clamp_index(i + 1, height) * sy,
                        *r4 = s + clamp_index(i + 2, height) * sy;
            float *c = t + 2;
            if (sx == 1)
                for (i64 j = 0; j < width; j++)
                    c[j] = w[0] * r0[j] + w[1] * r1[j] + w[2] * r2[j] + w[3] * r3[j] + w[4] * r4[j];
            else
                for (i64 j = 0; j < width; j++)
                    c[j] = w[0] * r0[j * sx] + w[1] * r1[j * sx] + w[2] * r2[j * sx] + w[3] * r3[j * sx] +
                           w[4] * r4[j * sx];
            t[0] = t[1] = c[0];
            c[width] = c[width + 1] = c[width - 1];
            horizontal(t, width, r, taps, t + width + 4, dst + p * dp + y * dy, dx);
        }
        free(t);
    }
    return failed ? -2 : 0;
}
