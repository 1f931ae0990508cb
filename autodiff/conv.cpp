#include "autodiff/conv.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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
void for_each_segment(const Geometry& g, std::size_t ld, F&& span) {
  const auto pad = static_cast<std::ptrdiff_t>(g.pad);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.k; ++i) {
      const auto [oh_lo, oh_hi] = valid_range(g.ho, g.h, g.stride, i, g.pad);
      for (std::size_t j = 0; j < g.k; ++j) {
        const auto [ow_lo, ow_hi] = valid_range(g.wo, g.w, g.stride, j, g.pad);
        const std::size_t row = ((c * g.k + i) * g.k + j) * ld;
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

bool is_same_conv(const Geometry& g);

/// One sample's patches as a (C·k·k) × (Ho·Wo) block of a matrix with rows ld apart.
template <class T>
void im2col_same(const T* x, const Geometry& g, T* cols, std::size_t ld);

template <class T>
void im2col(const T* x, const Geometry& g, T* cols, std::size_t ld) {
  if (is_same_conv(g)) return im2col_same(x, g, cols, ld);
  for_each_segment(
      g, ld, [&](std::size_t at, bool inside, std::ptrdiff_t in, std::size_t lo, std::size_t hi) {
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

/// Adds a (C·k·k) × (Ho·Wo) block back into one sample's input gradient (im2col's adjoint).
template <class T>
void col2im_same(T* cols, const Geometry& g, T* dx, std::size_t ld);

/// Adds the patch block back (cols may be overwritten: it is scratch).
template <class T>
void col2im(T* cols, const Geometry& g, T* dx, std::size_t ld) {
  if (is_same_conv(g)) return col2im_same(cols, g, dx, ld);
  for_each_segment(
      g, ld, [&](std::size_t at, bool inside, std::ptrdiff_t in, std::size_t lo, std::size_t hi) {
        if (!inside) return;
        const T* src = cols + at;
        for (std::size_t ow = lo; ow < hi; ++ow)
          dx[in + static_cast<std::ptrdiff_t>(ow * g.stride)] += src[ow];
      });
}

/// For a "same" convolution (stride 1, output as large as the input), the patch row (c, i, j) is
/// the input plane shifted by whole rows and by j − pad columns: one contiguous copy (or add) per
/// row of the patch matrix instead of one per output row, then the padded columns fixed up.
bool is_same_conv(const Geometry& g) {
  return g.stride == 1 && g.ho == g.h && g.wo == g.w;
}

/// Calls span(patch row offset, input plane offset, first output position, position count, column
/// shift) for each patch row (c, i, j) of one sample, over the output rows that read the input.
template <class F>
void for_each_shift(const Geometry& g, std::size_t ld, F&& span) {
  const std::size_t plane = g.h * g.w;
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.k; ++i) {
      const auto [oh_lo, oh_hi] = valid_range(g.ho, g.h, 1, i, g.pad);
      for (std::size_t j = 0; j < g.k; ++j) {
        const std::ptrdiff_t shift =
            static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(g.pad);
        // output position p = oh·w + ow reads input position p + (i − pad)·w + shift
        const std::ptrdiff_t offset =
            (static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(g.pad)) *
                static_cast<std::ptrdiff_t>(g.w) +
            shift;
        std::size_t first = oh_lo * g.w, count = (oh_hi - std::min(oh_lo, oh_hi)) * g.w;
        // Keep the span inside the input plane: up to `pad` positions at each end fall outside,
        // and they are padded columns anyway.
        const std::ptrdiff_t before = -(static_cast<std::ptrdiff_t>(first) + offset);
        if (before > 0) {
          const auto skip = std::min(count, static_cast<std::size_t>(before));
          first += skip;
          count -= skip;
        }
        const std::ptrdiff_t after = static_cast<std::ptrdiff_t>(first + count) + offset -
                                     static_cast<std::ptrdiff_t>(plane);
        if (after > 0) count -= std::min(count, static_cast<std::size_t>(after));
        span(((c * g.k + i) * g.k + j) * ld, c * plane, first, count, offset, shift, oh_lo, oh_hi);
      }
    }
}

/// Zeroes, in output rows [oh_lo, oh_hi) of a patch row shifted by `shift` columns, the columns
/// that read past a row's end (the next row's start, or the previous row's end): padding. (At most
/// `pad` per row: plain stores, a memset call would cost more.)
template <class T>
void clear_shifted_columns(T* row, const Geometry& g, std::ptrdiff_t shift, std::size_t oh_lo,
                           std::size_t oh_hi) {
  if (shift == 0) return;
  const std::size_t n = static_cast<std::size_t>(shift < 0 ? -shift : shift);
  const std::size_t first = shift < 0 ? 0 : g.w - n;
  for (std::size_t t = 0; t < n; ++t)  // (column-wise: GCC would turn rows into memset calls)
    for (std::size_t oh = oh_lo; oh < oh_hi; ++oh) row[oh * g.w + first + t] = T(0);
}

template <class T>
void im2col_same(const T* x, const Geometry& g, T* cols, std::size_t ld) {
  for_each_shift(
      g, ld,
      [&](std::size_t row, std::size_t in, std::size_t first, std::size_t count,
          std::ptrdiff_t offset, std::ptrdiff_t shift, std::size_t oh_lo, std::size_t oh_hi) {
        T* out = cols + row;
        std::fill(out, out + first, T(0));
        std::copy_n(x + static_cast<std::ptrdiff_t>(in + first) + offset, count, out + first);
        std::fill(out + first + count, out + g.hw(), T(0));
        clear_shifted_columns(out, g, shift, oh_lo, oh_hi);
      });
}

/// The adjoint: adds the patch matrix back. It zeroes the padded columns of `cols` first (the
/// buffer is scratch), so that each row adds in one contiguous pass.
template <class T>
void col2im_same(T* cols, const Geometry& g, T* dx, std::size_t ld) {
  for_each_shift(
      g, ld,
      [&](std::size_t row, std::size_t in, std::size_t first, std::size_t count,
          std::ptrdiff_t offset, std::ptrdiff_t shift, std::size_t oh_lo, std::size_t oh_hi) {
        T* src = cols + row;
        clear_shifted_columns(src, g, shift, oh_lo, oh_hi);
        T* to = dx + static_cast<std::ptrdiff_t>(in + first) + offset;
        const T* from = src + first;
        for (std::size_t t = 0; t < count; ++t) to[t] += from[t];
      });
}

/// Per-thread scratch buffers that only grow: the matrices of every conv call reuse them, so a
/// training step allocates (and page-faults) none. `slot` tells apart two buffers in use at once.
template <class T>
T* scratch(std::size_t n, int slot) {
  thread_local std::vector<T> buffers[2];
  if (buffers[slot].size() < n) buffers[slot].resize(n);
  return buffers[slot].data();
}

/// Samples are processed in groups whose patch matrices sit side by side, so that each GEMM is
/// wide enough for the BLAS to run near its peak (one sample's Ho·Wo of 196 columns is not) while
/// the matrices stay small enough for the cache. A sample of 1024 columns or more goes alone, and
/// its output needs no moving (measured on the example's CNN: 4% of a step faster than 2048).
std::size_t group_size(const Geometry& g) {
  constexpr std::size_t target_columns = 1024;
  return std::max<std::size_t>(1, std::min(g.n, target_columns / std::max<std::size_t>(g.hw(), 1)));
}

/// Copies samples [n0, n0 + count) of (N, O, HoWo) into an (O, count·HoWo) matrix, or back.
template <class T>
void gather_group(const T* from, const Geometry& g, std::size_t n0, std::size_t count, T* to) {
  detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t s = begin; s < end; ++s)
      for (std::size_t o = 0; o < g.o; ++o)
        std::copy_n(from + ((n0 + s) * g.o + o) * g.hw(), g.hw(), to + (o * count + s) * g.hw());
  });
}

/// The output gradient of samples [n0, n0 + count) as an (O × count·HoWo) matrix: in place for a
/// single sample, else gathered into `buffer`.
template <class T>
const T* output_group(const T* g, const Geometry& geo, std::size_t n0, std::size_t count,
                      T* buffer) {
  if (count == 1) return g + n0 * geo.o * geo.hw();
  gather_group(g, geo, n0, count, buffer);
  return buffer;
}

/// Moves a group's output Y (O × count·HoWo) to samples [n0, n0 + count) of out (N, O, HoWo),
/// adding the bias (when there is one) on the way. For a single sample Y is already in place.
template <class T>
void place_group(const T* y, const T* bias, const Geometry& g, std::size_t n0, std::size_t count,
                 T* out) {
  detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t s = begin; s < end; ++s)
      for (std::size_t o = 0; o < g.o; ++o) {
        const T* from = y + (o * count + s) * g.hw();
        T* to = out + ((n0 + s) * g.o + o) * g.hw();
        const T b = bias ? bias[o] : T(0);
        if (from != to)
          for (std::size_t i = 0; i < g.hw(); ++i) to[i] = from[i] + b;
        else if (bias)
          for (std::size_t i = 0; i < g.hw(); ++i) to[i] += b;
      }
  });
}

}  // namespace

