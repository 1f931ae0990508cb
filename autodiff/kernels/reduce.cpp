#include "autodiff/kernels/reduce.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/scratch.hpp"
#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

void check_reducible(const Shape& from, const Shape& to, const char* op) {
  bool ok = to.size() <= from.size();
  for (std::size_t d = 0; ok && d < to.size(); ++d) {
    std::size_t f = from[from.size() - to.size() + d];
    ok = to[d] == f || to[d] == 1;
  }
  if (!ok) fail(op, ": shape ", shape_str(to), " does not broadcast to ", shape_str(from));
}

}  // namespace

namespace {

/// Σ x[i·step] for i < n, pairwise: blocks of 16 in order, then halves added, so that rounding
/// grows as log n rather than n (NumPy's and PyTorch's way), in one fixed order.
template <class T>
T pairwise_sum(const T* x, std::size_t n, std::ptrdiff_t step) {
  if (n <= 16) {
    T acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc += x[static_cast<std::ptrdiff_t>(i) * step];
    return acc;
  }
  const std::size_t half = n / 2;
  return pairwise_sum(x, half, step) +
         pairwise_sum(x + static_cast<std::ptrdiff_t>(half) * step, n - half, step);
}

/// Adds the block of a (extents `block` from `pa`, strides `sa`) into out (strides `so`, 0 along
/// the reduced axes): a run along reduced axes is summed pairwise, runs in order.
template <class T>
void add_block(const T* pa, const Shape& block, const Strides& sa, T* po, const Strides& so) {
  for_each_run(block, std::array<Strides, 2>{so, sa},
               [&](const auto& off, std::size_t n, const auto& step) {
                 T* o = po + off[0];
                 const T* x = pa + off[1];
                 if (step[0] == 0) {
                   *o += pairwise_sum(x, n, step[1]);
                 } else if (step[0] == 1 && step[1] == 1) {
                   for (std::size_t i = 0; i < n; ++i) o[i] += x[i];
                 } else {
                   for (std::size_t i = 0; i < n; ++i) o[i * step[0]] += x[i * step[1]];
                 }
               });
}

/// Sums the block of a into `out` (zeros of the reduced shape), pairwise also across runs: while
/// more than 16 runs would be added in turn into each output element (the reduced axes that a
/// run does not cover), the longest of those axes is halved and the halves summed apart.
template <class T>
void sum_block(const T* pa, const Shape& block, const Strides& sa, Array<T>& out, const Strides& so,
               const std::vector<std::size_t>& across) {
  std::size_t count = 1, k = across.empty() ? 0 : across[0];
  for (std::size_t d : across) {
    count *= block[d];
    if (block[d] > block[k]) k = d;
  }
  if (count <= 16 || block[k] <= 1) {
    add_block(pa, block, sa, out.data(), so);
    return;
  }
  Shape left = block, right = block;
  left[k] = block[k] / 2;
  right[k] = block[k] - left[k];
  sum_block(pa, left, sa, out, so, across);
  Array<T> part = xt::zeros<T>(out.shape());
  sum_block(pa + static_cast<std::ptrdiff_t>(left[k]) * sa[k], right, sa, part, so, across);
  T* po = out.data();
  const T* pp = part.data();
  for (std::size_t i = 0; i < out.size(); ++i) po[i] += pp[i];
}

}  // namespace

template <class T>
Array<T> sum_to(const Array<T>& a, const Shape& shape) {
  check_reducible(a.shape(), shape, "sum_to");
  if (same_shape(a.shape(), shape)) return a;
  Array<T> out = xt::zeros<T>(shape);
  const Strides so = broadcast_strides(shape, a.shape()), sa = contiguous_strides(a.shape());
  // The reduced axes before the innermost axis that is kept: the runs that for_each_run makes
  // cover the reduced axes after it, and are added in turn along these.
  std::size_t inner = a.dimension();
  while (inner > 0 && so[inner - 1] == 0) --inner;
  std::vector<std::size_t> across;
  for (std::size_t d = 0; d < inner; ++d)
    if (so[d] == 0 && a.shape()[d] > 1) across.push_back(d);
  sum_block(a.data(), a.shape(), sa, out, so, across);
  return out;
}

