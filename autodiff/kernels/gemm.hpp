// Matrix products on the BLAS.
#pragma once

#include <cstddef>

#include "autodiff/array.hpp"

namespace ad::kernels {

/// C = alpha * op(A) * op(B) + beta * C for row-major matrices: products of at most a few
/// thousand multiply-adds in the library's own loops (a BLAS call costs more than they do), the
/// others through oneDNN's sgemm (float, when built with it) or OpenBLAS.
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
          std::size_t ldc);
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, double alpha,
          const double* a, std::size_t lda, const double* b, std::size_t ldb, double beta,
          double* c, std::size_t ldc);

/// Which library computes the large float products: "oneDNN" or "OpenBLAS".
const char* float_gemm_library();

/// op(a)·op(b) of 2-D or 3-D (batched) operands whose shapes were checked: (n, m), or
/// (batch, n, m) when either is 3-D (a 2-D operand is shared by every batch). One GEMM per batch,
/// one in all when only a is batched.
template <class T>
Array<T> matmul(const Array<T>& a, const Array<T>& b, bool trans_a, bool trans_b);

/// x·wᵀ + b with x (rows, in) seen flat, w (out, in), b (out) or null: the bias is written into
/// the output first and the GEMM accumulates into it. `shape` is the output's.
template <class T>
Array<T> linear(const Array<T>& x, const Array<T>& w, const T* bias, const Shape& shape);

/// The gradients of y = x·wᵀ + b from g = dL/dy, x seen as (rows, in), w (out, in): dx = g·w,
/// dw = gᵀ·x, db = the column sums of g; each written only where its pointer is not null.
template <class T>
void linear_backward(const T* g, const T* x, const T* w, std::size_t rows, std::size_t in,
                     std::size_t out, T* dx, T* dw, T* db);

}  // namespace ad::kernels
