#include "autodiff/kernels/conv.hpp"

#include <algorithm>
#include <vector>

#include "autodiff/kernels/gemm.hpp"
#include "autodiff/kernels/scratch.hpp"
#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

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
void for_each_segment(const ConvGeometry& g, std::size_t ld, F&& span) {
  const auto pw = static_cast<std::ptrdiff_t>(g.pw);
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i) {
      const auto [oh_lo, oh_hi] = valid_range(g.ho, g.h, g.sh, i * g.dh, g.ph);
      for (std::size_t j = 0; j < g.kw; ++j) {
        const auto [ow_lo, ow_hi] = valid_range(g.wo, g.w, g.sw, j * g.dw, g.pw);
        const std::size_t row = ((c * g.kh + i) * g.kw + j) * ld;
        for (std::size_t oh = 0; oh < g.ho; ++oh) {
          const bool inside = oh >= oh_lo && oh < oh_hi;
          std::ptrdiff_t in = 0;
          if (inside)
            in = static_cast<std::ptrdiff_t>((c * g.h + oh * g.sh + i * g.dh - g.ph) * g.w +
                                             j * g.dw) -
                 pw;
          span(row + oh * g.wo, inside, in, ow_lo, ow_hi);
        }
      }
    }
}

bool is_same_conv(const ConvGeometry& g);

/// One sample's patches as a (C·k·k) × (Ho·Wo) block of a matrix with rows ld apart.
template <class T>
void im2col_same(const T* x, const ConvGeometry& g, T* cols, std::size_t ld);

template <class T>
void im2col(const T* x, const ConvGeometry& g, T* cols, std::size_t ld) {
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
        // column ow reads x[in + ow·sw]
        for (std::size_t ow = lo; ow < hi; ++ow)
          out[ow] = x[in + static_cast<std::ptrdiff_t>(ow * g.sw)];
      });
}

/// Adds a (C·k·k) × (Ho·Wo) block back into one sample's input gradient (im2col's adjoint).
template <class T>
void col2im_same(T* cols, const ConvGeometry& g, T* dx, std::size_t ld);

/// Adds the patch block back (cols may be overwritten: it is scratch).
template <class T>
void col2im(T* cols, const ConvGeometry& g, T* dx, std::size_t ld) {
  if (is_same_conv(g)) return col2im_same(cols, g, dx, ld);
  for_each_segment(
      g, ld, [&](std::size_t at, bool inside, std::ptrdiff_t in, std::size_t lo, std::size_t hi) {
        if (!inside) return;
        const T* src = cols + at;
        for (std::size_t ow = lo; ow < hi; ++ow)
          dx[in + static_cast<std::ptrdiff_t>(ow * g.sw)] += src[ow];
      });
}

/// For a "same" convolution (square, stride and dilation 1, output as large as the input), the
/// patch row (c, i, j) is
/// the input plane shifted by whole rows and by j − pad columns: one contiguous copy (or add) per
/// row of the patch matrix instead of one per output row, then the padded columns fixed up.
bool is_same_conv(const ConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.kh == g.kw && g.ph == g.pw &&
         g.ho == g.h && g.wo == g.w;
}

/// Calls span(patch row offset, input plane offset, first output position, position count, column
/// shift) for each patch row (c, i, j) of one sample, over the output rows that read the input.
template <class F>
void for_each_shift(const ConvGeometry& g, std::size_t ld, F&& span) {
  const std::size_t plane = g.h * g.w;
  for (std::size_t c = 0; c < g.c; ++c)
    for (std::size_t i = 0; i < g.kh; ++i) {
      const auto [oh_lo, oh_hi] = valid_range(g.ho, g.h, 1, i, g.ph);
      for (std::size_t j = 0; j < g.kh; ++j) {
        const std::ptrdiff_t shift =
            static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(g.ph);
        // output position p = oh·w + ow reads input position p + (i − pad)·w + shift
        const std::ptrdiff_t offset =
            (static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(g.ph)) *
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
        span(((c * g.kh + i) * g.kw + j) * ld, c * plane, first, count, offset, shift, oh_lo,
             oh_hi);
      }
    }
}

/// Zeroes, in output rows [oh_lo, oh_hi) of a patch row shifted by `shift` columns, the columns
/// that read past a row's end (the next row's start, or the previous row's end): padding. (At most
/// `pad` per row: plain stores, a memset call would cost more.)
template <class T>
void clear_shifted_columns(T* row, const ConvGeometry& g, std::ptrdiff_t shift, std::size_t oh_lo,
                           std::size_t oh_hi) {
  if (shift == 0) return;
  const std::size_t n = static_cast<std::size_t>(shift < 0 ? -shift : shift);
  const std::size_t first = shift < 0 ? 0 : g.w - n;
  for (std::size_t t = 0; t < n; ++t)  // (column-wise: GCC would turn rows into memset calls)
    for (std::size_t oh = oh_lo; oh < oh_hi; ++oh) row[oh * g.w + first + t] = T(0);
}

