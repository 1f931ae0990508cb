#include "autodiff/kernels/pool.hpp"

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <algorithm>
#include <vector>

#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

/// Calls f(input offset within the (n, c) plane, output offset) for each in-bounds window entry.
template <class F>
void for_each_window(const ConvGeometry& g, F&& f) {
  const auto pad = static_cast<std::ptrdiff_t>(g.ph);
  for (std::size_t oh = 0; oh < g.ho; ++oh)
    for (std::size_t ow = 0; ow < g.wo; ++ow)
      for (std::size_t i = 0; i < g.kh; ++i) {
        const std::ptrdiff_t ih = static_cast<std::ptrdiff_t>(oh * g.sh + i) - pad;
        if (ih < 0 || ih >= static_cast<std::ptrdiff_t>(g.h)) continue;
        for (std::size_t j = 0; j < g.kw; ++j) {
          const std::ptrdiff_t iw =
              static_cast<std::ptrdiff_t>(ow * g.sw + j) - static_cast<std::ptrdiff_t>(g.pw);
          if (iw < 0 || iw >= static_cast<std::ptrdiff_t>(g.w)) continue;
          f(static_cast<std::size_t>(ih) * g.w + static_cast<std::size_t>(iw), oh * g.wo + ow);
        }
      }
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

#ifdef __AVX2__
/// max_pool_rows_2x2 on floats, eight windows at a time in AVX2 registers: the same tournament
/// (so the same maxima and indices), the columns of each row pair split into even and odd ones.
/// The last windows of a row are read and written through masks.
inline void max_pool_rows_2x2(const float* r0, const float* r1, std::uint32_t w, std::size_t wo,
                              std::uint32_t at, float* out, std::uint32_t* index) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto first_lanes = [&](std::size_t n) {  // lanes 0 … n−1 set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), iota);
  };
  // Even and odd entries of p[0 … 15] (the first `n` of them there, when n < 16): shuffled within
  // each 128-bit half, then the halves' pairs put in order.
  auto split = [&](const float* p, std::size_t n, __m256& even, __m256& odd) {
    __m256 lo, hi;
    if (n == 16) {
      lo = _mm256_loadu_ps(p);
      hi = _mm256_loadu_ps(p + 8);
    } else {
      lo = _mm256_maskload_ps(p, first_lanes(n));
      hi = _mm256_maskload_ps(p + 8, first_lanes(n > 8 ? n - 8 : 0));
    }
    even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  };
  auto takes_over = [](__m256 v, __m256 best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  };
  const __m256i lanes = _mm256_add_epi32(iota, iota);
  const __m256i below = _mm256_set1_epi32(static_cast<int>(w));
  // Windows ow0 … ow0+count−1 (count <= 8), from columns 2·ow0 … of rows r0 and r1.
  auto windows = [&](std::size_t ow0, std::size_t count) {
    __m256 a, b, c, d;
    split(r0 + 2 * ow0, 2 * count, a, b);
    split(r1 + 2 * ow0, 2 * count, c, d);
    const __m256 tb = takes_over(b, a), td = takes_over(d, c);
    const __m256 ab = _mm256_blendv_ps(a, b, tb), cd = _mm256_blendv_ps(c, d, td);
    const __m256 tc = takes_over(cd, ab);
    const __m256 best = _mm256_blendv_ps(ab, cd, tc);
    // at + 2·ow + (tc ? td : tb) + (tc ? w : 0); a true mask is −1 as an integer
    const __m256i first = _mm256_add_epi32(
        _mm256_set1_epi32(static_cast<int>(at + 2 * static_cast<std::uint32_t>(ow0))), lanes);
    const __m256i second = _mm256_castps_si256(_mm256_blendv_ps(tb, td, tc));
    const __m256i row = _mm256_and_si256(_mm256_castps_si256(tc), below);
    const __m256i where = _mm256_add_epi32(_mm256_sub_epi32(first, second), row);
    if (count == 8) {
      _mm256_storeu_ps(out + ow0, best);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(index + ow0), where);
    } else {
      const __m256i m = first_lanes(count);
      _mm256_maskstore_ps(out + ow0, m, best);
      _mm256_maskstore_epi32(reinterpret_cast<int*>(index + ow0), m, where);
    }
  };
  std::size_t ow = 0;
  for (; ow + 8 <= wo; ow += 8) windows(ow, 8);
  if (ow < wo) windows(ow, wo - ow);
}
#endif

}  // namespace

