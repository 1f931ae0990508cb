#include "autodiff/kernels/gemm.hpp"

#include <cblas.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
#ifdef AD_WITH_DNNL
#include <dnnl.h>
#endif

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "autodiff/error.hpp"

namespace ad::kernels {

namespace {

/// Products of at most this many multiply-adds go through small_gemm: below it, the BLAS call's
/// own work (argument checks, packing both operands, clearing C, its buffer pool's lock) costs
/// more than the arithmetic.
constexpr std::size_t small_product = 4096;

/// A register of 32 bytes of T (GCC's and clang's vector extension: one AVX register, or two SSE
/// ones without AVX).
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <class T>
using Vec = typename VecOf<T>::type;

template <class T>
Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}

/// An entry of C: alpha·sum + beta·c, with c not read when beta is 0 (C may then hold anything).
template <class T>
T scaled(T sum, T alpha, T beta, const T& c) {
  return beta == T(0) ? alpha * sum : alpha * sum + beta * c;
}

/// Rows i0 … i0+R−1, columns j0 … j0+V·w−1 of C = alpha·op(A)·B + beta·C, op(A)[i, p] at
/// a[i·ars + p·acs] and B's rows contiguous: R × V registers summed over p, each entry of op(A)
/// read once and broadcast against V registers of B's row.
template <int R, int V, class T>
void small_tile(std::size_t i0, std::size_t j0, std::size_t k, T alpha, const T* a, std::size_t ars,
                std::size_t acs, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t w = sizeof(Vec<T>) / sizeof(T);
  Vec<T> acc[R][V] = {};
  const T* ap = a + i0 * ars;
  const T* bp = b + j0;
  for (std::size_t p = 0; p < k; ++p, ap += acs, bp += ldb) {
    Vec<T> bv[V];
    for (int v = 0; v < V; ++v) bv[v] = load(bp + v * w);
    for (int r = 0; r < R; ++r) {
      const T x = ap[r * ars];
      for (int v = 0; v < V; ++v) acc[r][v] += x * bv[v];
    }
  }
  if (alpha != T(1))
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[r][v] *= alpha;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      T* cr = c + (i0 + r) * ldc + j0 + v * w;
      store(cr, beta == T(0) ? acc[r][v] : acc[r][v] + beta * load(cr));
    }
}

/// Rows i0 … i0+R−1 of C: columns two registers at a time, then one, then the last one by one.
template <int R, class T>
void small_rows(std::size_t i0, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t ars,
                std::size_t acs, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t w = sizeof(Vec<T>) / sizeof(T);
  std::size_t j0 = 0;
  for (; j0 + 2 * w <= n; j0 += 2 * w)
    small_tile<R, 2>(i0, j0, k, alpha, a, ars, acs, b, ldb, beta, c, ldc);
  if (j0 + w <= n) {
    small_tile<R, 1>(i0, j0, k, alpha, a, ars, acs, b, ldb, beta, c, ldc);
    j0 += w;
  }
  for (; j0 < n; ++j0) {
    T acc[R] = {};
    for (std::size_t p = 0; p < k; ++p)
      for (int r = 0; r < R; ++r) acc[r] += a[(i0 + r) * ars + p * acs] * b[p * ldb + j0];
    for (int r = 0; r < R; ++r) {
      T& cr = c[(i0 + r) * ldc + j0];
      cr = scaled(acc[r], alpha, beta, cr);
    }
  }
}

/// C = alpha·op(A)·B + beta·C with B's rows contiguous: four rows of C at a time.
template <class T>
void small_blocks(std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t ars,
                  std::size_t acs, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  std::size_t i = 0;
  for (; i + 4 <= m; i += 4) small_rows<4>(i, n, k, alpha, a, ars, acs, b, ldb, beta, c, ldc);
  for (; i < m; ++i) small_rows<1>(i, n, k, alpha, a, ars, acs, b, ldb, beta, c, ldc);
}

#ifdef __AVX__
/// Transposes the 8 × 8 floats of x[0..7] (row q in x[q]) in registers.
inline void transpose8(__m256 x[8]) {
  __m256 y[8];
  for (int q = 0; q < 8; q += 2) {
    y[q] = _mm256_unpacklo_ps(x[q], x[q + 1]);
    y[q + 1] = _mm256_unpackhi_ps(x[q], x[q + 1]);
  }
  for (int q = 0; q < 8; q += 4) {
    x[q] = _mm256_shuffle_ps(y[q], y[q + 2], 0x44);
    x[q + 1] = _mm256_shuffle_ps(y[q], y[q + 2], 0xEE);
    x[q + 2] = _mm256_shuffle_ps(y[q + 1], y[q + 3], 0x44);
    x[q + 3] = _mm256_shuffle_ps(y[q + 1], y[q + 3], 0xEE);
  }
  for (int q = 0; q < 4; ++q) {
    y[q] = _mm256_permute2f128_ps(x[q], x[q + 4], 0x20);
    y[q + 4] = _mm256_permute2f128_ps(x[q], x[q + 4], 0x31);
  }
  for (int q = 0; q < 8; ++q) x[q] = y[q];
}

