// 2-D convolution and pooling on (N, C, H, W) tensors. The square kernel, stride and padding apply
// to both spatial axes.
#pragma once

#include "autodiff/variable.hpp"

namespace ad {

/// Cross-correlation of x (N, C, H, W) with w (O, C, k, k), zero padding on each side; the output
/// is (N, O, (H + 2p - k)/s + 1, (W + 2p - k)/s + 1). im2col then one GEMM per sample.
template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride = 1,
                   std::size_t padding = 0);
/// conv2d plus a bias b of shape (O), added to every output position of its channel (fused: one
/// pass forward, one backward).
template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   std::size_t stride = 1, std::size_t padding = 0);
/// The gradient of conv2d with respect to its input, for the output gradient g (a transposed
/// convolution). With conv2d and conv2d_weight_grad it closes under differentiation, so
/// second-order gradients flow through convolutions.
template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              std::size_t stride, std::size_t padding);
/// The gradient of conv2d with respect to its weight, for the output gradient g.
template <class T>
Variable<T> conv2d_weight_grad(const Variable<T>& x, const Variable<T>& g, const Shape& w_shape,
                               std::size_t stride, std::size_t padding);
/// Maximum over k×k windows (padding counts as -infinity; padding <= k/2). The gradient goes to
/// each window's maximum (the first one on ties).
template <class T>
Variable<T> max_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding = 0);
/// Mean over k×k windows, zero padding included in the count (as PyTorch's default).
template <class T>
Variable<T> avg_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding = 0);
/// The adjoint of avg_pool2d: spreads g over the windows of a tensor of x_shape.
template <class T>
Variable<T> avg_pool2d_grad(const Variable<T>& g, const Shape& x_shape, std::size_t kernel,
                            std::size_t stride, std::size_t padding);

}  // namespace ad