namespace {

/// Σ of n contiguous values, in eight interleaved partial sums (vectorisable, deterministic).
template <class T>
T row_sum(const T* p, std::size_t n) {
  T part[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += p[i + k];
  T total = 0;
  for (; i < n; ++i) total += p[i];
  for (int k = 0; k < 8; ++k) total += part[k];
  return total;
}

/// The patch matrices of samples [n0, n0 + count) side by side: (C·k·k) × (count·Ho·Wo).
template <class T>
void im2col_group(const T* x, const Geometry& g, std::size_t n0, std::size_t count, T* cols) {
  detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t s = begin; s < end; ++s)
      im2col(x + (n0 + s) * g.in_size(), g, cols + s * g.hw(), count * g.hw());
  });
}

/// The products of conv2d's backward for the output gradient gy (N, O, Ho, Wo), in one pass over
/// the groups of samples, each group's G (O × count·HoWo) gathered once:
///   db += Σ of G's rows,  dW (O × CKK) += G · colsᵀ,  dx = col2im(Wᵀ · G),
/// each for which a pointer is given (dw and db zeroed by the caller, dx overwritten). The patch
/// matrices for dW are those the forward pass kept (`kept`, group by group) or are made from x.
template <class T>
void conv_backward(const T* gy, const T* w, const T* x, const T* kept, const Geometry& geo, T* dx,
                   T* dw, T* db) {
  if (geo.n * geo.o * geo.hw() == 0) {  // no products to form: the gradients are zeros
    if (dx) std::fill_n(dx, geo.n * geo.in_size(), T(0));
    return;
  }
  const std::size_t group = group_size(geo);
  T* gm = scratch<T>(geo.o * group * geo.hw(), 1);
  T* cols = scratch<T>(geo.ckk() * group * geo.hw(), 0);
  for (std::size_t n0 = 0; n0 < geo.n; n0 += group) {
    const std::size_t count = std::min(group, geo.n - n0), width = count * geo.hw();
    const T* g = output_group(gy, geo, n0, count, gm);
    if (db)
      for (std::size_t o = 0; o < geo.o; ++o) db[o] += row_sum(g + o * width, width);
    if (dw) {
      const T* patches = kept ? kept + n0 * geo.ckk() * geo.hw() : cols;
      if (!kept) im2col_group(x, geo, n0, count, cols);
      kernels::gemm(false, true, geo.o, geo.ckk(), width, T(1), g, width, patches, width, T(1), dw,
                    geo.ckk());
    }
    if (dx) {
      kernels::gemm(true, false, geo.ckk(), width, geo.o, T(1), w, geo.ckk(), g, width, T(0), cols,
                    width);
      detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t s = begin; s < end; ++s) {
          T* sample = dx + (n0 + s) * geo.in_size();
          std::fill_n(sample, geo.in_size(), T(0));
          col2im(cols + s * geo.hw(), geo, sample, width);
        }
      });
    }
  }
}

