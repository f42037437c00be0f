/* The last layer of an SR network in one pass (optional; see subpixel/native/__init__.py): a k x k convolution
 * in LR space to r^2 channels, periodic shuffling, the bias and a nearest-neighbour skip, written straight into
 * the HR float32 plane.
 *
 * A general convolution library pads few output channels up to a whole vector (oneDNN computes 16 for the 4 of
 * a x2 network), so the cheapest layer of the network cost as much as a 27 -> 16 one. Here the vector runs over
 * 16 adjacent pixels instead: the input is first laid out as channel pairs (applying the PReLU before the layer on
 * the way), plane by plane, so that 16 pixels' values of one channel pair are one 64-byte
 * load, and each of the r^2 outputs is one accumulator: one vdpbf16ps per tap, channel pair and output (float32
 * accumulation of exact bf16 products). Built only where the compiler targets AVX-512 BF16
 * (sp_lr_conv_available() says so); plain C was slower than the library's padded convolution, so elsewhere the
 * caller keeps the library's.
 *
 * Pair layout, per stripe of rows: pairs[p][y][x][2] uint16 (bf16) for p < ceil(C / 2): channels 2p and 2p + 1 of
 * LR pixel (y - pad, x - pad) relative to the stripe, zero outside the image (the convolution's zero padding), for
 * a missing odd channel and up to the row's end (row = ceil(w / 32) * 32 + 2 * pad: whole groups of blocks may be
 * read). A stripe's layout stays in the core's cache between being written and being read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define SP_DPBF16 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef int64_t i64;

#define BLOCK 16 /* pixels per accumulator */

/* 1 where this build has the kernels (the compiler targets AVX-512 BF16), else 0. */
int sp_lr_conv_available(void) {
#ifdef SP_DPBF16
    return 1;
#else
    return 0;
#endif
}

#ifdef SP_DPBF16
/* bf16 PReLU of the values held as the high halves (bits 16..31) of float32 lanes: v < 0 ? bf16(v * a) : v,
 * rounded to nearest even as f32_to_bf16 (a negative finite v times a finite slope is never NaN). */
static inline __m512i prelu_high(__m512i hi, __m512 a) {
    const __m512 v = _mm512_castsi512_ps(hi);
    const __m512i u = _mm512_castps_si512(_mm512_mul_ps(v, a));
    const __m512i rounded = _mm512_add_epi32(
        _mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)));
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_epi32(neg, hi, _mm512_and_si512(rounded, _mm512_set1_epi32((int)0xffff0000u)));
}

/* The pair p of 16 adjacent pixels (lanes, count of them real, the rest 0), PReLU applied: per lane channel 2p in
 * the low half and 2p + 1 in the high half; s: the first pixel's channels (c of them, channels-last). */
static void pairs_16(const uint16_t *s, i64 c, i64 p, i64 count, const float *slope, uint32_t *o) {
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)c));
    const __mmask16 mask = count >= BLOCK ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1u);
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    if (2 * p + 1 >= c) { /* only channel 2p exists: read (2p - 1, 2p), keep the high half, move it down */
        const __m512i idx = _mm512_add_epi32(lanes, _mm512_set1_epi32((int)(2 * p - 1)));
        const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, idx, (const void *)s, 2);
        const __m512i v = prelu_high(_mm512_and_si512(w, high), _mm512_set1_ps(slope[2 * p]));
        _mm512_storeu_si512((void *)o, _mm512_srli_epi32(v, 16));
        return;
    }
    const __m512i idx = _mm512_add_epi32(lanes, _mm512_set1_epi32((int)(2 * p)));
    const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, idx, (const void *)s, 2);
    const __m512i lo = prelu_high(_mm512_slli_epi32(w, 16), _mm512_set1_ps(slope[2 * p]));
    const __m512i hi = prelu_high(_mm512_and_si512(w, high), _mm512_set1_ps(slope[2 * p + 1]));
    _mm512_storeu_si512((void *)o, _mm512_or_si512(_mm512_srli_epi32(lo, 16), hi));
}

