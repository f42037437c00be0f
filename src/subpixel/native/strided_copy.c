/* Strided copy kernel for subpixel's shuffles (optional; see subpixel/native/__init__.py).
 *
 * dst[idx] = src[idx] for every index of an N-d array held in two strided layouts. The caller (Python) reduces
 * the copy to
 *   - outer axes, walked by an odometer and shared among OpenMP threads;
 *   - a row axis R, the innermost loop over blocks (split into chunks when the outer axes are too few);
 *   - a block of two axes: A, along which dst is contiguous, and B, along which src is contiguous (nb == 1 when
 *     they are the same axis).
 * A block is copied as a memcpy, an interleave / de-interleave (factors up to 16; 2-4 unrolled and vectorised by
 * the compiler), a gather or scatter through a precomputed offset table (small blocks, e.g. a channels-last pixel),
 * or tile by tile. All sizes and strides are in elements.
 */
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef int64_t i64;
typedef struct { uint64_t lo, hi; } u128;

#define MAX_OUTER 16
#define TILE 16

enum { MODE_DIRECT = 0, MODE_GATHER = 1, MODE_SCATTER = 2 };

/* One copy's plan (mirrored by subpixel.native._Plan): passed by address, so a call takes three arguments. */
typedef struct {
    i64 elsize, n_outer;                                            /* element bytes; outer axes used */
    i64 outer_size[MAX_OUTER], outer_src[MAX_OUTER], outer_dst[MAX_OUTER];
    i64 n_rows, ssr, dsr, chunk_r;                                  /* row axis, split into chunks of chunk_r */
    i64 na, ssa, dsa, nb, ssb, dsb;                                 /* block axes */
    i64 mode, threads;                                              /* MODE_*; OpenMP threads */
    const i64 *table;                                               /* na*nb offsets into src (gather) or dst */
} sp_plan_t;

