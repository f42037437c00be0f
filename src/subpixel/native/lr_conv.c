/* The last layer of an SR network in one pass (optional; see subpixel/native/__init__.py): a k x k convolution
 * in LR space to r^2 channels, periodic shuffling, the bias and a nearest-neighbour skip, written straight into
 * the HR float32 plane.
 *
 * A general convolution library pads few output channels up to a whole vector (oneDNN computes 16 for the 4 of
 * a x2 network), so the cheapest layer of the network cost as much as a 27 -> 16 one. Here the vector runs over
 * 16 adjacent pixels instead: the input is first laid out as channel pairs (sp_prelu_pairs, which applies the
 * PReLU before it on the way), plane by plane, so that 16 pixels' values of one channel pair are one 64-byte
 * load, and each of the r^2 outputs is one accumulator: one vdpbf16ps per tap, channel pair and output (float32
 * accumulation of exact bf16 products). Built only where the compiler targets AVX-512 BF16
 * (sp_lr_conv_available() says so); plain C was slower than the library's padded convolution, so elsewhere the
 * caller keeps the library's.
 *
 * Pair layout: pairs[n][p][y][x][2] uint16 (bf16) for p < ceil(C / 2), y < h + 2 * pad, x < row: channel 2p and
 * 2p + 1 of LR pixel (y - pad, x - pad), zero outside the image (the convolution's zero padding), for a missing
 * odd channel and up to the row's end (row >= ceil(w / 32) * 32 + 2 * pad: whole groups of blocks may be read).
 */
#include <stdint.h>
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
#endif

static inline i64 row_needed(i64 w, i64 pad) { return (w + 2 * BLOCK - 1) / (2 * BLOCK) * (2 * BLOCK) + 2 * pad; }

/* pairs (layout above) = PReLU(x) for x (n, h, w, c) channels-last bfloat16, slope per channel (float32, the bf16
 * values): v < 0 ? bf16(v * slope) : v, as sp_prelu_inplace rounds it. Returns 0, -1 for arguments it does not
 * take, -2 in a build without the kernels. */
int sp_prelu_pairs(const uint16_t *x, i64 n, i64 h, i64 w, i64 c, const float *slope, uint16_t *pairs, i64 pad,
                   i64 row, i64 threads) {
#ifndef SP_DPBF16
    (void)x, (void)n, (void)h, (void)w, (void)c, (void)slope, (void)pairs, (void)pad, (void)row, (void)threads;
    return -2;
#else
    if (n < 0 || h < 1 || w < 1 || c < 2 || pad < 0 || row < row_needed(w, pad)) return -1;
    if (threads < 1) threads = 1;
    const i64 np = (c + 1) / 2, hp = h + 2 * pad, plane = hp * row * 2;
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 t = 0; t < n * hp; t++) {
        const i64 b = t / hp, y = t % hp - pad;
        uint16_t *base = pairs + b * np * plane + (y + pad) * row * 2;
        if (y < 0 || y >= h) {
            for (i64 p = 0; p < np; p++) memset(base + p * plane, 0, (size_t)row * 2 * sizeof(uint16_t));
            continue;
        }
        const uint16_t *src = x + (b * h + y) * w * c;
        for (i64 p = 0; p < np; p++) {
            uint32_t *o = (uint32_t *)(void *)(base + p * plane);
            for (i64 j = 0; j < w; j += BLOCK) /* lanes past w are written as 0 */
                pairs_16(src + j * c, c, p, w - j < BLOCK ? w - j : BLOCK, slope, o + pad + j);
            memset(o, 0, (size_t)pad * sizeof(uint32_t));
            memset(o + pad + w, 0, (size_t)(row - pad - w) * sizeof(uint32_t));
        }
    }
    return 0;
#endif
}

/* out (n, h * r, w * r) float32 = pixel_shuffle(conv(pairs, weight) + bias, r) + nearest(skip): weight packed as
 * wp[dy][dx][p][o] = (bf16 W[o][2p] | bf16 W[o][2p + 1] << 16), o < r^2 with r in 2..4; skip (n, h, w) float32 or
 * NULL; pairs laid out with pad = k / 2 and the given row length. Returns 0, -1 for arguments it does not take,
 * -2 in a build without the kernels. */
int sp_lr_conv_shuffle(const uint16_t *pairs, i64 n, i64 np, i64 h, i64 w, i64 k, i64 row, const uint32_t *wp,
                       const float *bias, const float *skip, i64 r, float *out, i64 threads) {
#ifndef SP_DPBF16
    (void)pairs, (void)n, (void)np, (void)h, (void)w, (void)k, (void)row, (void)wp, (void)bias, (void)skip, (void)r,
        (void)out, (void)threads;
    return -2;
#else
    const i64 oc = r * r, pad = k / 2;
    if (n < 0 || np < 1 || h < 1 || w < 1 || k < 1 || k % 2 == 0 || r < 2 || r > 4 || row < row_needed(w, pad))
        return -1;
    if (threads < 1) threads = 1;
    const i64 hp = h + 2 * pad, plane = hp * row * 2, rowst = row * 2, blocks = (w + BLOCK - 1) / BLOCK;
    const i64 group = oc == 4 ? 2 : 1; /* blocks computed together (DEFINE_BLOCK's NB); the row holds whole groups */
#pragma omp parallel for num_threads((int)threads) schedule(static) if (threads > 1)
    for (i64 t = 0; t < n * h; t++) {
        const i64 b = t / h, i = t % h;
        float acc[2 * 16 * BLOCK];
        for (i64 q0 = 0; q0 < blocks; q0 += group) {
            const uint16_t *src = pairs + b * np * plane + i * rowst + q0 * BLOCK * 2; /* tap (0, 0) of (i, j) */
            if (oc == 4) block_4(src, np, k, plane, rowst, wp, acc);
            else if (oc == 9) block_9(src, np, k, plane, rowst, wp, acc);
            else block_16(src, np, k, plane, rowst, wp, acc);
            for (i64 q = 0; q < group && q0 + q < blocks; q++) {
                const i64 j = (q0 + q) * BLOCK, count = w - j < BLOCK ? w - j : BLOCK;
                write_block(acc + q * oc * BLOCK, r, count, bias, skip ? skip + (b * h + i) * w + j : NULL,
                            out + ((b * h + i) * r) * (w * r) + j * r, w * r);
            }
        }
    }
    return 0;
#endif
}