/* HR row block: out[(i * r + a), (j + l) * r + b] = acc[a * r + b][l] + bias[a * r + b] + skip[i, j + l]. */
static void write_block(const float *acc, i64 r, i64 count, const float *bias, const float *skip_row,
                        float *out_row, i64 hr_w) {
    for (i64 a = 0; a < r; a++) {
        float *o = out_row + a * hr_w;
        for (i64 l = 0; l < count; l++) {
            const float s = skip_row ? skip_row[l] : 0.0f;
            for (i64 b = 0; b < r; b++) o[l * r + b] = acc[(a * r + b) * BLOCK + l] + bias[a * r + b] + s;
        }
    }
}

/* NB blocks of 16 pixels at once, OC outputs each: OC * NB independent accumulation chains (NB = 2 for 4 outputs
 * measured fastest: 3.2 ms for a 640x360 x2 layer against 4.2 with one block and 4.6 with four).
 * src: tap (0, 0) of the first pixel in the pair layout; acc: NB consecutive (OC, BLOCK) arrays. */
#define DEFINE_BLOCK(OC, NB)                                                                                      \
    static void block_##OC(const uint16_t *src, i64 np, i64 k, i64 plane, i64 rowst, const uint32_t *wp,       \
                           float *acc) {                                                                         \
        __m512 s[NB][OC];                                                                                        \
        for (int q = 0; q < NB; q++)                                                                             \
            for (int o = 0; o < OC; o++) s[q][o] = _mm512_setzero_ps();                                          \
        for (i64 dy = 0; dy < k; dy++)                                                                           \
            for (i64 dx = 0; dx < k; dx++)                                                                       \
                for (i64 p = 0; p < np; p++) {                                                                   \
                    const uint16_t *at = src + p * plane + dy * rowst + dx * 2;                                  \
                    const uint32_t *ww = wp + ((dy * k + dx) * np + p) * OC;                                     \
                    __m512i v[NB];                                                                               \
                    for (int q = 0; q < NB; q++) v[q] = _mm512_loadu_si512((const void *)(at + q * 2 * BLOCK));  \
                    for (int o = 0; o < OC; o++) {                                                               \
                        const __m512bh wo = (__m512bh)_mm512_set1_epi32((int)ww[o]);                             \
                        for (int q = 0; q < NB; q++) s[q][o] = _mm512_dpbf16_ps(s[q][o], (__m512bh)v[q], wo);    \
                    }                                                                                            \
                }                                                                                                \
        for (int q = 0; q < NB; q++)                                                                             \
            for (int o = 0; o < OC; o++) _mm512_storeu_ps(acc + (q * OC + o) * BLOCK, s[q][o]);                 \
    }
DEFINE_BLOCK(4, 2)
DEFINE_BLOCK(9, 1)
DEFINE_BLOCK(16, 1)

#define STRIPE 16 /* LR rows per stripe: the stripe's pair layout stays in the core's L2 (677 KB for 27 x 640) */

/* Pair layout of LR row y (NULL: a zero row, outside the image) into plane 0's row at base (planes `plane` apart),
 * zero in the padding and up to the row's end. */
static void pairs_row(const uint16_t *src, i64 w, i64 c, i64 np, const float *slope, uint16_t *base, i64 plane,
                      i64 pad, i64 row) {
    for (i64 p = 0; p < np; p++) {
        uint32_t *o = (uint32_t *)(void *)(base + p * plane);
        if (src == NULL) {
            memset(o, 0, (size_t)row * sizeof(uint32_t));
            continue;
        }
        for (i64 j = 0; j < w; j += BLOCK) /* lanes past w are written as 0 */
            pairs_16(src + j * c, c, p, w - j < BLOCK ? w - j : BLOCK, slope, o + pad + j);
        memset(o, 0, (size_t)pad * sizeof(uint32_t));
        memset(o + pad + w, 0, (size_t)(row - pad - w) * sizeof(uint32_t));
    }
}

