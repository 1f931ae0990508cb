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

/// Calls f(input offset or -1 when in the padding, column offset) for each entry of the im2col
/// matrix of one sample: row (c, i, j), column (oh, ow).
template <class F>
void for_each_patch(const Geometry& g, F&& f) {
  const auto pad = static_cast<std::ptrdiff_t>(g.pad);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.k; ++i)
      for (std::size_t j = 0; j < g.k; ++j) {
        const std::size_t row = ((c * g.k + i) * g.k + j) * g.hw();
        for (std::size_t oh = 0; oh < g.ho; ++oh) {
          const std::ptrdiff_t ih = static_cast<std::ptrdiff_t>(oh * g.stride + i) - pad;
          const bool row_in = ih >= 0 && ih < static_cast<std::ptrdiff_t>(g.h);
          for (std::size_t ow = 0; ow < g.wo; ++ow) {
            const std::ptrdiff_t iw = static_cast<std::ptrdiff_t>(ow * g.stride + j) - pad;
            const bool in = row_in && iw >= 0 && iw < static_cast<std::ptrdiff_t>(g.w);
            f(in ? static_cast<std::ptrdiff_t>((c * g.h + ih) * g.w + iw) : -1,
              row + oh * g.wo + ow);
          }
        }
      }
}

template <class T>
void im2col(const T* x, const Geometry& g, T* cols) {
  for_each_patch(g, [&](std::ptrdiff_t in, std::size_t col) { cols[col] = in < 0 ? T(0) : x[in]; });
}

template <class T>
void col2im(const T* cols, const Geometry& g, T* dx) {
  for_each_patch(g, [&](std::ptrdiff_t in, std::size_t col) {
    if (in >= 0) dx[in] += cols[col];
  });
}

}  // namespace

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride,
                   std::size_t padding) {
  const Geometry g = conv_geometry(x.shape(), w.shape(), stride, padding, "conv2d");
  Array<T> out = Array<T>::from_shape({g.n, g.o, g.ho, g.wo});
  std::vector<T> cols(g.ckk() * g.hw());
  for (std::size_t n = 0; n < g.n; ++n) {
    im2col(x.value().data() + n * g.in_size(), g, cols.data());
    // y_n (O × HoWo) = W (O × CKK) · cols (CKK × HoWo)
    kernels::gemm(false, false, g.o, g.hw(), g.ckk(), T(1), w.value().data(), g.ckk(), cols.data(),
                  g.hw(), T(0), out.data() + n * g.o * g.hw(), g.hw());
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
  std::vector<T> cols(geo.ckk() * geo.hw());
  for (std::size_t n = 0; n < geo.n; ++n) {
    // dcols (CKK × HoWo) = Wᵀ (CKK × O) · g_n (O × HoWo)
    kernels::gemm(true, false, geo.ckk(), geo.hw(), geo.o, T(1), w.value().data(), geo.ckk(),
                  g.value().data() + n * geo.o * geo.hw(), geo.hw(), T(0), cols.data(), geo.hw());
    col2im(cols.data(), geo, dx.data() + n * geo.in_size());
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
  std::vector<T> cols(geo.ckk() * geo.hw());
  for (std::size_t n = 0; n < geo.n; ++n) {
    im2col(x.value().data() + n * geo.in_size(), geo, cols.data());
    // dW (O × CKK) += g_n (O × HoWo) · colsᵀ (HoWo × CKK)
    kernels::gemm(false, true, geo.o, geo.ckk(), geo.hw(), T(1),
                  g.value().data() + n * geo.o * geo.hw(), geo.hw(), cols.data(), geo.hw(), T(1),
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

template <class T>
Variable<T> max_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  const Geometry g = checked_pool(x.shape(), kernel, stride, padding, "max_pool2d");
  // Index of each window's maximum in its (H·W) plane; the values are then gathered, so the
  // gradient (gather's adjoint) goes to the maxima.
  Index idx = Index::from_shape({g.n * g.c, g.hw()});
  std::vector<T> best(g.hw());
  const T* px = x.value().data();
  for (std::size_t r = 0; r < g.n * g.c; ++r) {
    const T* plane = px + r * g.h * g.w;
    std::size_t* out = idx.data() + r * g.hw();
    std::fill(best.begin(), best.end(), -std::numeric_limits<T>::infinity());
    std::fill(out, out + g.hw(), std::size_t(0));
    std::vector<bool> seen(g.hw(), false);
    for_each_window(g, [&](std::size_t in, std::size_t o) {
      const T v = plane[in];
      if (!seen[o] || v > best[o] || (std::isnan(v) && !std::isnan(best[o]))) {
        best[o] = v;
        out[o] = in;
        seen[o] = true;
      }
    });
  }
  Variable<T> picked = gather(reshape(x, Shape{g.n * g.c, g.h * g.w}), 1, idx);
  return reshape(picked, Shape{g.n, g.c, g.ho, g.wo});
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
