// Pooling kernels: max pooling as a selection by index within each (n, c) plane (values and
// indices in one pass, a vectorised 2×2 path), its scatter adjoint, and average pooling.
#pragma once

#include <cstdint>
#include <utility>

#include "autodiff/array.hpp"
#include "autodiff/kernels/conv.hpp"

namespace ad::kernels {

/// Positions within each (H·W) plane, one row per (n, c) plane: 32-bit, half the memory traffic of
/// size_t (the op checks that a plane fits).
using PoolIndex = Array<std::uint32_t>;

/// The maximum of every k×k window of x (N, C, H, W) (padding counts as −∞; NaN wins), and its
/// position in the plane (the first maximum in reading order on ties).
template <class T>
std::pair<Array<T>, PoolIndex> max_pool2d(const Array<T>& x, const ConvGeometry& g);

/// out[r, q] = x[r, idx[r, q]] over the planes r of x; out has `out_shape`.
template <class T>
Array<T> pool_select(const Array<T>& x, const PoolIndex& idx, const Shape& out_shape);

/// dx[r, idx[r, q]] += g[r, q] into zeros of `x_shape`: pool_select's adjoint.
template <class T>
Array<T> pool_scatter(const Array<T>& g, const PoolIndex& idx, const Shape& x_shape);

/// The mean of every k×k window, zero padding counted (as PyTorch's default).
template <class T>
Array<T> avg_pool2d(const Array<T>& x, const ConvGeometry& g);

/// avg_pool2d's adjoint: g (N, C, Ho, Wo) spread evenly over the windows of an (N, C, H, W) input.
template <class T>
Array<T> avg_pool2d_grad(const Array<T>& g, const ConvGeometry& geo);

}  // namespace ad::kernels