template <class T>
Array<T> broadcast_to(const Array<T>& a, const Shape& shape) {
  check_reducible(shape, a.shape(), "broadcast_to");
  if (same_shape(a.shape(), shape)) return a;
  Array<T> out(shape);
  T* po = out.data();
  const T* pa = a.data();
  std::array<Strides, 2> st{contiguous_strides(shape), broadcast_strides(a.shape(), shape)};
  for_each_run(shape, st, [&](const auto& off, std::size_t n, const auto& step) {
    T* o = po + off[0];
    const T* x = pa + off[1];
    if (step[1] == 0) {
      std::fill(o, o + n, *x);
    } else {
      for (std::size_t i = 0; i < n; ++i) o[i] = x[i * step[1]];
    }
  });
  return out;
}

template <class T>
Array<T> max_to(const Array<T>& a, const Shape& shape) {
  check_reducible(a.shape(), shape, "max");
  Array<T> out(shape);
  std::fill(out.begin(), out.end(), -std::numeric_limits<T>::infinity());
  T* po = out.data();
  const T* pa = a.data();
  std::array<Strides, 2> st{broadcast_strides(shape, a.shape()), contiguous_strides(a.shape())};
  // NaN propagates: once a slot holds NaN, `v > o` is false for every later v.
  for_each_run(a.shape(), st, [&](const auto& off, std::size_t n, const auto& step) {
    for (std::size_t i = 0; i < n; ++i) {
      T& o = po[off[0] + static_cast<std::ptrdiff_t>(i) * step[0]];
      T v = pa[off[1] + static_cast<std::ptrdiff_t>(i) * step[1]];
      if (v > o || std::isnan(v)) o = v;
    }
  });
  return out;
}

Shape keepdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op) {
  Shape out = shape;
  if (axes.empty()) {
    std::fill(out.begin(), out.end(), 1);
    return out;
  }
  std::vector<bool> seen(shape.size(), false);
  for (long axis : axes) {
    std::size_t d = normalize_axis(axis, shape, op);
    if (seen[d]) fail(op, ": axis ", axis, " is repeated (shape ", shape_str(shape), ")");
    seen[d] = true;
    out[d] = 1;
  }
  return out;
}

Shape dropdims_shape(const Shape& shape, const std::vector<long>& axes, const char* op) {
  Shape keep = keepdims_shape(shape, axes, op);
  if (axes.empty()) return Shape{};
  std::vector<bool> drop(shape.size(), false);
  for (long axis : axes) drop[normalize_axis(axis, shape, op)] = true;
  Shape out;
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (!drop[d]) out.push_back(keep[d]);
  return out;
}

namespace {

/// The number type of V: V itself, or a batch's element.
template <class V>
struct Scalar {
  using type = V;
};
template <class T, class A>
struct Scalar<xsimd::batch<T, A>> {
  using type = T;
};

/// m where finite, else 0: a log-sum-exp's shift (an infinite maximum is not subtracted).
template <class T>
T finite_or_zero(T m) {
  return std::isfinite(m) ? m : T(0);
}
template <class T, class A>
xsimd::batch<T, A> finite_or_zero(const xsimd::batch<T, A>& m) {
  return xsimd::select(xsimd::isfinite(m), m, xsimd::batch<T, A>(T(0)));
}

/// log Σ_j exp(x_j) of the n values x_j = value(j), shifted by their maximum so that it cannot
/// overflow (an infinite maximum is not subtracted; a NaN among them gives NaN through the sum).
/// V is a number (one row) or an xsimd batch (one row a lane): the one log-sum-exp of the softmax
/// rows, strided (log_softmax), a block of short rows or a long row (the cross-entropy).
template <class V, class Value>
V log_sum_exp(std::size_t n, Value&& value) {
  using std::exp;
  using std::log;
  using std::max;
  V m(-std::numeric_limits<typename Scalar<V>::type>::infinity());
  for (std::size_t j = 0; j < n; ++j) m = max(m, value(j));
  m = finite_or_zero(m);
  V sum(0);
  for (std::size_t j = 0; j < n; ++j) sum += exp(value(j) - m);
  return m + log(sum);
}

}  // namespace

