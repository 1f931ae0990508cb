// 2-D convolution and pooling on (N, C, H, W) tensors. Convolutions take a kernel of any height
// and width, a stride, zero padding and dilation per axis, and groups (ConvOptions); the short
// forms take one stride and padding for both axes. Pooling windows are square.
#pragma once

#include "autodiff/variable.hpp"

namespace ad {

/// A convolution's stride, zero padding (on each side) and dilation along height and width, and
/// its groups: the C input and O output channels split into `groups` groups, output group q
/// computed from input group q only (C and O must be multiples of it).
struct ConvOptions {
  std::size_t stride_h = 1;    ///< step between windows along the height
  std::size_t stride_w = 1;    ///< step between windows along the width
  std::size_t padding_h = 0;   ///< zeros added above and below
  std::size_t padding_w = 0;   ///< zeros added left and right
  std::size_t dilation_h = 1;  ///< step between a window's taps along the height
  std::size_t dilation_w = 1;  ///< step between a window's taps along the width
  std::size_t groups = 1;      ///< channel groups
  /// The same stride and padding along both axes, no dilation, one group.
  static ConvOptions square(std::size_t stride, std::size_t padding) {
    ConvOptions o;
    o.stride_h = o.stride_w = stride;
    o.padding_h = o.padding_w = padding;
    return o;
  }
};

/// Cross-correlation of x (N, C, H, W) with w (O, C/groups, kh, kw), plus the bias b of shape (O)
/// when defined (fused: one pass forward, one backward); the output is (N, O, Ho, Wo) with
/// Ho = (H + 2·padding_h − dilation_h·(kh − 1) − 1)/stride_h + 1 (Wo alike). im2col, then one
/// GEMM per group of channels for a group of samples.
template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   const ConvOptions& options);
/// conv2d with a square stride and padding, without a bias.
template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride = 1,
                   std::size_t padding = 0);
/// conv2d with a square stride and padding, plus a bias b of shape (O).
template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   std::size_t stride = 1, std::size_t padding = 0);
/// The gradient of conv2d with respect to its input, for the output gradient g (a transposed
/// convolution). With conv2d and conv2d_weight_grad it closes under differentiation, so
/// second-order gradients flow through convolutions.
template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              const ConvOptions& options);
/// conv2d_input_grad with a square stride and padding.
template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              std::size_t stride, std::size_t padding);
/// The gradient of conv2d with respect to its weight, for the output gradient g.
template <class T>
Variable<T> conv2d_weight_grad(const Variable<T>& x, const Variable<T>& g, const Shape& w_shape,
                               const ConvOptions& options);
/// conv2d_weight_grad with a square stride and padding.
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
