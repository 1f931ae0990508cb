// Reductions over all axes or given axes, and the softmax family.
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
/// Σ (a − b)² over all elements (a 0-d result), fused; a and b must have the same shape.
template <class T>
Variable<T> squared_distance(const Variable<T>& a, const Variable<T>& b);
/// Per-sample cross-entropy of logits (N, K) against class labels (N), fused and stable:
/// loss_i = lse(z_i) - Σ_k t_ik z_ik with t = (1 - ε)·onehot(label) + ε/K (ε: label smoothing).
/// The gradient is softmax(z) - t. Labels out of [0, K) throw, naming the row.
template <class T>
Variable<T> softmax_cross_entropy(const Variable<T>& logits, const Index& labels,
                                  double label_smoothing = 0.0);

}  // namespace ad