template <class T>
void im2col_same(const T* x, const ConvGeometry& g, T* cols, std::size_t ld) {
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
void col2im_same(T* cols, const ConvGeometry& g, T* dx, std::size_t ld) {
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

/// Samples are processed in groups whose patch matrices sit side by side, so that each GEMM is
/// wide enough for the BLAS to run near its peak (one sample's Ho·Wo of 196 columns is not) while
/// the matrices stay small enough for the cache. A sample of 1024 columns or more goes alone, and
/// its output needs no moving (measured on the example's CNN: 4% of a step faster than 2048).
std::size_t group_size(const ConvGeometry& g) {
  constexpr std::size_t target_columns = 1024;
  return std::max<std::size_t>(1, std::min(g.n, target_columns / std::max<std::size_t>(g.hw(), 1)));
}

/// Copies samples [n0, n0 + count) of (N, O, HoWo) into an (O, count·HoWo) matrix, or back.
template <class T>
void gather_group(const T* from, const ConvGeometry& g, std::size_t n0, std::size_t count, T* to) {
  detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t s = begin; s < end; ++s)
      for (std::size_t o = 0; o < g.o; ++o)
        std::copy_n(from + ((n0 + s) * g.o + o) * g.hw(), g.hw(), to + (o * count + s) * g.hw());
  });
}

/// The output gradient of samples [n0, n0 + count) as an (O × count·HoWo) matrix: in place for a
/// single sample, else gathered into `buffer`.
template <class T>
const T* output_group(const T* g, const ConvGeometry& geo, std::size_t n0, std::size_t count,
                      T* buffer) {
  if (count == 1) return g + n0 * geo.o * geo.hw();
  gather_group(g, geo, n0, count, buffer);
  return buffer;
}

/// Moves a group's output Y (O × count·HoWo) to samples [n0, n0 + count) of out (N, O, HoWo),
/// adding the bias (when there is one) on the way. For a single sample Y is already in place.
template <class T>
void place_group(const T* y, const T* bias, const ConvGeometry& g, std::size_t n0,
                 std::size_t count, T* out) {
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
void im2col_group(const T* x, const ConvGeometry& g, std::size_t n0, std::size_t count, T* cols) {
  detail::parallel_for(count, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t s = begin; s < end; ++s)
      im2col(x + (n0 + s) * g.in_size(), g, cols + s * g.hw(), count * g.hw());
  });
}

