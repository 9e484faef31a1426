/* y[m, n] = sum_k x[m, k] * w[n, k] for n in [n0, n1): x float32 [M, K], w bf16 or fp16 [N, K], y float32
 * [M, N]. A CPU without bf16 instructions still reads half the bytes: each 8 weights are widened to float32
 * in a register (bf16: a 16-bit shift; fp16: F16C's vcvtph2ps) and fed to FMAs, as llama.cpp's AVX2 path
 * does. A pair of weight rows stays in L1 while every row of x uses it, so at batch M the weights are read
 * from memory once, not M times. NAME_par splits the row pairs over OpenMP threads: torch has libgomp
 * loaded already, so these are torch's own threads, not a second team competing for the cores.
 * Built at first use by kernels/cpu_widen_gemm.py with -O3 -mavx2 -mfma -mf16c -fopenmp. */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
static inline __m256 ld_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
static inline float bf16_to_f(uint16_t h) { union { uint32_t u; float f; } c = { (uint32_t)h << 16 }; return c.f; }
static inline float f16_to_f(uint16_t h) { return _cvtsh_ss(h); }

#define KERNEL(NAME, LOAD, SCALAR)                                                                      \
static inline void NAME##_tile(const float *x, const uint16_t *w, float *y, long K, long N, long n, int mb) { \
    __m256 a0[4], a1[4];                                                                               \
    for (int j = 0; j < 4; j++) { a0[j] = _mm256_setzero_ps(); a1[j] = _mm256_setzero_ps(); }          \
    const uint16_t *w0 = w + n * K, *w1 = w0 + K;                                                      \
    long k = 0;                                                                                        \
    for (; k + 8 <= K; k += 8) {                                                                       \
        __m256 v0 = LOAD(w0 + k), v1 = LOAD(w1 + k);                                                   \
        for (int j = 0; j < mb; j++) {                                                                 \
            __m256 xv = _mm256_loadu_ps(x + j * K + k);                                                \
            a0[j] = _mm256_fmadd_ps(xv, v0, a0[j]);                                                    \
            a1[j] = _mm256_fmadd_ps(xv, v1, a1[j]);                                                    \
        }                                                                                              \
    }                                                                                                  \
    for (int j = 0; j < mb; j++) {                                                                     \
        float s0 = hsum(a0[j]), s1 = hsum(a1[j]);                                                      \
        for (long t = k; t < K; t++) { s0 += x[j * K + t] * SCALAR(w0[t]); s1 += x[j * K + t] * SCALAR(w1[t]); } \
        y[j * N + n] = s0; y[j * N + n + 1] = s1;                                                      \
    }                                                                                                  \
}                                                                                                      \
void NAME(const float *x, const uint16_t *w, float *y, long M, long K, long N, long n0, long n1) {       \
    long n = n0;                                                                                       \
    for (; n + 2 <= n1; n += 2)  /* the row pair stays in L1 while every group of 4 rows of x uses it */ \
        for (long m = 0; m < M; m += 4) {                                                              \
            int mb = (int)(M - m < 4 ? M - m : 4);                                                     \
            switch (mb) {                                                                              \
            case 1: NAME##_tile(x + m * K, w, y + m * N, K, N, n, 1); break;                           \
            case 2: NAME##_tile(x + m * K, w, y + m * N, K, N, n, 2); break;                           \
            case 3: NAME##_tile(x + m * K, w, y + m * N, K, N, n, 3); break;                           \
            default: NAME##_tile(x + m * K, w, y + m * N, K, N, n, 4);                                 \
            }                                                                                          \
        }                                                                                              \
    for (; n < n1; n++)                                                                                \
        for (long m = 0; m < M; m++) {                                                                 \
            float s = 0; for (long t = 0; t < K; t++) s += x[m * K + t] * SCALAR(w[n * K + t]);        \
            y[m * N + n] = s;                                                                          \
        }                                                                                              \
}
#define PARALLEL(NAME)                                                                                 \
void NAME##_par(const float *x, const uint16_t *w, float *y, long M, long K, long N, int threads) {      \
    long pairs = N / 2;                                                                                \
    _Pragma("omp parallel num_threads(threads)")                                                       \
    {                                                                                                  \
        long t = omp_get_thread_num(), nt = omp_get_num_threads();                                     \
        NAME(x, w, y, M, K, N, 2 * (pairs * t / nt), 2 * (pairs * (t + 1) / nt));                      \
    }                                                                                                  \
    if (N % 2) NAME(x, w, y, M, K, N, N - 1, N);                                                       \
}
KERNEL(gemm_bf16, ld_bf16, bf16_to_f)
PARALLEL(gemm_bf16)
KERNEL(gemm_f16, ld_f16, f16_to_f)
PARALLEL(gemm_f16)