/// The sum of acc[r]'s lanes in lane r: pairs, then quadruples within each half, then the halves.
inline __m256 lane_sums8(const __m256 acc[8]) {
  const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
  const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}
#endif

/// C = alpha·A·v + beta·C for a C of one column, A's rows and v contiguous: a dot product a row
/// (floats with AVX: eight rows at a time, their eight sums added across registers together).
template <class T>
void small_matvec(std::size_t m, std::size_t k, T alpha, const T* a, std::size_t lda, const T* v,
                  T beta, T* c, std::size_t ldc) {
  constexpr std::size_t w = sizeof(Vec<T>) / sizeof(T);
  std::size_t i = 0;
#ifdef __AVX__
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 8 <= m; i += 8) {
      __m256 acc[8];
      for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
      std::size_t p = 0;
      for (; p + 8 <= k; p += 8) {
        const __m256 x = _mm256_loadu_ps(v + p);
        for (int r = 0; r < 8; ++r)
          acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a + (i + r) * lda + p), x, acc[r]);
      }
      float sums[8];
      _mm256_storeu_ps(sums, lane_sums8(acc));
      for (std::size_t r = 0; r < 8; ++r) {
        const T* ai = a + (i + r) * lda;
        T sum = sums[r];
        for (std::size_t q = p; q < k; ++q) sum += ai[q] * v[q];
        c[(i + r) * ldc] = scaled(sum, alpha, beta, c[(i + r) * ldc]);
      }
    }
  }
#endif
  for (; i < m; ++i) {
    const T* ai = a + i * lda;
    Vec<T> acc = {};
    std::size_t p = 0;
    for (; p + w <= k; p += w) acc += load(ai + p) * load(v + p);
    T sum = 0;
    for (std::size_t e = 0; e < w; ++e) sum += acc[e];
    for (; p < k; ++p) sum += ai[p] * v[p];
    c[i * ldc] = scaled(sum, alpha, beta, c[i * ldc]);
  }
}

/// out (cols × rows, row-major) = the transpose of in (rows × cols, rows ld apart): 8 × 8 blocks
/// of floats in AVX registers where there are such, the rest one by one.
template <class T>
void transpose(const T* in, std::size_t ld, std::size_t rows, std::size_t cols, T* out) {
  std::size_t r0 = 0;
#ifdef __AVX__
  if constexpr (std::is_same_v<T, float>) {
    for (; r0 + 8 <= rows; r0 += 8) {
      std::size_t c0 = 0;
      for (; c0 + 8 <= cols; c0 += 8) {
        __m256 x[8];
        for (int q = 0; q < 8; ++q) x[q] = _mm256_loadu_ps(in + (r0 + q) * ld + c0);
        transpose8(x);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + (c0 + q) * rows + r0, x[q]);
      }
      for (; c0 < cols; ++c0)
        for (std::size_t r = r0; r < r0 + 8; ++r) out[c0 * rows + r] = in[r * ld + c0];
    }
  }
#endif
  if (rows - r0 >= cols) {  // the longer side in the inner loop
    for (std::size_t c = 0; c < cols; ++c)
      for (std::size_t r = r0; r < rows; ++r) out[c * rows + r] = in[r * ld + c];
  } else {
    for (std::size_t r = r0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * ld + c];
  }
}

/// C = alpha·op(A)·op(B) + beta·C for small products, in registers of B's rows broadcast against
/// entries of op(A) (op(A) is read in place, one entry at a time). op(B) = Bᵀ is first copied
/// transposed, so that its rows are contiguous. When C has fewer columns than a register holds and
/// op(A) = Aᵀ, Cᵀ = op(B)ᵀ·A is made instead (A's rows are contiguous and fill the registers) and
/// written transposed; a C of one column with A's rows and op(B) contiguous is a dot product a
/// row. beta = 0 never reads C.
template <class T>
void small_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  constexpr std::size_t w = sizeof(Vec<T>) / sizeof(T);
  T packed[small_product];
  if (ta && n < w && m >= w && k > 0) {
    // Cᵀ (n × m) = op(B)ᵀ · A: op(B)ᵀ[j, p] at b[j·ldb + p] when op(B) = Bᵀ, else b[p·ldb + j].
    small_blocks(n, m, k, alpha, b, tb ? ldb : 1, tb ? 1 : ldb, a, lda, T(0), packed, m);
    if (beta == T(0)) {
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t i = 0; i < m; ++i) c[i * ldc + j] = packed[j * m + i];
    } else {
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t i = 0; i < m; ++i)
          c[i * ldc + j] = packed[j * m + i] + beta * c[i * ldc + j];
    }
    return;
  }
  if (n == 1 && !ta && (tb || ldb == 1)) return small_matvec(m, k, alpha, a, lda, b, beta, c, ldc);
  if (tb) {  // op(B) = Bᵀ: packed (k × n)
    transpose(b, ldb, n, k, packed);
    b = packed;
    ldb = n;
  }
  small_blocks(m, n, k, alpha, a, ta ? 1 : lda, ta ? lda : 1, b, ldb, beta, c, ldc);
}

}  // namespace

