#include "autodiff/kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <xsimd/xsimd.hpp>

#include "autodiff/kernels/gemm.hpp"
#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

/// Rows of queries and columns of keys in a tile: 256 × 256 scores (256 KB of float) and their
/// gradient stay in the core's cache; smaller tiles left the products too small for the BLAS
/// (64: 2.4 times slower at sequence 2048, 128: 1.9 times; 512: 1.1 times).
constexpr std::size_t tile_rows = 256, tile_cols = 256;

/// s[c] = exp(s[c] − shift) for n values; returns their sum.
template <class T>
T exp_shifted(T* s, std::size_t n, T shift) {
  using B = xsimd::batch<T>;
  std::size_t c = 0;
  B total(T(0));
  const B by(shift);
  for (; c + B::size <= n; c += B::size) {
    const B e = xsimd::exp(B::load_unaligned(s + c) - by);
    e.store_unaligned(s + c);
    total += e;
  }
  T sum = xsimd::hadd(total);
  for (; c < n; ++c) sum += (s[c] = std::exp(s[c] - shift));
  return sum;
}

/// The larger of a and b, NaN when either is.
template <class T>
T max_nan(T a, T b) {
  return (b > a || std::isnan(b)) ? b : a;
}

/// Where problem p's rows start in q/k (width d) or v/out (width dv) given the length of its
/// sequence: (n·length)·heads·width + h·width.
template <class T>
std::size_t problem_start(const Attention<T>& a, std::size_t p, std::size_t length,
                          std::size_t width) {
  return (p / a.heads) * length * a.heads * width + (p % a.heads) * width;
}

/// The scores of queries i0 … i0+br−1 and keys j0 … j0+bc−1 of problem p into s (br × bc):
/// scale·q·kᵀ, plus the mask, −∞ where the causal rule hides a key.
template <class T>
void scores(const Attention<T>& a, std::size_t p, const T* qp, const T* kp, std::size_t i0,
            std::size_t br, std::size_t j0, std::size_t bc, T* s) {
  const std::size_t ldk = a.heads * a.d;
  gemm(false, true, br, bc, a.d, a.scale, qp + i0 * ldk, ldk, kp + j0 * ldk, ldk, T(0), s, bc);
  if (a.mask) {
    for (std::size_t r = 0; r < br; ++r) {
      const T* m = a.mask + a.mask_offset[p] + static_cast<std::ptrdiff_t>(i0 + r) * a.mask_i +
                   static_cast<std::ptrdiff_t>(j0) * a.mask_j;
      T* row = s + r * bc;
      for (std::size_t c = 0; c < bc; ++c) row[c] += m[static_cast<std::ptrdiff_t>(c) * a.mask_j];
    }
  }
  if (a.causal && j0 + bc > i0 + 1) {
    for (std::size_t r = 0; r < br; ++r) {
      const std::size_t first_hidden = std::max(i0 + r + 1, j0) - j0;  // key i + 1 on
      std::fill(s + r * bc + std::min(first_hidden, bc), s + (r + 1) * bc,
                -std::numeric_limits<T>::infinity());
    }
  }
}

/// A thread's scratch for one tile: scores, the rows' running maxima and sums, and the output
/// rows accumulated so far (forward) or the scores' gradient (backward).
template <class T>
struct Tile {
  std::vector<T> s, m, l, acc;
  static Tile& of_this_thread(std::size_t cols) {
    thread_local Tile tile;
    tile.s.resize(tile_rows * tile_cols);
    tile.m.resize(tile_rows);
    tile.l.resize(tile_rows);
    tile.acc.resize(tile_rows * std::max(cols, tile_cols));
    return tile;
  }
};

/// Forward of queries i0 … i1−1 of problem p.
template <class T>
void forward_rows(const Attention<T>& a, std::size_t p, std::size_t i0, std::size_t i1, const T* q,
                  const T* k, const T* v, T* out, T* lse) {
  const T* qp = q + problem_start(a, p, a.lq, a.d);
  const T* kp = k + problem_start(a, p, a.lk, a.d);
  const T* vp = v + problem_start(a, p, a.lk, a.dv);
  T* op = out + problem_start(a, p, a.lq, a.dv);
  const std::size_t ldv = a.heads * a.dv, br = i1 - i0;
  constexpr T minus_inf = -std::numeric_limits<T>::infinity();
  Tile<T>& t = Tile<T>::of_this_thread(a.dv);
  std::fill(t.m.begin(), t.m.begin() + br, minus_inf);
  std::fill(t.l.begin(), t.l.begin() + br, T(0));
  std::fill(t.acc.begin(), t.acc.begin() + br * a.dv, T(0));
  const std::size_t keys = a.causal ? std::min(a.lk, i1) : a.lk;
  for (std::size_t j0 = 0; j0 < keys; j0 += tile_cols) {
    const std::size_t bc = std::min(tile_cols, keys - j0);
    T* s = t.s.data();
    scores(a, p, qp, kp, i0, br, j0, bc, s);
    for (std::size_t r = 0; r < br; ++r) {
      T* row = s + r * bc;
      T top = t.m[r];
      for (std::size_t c = 0; c < bc; ++c) top = max_nan(top, row[c]);
      if (top == minus_inf) {  // every key so far hidden: nothing to add
        std::fill(row, row + bc, T(0));
        continue;
      }
      const T rescale = std::exp(t.m[r] - top);
      t.l[r] = t.l[r] * rescale + exp_shifted(row, bc, top);
      if (rescale != T(1))
        for (std::size_t c = 0; c < a.dv; ++c) t.acc[r * a.dv + c] *= rescale;
      t.m[r] = top;
    }
    gemm(false, false, br, a.dv, bc, T(1), s, bc, vp + j0 * ldv, ldv, T(1), t.acc.data(), a.dv);
  }
  for (std::size_t r = 0; r < br; ++r) {
    const T inv = T(1) / t.l[r];
    T* o = op + (i0 + r) * ldv;
    for (std::size_t c = 0; c < a.dv; ++c) o[c] = t.acc[r * a.dv + c] * inv;
    lse[p * a.lq + i0 + r] = t.m[r] + std::log(t.l[r]);
  }
}