/// conv2d's gradients when the backward pass is not recorded: conv_backward in one pass.
template <class T>
Grads<T> conv2d_grads(const BackwardContext<T>& c, const Geometry& geo, const Array<T>* kept) {
  const auto& x = c.input(0);
  const auto& w = c.input(1);
  const bool need_b = c.inputs.size() == 3 && c.needs(2);
  Array<T> dx, dw, db;
  if (c.needs(0)) dx = Array<T>::from_shape(x.shape());
  if (c.needs(1)) dw = xt::zeros<T>(w.shape());
  if (need_b) db = xt::zeros<T>({geo.o});
  conv_backward(c.grad.value().data(), w.value().data(), x.value().data(),
                kept ? kept->data() : nullptr, geo, c.needs(0) ? dx.data() : nullptr,
                c.needs(1) ? dw.data() : nullptr, need_b ? db.data() : nullptr);
  Grads<T> grads(c.inputs.size());
  if (c.needs(0)) grads[0] = Variable<T>(std::move(dx));
  if (c.needs(1)) grads[1] = Variable<T>(std::move(dw));
  if (need_b) grads[2] = Variable<T>(std::move(db));
  return grads;
}

}  // namespace

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   std::size_t stride, std::size_t padding) {
  const Geometry g = conv_geometry(x.shape(), w.shape(), stride, padding, "conv2d");
  if (b.defined() && b.shape() != Shape{g.o})
    fail("conv2d: bias ", shape_str(b.shape()), " does not match weight ", shape_str(w.shape()),
         " (bias is (O))");
  Array<T> out = Array<T>::from_shape({g.n, g.o, g.ho, g.wo});
  // When backward will want the weight gradient, the patch matrices are kept for it, group after
  // group (C·k·k × count·Ho·Wo each); otherwise the groups reuse a scratch buffer.
  // (An Array: not zero-filled, and its large blocks come back from the allocator's cache.)
  std::shared_ptr<Array<T>> kept;
  if (is_grad_enabled() && w.requires_grad())
    kept = std::make_shared<Array<T>>(Array<T>::from_shape({g.ckk() * g.n * g.hw()}));
  // Per group of samples: Y (O × count·HoWo) = W (O × CKK) · cols (CKK × count·HoWo).
  const std::size_t group = group_size(g);
  T* y = scratch<T>(g.o * group * g.hw(), 1);
  for (std::size_t n0 = 0; n0 < g.n && out.size() > 0; n0 += group) {
    const std::size_t count = std::min(group, g.n - n0), width = count * g.hw();
    T* cols = kept ? kept->data() + n0 * g.ckk() * g.hw() : scratch<T>(g.ckk() * group * g.hw(), 0);
    im2col_group(x.value().data(), g, n0, count, cols);
    T* target = count == 1 ? out.data() + n0 * g.o * g.hw() : y;
    kernels::gemm(false, false, g.o, width, g.ckk(), T(1), w.value().data(), g.ckk(), cols, width,
                  T(0), target, width);
    place_group(target, b.defined() ? b.value().data() : nullptr, g, n0, count, out.data());
  }
  auto backward = [stride, padding, kept, g](const BackwardContext<T>& c) -> Grads<T> {
    // d/dx = conv2d_input_grad(gy, w), d/dw = conv2d_weight_grad(x, gy), d/db = Σ_{n,h,w} gy
    if (!is_grad_enabled()) return conv2d_grads(c, g, kept.get());
    const auto& x = c.input(0);
    const auto& w = c.input(1);
    Grads<T> grads(c.inputs.size());
    if (c.needs(0)) grads[0] = conv2d_input_grad(c.grad, w, x.shape(), stride, padding);
    if (c.needs(1)) grads[1] = conv2d_weight_grad(x, c.grad, w.shape(), stride, padding);
    if (c.inputs.size() == 3 && c.needs(2)) grads[2] = sum(c.grad, {0, 2, 3});
    return grads;
  };
  if (b.defined()) return make_op<T>("conv2d", std::move(out), {x, w, b}, backward);
  return make_op<T>("conv2d", std::move(out), {x, w}, backward);
}

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride,
                   std::size_t padding) {
  return conv2d(x, w, Variable<T>(), stride, padding);
}

