// Elementwise kernels: NumPy broadcasting, the strided loop under every broadcast kernel, and maps
// of one, two or three arrays.
//
// The kernels (autodiff/kernels/) are plain functions from arrays to arrays, with no tape: the ops
// (autodiff/*.cpp) check shapes, call a kernel, record the op and give its backward rule. They are
// the one interface a GPU backend would implement.
//
// xtensor 0.24's lazy broadcasting is slow on the shapes that matter here (a bias added along
// rows is ~25x slower than a plain loop), so broadcast elementwise work and reductions run
// through one strided loop that hands contiguous runs to a plain inner loop.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "autodiff/array.hpp"
#include "autodiff/parallel.hpp"

namespace ad::kernels {

using Strides = xt::svector<std::ptrdiff_t, 4>;

/// A row-major shape seen as (outer, extent of `axis`, inner).
struct AxisView {
  std::size_t outer = 1, extent = 1, inner = 1;
  AxisView(const Shape& s, std::size_t axis) {
    for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
    extent = s[axis];
    for (std::size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  }
};

/// NumPy broadcasting of two shapes; throws naming `op` when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

/// Element strides of a row-major array of shape `in` read at every index of the broadcast shape
/// `out` (0 along broadcast axes). `in` must broadcast to `out`.
Strides broadcast_strides(const Shape& in, const Shape& out);

/// Row-major element strides of `shape`.
Strides contiguous_strides(const Shape& shape);

/// Calls run(offsets, n, steps) for every innermost run of the index space `shape`, where
/// offsets[k] is array k's element offset at the run's start and steps[k] its stride along the
/// run. Axes of extent 1 are dropped and axes that are contiguous in every array are merged, so
/// same-shape arrays make a single run.
template <std::size_t K, class F>
void for_each_run(const Shape& shape, const std::array<Strides, K>& strides, F&& run) {
  // Merge axes, innermost first.
  Shape ext;
  std::array<Strides, K> st;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 1) continue;
    if (!ext.empty()) {
      bool mergeable = true;
      for (std::size_t k = 0; k < K; ++k)
        mergeable =
            mergeable && strides[k][d] == st[k].back() * static_cast<std::ptrdiff_t>(ext.back());
      if (mergeable) {
        ext.back() *= shape[d];
        continue;
      }
    }
    ext.push_back(shape[d]);
    for (std::size_t k = 0; k < K; ++k) st[k].push_back(strides[k][d]);
  }
  std::array<std::ptrdiff_t, K> off{};
  std::array<std::ptrdiff_t, K> step{};
  for (auto e : shape)
    if (e == 0) return;
  if (ext.empty()) {
    run(off, std::size_t{1}, step);
    return;
  }
  // ext[0] is the innermost axis.
  for (std::size_t k = 0; k < K; ++k) step[k] = st[k][0];
  const std::size_t nd = ext.size();
  Shape idx(nd, 0);
  while (true) {
    run(off, ext[0], step);
    std::size_t d = 1;
    for (; d < nd; ++d) {
      for (std::size_t k = 0; k < K; ++k) off[k] += st[k][d];
      if (++idx[d] < ext[d]) break;
      for (std::size_t k = 0; k < K; ++k) off[k] -= st[k][d] * static_cast<std::ptrdiff_t>(ext[d]);
      idx[d] = 0;
    }
    if (d >= nd) return;
  }
}

