#include "autodiff/kernels/recurrent.hpp"

#include <algorithm>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

/// The sequences (rows) of a layer in chunks of this many: a sequence's recurrence depends on no
/// other sequence, so each chunk runs every step of its rows on one thread, the threads never
/// waiting for each other between steps; the chunks do not depend on the thread count, so
/// neither do the products' bits.
constexpr std::size_t chunk_rows = 32;

/// Calls body(first, end) for the chunks of the n rows, on the pool's threads when the recurrent
/// products (n·length·4H·H multiply-adds) are worth splitting.
template <class F>
void for_row_chunks(std::size_t n, std::size_t length, std::size_t hidden, F&& body) {
  const std::size_t chunks = (n + chunk_rows - 1) / chunk_rows;
  auto chunk = [&](std::size_t c) { body(c * chunk_rows, std::min(n, (c + 1) * chunk_rows)); };
  if (n * length * 4 * hidden * hidden >= (std::size_t(1) << 20)) {
    detail::run_tasks(chunks, chunk);
  } else {
    for (std::size_t c = 0; c < chunks; ++c) chunk(c);
  }
}

}  // namespace

template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* w_ih, const T* w_hh, const T* b_ih,
                  const T* b_hh, const T* h0, const T* c0, T* gates, T* cells, T* out) {
  const std::size_t n = s.n, L = s.length, H = s.hidden, G = 4 * H;
  // Every step's input projection and both biases at once: gates = x·w_ihᵀ + b_ih + b_hh.
  for (std::size_t r = 0; r < n * L; ++r)
    for (std::size_t k = 0; k < G; ++k)
      gates[r * G + k] = (b_ih ? b_ih[k] : T(0)) + (b_hh ? b_hh[k] : T(0));
  if (n * L > 0 && s.input > 0)
    gemm(false, true, n * L, G, s.input, T(1), x, s.input, w_ih, s.input, T(1), gates, G);
  using B = xsimd::batch<T>;
  for_row_chunks(n, L, H, [&](std::size_t first, std::size_t end) {
    for (std::size_t t = 0; t < L; ++t) {
      // Step t's gates, row r at gates[(r·L + t)·G]: the recurrent product added in place.
      const T* hp = t ? out + (t - 1) * H : h0;
      const std::size_t ldh = t ? (L + 1) * H : H;
      gemm(false, true, end - first, G, H, T(1), hp + first * ldh, ldh, w_hh, H, T(1),
           gates + (first * L + t) * G, L * G);
      for (std::size_t r = first; r < end; ++r)
        for (std::size_t j = 0; j < H; j += B::size) {
          const std::size_t count = std::min(B::size, H - j);
          T* g = gates + (r * L + t) * G + j;
          const B i = logistic_of(load_part(g, count));
          const B f = logistic_of(load_part(g + H, count));
          const B cand = xsimd::tanh(load_part(g + 2 * H, count));
          const B o = logistic_of(load_part(g + 3 * H, count));
          store_part(i, g, count);
          store_part(f, g + H, count);
          store_part(cand, g + 2 * H, count);
          store_part(o, g + 3 * H, count);
          const T* cp = t ? cells + (r * L + t - 1) * H + j : c0 + r * H + j;
          const B c = f * load_part(cp, count) + i * cand;
          store_part(c, cells + (r * L + t) * H + j, count);
          store_part(o * xsimd::tanh(c), out + (r * (L + 1) + t) * H + j, count);
        }
    }
  });
  for (std::size_t r = 0; r < n; ++r) {  // the last cell state
    const T* c = L ? cells + (r * L + L - 1) * H : c0 + r * H;
    std::copy(c, c + H, out + (r * (L + 1) + L) * H);
  }
}