/* The rows [r0, r1) of the row axis, each one block. The mode is chosen once, outside the row loop. */
#define DEFINE_ROWS(NAME, T)                                                                                \
static void NAME(const T *restrict s0, T *restrict d0, const sp_plan_t *p, i64 r0, i64 r1) {                 \
    const i64 na = p->na, ssa = p->ssa, dsa = p->dsa, nb = p->nb, ssb = p->ssb, dsb = p->dsb;               \
    const i64 ssr = p->ssr, dsr = p->dsr, m = na * nb;                                                      \
    const i64 *restrict tab = p->table;                                                                    \
    if (p->mode == MODE_GATHER) {                                                                          \
        for (i64 r = r0; r < r1; ++r) {                                                                    \
            const T *restrict s = s0 + r * ssr;                                                            \
            T *restrict d = d0 + r * dsr;                                                                  \
            for (i64 k = 0; k < m; ++k) d[k] = s[tab[k]];                                                  \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    if (p->mode == MODE_SCATTER) {                                                                         \
        for (i64 r = r0; r < r1; ++r) {                                                                    \
            const T *restrict s = s0 + r * ssr;                                                            \
            T *restrict d = d0 + r * dsr;                                                                  \
            for (i64 k = 0; k < m; ++k) d[tab[k]] = s[k];                                                  \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    if (nb == 1) { /* one axis, contiguous on both sides or not */                                         \
        for (i64 r = r0; r < r1; ++r) {                                                                    \
            const T *restrict s = s0 + r * ssr;                                                            \
            T *restrict d = d0 + r * dsr;                                                                  \
            if (ssa == 1 && dsa == 1) memcpy(d, s, (size_t)na * sizeof(T));                                \
            else for (i64 a = 0; a < na; ++a) d[a * dsa] = s[a * ssa];                                     \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    if (dsa == 1 && ssb == 1 && ssa == nb && nb <= 16 && na >= 16) { /* de-interleave a src row into nb rows */ \
        if (nb <= 4) {                                                                                     \
            for (i64 r = r0; r < r1; ++r) {                                                                \
                const T *restrict s = s0 + r * ssr;                                                        \
                T *restrict d = d0 + r * dsr;                                                              \
                if (nb == 2) {                                                                             \
                    T *e0 = d, *e1 = d + dsb;                                                              \
                    for (i64 a = 0; a < na; ++a) { e0[a] = s[2 * a]; e1[a] = s[2 * a + 1]; }               \
                } else if (nb == 3) {                                                                      \
                    T *e0 = d, *e1 = d + dsb, *e2 = d + 2 * dsb;                                           \
                    for (i64 a = 0; a < na; ++a) {                                                         \
                        e0[a] = s[3 * a]; e1[a] = s[3 * a + 1]; e2[a] = s[3 * a + 2];                      \
                    }                                                                                      \
                } else {                                                                                   \
                    T *e0 = d, *e1 = d + dsb, *e2 = d + 2 * dsb, *e3 = d + 3 * dsb;                        \
                    for (i64 a = 0; a < na; ++a) {                                                         \
                        e0[a] = s[4 * a]; e1[a] = s[4 * a + 1]; e2[a] = s[4 * a + 2]; e3[a] = s[4 * a + 3]; \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
            return;                                                                                        \
        }                                                                                                  \
        if (nb == 8) { /* 8x8 blocks: eight vector loads, a transpose in registers, eight vector stores */  \
            for (i64 r = r0; r < r1; ++r) {                                                                \
                const T *restrict s = s0 + r * ssr;                                                        \
                T *restrict d = d0 + r * dsr;                                                              \
                i64 a = 0;                                                                                 \
                for (; a + 8 <= na; a += 8) {                                                              \
                    T v[8][8];                                                                             \
                    for (int i = 0; i < 8; ++i)                                                            \
                        for (int j = 0; j < 8; ++j) v[j][i] = s[(a + i) * 8 + j];                          \
                    for (int j = 0; j < 8; ++j)                                                            \
                        for (int i = 0; i < 8; ++i) d[j * dsb + a + i] = v[j][i];                          \
                }                                                                                          \
                for (; a < na; ++a)                                                                        \
                    for (int j = 0; j < 8; ++j) d[j * dsb + a] = s[a * 8 + j];                             \
            }                                                                                              \
            return;                                                                                        \
        }                                                                                                  \
        /* more dst rows than write streams run well at once: a few src rows at a time, one dst row each */ \
        const i64 rows = na >= 1024 ? 1 : TILE, span = na >= 1024 ? 1024 : na; /* tens of KiB of src */    \
        for (i64 rt = r0; rt < r1; rt += rows) {                                                           \
            const i64 re = rt + rows < r1 ? rt + rows : r1;                                                \
            for (i64 at = 0; at < na; at += span) {                                                        \
                const i64 ae = at + span < na ? at + span : na;                                            \
                for (i64 b = 0; b < nb; ++b)                                                               \
                    for (i64 r = rt; r < re; ++r) {                                                        \
                        const T *restrict s = s0 + r * ssr + b;                                            \
                        T *restrict d = d0 + r * dsr + b * dsb;                                            \
                        for (i64 a = at; a < ae; ++a) d[a] = s[a * nb];                                    \
                    }                                                                                      \
            }                                                                                              \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    if (dsa == 1 && ssb == 1 && dsb == na && na <= 16 && nb >= 16) { /* interleave na src rows into one dst row */     \
        for (i64 r = r0; r < r1; ++r) {                                                                    \
            const T *restrict s = s0 + r * ssr;                                                            \
            T *restrict d = d0 + r * dsr;                                                                  \
            if (na == 2) {                                                                                 \
                const T *t0 = s, *t1 = s + ssa;                                                            \
                for (i64 b = 0; b < nb; ++b) { d[2 * b] = t0[b]; d[2 * b + 1] = t1[b]; }                   \
            } else if (na == 3) {                                                                          \
                const T *t0 = s, *t1 = s + ssa, *t2 = s + 2 * ssa;                                         \
                for (i64 b = 0; b < nb; ++b) { d[3 * b] = t0[b]; d[3 * b + 1] = t1[b]; d[3 * b + 2] = t2[b]; } \
            } else if (na == 4) {                                                                          \
                const T *t0 = s, *t1 = s + ssa, *t2 = s + 2 * ssa, *t3 = s + 3 * ssa;                      \
                for (i64 b = 0; b < nb; ++b) {                                                             \
                    d[4 * b] = t0[b]; d[4 * b + 1] = t1[b]; d[4 * b + 2] = t2[b]; d[4 * b + 3] = t3[b];     \
                }                                                                                          \
            } else {                                                                                       \
                for (i64 b = 0; b < nb; ++b)                                                               \
                    for (i64 a = 0; a < na; ++a) d[b * na + a] = s[a * ssa + b];                           \
            }                                                                                              \
        }                                                                                                  \
        return;                                                                                            \
    }                                                                                                      \
    for (i64 r = r0; r < r1; ++r) { /* transpose tile by tile */                                           \
        const T *restrict s = s0 + r * ssr;                                                                \
        T *restrict d = d0 + r * dsr;                                                                      \
        for (i64 bt = 0; bt < nb; bt += TILE) {                                                            \
            const i64 be = bt + TILE < nb ? bt + TILE : nb;                                                \
            for (i64 at = 0; at < na; at += TILE) {                                                        \
                const i64 ae = at + TILE < na ? at + TILE : na;                                            \
                for (i64 b = bt; b < be; ++b) {                                                            \
                    T *dd = d + b * dsb;                                                                   \
                    const T *ss = s + b * ssb;                                                             \
                    for (i64 a = at; a < ae; ++a) dd[a * dsa] = ss[a * ssa];                               \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
}

DEFINE_ROWS(rows_1, uint8_t)
DEFINE_ROWS(rows_2, uint16_t)
DEFINE_ROWS(rows_4, uint32_t)
DEFINE_ROWS(rows_8, uint64_t)
DEFINE_ROWS(rows_16, u128)

typedef void (*rows_fn)(const void *, void *, const sp_plan_t *, i64, i64);

/* The copy. The outer axes are listed outermost first; the row axis has n_rows rows in chunks of chunk_r.
 * Work items are (outer index, chunk) pairs, split evenly among `threads` threads.
 * Returns 0, -1 for an unsupported element size, -2 for too many outer axes. */
int sp_copy_with_plan(const void *src, void *dst, const sp_plan_t *p) {
    const int elsize = (int)p->elsize, n_outer = (int)p->n_outer;
    const i64 *outer_size = p->outer_size, *outer_src = p->outer_src, *outer_dst = p->outer_dst;
    const i64 n_rows = p->n_rows;
    i64 chunk_r = p->chunk_r;
    int threads = (int)p->threads;
    rows_fn fn;
    switch (elsize) {
        case 1: fn = (rows_fn)rows_1; break;
        case 2: fn = (rows_fn)rows_2; break;
        case 4: fn = (rows_fn)rows_4; break;
        case 8: fn = (rows_fn)rows_8; break;
        case 16: fn = (rows_fn)rows_16; break;
        default: return -1;
    }
    if (n_outer > MAX_OUTER || n_outer < 0) return -2;
    if (chunk_r < 1) chunk_r = n_rows;
    const i64 n_chunks = (n_rows + chunk_r - 1) / chunk_r;
    i64 n_out = 1;
    for (int k = 0; k < n_outer; ++k) n_out *= outer_size[k];
    const i64 items = n_out * n_chunks;
    if (items <= 0) return 0;
    if (threads < 1) threads = 1;
    if (items < threads) threads = (int)items;
    const char *s8 = (const char *)src;
    char *d8 = (char *)dst;
#pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const i64 lo = items * t / nt, hi = items * (t + 1) / nt;
        if (lo < hi) {
            i64 idx[MAX_OUTER];
            i64 rest = lo / n_chunks, chunk = lo % n_chunks, so = 0, dof = 0;
            for (int k = n_outer - 1; k >= 0; --k) { /* multi-index of item lo */
                idx[k] = rest % outer_size[k];
                rest /= outer_size[k];
                so += idx[k] * outer_src[k];
                dof += idx[k] * outer_dst[k];
            }
            for (i64 it = lo; it < hi; ++it) {
                const i64 r0 = chunk * chunk_r, r1 = r0 + chunk_r < n_rows ? r0 + chunk_r : n_rows;
                fn(s8 + so * elsize, d8 + dof * elsize, p, r0, r1);
                if (++chunk == n_chunks) { /* odometer over the outer axes */
                    chunk = 0;
                    for (int k = n_outer - 1; k >= 0; --k) {
                        so += outer_src[k];
                        dof += outer_dst[k];
                        if (++idx[k] < outer_size[k]) break;
                        so -= idx[k] * outer_src[k];
                        dof -= idx[k] * outer_dst[k];
                        idx[k] = 0;
                    }
                }
            }
        }
    }
    return 0;
}


/* ---- Tiled table gather, for the weight re-indexing (subpixel._reindex) ----------------------------------------
 *
 * For every g < ng, x < nx, y < ny and j < nj:
 *     dst[g*dg + x*dx + y*dy + dj[j]] = sj[j] < 0 ? 0 : src[g*sg + x*sx + y*sy + sj[j]]
 * (x, y) = (input channel, output channel) of a ConvTranspose, j = a kernel tap: between the weight's two layouts
 * x and y transpose and the taps move. The (x, y) plane is walked in tx x ty tiles (both sides of the transpose then
 * stay in cache); tiles are shared among OpenMP threads. Inside a tile, with x_inner the loops are
 * y, j / nji, x, j % nji (an LR destination: contiguous along x and its nji innermost taps), else x, y, j
 * (a ConvTranspose destination: contiguous along y and j). Sizes, strides and offsets in elements.
 * Returns 0, or -1 for an unsupported element size. */
#define DEFINE_GATHER(NAME, T)                                                                              \
static void NAME(const T *restrict s, T *restrict d, i64 ng, i64 nx, i64 ny, i64 nj, i64 nji, i64 sg,     \
                 i64 sx, i64 sy, i64 dg, i64 dx, i64 dy, const i64 *sj, const i64 *dj, i64 tx, i64 ty,     \
                 int x_inner, int threads) {                                                                 \
    const i64 nbx = (nx + tx - 1) / tx, nby = (ny + ty - 1) / ty, tiles = ng * nbx * nby;                  \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                                       \
    for (i64 t = 0; t < tiles; ++t) {                                                                        \
        const i64 g = t / (nbx * nby), rest = t % (nbx * nby);                                              \
        const i64 x0 = (rest / nby) * tx, y0 = (rest % nby) * ty;                                            \
        const i64 x1 = x0 + tx < nx ? x0 + tx : nx, y1 = y0 + ty < ny ? y0 + ty : ny;                        \
        const T *sb = s + g * sg;                                                                            \
        T *db = d + g * dg;                                                                                  \
        if (x_inner) {                                                                                       \
            for (i64 y = y0; y < y1; ++y)                                                                    \
                for (i64 j1 = 0; j1 < nj; j1 += nji)                                                         \
                    for (i64 x = x0; x < x1; ++x) {                                                          \
                        const T *sp = sb + x * sx + y * sy;                                                  \
                        T *dp = db + x * dx + y * dy;                                                        \
                        for (i64 j = j1; j < j1 + nji; ++j) dp[dj[j]] = sj[j] < 0 ? (T)0 : sp[sj[j]];      \
                    }                                                                                        \
        } else {                                                                                             \
            for (i64 x = x0; x < x1; ++x)                                                                    \
                for (i64 y = y0; y < y1; ++y) {                                                              \
                    const T *sp = sb + x * sx + y * sy;                                                      \
                    T *dp = db + x * dx + y * dy;                                                            \
                    for (i64 j = 0; j < nj; ++j) dp[dj[j]] = sj[j] < 0 ? (T)0 : sp[sj[j]];                 \
                }                                                                                            \
        }                                                                                                    \
    }                                                                                                        \
}

DEFINE_GATHER(gather_2, uint16_t)
DEFINE_GATHER(gather_4, uint32_t)
DEFINE_GATHER(gather_8, uint64_t)

int sp_gather_tiles(const void *src, void *dst, i64 elsize, i64 ng, i64 nx, i64 ny, i64 nj, i64 nji, i64 sg,
                    i64 sx, i64 sy, i64 dg, i64 dx, i64 dy, const i64 *sj, const i64 *dj, i64 tx, i64 ty,
                    i64 x_inner, i64 threads) {
    const int th = threads < 1 ? 1 : (int)threads, xi = (int)x_inner;
    if (tx < 1) tx = 1;
    if (ty < 1) ty = 1;
    if (nji < 1 || nj % nji != 0) nji = 1;
    switch (elsize) {
        case 2: gather_2(src, dst, ng, nx, ny, nj, nji, sg, sx, sy, dg, dx, dy, sj, dj, tx, ty, xi, th); return 0;
        case 4: gather_4(src, dst, ng, nx, ny, nj, nji, sg, sx, sy, dg, dx, dy, sj, dj, tx, ty, xi, th); return 0;
        case 8: gather_8(src, dst, ng, nx, ny, nj, nji, sg, sx, sy, dg, dx, dy, sj, dj, tx, ty, xi, th); return 0;
        default: return -1;
    }
}
