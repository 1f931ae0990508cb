// Recurrent layers as ops: a whole LSTM layer over a sequence.
#pragma once

#include "autodiff/variable.hpp"

namespace ad {

/// One LSTM layer over a sequence, as one op (PyTorch's gates i, f, g, o): x (N, L, input),
/// w_ih (4H, input), w_hh (4H, H), b_ih and b_hh (4H) or undefined, h0 and c0 (N, H). Returns
/// (N, L + 1, H): h after each step, then the cell state after the last.
///
/// The input projection of every step is one product; the recurrence runs in place (one product
/// and one pass over the gates per step, no allocation); the backward runs through time the same
/// way and makes the weight gradients of all steps as one product each. It computes what the
/// unrolled composite of linear and lstm_cell computes; under create_graph its derivative is that
/// composite's, recorded (differentiable again).
template <class T>
Variable<T> lstm(const Variable<T>& x, const Variable<T>& w_ih, const Variable<T>& w_hh,
                 const Variable<T>& b_ih, const Variable<T>& b_hh, const Variable<T>& h0,
                 const Variable<T>& c0);

}  // namespace ad
