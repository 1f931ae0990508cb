// Scaled dot-product attention, softmax(scale·q·kᵀ + mask)·v, computed tile by tile (the
// FlashAttention algorithm): the forward keeps only each query row's log-sum-exp, never the
// (Lq, Lk) scores, and the backward makes the scores again tile by tile from it, so that memory
// grows with the sequence, not with its square.
#pragma once

#include <cstddef>
#include <vector>

namespace ad::kernels {

/// One attention call: `batch` × `heads` independent problems. The heads sit side by side in each
/// row, as a projection makes them: query i of problem (n, h) is q[(n·lq + i)·heads·d + h·d ...],
/// key and value rows alike with lk, d and dv, and the output as the values (n·lq + i)·heads·dv +
/// h·dv. The log-sum-exp of query row i of problem p = n·heads + h is lse[p·lq + i].
template <class T>
struct Attention {
  std::size_t batch = 1, heads = 1;  ///< N and H
  std::size_t lq = 0, lk = 0;        ///< query and key lengths
  std::size_t d = 0, dv = 0;         ///< per-head widths of q and k, and of v
  T scale = 1;                       ///< multiplies q·kᵀ
  bool causal = false;               ///< key j is hidden from query i where j > i
  /// An additive mask or null: element (i, j) of problem p at mask[mask_offset[p] + i·mask_i +
  /// j·mask_j] (strides 0 along broadcast axes).
  const T* mask = nullptr;
  std::vector<std::ptrdiff_t> mask_offset;
  std::ptrdiff_t mask_i = 0, mask_j = 0;
};

/// out and lse (batch·heads·lq values) from q, k, v. A query row whose every key is masked (−∞)
/// gets NaN, as softmax of a row of −∞ does.
template <class T>
void attention_forward(const Attention<T>& a, const T* q, const T* k, const T* v, T* out, T* lse);

/// The gradients of q, k and v (each written only where its pointer is not null) from dout, the
/// forward's out and lse. With dmask not null, the scores' gradient is written there too, dense:
/// (batch·heads, lq, lk), zero where the causal rule hides a key.
template <class T>
void attention_backward(const Attention<T>& a, const T* q, const T* k, const T* v, const T* out,
                        const T* lse, const T* dout, T* dq, T* dk, T* dv, T* dmask);

}  // namespace ad::kernels