template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              std::size_t stride, std::size_t padding) {
  const Geometry geo = conv_geometry(x_shape, w.shape(), stride, padding, "conv2d_input_grad");
  check_output_grad(g.shape(), geo, "conv2d_input_grad");
  Array<T> dx = Array<T>::from_shape(x_shape);
  conv_backward<T>(g.value().data(), w.value().data(), nullptr, nullptr, geo, dx.data(), nullptr,
                   nullptr);
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
  conv_backward<T>(g.value().data(), nullptr, x.value().data(), nullptr, geo, nullptr, dw.data(),
                   nullptr);
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
// back; each is the other's adjoint, so second order works. The indices are shared, not copied,
// and 32-bit (half the memory traffic of size_t; max_pool2d checks that a plane fits).
using PoolIndex = Array<std::uint32_t>;
using PlaneIndex = std::shared_ptr<const PoolIndex>;

template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape);

/// The op whose value `out` holds x's entries at idx, plane by plane.
template <class T>
Variable<T> pool_selected(Array<T> out, const Variable<T>& x, const PlaneIndex& idx) {
  return make_op<T>("max_pool2d", std::move(out), {x},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dx = g scattered back to the selected positions
                      return {pool_scatter(c.grad, idx, c.input(0).shape())};
                    });
}

