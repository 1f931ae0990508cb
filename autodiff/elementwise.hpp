// Elementwise math and activations, each with its derivative beside its forward in
// elementwise.cpp.
#pragma once

#include "autodiff/variable.hpp"

namespace ad {

/// e^a.
template <class T>
Variable<T> exp(const Variable<T>& a);
/// Natural logarithm.
template <class T>
Variable<T> log(const Variable<T>& a);
/// Square root.
template <class T>
Variable<T> sqrt(const Variable<T>& a);
/// |a|; the gradient at 0 is 0.
template <class T>
Variable<T> abs(const Variable<T>& a);
/// Hyperbolic tangent.
template <class T>
Variable<T> tanh(const Variable<T>& a);
/// Logistic sigmoid 1 / (1 + e^-a).
template <class T>
Variable<T> sigmoid(const Variable<T>& a);
/// max(a, 0), NaN for NaN; the gradient at 0 is 0.
template <class T>
Variable<T> relu(const Variable<T>& a);
/// a for a > 0, slope * a otherwise.
template <class T>
Variable<T> leaky_relu(const Variable<T>& a, double slope = 0.01);
/// log(1 + e^a), computed without overflow.
template <class T>
Variable<T> softplus(const Variable<T>& a);
/// min(max(a, lo), hi); the gradient is 1 on [lo, hi] and 0 outside.
template <class T>
Variable<T> clamp(const Variable<T>& a, double lo, double hi);
/// The error function erf(a) = 2/√π ∫₀^a e^(-t²) dt.
template <class T>
Variable<T> erf(const Variable<T>& a);
/// The two forms of GELU: exact (with erf) and the tanh approximation.
enum class Gelu { erf, tanh };
/// GELU, one op with its own kernels: a·Φ(a) = a/2·(1 + erf(a/√2)), or with Gelu::tanh
/// a/2·(1 + tanh(√(2/π)·(a + 0.044715·a³))) (PyTorch's approximate="tanh").
template <class T>
Variable<T> gelu(const Variable<T>& a, Gelu form = Gelu::erf);
/// a * a (a composite of mul, for convenience).
template <class T>
Variable<T> square(const Variable<T>& a);
/// Sine.
template <class T>
Variable<T> sin(const Variable<T>& a);
/// Cosine.
template <class T>
Variable<T> cos(const Variable<T>& a);
/// a for a > 0, alpha * (e^a - 1) otherwise (ELU).
template <class T>
Variable<T> elu(const Variable<T>& a, double alpha = 1.0);
/// clamp(a, lo, hi) as an activation (defaults -1, 1), with PyTorch's gradient: 0 at the bounds
/// (clamp's is 1 there).
template <class T>
Variable<T> hardtanh(const Variable<T>& a, double lo = -1.0, double hi = 1.0);
/// a * sigmoid(a) (SiLU, also called swish).
template <class T>
Variable<T> silu(const Variable<T>& a);
/// a * tanh(softplus(a)) (Mish).
template <class T>
Variable<T> mish(const Variable<T>& a);
/// log(sigmoid(a)) = -softplus(-a), without overflow for any a.
template <class T>
Variable<T> logsigmoid(const Variable<T>& a);

/// One step of an LSTM cell, fused: from the gates' pre-activations as the sum of two parts
/// (N, 4H), the input's and the hidden state's projections (PyTorch's fused cell takes the same),
/// in PyTorch's order input, forget, cell, output (i, f, g, o), and the previous cell state c
/// (N, H), the new hidden and cell states side by side, (N, 2H) = [h', c'] with
///   c' = σ(f)·c + σ(i)·tanh(g),  h' = σ(o)·tanh(c').
/// One pass over the arrays forward and one backward, where the same step written with slices and
/// elementwise ops makes about fifteen arrays.
template <class T>
Variable<T> lstm_cell(const Variable<T>& input_gates, const Variable<T>& hidden_gates,
                      const Variable<T>& c);

}  // namespace ad
