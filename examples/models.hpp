// The models of the fashion_mnist and char_lm examples and the tiny MLP, shared with the benchmarks
// (bench/bench_nn.cpp, and bench/workloads.cpp that compares them with LibTorch, PyTorch and JAX).
#pragma once

#include "autodiff/ops.hpp"
#include "nn/layers.hpp"
#include "nn/sequence.hpp"

namespace examples {

/// 784-256-128-10 with ReLU.
inline std::shared_ptr<ad::nn::Sequential<float>> make_mlp(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(784, 256, ad::Activation::relu, rng),
      std::make_shared<nn::Linear<float>>(256, 128, ad::Activation::relu, rng),
      std::make_shared<nn::Linear<float>>(128, 10, rng));
}

/// Two conv+pool blocks (32 and 64 channels, 3×3, padding 1, 2×2 max pooling), then 3136-128-10.
/// (In double for the gradient checker.)
template <class T = float>
std::shared_ptr<ad::nn::Sequential<T>> make_cnn(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<T>>(
      std::make_shared<nn::Conv2d<T>>(1, 32, 3, rng, 1, 1), std::make_shared<nn::ReLU<T>>(),
      std::make_shared<nn::MaxPool2d<T>>(2), std::make_shared<nn::Conv2d<T>>(32, 64, 3, rng, 1, 1),
      std::make_shared<nn::ReLU<T>>(), std::make_shared<nn::MaxPool2d<T>>(2),
      std::make_shared<nn::Flatten<T>>(),
      std::make_shared<nn::Linear<T>>(64 * 7 * 7, 128, ad::Activation::relu, rng),
      std::make_shared<nn::Linear<T>>(128, 10, rng));
}

/// The tiny MLP 2-16-16-1 with tanh (bench/references/libtorch/workloads.cpp has the same on
/// LibTorch): all per-op cost.
inline std::shared_ptr<ad::nn::Sequential<float>> make_tiny_mlp(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(2, 16, ad::Activation::tanh, rng),
      std::make_shared<nn::Linear<float>>(16, 16, ad::Activation::tanh, rng),
      std::make_shared<nn::Linear<float>>(16, 1, rng));
}

// The models of the char_lm example, shared with the tests (ONNX export).

namespace nn = ad::nn;

/// Embedding, a stack of LSTM layers, a linear layer to the vocabulary: (B, L) indices to
/// (B·L, V) logits.
template <class T>
struct LstmModelOf : nn::Module<T> {
  std::shared_ptr<nn::Embedding<T>> embed;
  std::shared_ptr<nn::LSTM<T>> lstm;
  std::shared_ptr<nn::Linear<T>> head;
  LstmModelOf(std::size_t vocab, std::size_t embed_size, std::size_t hidden, std::size_t layers,
              ad::nn::Generator& rng)
      : embed(this->register_module("embed",
                                    std::make_shared<nn::Embedding<T>>(vocab, embed_size, rng))),
        lstm(this->register_module("lstm",
                                   std::make_shared<nn::LSTM<T>>(embed_size, hidden, rng, layers))),
        head(this->register_module("head", std::make_shared<nn::Linear<T>>(hidden, vocab, rng))) {}
  ad::Variable<T> forward(const ad::Variable<T>& x) override {
    ad::Variable<T> h = (*head)((*lstm)((*embed)(x)));
    return ad::reshape(h, ad::Shape{h.shape()[0] * h.shape()[1], h.shape()[2]});
  }
  /// The logits of x's positions following the LSTM's `state` (empty: zeros), which becomes the
  /// state after them: generation a byte at a time.
  ad::Variable<T> forward(const ad::Variable<T>& x, nn::RecurrentState<T>& state) {
    nn::RecurrentOutput<T> out = lstm->forward((*embed)(x), state);
    state = out.state;
    ad::Variable<T> h = (*head)(out.output);
    return ad::reshape(h, ad::Shape{h.shape()[0] * h.shape()[1], h.shape()[2]});
  }
};