/// out[r, q] = x[r, idx[r, q]] over planes r of x (N, C, H, W); out has `out_shape`.
template <class T>
Variable<T> pool_select(const Variable<T>& x, const PlaneIndex& idx, const Shape& out_shape) {
  const std::size_t planes = idx->shape()[0], per = idx->shape()[1];
  const std::size_t plane = x.size() / planes;
  Array<T> out = Array<T>::from_shape(out_shape);
  const T* px = x.value().data();
  const std::uint32_t* pi = idx->data();
  detail::parallel_for(planes, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r)
      for (std::size_t q = 0; q < per; ++q)
        out.data()[r * per + q] = px[r * plane + pi[r * per + q]];
  });
  return pool_selected(std::move(out), x, idx);
}

/// dx[r, idx[r, q]] += g[r, q]: the adjoint of pool_select.
template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape) {
  const std::size_t planes = idx->shape()[0], per = idx->shape()[1];
  const std::size_t plane = shape_size(x_shape) / planes;
  Array<T> dx = Array<T>::from_shape(x_shape);
  const T* pg = g.value().data();
  const std::uint32_t* pi = idx->data();
  detail::parallel_for(planes, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      // zeroed plane by plane: the adds then find it in the cache
      T* to = dx.data() + r * plane;
      std::fill_n(to, plane, T(0));
      for (std::size_t q = 0; q < per; ++q) to[pi[r * per + q]] += pg[r * per + q];
    }
  });
  return make_op<T>("max_pool2d_grad", std::move(dx), {g},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dg = the incoming gradient read at the selected positions
                      return {pool_select(c.grad, idx, c.input(0).shape())};
                    });
}

/// Whether v takes the place of the maximum so far: larger, or NaN (a NaN then stays: nothing is
/// larger than it). Written as a sum of comparisons, which GCC vectorises (an `|` it does not).
template <class T>
inline int takes_over(T v, T best) {
  return (v > best) + (v != v);
}

/// The common 2×2 window of stride 2 without padding: the maxima of the windows over input rows
/// r0 and r1 (the row below), and their offsets from r0 plus `at`. A tournament (a against b, c
/// against d, then the winners), which keeps the first maximum in reading order, vectorised.
template <class T>
void max_pool_rows_2x2(const T* r0, const T* r1, std::uint32_t w, std::size_t wo, std::uint32_t at,
                       T* out, std::uint32_t* index) {
  for (std::size_t ow = 0; ow < wo; ++ow) {
    const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
    const int tb = takes_over(b, a), td = takes_over(d, c);
    const T ab = tb ? b : a, cd = td ? d : c;
    const int tc = takes_over(cd, ab);
    out[ow] = tc ? cd : ab;
    index[ow] = at + 2 * static_cast<std::uint32_t>(ow) + static_cast<std::uint32_t>(tc ? td : tb) +
                (tc ? w : 0);
  }
}

}  // namespace