template <class T>
Array<T> log_softmax(const Array<T>& a, std::size_t axis) {
  AxisView v(a.shape(), axis);
  Array<T> out(a.shape());
  const T* pa = a.data();
  T* po = out.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      const T* x = pa + o * v.extent * v.inner + i;
      T* y = po + o * v.extent * v.inner + i;
      const T lse = log_sum_exp<T>(v.extent, [x, &v](std::size_t j) { return x[j * v.inner]; });
      for (std::size_t j = 0; j < v.extent; ++j) y[j * v.inner] = x[j * v.inner] - lse;
    }
  return out;
}

namespace {

/// The target distribution's two values: on the label and off it.
template <class T>
std::pair<T, T> target_values(std::size_t classes, double smoothing) {
  return {static_cast<T>(1 - smoothing + smoothing / classes), static_cast<T>(smoothing / classes)};
}

/// log_sum_exp of a contiguous row, on SIMD batches: for rows longer than block_classes. Lane r
/// takes the row's values r, r + B::size, r + 2·B::size, ...; the lanes' log-sum-exps and the
/// values past the last whole batch make a second, short log-sum-exp.
template <class T>
T row_log_sum_exp(const T* x, std::size_t n) {
  using B = xsimd::batch<T>;
  const std::size_t batches = n / B::size;
  alignas(B::arch_type::alignment()) T parts[2 * B::size];
  log_sum_exp<B>(batches, [x](std::size_t j) {
    return B::load_unaligned(x + j * B::size);
  }).store_aligned(parts);
  const std::size_t tail = n - batches * B::size;
  std::copy(x + batches * B::size, x + n, parts + B::size);
  return log_sum_exp<T>(B::size + tail, [&parts](std::size_t j) { return parts[j]; });
}

/// Σ_j t_j·row_j for the target t: `on` at the label, `off` elsewhere (with no smoothing only the
/// label's logit is read, so that logits of −∞ elsewhere, a mask's, do not give 0·(−∞)).
template <class T>
T target_dot(const T* row, std::size_t k, std::size_t label, T on, T off) {
  T dot = on * row[label];
  if (off != 0)
    for (std::size_t j = 0; j < k; ++j)
      if (j != label) dot += off * row[j];
  return dot;
}

/// Rows of at most this many classes go through RowBlock, longer ones one at a time (measured on
/// forward and backward together, float, AVX2: the blocks take 0.37× the time at 10 classes,
/// 0.42–0.74× up to 128, about the same at 256 and 1.2–2.4× from 384).
constexpr std::size_t block_classes = 128;

/// A block of up to a register's width of consecutive rows of an (N, K) array, one row a lane:
/// a cross-entropy's rows are often short (a few classes), and a short row's exponentials would
/// fill a register once and leave a scalar tail, and its maximum, sum and logarithm would run one
/// value at a time. The block is copied transposed into the thread's scratch memory, a column a
/// register. A lane past the block's last row repeats its first row, so that a row's arithmetic
/// (and so its bits) is the same in whichever block, on whichever thread, it lies.
template <class T>
struct RowBlock {
  using B = xsimd::batch<T>;
  const T* z;        ///< the block's first row
  std::size_t rows;  ///< rows in the block, 1 to B::size
  std::size_t k;     ///< row length
  T* columns;        ///< column j at columns + j·B::size

  RowBlock(const T* first, std::size_t rows, std::size_t k)
      : z(first), rows(rows), k(k), columns(scratch<T>(k * B::size, 0)) {
    for (std::size_t j = 0; j < k; ++j)
      for (std::size_t r = 0; r < B::size; ++r)
        columns[j * B::size + r] = z[(r < rows ? r : 0) * k + j];
  }

