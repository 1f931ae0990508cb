// Reductions and their adjoints: sums and maxima along axes, broadcasting back, the softmax rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/array.hpp"
#include "autodiff/index.hpp"

namespace ad::kernels {

/// Sums `a` down to `shape`, which must broadcast to a's shape (the reverse of broadcasting).
template <class T>
Array<T> sum_to(const Array<T>& a, const Shape& shape);

/// Repeats `a` up to `shape` (NumPy broadcast_to, materialised).
template <class T>
Array<T> broadcast_to(const Array<T>& a, const Shape& shape);

/// Maximum of `a` along the axes where `shape` (same rank, 1 on reduced axes) has extent 1.
template <class T>
Array<T> max_to(const Array<T>& a, const Shape& shape);

/// The shape of reducing `shape` along `axes` with keepdims (reduced axes become 1); every
/// axis when `axes` is empty. Axes may be negative; out of range ones throw naming `op`.
Shape keepdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op);

/// keepdims_shape without the reduced axes.
Shape dropdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op);

/// a − log Σ exp(a) along `axis`: log-probabilities.
template <class T>
Array<T> log_softmax(const Array<T>& a, std::size_t axis);

/// Per-row cross-entropy of logits z (N, K) against the distribution t = (1 − ε)·onehot(label) +
/// ε/K: loss_i = lse(z_i) − Σ_k t_ik z_ik, with lse(z_i) = log Σ_k exp(z_ik) stored in `lse` (N)
/// for the gradient. Labels must be in [0, K) (the op checks them).
template <class T>
Array<T> softmax_cross_entropy(const Array<T>& z, const Index& labels, double smoothing,
                               Array<T>& lse);

/// The target distribution t (N, K): 1 − ε + ε/K on each row's label, ε/K elsewhere.
template <class T>
Array<T> softmax_cross_entropy_target(const Index& labels, std::size_t classes, double smoothing);

/// Its gradient for the incoming gradient g (N): g_i·(softmax(z_i) − t_i), (N, K), with
/// softmax(z_i) = exp(z_i − lse_i) from the forward's `lse`.
template <class T>
Array<T> softmax_cross_entropy_grad(const Array<T>& z, const Array<T>& lse, const Array<T>& g,
                                    const Index& labels, double smoothing);

/// Running sums along `axis` (from the last element backwards when `reverse`).
template <class T>
Array<T> cumsum(const Array<T>& a, std::size_t axis, bool reverse);

/// The position of the largest (or, with `smallest`, the smallest) element along `axis`, in an
/// array of a's shape with that axis set to 1; the first one on ties, and the first NaN where
/// there is one (as NumPy's argmax). The axis must not be empty.
template <class T>
Array<std::size_t> arg_extremum(const Array<T>& a, std::size_t axis, bool smallest);

/// Layer normalisation of `rows` rows of `cols` values: y = (x − mean)·rstd·w + b per row, rstd =
/// 1/√(var + eps) with the biased variance, w and b (cols) or null (1 and 0). The statistics are
/// summed in double and stored per row in mean and rstd for the backward.
template <class T>
void layer_norm(const T* x, std::size_t rows, std::size_t cols, const T* w, const T* b, double eps,
                T* y, T* mean, T* rstd);

/// Its gradients from g = dL/dy: dx (rows × cols), dw and db (cols, summed over the rows in
/// double), each written only where its pointer is not null.
template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const T* mean, const T* rstd,
                         std::size_t rows, std::size_t cols, T* dx, T* dw, T* db);

/// Σ (a − b)² over all elements of two arrays of one shape.
template <class T>
T squared_distance(const Array<T>& a, const Array<T>& b);

}  // namespace ad::kernels