template <class T>
Variable<T> max_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  const Geometry g = checked_pool(x.shape(), kernel, stride, padding, "max_pool2d");
  // The maximum of each window and its index in the (H·W) plane, which the gradient follows.
  if (g.h * g.w > std::numeric_limits<std::uint32_t>::max())
    fail("max_pool2d: input planes of ", g.h, "×", g.w, " are too large (at most 2^32 elements)");
  auto idx = std::make_shared<PoolIndex>(PoolIndex::from_shape({g.n * g.c, g.hw()}));
  Array<T> out = Array<T>::from_shape({g.n, g.c, g.ho, g.wo});
  const T* px = x.value().data();
  // The window rows and columns inside the input, per output row and column, computed once (the
  // divisions cost more than the comparisons when done per window).
  std::vector<std::pair<std::size_t, std::size_t>> rows(g.ho), cols(g.wo);
  auto inside = [&](std::size_t o, std::size_t extent) {
    const auto start =
        static_cast<std::ptrdiff_t>(o * g.stride) - static_cast<std::ptrdiff_t>(g.pad);
    const std::size_t lo = start < 0 ? static_cast<std::size_t>(-start) : 0;
    const std::size_t hi =
        std::min<std::ptrdiff_t>(g.k, static_cast<std::ptrdiff_t>(extent) - start);
    return std::pair<std::size_t, std::size_t>(lo, hi);
  };
  for (std::size_t oh = 0; oh < g.ho; ++oh) rows[oh] = inside(oh, g.h);
  for (std::size_t ow = 0; ow < g.wo; ++ow) cols[ow] = inside(ow, g.w);
  // (The sizes are copied to locals: the index stores could otherwise alias them, and the compiler
  // would reload them at every window.)
  const std::size_t h = g.h, w = g.w, ho = g.ho, wo = g.wo, step = g.stride, pad = g.pad;
  const bool two_by_two = g.k == 2 && step == 2 && pad == 0;
  detail::parallel_for(g.n * g.c, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      const T* plane = px + r * h * w;
      std::uint32_t* index = idx->data() + r * ho * wo;
      T* values = out.data() + r * ho * wo;
      if (two_by_two) {
        for (std::size_t oh = 0; oh < ho; ++oh)
          max_pool_rows_2x2(
              plane + 2 * oh * w, plane + (2 * oh + 1) * w, static_cast<std::uint32_t>(w), wo,
              static_cast<std::uint32_t>(2 * oh * w), values + oh * wo, index + oh * wo);
        continue;
      }
      // One window at a time; padding <= k/2 leaves each window at least one input.
      for (std::size_t oh = 0; oh < ho; ++oh) {
        const auto [i_lo, i_hi] = rows[oh];
        const std::size_t top = oh * step - pad;  // may wrap; i ≥ i_lo brings it back
        for (std::size_t ow = 0; ow < wo; ++ow) {
          const auto [j_lo, j_hi] = cols[ow];
          const std::size_t left = ow * step - pad;
          std::size_t best_at = (top + i_lo) * w + left + j_lo;
          T best = plane[best_at];
          for (std::size_t i = i_lo; i < i_hi; ++i)
            for (std::size_t j = j_lo; j < j_hi; ++j) {
              const std::size_t at = (top + i) * w + left + j;
              const T v = plane[at];
              const bool take = takes_over(v, best);
              best = take ? v : best;
              best_at = take ? at : best_at;
            }
          values[oh * wo + ow] = best;
          index[oh * wo + ow] = static_cast<std::uint32_t>(best_at);
        }
      }
    }
  });
  return pool_selected(std::move(out), x, PlaneIndex(std::move(idx)));
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
  template Variable<T> conv2d(const Variable<T>&, const Variable<T>&, const Variable<T>&,          \
                              std::size_t, std::size_t);                                           \
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
