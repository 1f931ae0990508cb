#include "autodiff/conv.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autodiff/kernels.hpp"
#include "autodiff/ops.hpp"

namespace ad {

namespace {

/// Sizes of a convolution or pooling: input (n, c, h, w), square kernel k, and output (ho, wo).
struct Geometry {
  std::size_t n = 0, c = 0, h = 0, w = 0, o = 0, k = 0, stride = 1, pad = 0, ho = 0, wo = 0;
  std::size_t ckk() const { return c * k * k; }
  std::size_t hw() const { return ho * wo; }
  std::size_t in_size() const { return c * h * w; }
};

Geometry pool_geometry(const Shape& x, std::size_t k, std::size_t stride, std::size_t pad,
                       const char* op) {
  if (x.size() != 4) fail(op, ": input must be (N, C, H, W), got ", shape_str(x));
  if (k == 0 || stride == 0) fail(op, ": kernel and stride must be positive");
  Geometry g;
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3], g.k = k, g.stride = stride, g.pad = pad;
  if (g.h + 2 * pad < k || g.w + 2 * pad < k)
    fail(op, ": kernel ", k, " is larger than the input ", shape_str(x), " padded by ", pad);
  g.ho = (g.h + 2 * pad - k) / stride + 1;
  g.wo = (g.w + 2 * pad - k) / stride + 1;
  return g;
}

Geometry conv_geometry(const Shape& x, const Shape& w, std::size_t stride, std::size_t pad,
                       const char* op) {
  if (w.size() != 4 || w[2] != w[3]) fail(op, ": weight must be (O, C, k, k), got ", shape_str(w));
  Geometry g = pool_geometry(x, w[2], stride, pad, op);
  if (w[1] != x[1])
    fail(op, ": input ", shape_str(x), " has ", x[1], " channels but weight ", shape_str(w),
         " expects ", w[1]);
  g.o = w[0];
  return g;
}

void check_output_grad(const Shape& g, const Geometry& geo, const char* op) {
  Shape want{geo.n, geo.o, geo.ho, geo.wo};
  if (g != want)
    fail(op, ": gradient of shape ", shape_str(g), " does not match the output shape ",
         shape_str(want));
}

/// The output positions [lo, hi) along an axis whose input position o·stride + offset − pad falls
/// inside [0, in); the others read the zero padding.
std::pair<std::size_t, std::size_t> valid_range(std::size_t out, std::size_t in, std::size_t stride,
                                                std::size_t offset, std::size_t pad) {
  const std::size_t lo = pad > offset ? (pad - offset + stride - 1) / stride : 0;
  const std::size_t hi =
      in + pad > offset ? std::min(out, (in + pad - offset + stride - 1) / stride) : 0;
  return {std::min(lo, hi), hi};
}

/// Walks the im2col matrix of one sample, rows (c, i, j) by columns (oh, ow): for each output
/// row oh of each matrix row, calls span(offset in the matrix, whether the input row exists (else
/// the whole segment is padding), offset of the input element that ow = 0 would read (negative in
/// the padding), first and end of the valid ow).
template <class F>
void for_each_segment(const Geometry& g, F&& span) {
  const auto pad = static_cast<std::ptrdiff_t>(g.pad);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.k; ++i) {
      const auto [oh_lo, oh_hi] = valid_range(g.ho, g.h, g.stride, i, g.pad);
      for (std::size_t j = 0; j < g.k; ++j) {
        const auto [ow_lo, ow_hi] = valid_range(g.wo, g.w, g.stride, j, g.pad);
        const std::size_t row = ((c * g.k + i) * g.k + j) * g.hw();
        for (std::size_t oh = 0; oh < g.ho; ++oh) {
          const bool inside = oh >= oh_lo && oh < oh_hi;
          std::ptrdiff_t in = 0;
          if (inside)
            in = static_cast<std::ptrdiff_t>((c * g.h + oh * g.stride + i - g.pad) * g.w + j) - pad;
          span(row + oh * g.wo, inside, in, ow_lo, ow_hi);
        }
      }
    }
}

/// One sample's patches as a (C·k·k) × (Ho·Wo) matrix.
template <class T>
void im2col(const T* x, const Geometry& g, T* cols) {
  for_each_segment(
      g, [&](std::size_t at, bool inside, std::ptrdiff_t in, std::size_t lo, std::size_t hi) {
        T* out = cols + at;
        if (!inside) {
          std::fill(out, out + g.wo, T(0));
          return;
        }
        std::fill(out, out + lo, T(0));
        std::fill(out + hi, out + g.wo, T(0));
        // column ow reads x[in + ow·stride]
        for (std::size_t ow = lo; ow < hi; ++ow)
          out[ow] = x[in + static_cast<std::ptrdiff_t>(ow * g.stride)];
      });
}