/* One output LR row: src is tap (0, 0) of its first pixel in the pair layout; out_row the first of its r HR rows. */
static void conv_row(const uint16_t *src, i64 np, i64 k, i64 plane, i64 rowst, const uint32_t *wp, i64 r,
                     i64 w, const float *bias, const float *skip_row, float *out_row) {
    const i64 oc = r * r, blocks = (w + BLOCK - 1) / BLOCK;
    const i64 group = oc == 4 ? 2 : 1; /* blocks computed together (DEFINE_BLOCK's NB); the row holds whole groups */
    float acc[2 * 16 * BLOCK];
    for (i64 q0 = 0; q0 < blocks; q0 += group) {
        const uint16_t *at = src + q0 * BLOCK * 2;
        if (oc == 4) block_4(at, np, k, plane, rowst, wp, acc);
        else if (oc == 9) block_9(at, np, k, plane, rowst, wp, acc);
        else block_16(at, np, k, plane, rowst, wp, acc);
        for (i64 q = 0; q < group && q0 + q < blocks; q++) {
            const i64 j = (q0 + q) * BLOCK, count = w - j < BLOCK ? w - j : BLOCK;
            write_block(acc + q * oc * BLOCK, r, count, bias, skip_row ? skip_row + j : NULL, out_row + j * r, w * r);
        }
    }
}
#endif

/* out (n, h * r, w * r) float32 = pixel_shuffle(conv(prelu(x), weight) + bias, r) + nearest(skip), for x (n, h, w, c)
 * channels-last bfloat16 (c >= 2), slope per channel (float32, the bf16 values; PReLU rounded as sp_prelu_inplace
 * rounds it), weight packed as wp[dy][dx][p][o] = (bf16 W[o][2p] | bf16 W[o][2p + 1] << 16) for a k x k kernel (k
 * odd, zero padding k / 2), o < r^2 with r in 2..4, skip (n, h, w) float32 or NULL. Works stripe by stripe of
 * STRIPE rows (the pair layout of its rows and k - 1 halo rows in a buffer of each thread's own), stripes split
 * among threads. Returns 0, -1 for arguments it does not take, -2 when memory for the buffers cannot be had, -3 in
 * a build without the kernels. */
int sp_lr_conv_shuffle(const uint16_t *x, i64 n, i64 h, i64 w, i64 c, const float *slope, i64 k, const uint32_t *wp,
                       const float *bias, const float *skip, i64 r, float *out, i64 threads) {
#ifndef SP_DPBF16
    (void)x, (void)n, (void)h, (void)w, (void)c, (void)slope, (void)k, (void)wp, (void)bias, (void)skip, (void)r,
        (void)out, (void)threads;
    return -3;
#else
    if (n < 0 || h < 1 || w < 1 || c < 2 || k < 1 || k % 2 == 0 || r < 2 || r > 4) return -1;
    if (threads < 1) threads = 1;
    const i64 np = (c + 1) / 2, pad = k / 2, rows = STRIPE + 2 * pad;
    const i64 row = (w + 2 * BLOCK - 1) / (2 * BLOCK) * (2 * BLOCK) + 2 * pad; /* whole groups of blocks + padding */
    const i64 plane = rows * row * 2, rowst = row * 2, stripes = (h + STRIPE - 1) / STRIPE;
    int failed = 0;
#pragma omp parallel num_threads((int)threads) if (threads > 1)
    {
        uint16_t *buf = _mm_malloc((size_t)(np * plane) * sizeof(uint16_t), 64);
        if (buf == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (i64 t = 0; t < n * stripes; t++) {
            if (buf == NULL) continue;
            const i64 b = t / stripes, i0 = (t % stripes) * STRIPE, i1 = i0 + STRIPE < h ? i0 + STRIPE : h;
            for (i64 yy = 0; yy < i1 - i0 + 2 * pad; yy++) {
                const i64 y = i0 - pad + yy;
                const uint16_t *src = y >= 0 && y < h ? x + (b * h + y) * w * c : NULL;
                pairs_row(src, w, c, np, slope, buf + yy * rowst, plane, pad, row);
            }
            for (i64 i = i0; i < i1; i++)
                conv_row(buf + (i - i0) * rowst, np, k, plane, rowst, wp, r, w, bias,
                         skip ? skip + (b * h + i) * w : NULL, out + (b * h + i) * r * (w * r));
        }
        _mm_free(buf);
    }
    return failed ? -2 : 0;
#endif
}