/// The products of conv2d's backward for samples [first, last) of the output gradient gy (N, O,
/// Ho, Wo), in one pass over their groups of `group` samples, each group's G (O × count·HoWo)
/// gathered once:
///   db += Σ of G's rows,  dW (O × CKK) += G · colsᵀ,  dx = col2im(Wᵀ · G)
/// (with groups, block by block),
/// each for which a pointer is given (dx overwritten). The patch matrices for dW are those the
/// forward pass kept (`kept`, group by group) or are made from x.
template <class T>
void backward_samples(const T* gy, const T* w, const T* x, const T* kept, const ConvGeometry& geo,
                      std::size_t first, std::size_t last, std::size_t group, T* dx, T* dw, T* db) {
  T* gm = scratch<T>(geo.o * group * geo.hw(), 1);
  T* cols = scratch<T>(geo.ckk() * group * geo.hw(), 0);
  for (std::size_t n0 = first; n0 < last; n0 += group) {
    const std::size_t count = std::min(group, last - n0), width = count * geo.hw();
    const T* g = output_group(gy, geo, n0, count, gm);
    if (db)
      for (std::size_t o = 0; o < geo.o; ++o) db[o] += row_sum(g + o * width, width);
    // Group q: the output rows [q·O/G, (q+1)·O/G), patch rows [q·CKK/G, (q+1)·CKK/G), weight
    // rows [q·O/G, (q+1)·O/G) of CKK/G columns.
    const std::size_t og = geo.group_o(), gk = geo.group_ckk();
    if (dw) {
      const T* patches = kept ? kept + n0 * geo.ckk() * geo.hw() : cols;
      if (!kept) im2col_group(x, geo, n0, count, cols);
      for (std::size_t q = 0; q < geo.groups; ++q)
        gemm(false, true, og, gk, width, T(1), g + q * og * width, width, patches + q * gk * width,
             width, T(1), dw + q * og * gk, gk);
    }
    if (dx) {
      for (std::size_t q = 0; q < geo.groups; ++q)
        gemm(true, false, gk, width, og, T(1), w + q * og * gk, gk, g + q * og * width, width, T(0),
             cols + q * gk * width, width);
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

/// conv2d's backward (see conv2d_backward; dw and db zeroed by the caller). The groups of samples
/// are split between the threads, each group's products on one thread: a group's product is too
/// small to share well between threads (their hand-overs, several per group, cost more). Each
/// thread's share of dW and db is summed apart, then added in thread order (the same bits for a
/// thread count).
template <class T>
void conv_backward(const T* gy, const T* w, const T* x, const T* kept, const ConvGeometry& geo,
                   T* dx, T* dw, T* db) {
  if (geo.n * geo.o * geo.hw() == 0) {  // no products to form: the gradients are zeros
    if (dx) std::fill_n(dx, geo.n * geo.in_size(), T(0));
    return;
  }
  const std::size_t group = group_size(geo), blocks = (geo.n + group - 1) / group;
  const auto threads = static_cast<std::size_t>(detail::pool_threads());
  if (threads < 2 || blocks < 2)
    return backward_samples(gy, w, x, kept, geo, 0, geo.n, group, dx, dw, db);
  const std::size_t chunks = std::min(threads, blocks);
  const std::size_t dw_size = dw ? geo.o * geo.group_ckk() : 0, db_size = db ? geo.o : 0;
  const std::size_t share = dw_size + db_size;
  std::vector<T> shares(chunks * share, T(0));
  detail::run_tasks(chunks, [&](std::size_t c) {
    // whole groups, as the forward pass kept their patches
    const std::size_t first = c * blocks / chunks * group;
    const std::size_t last = std::min(geo.n, (c + 1) * blocks / chunks * group);
    T* part = shares.data() + c * share;
    backward_samples(gy, w, x, kept, geo, first, last, group, dx, dw ? part : nullptr,
                     db ? part + dw_size : nullptr);
  });
  for (std::size_t c = 0; c < chunks; ++c) {
    const T* part = shares.data() + c * share;
    for (std::size_t i = 0; i < dw_size; ++i) dw[i] += part[i];
    for (std::size_t i = 0; i < db_size; ++i) db[i] += part[dw_size + i];
  }
}

}  // namespace

template <class T>
Array<T> conv2d(const T* x, const T* w, const T* bias, const ConvGeometry& g, T* patches) {
  Array<T> out = Array<T>::from_shape({g.n, g.o, g.ho, g.wo});
  if (out.size() == 0) return out;
  // Per group of samples: Y (O × count·HoWo) = W (O × CKK) · cols (CKK × count·HoWo) (with
  // channel groups, one product per block).
  const std::size_t group = group_size(g);
  auto samples = [&](std::size_t n0) {
    const std::size_t count = std::min(group, g.n - n0), width = count * g.hw();
    T* cols = patches ? patches + n0 * g.ckk() * g.hw() : scratch<T>(g.ckk() * group * g.hw(), 0);
    im2col_group(x, g, n0, count, cols);
    T* target = count == 1 ? out.data() + n0 * g.o * g.hw() : scratch<T>(g.o * group * g.hw(), 1);
    const std::size_t og = g.group_o(), gk = g.group_ckk();
    for (std::size_t q = 0; q < g.groups; ++q)  // group q's outputs from its own channels
      gemm(false, false, og, width, gk, T(1), w + q * og * gk, gk, cols + q * gk * width, width,
           T(0), target + q * og * width, width);
    place_group(target, bias, g, n0, count, out.data());
  };
  // The groups split between threads, each group's product on one thread (see conv_backward).
  detail::parallel_for((g.n + group - 1) / group, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t k = begin; k < end; ++k) samples(k * group);
  });
  return out;
}

template <class T>
void conv2d_backward(const T* gy, const T* w, const T* x, const T* kept, const ConvGeometry& g,
                     T* dx, T* dw, T* db) {
  conv_backward(gy, w, x, kept, g, dx, dw, db);
}

template Array<float> conv2d(const float*, const float*, const float*, const ConvGeometry&, float*);
template Array<double> conv2d(const double*, const double*, const double*, const ConvGeometry&,
                              double*);
template void conv2d_backward(const float*, const float*, const float*, const float*,
                              const ConvGeometry&, float*, float*, float*);
template void conv2d_backward(const double*, const double*, const double*, const double*,
                              const ConvGeometry&, double*, double*, double*);

}  // namespace ad::kernels
