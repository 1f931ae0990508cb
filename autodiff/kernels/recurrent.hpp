// Recurrent layers: the LSTM cell's derivative, written once, and a whole LSTM layer over a
// sequence (the recurrence in place, no allocation per step; backward through time with the weight
// gradients of every step as one product).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "autodiff/parallel.hpp"

namespace ad::kernels {

/// The LSTM cell's derivative, written once for numbers, SIMD batches and Variables: from the
/// gate activations i, f, n (the candidate), o, the previous cell c, tc = tanh(c') of the new
/// cell and the gradients dh, dc of the two outputs, the gradients of the four gates'
/// pre-activations and of c. (x − x·x is σ'(a) for x = σ(a); no constants, so that one
/// definition serves all three.)
template <class V>
std::array<V, 5> lstm_cell_grads(const V& i, const V& f, const V& n, const V& o, const V& c,
                                 const V& tc, const V& dh, const V& dc) {
  const V dct = dc + dh * (o - o * tc * tc);  // the whole gradient of c'
  return {dct * n * (i - i * i), dct * c * (f - f * f), dct * (i - i * n * n),
          dh * tc * (o - o * o), dct * f};
}

/// Runs body(row, j, count) over the (rows, hidden) positions of a recurrent step, rows split
/// between threads, j in steps of a SIMD batch (count smaller only at a row's end): the loops of
/// lstm_cell and of lstm.
template <class T, class F>
void for_each_position(std::size_t rows, std::size_t hidden, F&& body) {
  constexpr std::size_t width = xsimd::batch<T>::size;
  detail::parallel_rows(rows, 8 * hidden, [&](std::size_t r) {
    for (std::size_t j = 0; j < hidden; j += width) body(r, j, std::min(width, hidden - j));
  });
}

/// The sizes of one LSTM layer: n sequences of `length` steps, `input` features in, `hidden` out.
struct LstmShape {
  std::size_t n = 0, length = 0, input = 0, hidden = 0;
};

/// An LSTM layer (gates i, f, g, o, as PyTorch): x (n, length, input), w_ih (4·hidden, input), w_hh
/// (4·hidden, hidden), the biases (4·hidden) or null, h0 and c0 (n, hidden). Writes out (n, length
/// + 1, hidden): h of every step, then the last cell state; and for the backward the gates'
/// activations (n, length, 4·hidden) and the cell states (n, length, hidden).
template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* w_ih, const T* w_hh, const T* b_ih,
                  const T* b_hh, const T* h0, const T* c0, T* gates, T* cells, T* out);

/// Its backward from dout (the gradient of out): the gates' pre-activation gradients into dgates
/// (n, length, 4·hidden; always), then dx, dw_ih, dw_hh, db (the gradient of either bias: they are
/// the same), dh0, dc0, each written only where its pointer is not null.
template <class T>
void lstm_backward(const LstmShape& s, const T* x, const T* w_ih, const T* w_hh, const T* h0,
                   const T* c0, const T* gates, const T* cells, const T* out, const T* dout,
                   T* dgates, T* dx, T* dw_ih, T* dw_hh, T* db, T* dh0, T* dc0);

}  // namespace ad::kernels
