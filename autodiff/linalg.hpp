// Matrix products on BLAS: matmul (2-D and batched 3-D) and the fused linear layer.
#pragma once

#include "autodiff/variable.hpp"

namespace ad {

/// op(a) · op(b), where op transposes the last two axes when the flag is set. a and b are 2-D or
/// 3-D (batched); a 2-D operand is shared by every batch. One GEMM per batch (one in all when only
/// a is batched), no transposed copy. matmul and the backward of both are this one op.
template <class T>
Variable<T> matmul(const Variable<T>& a, const Variable<T>& b, bool trans_a = false,
                   bool trans_b = false);

/// x · wᵀ + b, with w of shape (out, in), b of shape (out) or undefined, x of shape (..., in):
/// one GEMM forward (the bias is written first and accumulated into) and one per gradient
/// backward.
template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b = {});

}  // namespace ad