/// Backward of problem p, key tiles in turn, each against every query tile that sees it.
template <class T>
void backward_problem(const Attention<T>& a, std::size_t p, const T* q, const T* k, const T* v,
                      const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv, T* dmask) {
  const std::size_t ldk = a.heads * a.d, ldv = a.heads * a.dv;
  const std::size_t sq = problem_start(a, p, a.lq, a.d), sk = problem_start(a, p, a.lk, a.d);
  const std::size_t so = problem_start(a, p, a.lq, a.dv), sv = problem_start(a, p, a.lk, a.dv);
  const T* qp = q + sq;
  const T* kp = k + sk;
  const T* vp = v + sv;
  const T* dop = dout + so;
  const T* lp = lse + p * a.lq;
  Tile<T>& t = Tile<T>::of_this_thread(a.dv);
  // D_i = Σ_c dout_ic·out_ic: the row sums of P ∘ dP that the softmax's derivative subtracts.
  std::vector<T> rowdot(a.lq);
  for (std::size_t i = 0; i < a.lq; ++i) {
    const T* o = out + so + i * ldv;
    const T* g = dop + i * ldv;
    T sum = 0;
    for (std::size_t c = 0; c < a.dv; ++c) sum += o[c] * g[c];
    rowdot[i] = sum;
  }
  auto clear = [](T* base, std::size_t rows, std::size_t ld, std::size_t width) {
    if (base)
      for (std::size_t i = 0; i < rows; ++i) std::fill(base + i * ld, base + i * ld + width, T(0));
  };
  clear(dq ? dq + sq : nullptr, a.lq, ldk, a.d);
  clear(dk ? dk + sk : nullptr, a.lk, ldk, a.d);
  clear(dv ? dv + sv : nullptr, a.lk, ldv, a.dv);
  T* s = t.s.data();
  T* ds = t.acc.data();
  for (std::size_t j0 = 0; j0 < a.lk; j0 += tile_cols) {
    const std::size_t bc = std::min(tile_cols, a.lk - j0);
    for (std::size_t i0 = 0; i0 < a.lq; i0 += tile_rows) {
      const std::size_t br = std::min(tile_rows, a.lq - i0);
      if (a.causal && i0 + br <= j0) continue;  // every query of the tile is before every key
      scores(a, p, qp, kp, i0, br, j0, bc, s);
      for (std::size_t r = 0; r < br; ++r) exp_shifted(s + r * bc, bc, lp[i0 + r]);  // P
      if (dv)
        gemm(true, false, bc, a.dv, br, T(1), s, bc, dop + i0 * ldv, ldv, T(1), dv + sv + j0 * ldv,
             ldv);
      gemm(false, true, br, bc, a.dv, T(1), dop + i0 * ldv, ldv, vp + j0 * ldv, ldv, T(0), ds, bc);
      for (std::size_t r = 0; r < br; ++r)
        for (std::size_t c = 0; c < bc; ++c)
          ds[r * bc + c] = s[r * bc + c] * (ds[r * bc + c] - rowdot[i0 + r]);
      if (dmask)
        for (std::size_t r = 0; r < br; ++r)
          std::copy(ds + r * bc, ds + (r + 1) * bc, dmask + (p * a.lq + i0 + r) * a.lk + j0);
      if (dq)
        gemm(false, false, br, a.d, bc, a.scale, ds, bc, kp + j0 * ldk, ldk, T(1),
             dq + sq + i0 * ldk, ldk);
      if (dk)
        gemm(true, false, bc, a.d, br, a.scale, ds, bc, qp + i0 * ldk, ldk, T(1),
             dk + sk + j0 * ldk, ldk);
    }
  }
}

}  // namespace

template <class T>
void attention_forward(const Attention<T>& a, const T* q, const T* k, const T* v, T* out, T* lse) {
  const std::size_t problems = a.batch * a.heads;
  const std::size_t blocks = (a.lq + tile_rows - 1) / tile_rows;
  if (problems == 0 || blocks == 0) return;
  detail::run_tasks(problems * blocks, [&](std::size_t task) {
    const std::size_t p = task / blocks, i0 = task % blocks * tile_rows;
    forward_rows(a, p, i0, std::min(a.lq, i0 + tile_rows), q, k, v, out, lse);
  });
}

template <class T>
void attention_backward(const Attention<T>& a, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, const T* dout, T* dq, T* dk, T* dv, T* dmask) {
  detail::run_tasks(a.batch * a.heads, [&](std::size_t p) {
    backward_problem(a, p, q, k, v, out, lse, dout, dq, dk, dv, dmask);
  });
}

#define AD_INSTANTIATE(T)                                                                          \
  template void attention_forward<T>(const Attention<T>&, const T*, const T*, const T*, T*, T*);   \
  template void attention_backward<T>(const Attention<T>&, const T*, const T*, const T*, const T*, \
                                      const T*, const T*, T*, T*, T*, T*);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::kernels
