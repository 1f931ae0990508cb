#include "autodiff/kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>

namespace ad::kernels {

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
          double* c, std::size_t ldc) {
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
  Array<T> out = k ? Array<T>::from_shape(shape) : Array<T>(xt::zeros<T>(shape));
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
  Array<T> out = Array<T>::from_shape(shape);
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

template Array<float> matmul(const Array<float>&, const Array<float>&, bool, bool);
template Array<double> matmul(const Array<double>&, const Array<double>&, bool, bool);
template Array<float> linear(const Array<float>&, const Array<float>&, const float*, const Shape&);
template Array<double> linear(const Array<double>&, const Array<double>&, const double*,
                              const Shape&);

}  // namespace ad::kernels
