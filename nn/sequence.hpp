// Layers over sequences (N, L, features), batch first: LSTM and GRU (several layers, with their
// state), multi-head attention (with a causal mask), and positional embeddings. Each is a
// composition of autodiff ops (ad::lstm and ad::scaled_dot_product_attention among them), so its
// gradient (to any order) comes from theirs.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// The state of a recurrent layer: h (and c, for an LSTM), each (layers, N, hidden). An undefined
/// member (a default Variable) means zeros.
template <class T = float>
struct RecurrentState {
  Variable<T> h;  ///< hidden state of every layer after the last step
  Variable<T> c;  ///< cell state of every layer (LSTM only)
};

/// What a recurrent layer returns: the last layer's hidden state at every step (N, L, hidden),
/// and the state after the last step (to carry into the next chunk of the sequence).
template <class T = float>
struct RecurrentOutput {
  Variable<T> output;       ///< (N, L, hidden)
  RecurrentState<T> state;  ///< after the last step
};

/// The shared part of LSTM and GRU: weights per layer under PyTorch's names (weight_ih_l0 of
/// (gates·hidden, input), weight_hh_l0 of (gates·hidden, hidden), bias_ih_l0, bias_hh_l0, with
/// the gates in PyTorch's order), initialised like PyTorch: U(±1/√hidden). The input projection
/// of a whole layer is one product; each step adds the recurrent one (an LSTM layer is the one op
/// ad::lstm).
template <class T = float>
class Recurrent : public Module<T> {
 public:
  /// forward(x, {}).output: from a zero state.
  Variable<T> forward(const Variable<T>& x) override { return forward(x, {}).output; }
  /// Runs over x (N, L, input) from `state` (undefined members: zeros). x, h and c shapes are
  /// checked, the error naming the layer.
  RecurrentOutput<T> forward(const Variable<T>& x, const RecurrentState<T>& state);

  std::size_t input_size() const { return input_; }    ///< features of x
  std::size_t hidden_size() const { return hidden_; }  ///< features of h
  std::size_t layers() const { return layers_; }       ///< stacked layers

 protected:
  /// `gates` gate blocks per layer; `name` for errors ("LSTM", "GRU").
  Recurrent(const char* name, std::size_t gates, std::size_t input, std::size_t hidden,
            Generator& rng, std::size_t layers, bool bias);
  /// Runs `layer` over its input (N, L, features) from the state h (and c), (N, hidden) each;
  /// returns h of every step (N, L, hidden) and leaves the state after the last step in h (and c).
  virtual Variable<T> run_layer(std::size_t layer, const Variable<T>& input, Variable<T>& h,
                                Variable<T>& c) = 0;
  /// Whether the layer keeps a cell state (LSTM).
  virtual bool has_cell() const = 0;
  /// The weights of `layer` (the biases undefined without biases).
  Variable<T> w_ih(std::size_t layer) { return this->parameter(w_ih_[layer]); }
  Variable<T> w_hh(std::size_t layer) { return this->parameter(w_hh_[layer]); }  ///< see w_ih
  Variable<T> b_ih(std::size_t layer) {                                          ///< see w_ih
    return b_ih_.empty() ? Variable<T>() : this->parameter(b_ih_[layer]);
  }
  Variable<T> b_hh(std::size_t layer) {  ///< see w_ih
    return b_hh_.empty() ? Variable<T>() : this->parameter(b_hh_[layer]);
  }

 private:
  const char* name_;
  std::size_t input_, hidden_, layers_;
  /// Positions in the registry, per layer (the bias lists empty without biases).
  std::vector<std::size_t> w_ih_, w_hh_, b_ih_, b_hh_;
};

/// Long short-term memory, as PyTorch's nn.LSTM(batch_first=True): gates i, f, g, o;
/// c' = f·c + i·g, h' = o·tanh(c').
template <class T = float>
class LSTM : public Recurrent<T> {
 public:
  /// `layers` stacked layers from `input` to `hidden` features.
  LSTM(std::size_t input, std::size_t hidden, Generator& rng, std::size_t layers = 1,
       bool bias = true)
      : Recurrent<T>("LSTM", 4, input, hidden, rng, layers, bias) {}
  using Recurrent<T>::forward;

 protected:
  /// A layer as the one op ad::lstm (see Recurrent::run_layer).
  Variable<T> run_layer(std::size_t layer, const Variable<T>& input, Variable<T>& h,
                        Variable<T>& c) override;
  /// An LSTM keeps a cell state.
  bool has_cell() const override { return true; }
};

/// Gated recurrent unit, as PyTorch's nn.GRU(batch_first=True): gates r, z, n;
/// n = tanh(x·W_inᵀ + b_in + r·(h·W_hnᵀ + b_hn)), h' = (1 − z)·n + z·h.
template <class T = float>
class GRU : public Recurrent<T> {
 public:
  /// `layers` stacked layers from `input` to `hidden` features.
  GRU(std::size_t input, std::size_t hidden, Generator& rng, std::size_t layers = 1,
      bool bias = true)
      : Recurrent<T>("GRU", 3, input, hidden, rng, layers, bias) {}
  using Recurrent<T>::forward;