template <class T>
void lstm_backward(const LstmShape& s, const T* x, const T* w_ih, const T* w_hh, const T* h0,
                   const T* c0, const T* gates, const T* cells, const T* out, const T* dout,
                   T* dgates, T* dx, T* dw_ih, T* dw_hh, T* db, T* dh0, T* dc0) {
  const std::size_t n = s.n, L = s.length, H = s.hidden, G = 4 * H;
  using B = xsimd::batch<T>;
  // dh_next: the gradient reaching h of the step before through the recurrent product; dc: of c.
  std::vector<T> dh_next(n * H, T(0)), dc(n * H);
  for (std::size_t r = 0; r < n; ++r)
    std::copy(dout + (r * (L + 1) + L) * H, dout + (r * (L + 1) + L + 1) * H,
              dc.begin() + long(r * H));
  for_row_chunks(n, L, H, [&](std::size_t first, std::size_t end) {
    for (std::size_t t = L; t-- > 0;) {
      for (std::size_t r = first; r < end; ++r)
        for (std::size_t j = 0; j < H; j += B::size) {
          const std::size_t count = std::min(B::size, H - j);
          const T* g = gates + (r * L + t) * G + j;
          const T* cp = t ? cells + (r * L + t - 1) * H + j : c0 + r * H + j;
          const B dh = load_part(dout + (r * (L + 1) + t) * H + j, count) +
                       load_part(dh_next.data() + r * H + j, count);
          const auto d = lstm_cell_grads(load_part(g, count), load_part(g + H, count),
                                         load_part(g + 2 * H, count), load_part(g + 3 * H, count),
                                         load_part(cp, count),
                                         xsimd::tanh(load_part(cells + (r * L + t) * H + j, count)),
                                         dh, load_part(dc.data() + r * H + j, count));
          T* dg = dgates + (r * L + t) * G + j;
          for (std::size_t k = 0; k < 4; ++k) store_part(d[k], dg + k * H, count);
          store_part(d[4], dc.data() + r * H + j, count);
        }
      gemm(false, false, end - first, H, G, T(1), dgates + (first * L + t) * G, L * G, w_hh, H,
           T(0), dh_next.data() + first * H, H);
    }
  });
  if (L == 0) std::fill(dh_next.begin(), dh_next.end(), T(0));
  if (dh0) std::copy(dh_next.begin(), dh_next.end(), dh0);
  if (dc0) std::copy(dc.begin(), dc.end(), dc0);
  const std::size_t rows = n * L;
  if (dx) {
    if (rows && s.input)
      gemm(false, false, rows, s.input, G, T(1), dgates, G, w_ih, s.input, T(0), dx, s.input);
  }
  if (dw_ih) {
    if (rows)
      gemm(true, false, G, s.input, rows, T(1), dgates, G, x, s.input, T(0), dw_ih, s.input);
    else
      std::fill(dw_ih, dw_ih + G * s.input, T(0));
  }
  if (dw_hh) {
    // Σ_t dgates_tᵀ·h_{t−1}: the h before each step in the rows of dgates, one product in all.
    std::vector<T> before(rows * H);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t t = 0; t < L; ++t) {
        const T* h = t ? out + (r * (L + 1) + t - 1) * H : h0 + r * H;
        std::copy(h, h + H, before.begin() + long((r * L + t) * H));
      }
    if (rows)
      gemm(true, false, G, H, rows, T(1), dgates, G, before.data(), H, T(0), dw_hh, H);
    else
      std::fill(dw_hh, dw_hh + G * H, T(0));
  }
  if (db) {
    std::vector<double> sum(G, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < G; ++k) sum[k] += dgates[r * G + k];
    for (std::size_t k = 0; k < G; ++k) db[k] = static_cast<T>(sum[k]);
  }
}

#define AD_INSTANTIATE(T)                                                                          \
  template void lstm_forward<T>(const LstmShape&, const T*, const T*, const T*, const T*,          \
                                const T*, const T*, const T*, T*, T*, T*);                         \
  template void lstm_backward<T>(const LstmShape&, const T*, const T*, const T*, const T*,         \
                                 const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*, \
                                 T*, T*, T*);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::kernels
