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

/// An activation that linear() can apply to its output within its own op.
enum class Activation { none, relu, tanh, sigmoid };

/// The activation's name ("none", "relu", "tanh", "sigmoid"); a value that is none of them throws
/// "<op>: unknown activation <value>".
const char* activation_name(Activation act, const char* op = "linear");

/// act(x · wᵀ + b): linear() with the activation applied to its output as it is made, one recorded
/// op ("linear_relu", ...) where relu(linear(x, w, b)) records two, with one array fewer forward
/// and one pass fewer backward (the activation's derivative is taken from the output). Values
/// and gradients, of every order, are those of the two ops to the bit. nn::Linear applies it when
/// built with an activation.
template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   Activation act);

}  // namespace ad