 protected:
  /// A layer step by step (c unused; see Recurrent::run_layer): the input projection of every
  /// step as one product, then per step the recurrent product and the gates.
  Variable<T> run_layer(std::size_t layer, const Variable<T>& input, Variable<T>& h,
                        Variable<T>& c) override;
  /// A GRU keeps no cell state.
  bool has_cell() const override { return false; }
};

/// The keys and values of the positions a MultiheadAttention has seen, for generating a sequence
/// a position at a time without computing the whole prefix again (a key/value cache). It holds
/// values, not the graph: for generation (under NoGradGuard), not for training.
template <class T = float>
struct AttentionCache {
  Array<T> k;  ///< the keys, (N, positions, dim); empty (0-d) before the first call
  Array<T> v;  ///< the values, as the keys
  /// The positions held.
  std::size_t length() const { return k.dimension() == 3 ? k.shape()[1] : 0; }
  /// Forgets every position.
  void clear() { k = v = Array<T>(); }
};

/// Multi-head self-attention over x (N, L, dim), as PyTorch's nn.MultiheadAttention
/// (batch_first=True, query = key = value = x): one input projection in_proj_weight (3·dim, dim)
/// and in_proj_bias, softmax(q·kᵀ/√(dim/heads)) · v per head, then out_proj (dim, dim). With
/// `causal`, position i attends only to positions ≤ i. heads must divide dim. The attention is
/// the one op ad::scaled_dot_product_attention, reading the heads in place.
template <class T = float>
class MultiheadAttention : public Module<T> {
 public:
  /// `heads` heads over `dim` features; initialised like PyTorch (in_proj_weight Xavier-uniform,
  /// out_proj a Linear, both biases zero).
  MultiheadAttention(std::size_t dim, std::size_t heads, Generator& rng, bool causal = false);
  /// The attention's output, (N, L, dim).
  Variable<T> forward(const Variable<T>& x) override;
  /// The output for x (N, L, dim), positions that follow those held in `cache`: they attend to
  /// the cached keys and values and to each other (causally when the layer is causal), and their
  /// own keys and values join the cache.
  Variable<T> forward(const Variable<T>& x, AttentionCache<T>& cache);
  /// Whether forward keeps the attention weights for last_weights(); off by default, as they
  /// are the (L, L) matrices per head that the attention op otherwise never makes.
  void keep_weights(bool keep) { keep_weights_ = keep; }
  /// The attention weights of the last forward, averaged over heads: (N, L, L) (a constant);
  /// empty unless keep_weights(true).
  const Array<T>& last_weights() const { return weights_; }

 private:
  std::size_t dim_, heads_;
  bool causal_;
  bool keep_weights_ = false;
  /// Projection `which` (0: q, 1: k, 2: v) of x from its rows of in_proj_weight and in_proj_bias:
  /// (N, L, dim), contiguous, the heads side by side in each row where the attention op reads
  /// them.
  Variable<T> project(const Variable<T>& x, std::size_t which);
  std::size_t in_w_, in_b_;
  std::shared_ptr<Linear<T>> out_proj_;
  Array<T> weights_;
};

/// A learned position embedding: x (N, L, dim) + table[0:L], the table (max_length, dim) drawn
/// from N(0, 1) like Embedding. Longer inputs than max_length throw.
template <class T = float>
class PositionalEmbedding : public Module<T> {
 public:
  /// Positions up to max_length of `dim` features.
  PositionalEmbedding(std::size_t max_length, std::size_t dim, Generator& rng);
  /// x plus the first L rows of the table.
  Variable<T> forward(const Variable<T>& x) override { return forward(x, 0); }
  /// x plus rows offset … offset + L − 1 (positions that follow `offset` earlier ones).
  Variable<T> forward(const Variable<T>& x, std::size_t offset);

 private:
  std::size_t table_;
};

/// The fixed sinusoidal encoding of "Attention is all you need": x (N, L, dim) + P[0:L] with
/// P[p, 2i] = sin(p / 10000^(2i/dim)), P[p, 2i+1] = cos(p / 10000^(2i/dim)). No parameters.
template <class T = float>
class SinusoidalPositionalEncoding : public Module<T> {
 public:
  /// Positions up to max_length of `dim` features.
  SinusoidalPositionalEncoding(std::size_t max_length, std::size_t dim);
  /// x plus the first L rows of P.
  Variable<T> forward(const Variable<T>& x) override;
  /// P, (max_length, dim).
  const Array<T>& table() const { return table_; }

 private:
  Array<T> table_;
};

}  // namespace ad::nn