/// out = op(a, b) elementwise with NumPy broadcasting. The result's element type is op's (T for
/// arithmetic, bool for a comparison: masks are made here, never by evaluating an xtensor
/// comparison into a bool array, which xtensor 0.24.3 with XSIMD gets wrong when an operand
/// broadcasts over leading axes).
template <class T, class Op, class R = std::decay_t<decltype(std::declval<Op&>()(T(), T()))>>
Array<R> binary(const Array<T>& a, const Array<T>& b, Op op, const char* name) {
  const T* pa = a.data();
  const T* pb = b.data();
  if (same_shape(a.shape(), b.shape())) {
    Array<R> out(a.shape());
    R* po = out.data();
    detail::parallel_for(a.size(), detail::elementwise_grain(),
                         [&](std::size_t begin, std::size_t end) {
                           for (std::size_t i = begin; i < end; ++i) po[i] = op(pa[i], pb[i]);
                         });
    return out;
  }
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Array<R> out(shape);
  R* po = out.data();
  std::array<Strides, 3> st{contiguous_strides(shape), broadcast_strides(a.shape(), shape),
                            broadcast_strides(b.shape(), shape)};
  for_each_run(shape, st, [&](const auto& off, std::size_t n, const auto& step) {
    R* o = po + off[0];
    const T* x = pa + off[1];
    const T* y = pb + off[2];
    if (step[1] == 1 && step[2] == 1) {
      for (std::size_t i = 0; i < n; ++i) o[i] = op(x[i], y[i]);
    } else if (step[1] == 1 && step[2] == 0) {
      const T yv = *y;
      for (std::size_t i = 0; i < n; ++i) o[i] = op(x[i], yv);
    } else if (step[1] == 0 && step[2] == 1) {
      const T xv = *x;
      for (std::size_t i = 0; i < n; ++i) o[i] = op(xv, y[i]);
    } else {
      for (std::size_t i = 0; i < n; ++i) o[i] = op(x[i * step[1]], y[i * step[2]]);
    }
  });
  return out;
}

/// out = mask ? a : b elementwise, the three broadcasting together (NumPy's where).
template <class T>
Array<T> select(const Array<bool>& mask, const Array<T>& a, const Array<T>& b, const char* name) {
  const Shape sm(mask.shape().begin(), mask.shape().end());
  const Shape shape =
      broadcast_shapes(broadcast_shapes(sm, Shape(a.shape().begin(), a.shape().end()), name),
                       Shape(b.shape().begin(), b.shape().end()), name);
  Array<T> out(shape);
  const bool* pm = mask.data();
  const T* pa = a.data();
  const T* pb = b.data();
  T* po = out.data();
  std::array<Strides, 4> st{contiguous_strides(shape), broadcast_strides(sm, shape),
                            broadcast_strides(Shape(a.shape().begin(), a.shape().end()), shape),
                            broadcast_strides(Shape(b.shape().begin(), b.shape().end()), shape)};
  for_each_run(shape, st, [&](const auto& off, std::size_t n, const auto& step) {
    for (std::size_t i = 0; i < n; ++i) {
      auto j = static_cast<std::ptrdiff_t>(i);
      po[off[0] + j * step[0]] =
          pm[off[1] + j * step[1]] ? pa[off[2] + j * step[2]] : pb[off[3] + j * step[3]];
    }
  });
  return out;
}

/// out = op(a) elementwise; the result's element type is op's, as for binary.
template <class T, class Op, class R = std::decay_t<decltype(std::declval<Op&>()(T()))>>
Array<R> unary(const Array<T>& a, Op op) {
  Array<R> out(a.shape());
  const T* pa = a.data();
  R* po = out.data();
  detail::parallel_for(a.size(), detail::elementwise_grain(),
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t i = begin; i < end; ++i) po[i] = op(pa[i]);
                       });
  return out;
}

/// out[i] = op(a[i], b[i], ...) over arrays of one shape (the first one's).
template <class T, class Op, class... A>
Array<T> map(Op op, const Array<T>& first, const A&... rest) {
  Array<T> out(first.shape());
  T* po = out.data();
  const T* pf = first.data();
  detail::parallel_for(first.size(), detail::elementwise_grain(),
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t i = begin; i < end; ++i)
                           po[i] = op(pf[i], rest.data()[i]...);
                       });
  return out;
}