/// A pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x)) (4× wide, GELU).
template <class T>
struct BlockOf : nn::Module<T> {
  std::shared_ptr<nn::LayerNorm<T>> norm1, norm2;
  std::shared_ptr<nn::MultiheadAttention<T>> attention;
  std::shared_ptr<nn::Linear<T>> up, down;
  std::shared_ptr<nn::GELU<T>> gelu = std::make_shared<nn::GELU<T>>();
  BlockOf(std::size_t dim, std::size_t heads, ad::nn::Generator& rng)
      : norm1(this->register_module("norm1", std::make_shared<nn::LayerNorm<T>>(ad::Shape{dim}))),
        norm2(this->register_module("norm2", std::make_shared<nn::LayerNorm<T>>(ad::Shape{dim}))),
        attention(this->register_module("attention", std::make_shared<nn::MultiheadAttention<T>>(
                                                         dim, heads, rng, /*causal=*/true))),
        up(this->register_module("up", std::make_shared<nn::Linear<T>>(dim, 4 * dim, rng))),
        down(this->register_module("down", std::make_shared<nn::Linear<T>>(4 * dim, dim, rng))) {}
  ad::Variable<T> forward(const ad::Variable<T>& x) override {
    ad::Variable<T> y = x + (*attention)((*norm1)(x));
    return y + (*down)((*gelu)((*up)((*norm2)(y))));
  }
  /// forward() of positions that follow those in the attention's cache.
  ad::Variable<T> forward(const ad::Variable<T>& x, nn::AttentionCache<T>& cache) {
    ad::Variable<T> y = x + attention->forward((*norm1)(x), cache);
    return y + (*down)((*gelu)((*up)((*norm2)(y))));
  }
};

/// Embedding plus a learned position embedding, `layers` blocks, a final norm and a linear layer
/// to the vocabulary: (B, L) indices to (B·L, V) logits.
template <class T>
struct TransformerModelOf : nn::Module<T> {
  std::shared_ptr<nn::Embedding<T>> embed;
  std::shared_ptr<nn::PositionalEmbedding<T>> position;
  std::shared_ptr<nn::Sequential<T>> blocks = std::make_shared<nn::Sequential<T>>();
  std::shared_ptr<nn::LayerNorm<T>> norm;
  std::shared_ptr<nn::Linear<T>> head;
  TransformerModelOf(std::size_t vocab, std::size_t hidden, std::size_t heads, std::size_t layers,
                     std::size_t seq_len, ad::nn::Generator& rng)
      : embed(
            this->register_module("embed", std::make_shared<nn::Embedding<T>>(vocab, hidden, rng))),
        position(this->register_module(
            "position", std::make_shared<nn::PositionalEmbedding<T>>(seq_len, hidden, rng))),
        norm(this->register_module("norm", std::make_shared<nn::LayerNorm<T>>(ad::Shape{hidden}))),
        head(this->register_module("head", std::make_shared<nn::Linear<T>>(hidden, vocab, rng))) {
    // N(0, 1) embeddings are far larger than the blocks' outputs: start them at N(0, 0.02²) (as
    // GPT-2 does), for both tables.
    embed->weight().mutable_value() *= T(0.02);
    for (auto& [name, table] : position->named_parameters()) table.mutable_value() *= T(0.02);
    for (std::size_t l = 0; l < layers; ++l) {
      layer.push_back(std::make_shared<BlockOf<T>>(hidden, heads, rng));
      blocks->add(layer.back());
    }
    this->register_module("blocks", blocks);
  }
  ad::Variable<T> forward(const ad::Variable<T>& x) override {
    ad::Variable<T> h = (*head)((*norm)((*blocks)((*position)((*embed)(x)))));
    return ad::reshape(h, ad::Shape{h.shape()[0] * h.shape()[1], h.shape()[2]});
  }
  /// The logits of x's positions following those held in `caches` (one per block; empty: none),
  /// which take in x's keys and values: generation a byte at a time without computing the prefix
  /// again. At most seq_len positions in all (the position table's length).
  ad::Variable<T> forward(const ad::Variable<T>& x, std::vector<nn::AttentionCache<T>>& caches) {
    caches.resize(layer.size());
    ad::Variable<T> h = position->forward((*embed)(x), caches[0].length());
    for (std::size_t l = 0; l < layer.size(); ++l) h = layer[l]->forward(h, caches[l]);
    h = (*head)((*norm)(h));
    return ad::reshape(h, ad::Shape{h.shape()[0] * h.shape()[1], h.shape()[2]});
  }
  std::vector<std::shared_ptr<BlockOf<T>>> layer;  ///< the blocks, also in `blocks`
};

// The models in float, as the example trains them (in double for the gradient checker).
using LstmModel = LstmModelOf<float>;
using Block = BlockOf<float>;
using TransformerModel = TransformerModelOf<float>;

}  // namespace examples