  /// Column j of the block's rows, across the lanes.
  B column(std::size_t j) const { return B::load_unaligned(columns + j * B::size); }

  /// The block's rows' values of a per-row array (per_row[0] for the first), across the lanes.
  B lanes(const T* per_row) const {
    alignas(B::arch_type::alignment()) T lane[B::size];
    for (std::size_t r = 0; r < B::size; ++r) lane[r] = per_row[r < rows ? r : 0];
    return B::load_aligned(lane);
  }

  /// Per lane: log Σ_j exp(z_j).
  B log_sum_exp() const {
    return kernels::log_sum_exp<B>(k, [this](std::size_t j) { return column(j); });
  }

  /// Stores the block's rows' lanes of v at out[0], out[1], ...
  void store(const B& v, T* out) const {
    alignas(B::arch_type::alignment()) T lane[B::size];
    v.store_aligned(lane);
    std::copy(lane, lane + rows, out);
  }
};

/// Calls body(block, first row) for the blocks of rows of z (N, K), split between threads when
/// the whole is large enough.
template <class T, class F>
void for_row_blocks(const Array<T>& z, F&& body) {
  using B = xsimd::batch<T>;
  const std::size_t n = z.shape()[0], k = z.shape()[1];
  const std::size_t blocks = (n + B::size - 1) / B::size;
  detail::parallel_rows(blocks, B::size * k, [&](std::size_t b) {
    const std::size_t first = b * B::size;
    body(RowBlock<T>(z.data() + first * k, std::min(B::size, n - first), k), first);
  });
}

}  // namespace

template <class T>
Array<T> softmax_cross_entropy(const Array<T>& z, const Index& labels, double smoothing,
                               Array<T>& lse) {
  const std::size_t n = z.shape()[0], k = z.shape()[1];
  const auto [on, off] = target_values<T>(k, smoothing);
  Array<T> loss = Array<T>::from_shape({n});
  lse = Array<T>::from_shape({n});
  if (k > block_classes) {
    detail::parallel_rows(n, k, [&, on = on, off = off](std::size_t i) {
      const T* row = z.data() + i * k;
      lse.data()[i] = row_log_sum_exp(row, k);
      loss.data()[i] = lse.data()[i] - target_dot(row, k, labels[i], on, off);
    });
    return loss;
  }
  for_row_blocks(z, [&, on = on, off = off](const RowBlock<T>& block, std::size_t first) {
    block.store(block.log_sum_exp(), lse.data() + first);
    for (std::size_t r = 0; r < block.rows; ++r)
      loss.data()[first + r] =
          lse.data()[first + r] - target_dot(block.z + r * k, k, labels[first + r], on, off);
  });
  return loss;
}

template <class T>
Array<T> softmax_cross_entropy_target(const Index& labels, std::size_t classes, double smoothing) {
  const auto [on, off] = target_values<T>(classes, smoothing);
  Array<T> t = Array<T>::from_shape({labels.size(), classes});
  std::fill(t.begin(), t.end(), off);
  for (std::size_t i = 0; i < labels.size(); ++i) t(i, labels[i]) = on;
  return t;
}