const char* float_gemm_library() {
#ifdef AD_WITH_DNNL
  return "oneDNN";
#else
  return "OpenBLAS";
#endif
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  if (m * n * k <= small_product)
    return small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#ifdef AD_WITH_DNNL
  // oneDNN's sgemm: row-major like cblas; as fast or faster on the products measured.
  const dnnl_status_t status = dnnl_sgemm(
      ta ? 'T' : 'N', tb ? 'T' : 'N', static_cast<dnnl_dim_t>(m), static_cast<dnnl_dim_t>(n),
      static_cast<dnnl_dim_t>(k), alpha, a, static_cast<dnnl_dim_t>(lda), b,
      static_cast<dnnl_dim_t>(ldb), beta, c, static_cast<dnnl_dim_t>(ldc));
  if (status != dnnl_success) fail("gemm: oneDNN's sgemm failed (status ", int(status), ")");
  return;
#endif
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
          double* c, std::size_t ldc) {
  if (m * n * k <= small_product)
    return small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

template <class T>
Array<T> matmul(const Array<T>& a, const Array<T>& b, bool ta, bool tb) {
  const auto& sa = a.shape();
  const auto& sb = b.shape();
  const std::size_t ra = sa[sa.size() - 2], ca = sa[sa.size() - 1];
  const std::size_t rb = sb[sb.size() - 2], cb = sb[sb.size() - 1];
  const std::size_t n = ta ? ca : ra, k = ta ? ra : ca, m = tb ? rb : cb;
  const bool batched = sa.size() == 3 || sb.size() == 3;
  const std::size_t batch =
      batched ? std::max(sa.size() == 3 ? sa[0] : 1, sb.size() == 3 ? sb[0] : 1) : 1;
  const Shape shape = batched ? Shape{batch, n, m} : Shape{n, m};
  // GEMM with beta = 0 writes every element; only an empty inner dimension needs zeros.
  Array<T> out = k ? Array<T>(shape) : Array<T>(xt::zeros<T>(shape));
  const T* pa = a.data();
  const T* pb = b.data();
  T* pc = out.data();
  if (!(n && m && k && batch)) return out;
  if (sa.size() == 3 && sb.size() == 2 && !ta) {
    // Only a is batched: its rows stack into one (batch*n, k) matrix, one GEMM in all.
    gemm(false, tb, batch * n, m, k, T(1), pa, ca, pb, cb, T(0), pc, m);
    return out;
  }
  const std::size_t step_a = sa.size() == 3 ? ra * ca : 0;
  const std::size_t step_b = sb.size() == 3 ? rb * cb : 0;
  for (std::size_t i = 0; i < batch; ++i)
    gemm(ta, tb, n, m, k, T(1), pa + i * step_a, ca, pb + i * step_b, cb, T(0), pc + i * n * m, m);
  return out;
}

template <class T>
Array<T> linear(const Array<T>& x, const Array<T>& w, const T* bias, const Shape& shape) {
  const std::size_t outf = w.shape()[0], in = w.shape()[1];
  const std::size_t rows = outf ? shape_size(shape) / outf : 0;
  Array<T> out(shape);
  T* po = out.data();
  if (bias) {
    for (std::size_t r = 0; r < rows; ++r) std::copy(bias, bias + outf, po + r * outf);
  } else {
    std::fill(po, po + out.size(), T(0));
  }
  if (rows && outf && in)
    gemm(false, true, rows, outf, in, T(1), x.data(), in, w.data(), in, T(1), po, outf);
  return out;
}

template <class T>
void linear_backward(const T* g, const T* x, const T* w, std::size_t rows, std::size_t in,
                     std::size_t out, T* dx, T* dw, T* db) {
  if (dx) {
    if (out)
      gemm(false, false, rows, in, out, T(1), g, out, w, in, T(0), dx, in);
    else
      std::fill(dx, dx + rows * in, T(0));
  }
  if (dw) {
    if (rows)
      gemm(true, false, out, in, rows, T(1), g, out, x, in, T(0), dw, in);
    else
      std::fill(dw, dw + out * in, T(0));
  }
  if (db) {
    std::fill(db, db + out, T(0));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < out; ++j) db[j] += g[r * out + j];
  }
}

template Array<float> matmul(const Array<float>&, const Array<float>&, bool, bool);
template Array<double> matmul(const Array<double>&, const Array<double>&, bool, bool);
template Array<float> linear(const Array<float>&, const Array<float>&, const float*, const Shape&);
template Array<double> linear(const Array<double>&, const Array<double>&, const double*,
                              const Shape&);
template void linear_backward(const float*, const float*, const float*, std::size_t, std::size_t,
                              std::size_t, float*, float*, float*);
template void linear_backward(const double*, const double*, const double*, std::size_t, std::size_t,
                              std::size_t, double*, double*, double*);

}  // namespace ad::kernels