template <class T>
std::pair<Array<T>, PoolIndex> max_pool2d(const Array<T>& x, const ConvGeometry& g) {
  // The maximum of each window and its index in the (H·W) plane, which the gradient follows.
  PoolIndex idx = PoolIndex::from_shape({g.n * g.c, g.hw()});
  Array<T> out = Array<T>::from_shape({g.n, g.c, g.ho, g.wo});
  const T* px = x.data();
  // The window rows and columns inside the input, per output row and column, computed once (the
  // divisions cost more than the comparisons when done per window).
  std::vector<std::pair<std::size_t, std::size_t>> rows(g.ho), cols(g.wo);
  auto inside = [&](std::size_t o, std::size_t extent) {
    const auto start = static_cast<std::ptrdiff_t>(o * g.sh) - static_cast<std::ptrdiff_t>(g.ph);
    const std::size_t lo = start < 0 ? static_cast<std::size_t>(-start) : 0;
    const std::size_t hi =
        std::min<std::ptrdiff_t>(g.kh, static_cast<std::ptrdiff_t>(extent) - start);
    return std::pair<std::size_t, std::size_t>(lo, hi);
  };
  for (std::size_t oh = 0; oh < g.ho; ++oh) rows[oh] = inside(oh, g.h);
  for (std::size_t ow = 0; ow < g.wo; ++ow) cols[ow] = inside(ow, g.w);
  // (The sizes are copied to locals: the index stores could otherwise alias them, and the compiler
  // would reload them at every window.)
  const std::size_t h = g.h, w = g.w, ho = g.ho, wo = g.wo, step = g.sh, pad = g.ph;
  const bool two_by_two = g.kh == 2 && step == 2 && pad == 0;
  detail::parallel_for(g.n * g.c, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      const T* plane = px + r * h * w;
      std::uint32_t* index = idx.data() + r * ho * wo;
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
  return {std::move(out), std::move(idx)};
}

template <class T>
Array<T> pool_select(const Array<T>& x, const PoolIndex& idx, const Shape& out_shape) {
  const std::size_t planes = idx.shape()[0], per = idx.shape()[1];
  const std::size_t plane = planes ? x.size() / planes : 0;
  Array<T> out(out_shape);
  const T* px = x.data();
  const std::uint32_t* pi = idx.data();
  T* po = out.data();
  detail::parallel_for(planes, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r)
      for (std::size_t q = 0; q < per; ++q) po[r * per + q] = px[r * plane + pi[r * per + q]];
  });
  return out;
}

template <class T>
Array<T> pool_scatter(const Array<T>& g, const PoolIndex& idx, const Shape& x_shape) {
  const std::size_t planes = idx.shape()[0], per = idx.shape()[1];
  const std::size_t plane = planes ? shape_size(x_shape) / planes : 0;
  Array<T> dx(x_shape);
  const T* pg = g.data();
  const std::uint32_t* pi = idx.data();
  detail::parallel_for(planes, 64, [&](std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) {
      // zeroed plane by plane: the adds then find it in the cache
      T* to = dx.data() + r * plane;
      std::fill_n(to, plane, T(0));
      for (std::size_t q = 0; q < per; ++q) to[pi[r * per + q]] += pg[r * per + q];
    }
  });
  return dx;
}

template <class T>
Array<T> avg_pool2d(const Array<T>& x, const ConvGeometry& g) {
  Array<T> out = xt::zeros<T>({g.n, g.c, g.ho, g.wo});
  const T scale = T(1) / static_cast<T>(g.kh * g.kh);
  for (std::size_t r = 0; r < g.n * g.c; ++r) {
    const T* plane = x.data() + r * g.h * g.w;
    T* o = out.data() + r * g.hw();
    for_each_window(g, [&](std::size_t in, std::size_t at) { o[at] += plane[in] * scale; });
  }
  return out;
}

template <class T>
Array<T> avg_pool2d_grad(const Array<T>& g, const ConvGeometry& geo) {
  Array<T> dx = xt::zeros<T>({geo.n, geo.c, geo.h, geo.w});
  const T scale = T(1) / static_cast<T>(geo.kh * geo.kh);
  for (std::size_t r = 0; r < geo.n * geo.c; ++r) {
    const T* pg = g.data() + r * geo.hw();
    T* plane = dx.data() + r * geo.h * geo.w;
    for_each_window(geo, [&](std::size_t in, std::size_t at) { plane[in] += pg[at] * scale; });
  }
  return dx;
}

#define AD_INSTANTIATE(T)                                                                   \
  template std::pair<Array<T>, PoolIndex> max_pool2d(const Array<T>&, const ConvGeometry&); \
  template Array<T> pool_select(const Array<T>&, const PoolIndex&, const Shape&);           \
  template Array<T> pool_scatter(const Array<T>&, const PoolIndex&, const Shape&);          \
  template Array<T> avg_pool2d(const Array<T>&, const ConvGeometry&);                       \
  template Array<T> avg_pool2d_grad(const Array<T>&, const ConvGeometry&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::kernels