template <class T>
Array<T> softmax_cross_entropy_grad(const Array<T>& z, const Array<T>& lse, const Array<T>& g,
                                    const Index& labels, double smoothing) {
  using B = xsimd::batch<T>;
  const std::size_t k = z.shape()[1];
  const auto [on, off] = target_values<T>(k, smoothing);
  Array<T> d = Array<T>::from_shape(z.shape());
  if (k > block_classes) {
    detail::parallel_rows(z.shape()[0], k, [&, on = on, off = off](std::size_t i) {
      const T* row = z.data() + i * k;
      T* out = d.data() + i * k;
      const T li = lse.data()[i], gi = g.data()[i];
      std::size_t j = 0;
      for (; j + B::size <= k; j += B::size)
        ((xsimd::exp(B::load_unaligned(row + j) - B(li)) - B(off)) * B(gi))
            .store_unaligned(out + j);
      for (; j < k; ++j) out[j] = gi * (std::exp(row[j] - li) - off);
      out[labels[i]] = gi * (std::exp(row[labels[i]] - li) - on);
    });
    return d;
  }
  for_row_blocks(z, [&, on = on, off = off](const RowBlock<T>& block, std::size_t first) {
    const B l = block.lanes(lse.data() + first);  // the rows' log-sum-exps
    alignas(B::arch_type::alignment()) T p[B::size];
    for (std::size_t j = 0; j < k; ++j) {  // column by column: softmax(z_i)_j in the lanes
      xsimd::exp(block.column(j) - l).store_aligned(p);
      for (std::size_t r = 0; r < block.rows; ++r) {
        const std::size_t i = first + r;
        d.data()[i * k + j] = g.data()[i] * (p[r] - (j == labels[i] ? on : off));
      }
    }
  });
  return d;
}

template <class T>
T squared_distance(const Array<T>& a, const Array<T>& b) {
  const T* pa = a.data();
  const T* pb = b.data();
  T total = 0;
  for (std::size_t i = 0, n = a.size(); i < n; ++i) total += (pa[i] - pb[i]) * (pa[i] - pb[i]);
  return total;
}

template <class T>
Array<T> cumsum(const Array<T>& a, std::size_t axis, bool reverse) {
  Array<T> out(a.shape());
  const AxisView v(Shape(a.shape().begin(), a.shape().end()), axis);
  const T* pa = a.data();
  T* po = out.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      const std::size_t base = o * v.extent * v.inner + i;
      T total = 0;
      for (std::size_t k = 0; k < v.extent; ++k) {
        const std::size_t at = base + (reverse ? v.extent - 1 - k : k) * v.inner;
        po[at] = total += pa[at];
      }
    }
  return out;
}

template <class T>
Array<std::size_t> arg_extremum(const Array<T>& a, std::size_t axis, bool smallest) {
  Shape kept(a.shape().begin(), a.shape().end());
  const AxisView v(kept, axis);
  kept[axis] = 1;
  Array<std::size_t> out(kept);
  const T* pa = a.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < v.inner; ++i) {
      const T* p = pa + o * v.extent * v.inner + i;
      std::size_t best = 0;
      for (std::size_t k = 0; k < v.extent && !std::isnan(p[best * v.inner]); ++k) {
        const T x = p[k * v.inner];
        if (std::isnan(x) || (smallest ? x < p[best * v.inner] : x > p[best * v.inner])) best = k;
      }
      out.data()[o * v.inner + i] = best;
    }
  return out;
}

namespace {

/// Σ_{j < n} term(j) in double, for terms of one number or of two (std::pair: two sums at once),
/// in eight partial sums (j mod 8) added together at the end in a fixed order: the additions of a
/// row overlap instead of each waiting for the one before, and the result does not depend on the
/// thread that computes it.
template <class S, class F>
S sum_in_double(std::size_t n, F&& term) {
  S part[8] = {};
  auto add = [](S& to, const S& v) {
    if constexpr (std::is_same_v<S, double>) {
      to += v;
    } else {
      to.first += v.first;
      to.second += v.second;
    }
  };
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (std::size_t k = 0; k < 8; ++k) add(part[k], term(j + k));
  for (std::size_t k = 0; j < n; ++j, ++k) add(part[k], term(j));
  for (std::size_t width = 1; width < 8; width *= 2)
    for (std::size_t k = 0; k < 8; k += 2 * width) add(part[k], part[k + width]);
  return part[0];
}

}  // namespace