/// Adds a (C·k·k) × (Ho·Wo) matrix back into one sample's input gradient (im2col's adjoint).
template <class T>
void col2im(const T* cols, const Geometry& g, T* dx) {
  for_each_segment(
      g, [&](std::size_t at, bool inside, std::ptrdiff_t in, std::size_t lo, std::size_t hi) {
        if (!inside) return;
        const T* src = cols + at;
        for (std::size_t ow = lo; ow < hi; ++ow)
          dx[in + static_cast<std::ptrdiff_t>(ow * g.stride)] += src[ow];
      });
}

/// A per-thread scratch buffer that only grows: the im2col matrices of every conv call reuse it,
/// so a training step allocates (and page-faults) no new one.
template <class T>
T* scratch(std::size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride,
                   std::size_t padding) {
  const Geometry g = conv_geometry(x.shape(), w.shape(), stride, padding, "conv2d");
  Array<T> out = Array<T>::from_shape({g.n, g.o, g.ho, g.wo});
  // Sample by sample, so that the patch matrix stays in cache: y_n = W (O × CKK) · cols_n.
  T* cols = scratch<T>(g.ckk() * g.hw());
  for (std::size_t n = 0; n < g.n && out.size() > 0; ++n) {
    im2col(x.value().data() + n * g.in_size(), g, cols);
    kernels::gemm(false, false, g.o, g.hw(), g.ckk(), T(1), w.value().data(), g.ckk(), cols, g.hw(),
                  T(0), out.data() + n * g.o * g.hw(), g.hw());
  }
  return make_op<T>("conv2d", std::move(out), {x, w},
                    [stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dx = conv2d_input_grad(g, w), d/dw = conv2d_weight_grad(x, g)
                      const auto& x = c.input(0);
                      const auto& w = c.input(1);
                      Grads<T> grads(2);
                      if (c.needs(0))
                        grads[0] = conv2d_input_grad(c.grad, w, x.shape(), stride, padding);
                      if (c.needs(1))
                        grads[1] = conv2d_weight_grad(x, c.grad, w.shape(), stride, padding);
                      return grads;
                    });
}

template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              std::size_t stride, std::size_t padding) {
  const Geometry geo = conv_geometry(x_shape, w.shape(), stride, padding, "conv2d_input_grad");
  check_output_grad(g.shape(), geo, "conv2d_input_grad");
  Array<T> dx = xt::zeros<T>(x_shape);
  // dcols_n (CKK × HoWo) = Wᵀ (CKK × O) · g_n (O × HoWo), added back into dx_n.
  T* cols = scratch<T>(geo.ckk() * geo.hw());
  for (std::size_t n = 0; n < geo.n && g.size() > 0; ++n) {
    kernels::gemm(true, false, geo.ckk(), geo.hw(), geo.o, T(1), w.value().data(), geo.ckk(),
                  g.value().data() + n * geo.o * geo.hw(), geo.hw(), T(0), cols, geo.hw());
    col2im(cols, geo, dx.data() + n * geo.in_size());
  }
  return make_op<T>("conv2d_input_grad", std::move(dx), {g, w},
                    [stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                      // with h the incoming gradient (x's shape):
                      // d/dg = conv2d(h, w), d/dw = conv2d_weight_grad(h, g)
                      const auto& g = c.input(0);
                      const auto& w = c.input(1);
                      Grads<T> grads(2);
                      if (c.needs(0)) grads[0] = conv2d(c.grad, w, stride, padding);
                      if (c.needs(1))
                        grads[1] = conv2d_weight_grad(c.grad, g, w.shape(), stride, padding);
                      return grads;
                    });
}

template <class T>
Variable<T> conv2d_weight_grad(const Variable<T>& x, const Variable<T>& g, const Shape& w_shape,
                               std::size_t stride, std::size_t padding) {
  const Geometry geo = conv_geometry(x.shape(), w_shape, stride, padding, "conv2d_weight_grad");
  check_output_grad(g.shape(), geo, "conv2d_weight_grad");
  Array<T> dw = xt::zeros<T>(w_shape);
  // dW (O × CKK) = Σ_n g_n (O × HoWo) · cols_nᵀ (HoWo × CKK)
  T* cols = scratch<T>(geo.ckk() * geo.hw());
  for (std::size_t n = 0; n < geo.n && g.size() > 0; ++n) {
    im2col(x.value().data() + n * geo.in_size(), geo, cols);
    kernels::gemm(false, true, geo.o, geo.ckk(), geo.hw(), T(1),
                  g.value().data() + n * geo.o * geo.hw(), geo.hw(), cols, geo.hw(), T(1),
                  dw.data(), geo.ckk());
  }
  return make_op<T>("conv2d_weight_grad", std::move(dw), {x, g},
                    [stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                      // with h the incoming gradient (w's shape):
                      // d/dx = conv2d_input_grad(g, h), d/dg = conv2d(x, h)
                      const auto& x = c.input(0);
                      const auto& g = c.input(1);
                      Grads<T> grads(2);
                      if (c.needs(0))
                        grads[0] = conv2d_input_grad(g, c.grad, x.shape(), stride, padding);
                      if (c.needs(1)) grads[1] = conv2d(x, c.grad, stride, padding);
                      return grads;
                    });
}

