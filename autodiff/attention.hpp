// Attention: scaled dot-product attention as one op with its own rule, tiled so that its memory
// grows linearly with the sequence.
#pragma once

#include <cstddef>

#include "autodiff/variable.hpp"

namespace ad {

/// How scaled_dot_product_attention reads its inputs.
struct AttentionOptions {
  /// Query i sees keys j ≤ i only (the top-left rule of PyTorch's is_causal).
  bool causal = false;
  /// Multiplies q·kᵀ; 0 means 1/√d, d the per-head width of q.
  double scale = 0;
  /// Heads side by side in the last axis of q, k and v, as an input projection makes them: each
  /// head attends on its own slice of d = width/heads features, read in place (no permuted copy),
  /// and the output holds the heads side by side again, ready for the output projection.
  std::size_t heads = 1;
};

/// softmax(scale · q·kᵀ + mask) · v for each head, with q (..., Lq, H·d), k (..., Lk, H·d), v (...,
/// Lk, H·dv) sharing their leading axes; the result is (..., Lq, H·dv). The optional additive mask
/// broadcasts to the scores (..., H, Lq, Lk), or (..., Lq, Lk) for one head: −∞ hides a key (a
/// query row with every key hidden gives NaN, as softmax does); its gradient is computed when it
/// requires one (then the whole scores' gradient is held in memory, Lq·Lk per head).
///
/// One op, computed tile by tile (FlashAttention): the forward keeps only each query row's
/// log-sum-exp, the backward recomputes the scores tile by tile, so that neither holds the (Lq,
/// Lk) scores. Under create_graph its derivative is the same formula written with the recorded
/// ops (matmul, softmax), differentiable again.
template <class T>
Variable<T> scaled_dot_product_attention(const Variable<T>& q, const Variable<T>& k,
                                         const Variable<T>& v, const AttentionOptions& options = {},
                                         const Variable<T>& mask = {});

/// The attention weights softmax(scale · q·kᵀ + mask) of scaled_dot_product_attention's inputs
/// and options, (..., H, Lq, Lk) (or (..., Lq, Lk) for one head), as recorded ops: the (Lq, Lk)
/// matrices in memory. For inspection, and the composite the op's second-order rule is made of.
template <class T>
Variable<T> attention_weights(const Variable<T>& q, const Variable<T>& k,
                              const AttentionOptions& options = {}, const Variable<T>& mask = {});

}  // namespace ad