/// dst[i] = op(dst[i], a[i], ...) in place, over arrays of dst's shape.
template <class T, class Op, class... A>
void map_into(Array<T>& dst, Op op, const A&... rest) {
  T* pd = dst.data();
  detail::parallel_for(dst.size(), detail::elementwise_grain(),
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t i = begin; i < end; ++i)
                           pd[i] = op(pd[i], rest.data()[i]...);
                       });
}

/// po[i] = f(pa[i]) for n elements (po may be pa), with f taking and returning an xsimd batch
/// (xsimd::exp, ...). Every element goes through the same SIMD code, the tail too (padded):
/// xtensor's own assignment computes the elements before the first 64-byte boundary with the
/// scalar function instead, so its results changed in the last bit with the address malloc
/// returned, and training runs were not bit-reproducible.
template <class T, class F>
void simd_apply(const T* pa, T* po, std::size_t n, F f) {
  using B = xsimd::batch<T>;
  constexpr std::size_t width = B::size;
  // Whole batches split between threads; the tail, if any, after them: each element goes through
  // the same code whatever the thread count.
  detail::parallel_for(n / width, detail::elementwise_grain() / width,
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t b = begin; b < end; ++b)
                           f(B::load_unaligned(pa + b * width)).store_unaligned(po + b * width);
                       });
  const std::size_t i = n / width * width;
  if (i < n) {
    alignas(64) T buffer[width] = {};
    std::copy(pa + i, pa + n, buffer);
    f(B::load_aligned(buffer)).store_aligned(buffer);
    std::copy(buffer, buffer + (n - i), po + i);
  }
}

/// po[i] = f(pa[i], pb[i]) for n elements (po may be pa or pb), as simd_apply computes it.
template <class T, class F>
void simd_apply(const T* pa, const T* pb, T* po, std::size_t n, F f) {
  using B = xsimd::batch<T>;
  constexpr std::size_t width = B::size;
  detail::parallel_for(n / width, detail::elementwise_grain() / width,
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t b = begin; b < end; ++b)
                           f(B::load_unaligned(pa + b * width), B::load_unaligned(pb + b * width))
                               .store_unaligned(po + b * width);
                       });
  const std::size_t i = n / width * width;
  if (i < n) {
    alignas(64) T a[width] = {}, b[width] = {};
    std::copy(pa + i, pa + n, a);
    std::copy(pb + i, pb + n, b);
    f(B::load_aligned(a), B::load_aligned(b)).store_aligned(a);
    std::copy(a, a + (n - i), po + i);
  }
}

/// 1/(1 + e^-x) of a SIMD batch: exact enough everywhere (e^-x overflows to inf only where the
/// result is 0).
template <class B>
B logistic_of(const B& x) {
  return B(1) / (B(1) + xsimd::exp(-x));
}

/// `count` values from p as a SIMD batch (zeros after them), and back: the ends of rows.
template <class T>
xsimd::batch<T> load_part(const T* p, std::size_t count) {
  using B = xsimd::batch<T>;
  if (count == B::size) return B::load_unaligned(p);
  alignas(64) T buffer[B::size] = {};
  std::copy(p, p + count, buffer);
  return B::load_aligned(buffer);
}
template <class T>
void store_part(const xsimd::batch<T>& v, T* p, std::size_t count) {
  using B = xsimd::batch<T>;
  if (count == B::size) return v.store_unaligned(p);
  alignas(64) T buffer[B::size];
  v.store_aligned(buffer);
  std::copy(buffer, buffer + count, p);
}

/// out = f(a) elementwise, as simd_apply computes it.
template <class T, class F>
Array<T> simd_map(const Array<T>& a, F f) {
  Array<T> out(a.shape());
  simd_apply(a.data(), out.data(), a.size(), f);
  return out;
}

/// a = f(a) elementwise in place, as simd_map computes it.
template <class T, class F>
void simd_map_into(Array<T>& a, F f) {
  simd_apply(a.data(), a.data(), a.size(), f);
}

}  // namespace ad::kernels