namespace {

Geometry checked_pool(const Shape& x, std::size_t k, std::size_t stride, std::size_t pad,
                      const char* op) {
  Geometry g = pool_geometry(x, k, stride, pad, op);
  if (2 * pad > k) fail(op, ": padding ", pad, " is more than half the kernel ", k);
  g.o = g.c;
  return g;
}

/// Calls f(input offset within the (n, c) plane, output offset) for each in-bounds window entry.
template <class F>
void for_each_window(const Geometry& g, F&& f) {
  const auto pad = static_cast<std::ptrdiff_t>(g.pad);
  for (std::size_t oh = 0; oh < g.ho; ++oh)
    for (std::size_t ow = 0; ow < g.wo; ++ow)
      for (std::size_t i = 0; i < g.k; ++i) {
        const std::ptrdiff_t ih = static_cast<std::ptrdiff_t>(oh * g.stride + i) - pad;
        if (ih < 0 || ih >= static_cast<std::ptrdiff_t>(g.h)) continue;
        for (std::size_t j = 0; j < g.k; ++j) {
          const std::ptrdiff_t iw = static_cast<std::ptrdiff_t>(ow * g.stride + j) - pad;
          if (iw < 0 || iw >= static_cast<std::ptrdiff_t>(g.w)) continue;
          f(static_cast<std::size_t>(ih) * g.w + static_cast<std::size_t>(iw), oh * g.wo + ow);
        }
      }
}

}  // namespace

namespace {

// Max pooling is a selection by index within each (n, c) plane, and its gradient the scatter
// back; each is the other's adjoint, so second order works. The indices are shared, not copied.
using PlaneIndex = std::shared_ptr<const Index>;

template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape);

/// out[r, q] = x[r, idx[r, q]] over planes r of x (N, C, H, W); out has `out_shape`.
template <class T>
Variable<T> pool_select(const Variable<T>& x, const PlaneIndex& idx, const Shape& out_shape) {
  const std::size_t planes = idx->shape()[0], per = idx->shape()[1];
  const std::size_t plane = x.size() / planes;
  Array<T> out = Array<T>::from_shape(out_shape);
  const T* px = x.value().data();
  const std::size_t* pi = idx->data();
  for (std::size_t r = 0; r < planes; ++r)
    for (std::size_t q = 0; q < per; ++q) out.data()[r * per + q] = px[r * plane + pi[r * per + q]];
  return make_op<T>("max_pool2d", std::move(out), {x},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dx = g scattered back to the selected positions
                      return {pool_scatter(c.grad, idx, c.input(0).shape())};
                    });
}

/// dx[r, idx[r, q]] += g[r, q]: the adjoint of pool_select.
template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape) {
  const std::size_t planes = idx->shape()[0], per = idx->shape()[1];
  const std::size_t plane = shape_size(x_shape) / planes;
  Array<T> dx = xt::zeros<T>(x_shape);
  const T* pg = g.value().data();
  const std::size_t* pi = idx->data();
  for (std::size_t r = 0; r < planes; ++r)
    for (std::size_t q = 0; q < per; ++q) dx.data()[r * plane + pi[r * per + q]] += pg[r * per + q];
  return make_op<T>("max_pool2d_grad", std::move(dx), {g},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dg = the incoming gradient read at the selected positions
                      return {pool_select(c.grad, idx, c.input(0).shape())};
                    });
}

}  // namespace

