// Convolution kernels: im2col and col2im (with a fast path for "same" convolutions), GEMMs over
// groups of samples, and the backward products in one pass.
#pragma once

#include <cstddef>

#include "autodiff/array.hpp"

namespace ad::kernels {

/// Sizes of a convolution or pooling: input (n, c, h, w), o output channels, a kh × kw kernel,
/// strides sh, sw, zero padding ph, pw and dilations dh, dw per axis, `groups` (input and output
/// channels split into that many groups, each convolved with its own), and output (ho, wo).
/// Pooling windows are square and undilated (kh = kw, sh = sw, ph = pw, dh = dw = 1).
struct ConvGeometry {
  std::size_t n = 0, c = 0, h = 0, w = 0, o = 0;
  std::size_t kh = 0, kw = 0, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  std::size_t ho = 0, wo = 0;
  std::size_t ckk() const { return c * kh * kw; }           ///< rows of a sample's patch matrix
  std::size_t group_ckk() const { return ckk() / groups; }  ///< of them, one group's
  std::size_t group_o() const { return o / groups; }        ///< output channels per group
  std::size_t hw() const { return ho * wo; }
  std::size_t in_size() const { return c * h * w; }
};

/// y (N, O, Ho, Wo) = the cross-correlation of x (N, C, H, W) with w (O, C/groups, kh, kw), plus
/// the bias (O) when given. When `patches` is given (C·kh·kw·N·Ho·Wo elements), the patch matrices
/// are kept there for conv2d_backward, group after group.
template <class T>
Array<T> conv2d(const T* x, const T* w, const T* bias, const ConvGeometry& g, T* patches);

/// The products of conv2d's backward for the output gradient gy (N, O, Ho, Wo), in one pass over
/// the groups of samples: db += Σ of gy over (n, h, w), dw += gy · patchesᵀ, dx = col2im(wᵀ · gy),
/// each for which a pointer is given (dw and db zeroed by the caller, dx overwritten). The patch
/// matrices are those conv2d kept (`kept`) or are made from x.
template <class T>
void conv2d_backward(const T* gy, const T* w, const T* x, const T* kept, const ConvGeometry& g,
                     T* dx, T* dw, T* db);

}  // namespace ad::kernels