template <class T>
void layer_norm(const T* x, std::size_t rows, std::size_t cols, const T* w, const T* b, double eps,
                T* y, T* mean, T* rstd) {
  detail::parallel_rows(rows, cols, [&](std::size_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const double mu =
        sum_in_double<double>(cols, [xr](std::size_t j) { return double(xr[j]); }) / double(cols);
    const double squares = sum_in_double<double>(cols, [xr, mu](std::size_t j) {
      const double d = xr[j] - mu;
      return d * d;
    });
    const T m = static_cast<T>(mu);
    const T s = static_cast<T>(1 / std::sqrt(squares / static_cast<double>(cols) + eps));
    mean[r] = m;
    rstd[r] = s;
    if (w && b) {
      for (std::size_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * s * w[j] + b[j];
    } else if (w) {
      for (std::size_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * s * w[j];
    } else {
      for (std::size_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * s + (b ? b[j] : T(0));
    }
  });
}

template <class T>
void layer_norm_backward(const T* g, const T* x, const T* w, const T* mean, const T* rstd,
                         std::size_t rows, std::size_t cols, T* dx, T* dw, T* db) {
  if (dx)
    detail::parallel_rows(rows, 2 * cols, [&](std::size_t r) {
      const T* gr = g + r * cols;
      const T* xr = x + r * cols;
      const T m = mean[r], s = rstd[r];
      // dx = rstd·(gw − mean(gw) − x̂·mean(gw·x̂)), gw = g·w, x̂ the normalised x.
      auto gw = [gr, w](std::size_t j) { return w ? gr[j] * w[j] : gr[j]; };
      const auto [a, c] =
          sum_in_double<std::pair<double, double>>(cols, [&gw, xr, m, s](std::size_t j) {
            const T v = gw(j);
            return std::pair<double, double>(v, v * ((xr[j] - m) * s));
          });
      const T ma = static_cast<T>(a / static_cast<double>(cols));
      const T mc = static_cast<T>(c / static_cast<double>(cols));
      T* d = dx + r * cols;
      for (std::size_t j = 0; j < cols; ++j)
        d[j] = s * ((w ? gr[j] * w[j] : gr[j]) - ma - (xr[j] - m) * s * mc);
    });
  if (!dw && !db) return;
  std::vector<double> sw(dw ? cols : 0), sb(db ? cols : 0);
  for (std::size_t r = 0; r < rows; ++r) {
    const T* gr = g + r * cols;
    const T* xr = x + r * cols;
    const T m = mean[r], s = rstd[r];
    if (dw)
      for (std::size_t j = 0; j < cols; ++j)
        sw[j] += static_cast<double>(gr[j] * ((xr[j] - m) * s));
    if (db)
      for (std::size_t j = 0; j < cols; ++j) sb[j] += gr[j];
  }
  for (std::size_t j = 0; j < cols && dw; ++j) dw[j] = static_cast<T>(sw[j]);
  for (std::size_t j = 0; j < cols && db; ++j) db[j] = static_cast<T>(sb[j]);
}

#define AD_INSTANTIATE(T)                                                                          \
  template void layer_norm(const T*, std::size_t, std::size_t, const T*, const T*, double, T*, T*, \
                           T*);                                                                    \
  template void layer_norm_backward(const T*, const T*, const T*, const T*, const T*, std::size_t, \
                                    std::size_t, T*, T*, T*);                                      \
  template Array<T> sum_to(const Array<T>&, const Shape&);                                         \
  template Array<T> broadcast_to(const Array<T>&, const Shape&);                                   \
  template Array<T> max_to(const Array<T>&, const Shape&);                                         \
  template Array<T> log_softmax(const Array<T>&, std::size_t);                                     \
  template Array<T> softmax_cross_entropy(const Array<T>&, const Index&, double, Array<T>&);       \
  template Array<T> softmax_cross_entropy_target<T>(const Index&, std::size_t, double);            \
  template Array<T> softmax_cross_entropy_grad(const Array<T>&, const Array<T>&, const Array<T>&,  \
                                               const Index&, double);                              \
  template T squared_distance(const Array<T>&, const Array<T>&);                                   \
  template Array<T> cumsum(const Array<T>&, std::size_t, bool);                                    \
  template Array<std::size_t> arg_extremum(const Array<T>&, std::size_t, bool);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::kernels