template <class T>
Variable<T> max_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  const Geometry g = checked_pool(x.shape(), kernel, stride, padding, "max_pool2d");
  // Index of each window's maximum in its (H·W) plane; the values are then gathered, so the
  // gradient (gather's adjoint) goes to the maxima.
  auto idx = std::make_shared<Index>(Index::from_shape({g.n * g.c, g.hw()}));
  const T* px = x.value().data();
  for (std::size_t r = 0; r < g.n * g.c; ++r) {
    const T* plane = px + r * g.h * g.w;
    std::size_t* out = idx->data() + r * g.hw();
    for (std::size_t oh = 0; oh < g.ho; ++oh) {
      const auto ih0 =
          static_cast<std::ptrdiff_t>(oh * g.stride) - static_cast<std::ptrdiff_t>(g.pad);
      const std::size_t i_lo = ih0 < 0 ? std::size_t(-ih0) : 0;
      const std::size_t i_hi =
          std::min<std::ptrdiff_t>(g.k, static_cast<std::ptrdiff_t>(g.h) - ih0);
      for (std::size_t ow = 0; ow < g.wo; ++ow) {
        const auto iw0 =
            static_cast<std::ptrdiff_t>(ow * g.stride) - static_cast<std::ptrdiff_t>(g.pad);
        const std::size_t j_lo = iw0 < 0 ? std::size_t(-iw0) : 0;
        const std::size_t j_hi =
            std::min<std::ptrdiff_t>(g.k, static_cast<std::ptrdiff_t>(g.w) - iw0);
        // padding <= k/2 leaves every window at least one input
        std::size_t best_at = (ih0 + i_lo) * g.w + (iw0 + j_lo);
        T best = plane[best_at];
        for (std::size_t i = i_lo; i < i_hi; ++i)
          for (std::size_t j = j_lo; j < j_hi; ++j) {
            const std::size_t at = (ih0 + i) * g.w + (iw0 + j);
            const T v = plane[at];
            if (v > best || (std::isnan(v) && !std::isnan(best))) {
              best = v;
              best_at = at;
            }
          }
        out[oh * g.wo + ow] = best_at;
      }
    }
  }
  return pool_select(x, PlaneIndex(std::move(idx)), Shape{g.n, g.c, g.ho, g.wo});
}

template <class T>
Variable<T> avg_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  const Geometry g = checked_pool(x.shape(), kernel, stride, padding, "avg_pool2d");
  Array<T> out = xt::zeros<T>({g.n, g.c, g.ho, g.wo});
  const T scale = T(1) / static_cast<T>(kernel * kernel);
  for (std::size_t r = 0; r < g.n * g.c; ++r) {
    const T* plane = x.value().data() + r * g.h * g.w;
    T* o = out.data() + r * g.hw();
    for_each_window(g, [&](std::size_t in, std::size_t at) { o[at] += plane[in] * scale; });
  }
  return make_op<T>("avg_pool2d", std::move(out), {x},
                    [kernel, stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dx = each window's gradient spread evenly over it (the adjoint)
                      return {avg_pool2d_grad(c.grad, c.input(0).shape(), kernel, stride, padding)};
                    });
}

template <class T>
Variable<T> avg_pool2d_grad(const Variable<T>& g, const Shape& x_shape, std::size_t kernel,
                            std::size_t stride, std::size_t padding) {
  const Geometry geo = checked_pool(x_shape, kernel, stride, padding, "avg_pool2d_grad");
  check_output_grad(g.shape(), geo, "avg_pool2d_grad");
  Array<T> dx = xt::zeros<T>(x_shape);
  const T scale = T(1) / static_cast<T>(kernel * kernel);
  for (std::size_t r = 0; r < geo.n * geo.c; ++r) {
    const T* pg = g.value().data() + r * geo.hw();
    T* plane = dx.data() + r * geo.h * geo.w;
    for_each_window(geo, [&](std::size_t in, std::size_t at) { plane[in] += pg[at] * scale; });
  }
  return make_op<T>("avg_pool2d_grad", std::move(dx), {g},
                    [kernel, stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dg = avg_pool2d of the incoming gradient (the adjoint's adjoint)
                      return {avg_pool2d(c.grad, kernel, stride, padding)};
                    });
}

#define AD_INSTANTIATE(T)                                                                          \
  template Variable<T> conv2d(const Variable<T>&, const Variable<T>&, std::size_t, std::size_t);   \
  template Variable<T> conv2d_input_grad(const Variable<T>&, const Variable<T>&, const Shape&,     \
                                         std::size_t, std::size_t);                                \
  template Variable<T> conv2d_weight_grad(const Variable<T>&, const Variable<T>&, const Shape&,    \
                                          std::size_t, std::size_t);                               \
  template Variable<T> max_pool2d(const Variable<T>&, std::size_t, std::size_t, std::size_t);      \
  template Variable<T> avg_pool2d(const Variable<T>&, std::size_t, std::size_t, std::size_t);      \
  template Variable<T> avg_pool2d_grad(const Variable<T>&, const Shape&, std::size_t, std::size_t, \
                                       std::size_t);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
