// Reductions over all axes or given axes, the softmax family and layer normalisation.
#pragma once

#include <vector>

#include "autodiff/index.hpp"
#include "autodiff/variable.hpp"

namespace ad {

/// Sum of all elements (a 0-d result).
template <class T>
Variable<T> sum(const Variable<T>& a);
/// Sum over `axes` (negative counts from the end); keepdims leaves them with extent 1.
template <class T>
Variable<T> sum(const Variable<T>& a, const std::vector<long>& axes, bool keepdims = false);
/// Mean of all elements.
template <class T>
Variable<T> mean(const Variable<T>& a);
/// Mean over `axes`.
template <class T>
Variable<T> mean(const Variable<T>& a, const std::vector<long>& axes, bool keepdims = false);
/// Maximum of all elements; tied maxima share the gradient equally.
template <class T>
Variable<T> max(const Variable<T>& a);
/// Maximum over `axes`.
template <class T>
Variable<T> max(const Variable<T>& a, const std::vector<long>& axes, bool keepdims = false);
/// Minimum of all elements.
template <class T>
Variable<T> min(const Variable<T>& a);
/// Minimum over `axes`.
template <class T>
Variable<T> min(const Variable<T>& a, const std::vector<long>& axes, bool keepdims = false);
/// log(sum(exp(a))) over `axes` (all when empty), shifted by the maximum so it cannot overflow.
template <class T>
Variable<T> log_sum_exp(const Variable<T>& a, const std::vector<long>& axes = {},
                        bool keepdims = false);
/// a - log_sum_exp(a) along `axis`: log-probabilities, stable for any logits.
template <class T>
Variable<T> log_softmax(const Variable<T>& a, long axis = -1);
/// exp(log_softmax(a)) along `axis`.
template <class T>
Variable<T> softmax(const Variable<T>& a, long axis = -1);
/// scale · Σ (a − b)² over all elements (a 0-d result), fused into one op (mse_loss's means are
/// this with scale 1/N); a and b must have the same shape.
template <class T>
Variable<T> squared_distance(const Variable<T>& a, const Variable<T>& b, double scale = 1.0);
/// Variance over `axes` (all when empty): Σ (a − mean)² / (N − correction), N the number of
/// elements reduced (correction 1: the unbiased estimate; 0: the population variance). N ≤
/// correction divides by zero (Inf or NaN, as NumPy).
template <class T>
Variable<T> var(const Variable<T>& a, const std::vector<long>& axes = {}, double correction = 1.0,
                bool keepdims = false);
/// Standard deviation: sqrt(var(a, axes, correction)). Where it is 0 (every value reduced equal)
/// its gradient is NaN (0/0, as in PyTorch).
template <class T>
Variable<T> std(const Variable<T>& a, const std::vector<long>& axes = {}, double correction = 1.0,
                bool keepdims = false);
/// The p-norm over `axes` (all when empty): (Σ |a|^p)^(1/p) for p > 0, max |a| for p = ∞. The
/// gradient at a zero vector is 0 for every p (a subgradient, as in PyTorch).
template <class T>
Variable<T> norm(const Variable<T>& a, double p = 2.0, const std::vector<long>& axes = {},
                 bool keepdims = false);
/// Layer normalisation over the last `axes` axes of x: (x − mean)/√(var + eps) · weight + bias,
/// with the biased variance of each row (the elements of those axes); weight and bias have the
/// shape of those axes, or are undefined (1 and 0). One op: one pass over each row forward (its
/// statistics summed in double and kept, one mean and one 1/√(var + eps) per row), one backward.
template <class T>
Variable<T> layer_norm(const Variable<T>& x, std::size_t axes = 1, const Variable<T>& weight = {},
                       const Variable<T>& bias = {}, double eps = 1e-5);
/// Running sums along `axis` (NumPy's cumsum); with `reverse`, from the last element backwards.
template <class T>
Variable<T> cumsum(const Variable<T>& a, long axis, bool reverse = false);
/// Positions of the maxima along `axis` (the first on ties; the first NaN where there is one, as
/// NumPy). No gradient: gather(a, axis, argmax(a, axis, true)) picks the values, differentiably.
template <class T>
Index argmax(const Variable<T>& a, long axis, bool keepdims = false);
/// Positions of the minima along `axis` (as argmax).
template <class T>
Index argmin(const Variable<T>& a, long axis, bool keepdims = false);
/// Per-sample cross-entropy of logits (N, K) against class labels (N), fused and stable:
/// loss_i = lse(z_i) - Σ_k t_ik z_ik with t = (1 - ε)·onehot(label) + ε/K (ε: label smoothing).
/// The gradient is softmax(z) - t. Labels out of [0, K) throw, naming the row.
template <class T>
Variable<T> softmax_cross_entropy(const Variable<T>& logits, const Index& labels,
                                  double label_smoothing = 0.0);

}  // namespace ad
