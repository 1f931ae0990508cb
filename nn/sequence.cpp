#include "nn/sequence.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "autodiff/ops.hpp"
#include "nn/layers.hpp"

namespace ad::nn {

namespace {

/// x must be (N, L, features); `what` names the layer.
void check_sequence(const Shape& s, std::size_t features, const std::string& what) {
  if (s.size() != 3 || s[2] != features)
    fail(what, ": input ", shape_str(s), " is not (N, L, ", features, ")");
}

/// Gate `k` of `gates` stacked along the last axis of (N, gates·H).
template <class T>
Variable<T> gate(const Variable<T>& g, std::size_t k, std::size_t hidden) {
  return slice(g, 1, k * hidden, (k + 1) * hidden);
}

}  // namespace

// ---- Recurrent layers

template <class T>
Recurrent<T>::Recurrent(const char* name, std::size_t gates, std::size_t input, std::size_t hidden,
                        Generator& rng, std::size_t layers, bool bias)
    : name_(name), input_(input), hidden_(hidden), layers_(layers) {
  if (input == 0 || hidden == 0 || layers == 0)
    fail(name, ": input (", input, "), hidden (", hidden, ") and layers (", layers,
         ") must be positive");
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
  auto draw = [&](Shape shape) {
    Array<T> a = Array<T>::from_shape(shape);
    init::uniform(a, -bound, bound, rng);
    return a;
  };
  for (std::size_t l = 0; l < layers; ++l) {
    const std::string suffix = "_l" + std::to_string(l);
    w_ih_.push_back(this->register_parameter("weight_ih" + suffix,
                                             draw({gates * hidden, l == 0 ? input : hidden})));
    w_hh_.push_back(this->register_parameter("weight_hh" + suffix, draw({gates * hidden, hidden})));
    if (bias) {
      b_ih_.push_back(this->register_parameter("bias_ih" + suffix, draw({gates * hidden})));
      b_hh_.push_back(this->register_parameter("bias_hh" + suffix, draw({gates * hidden})));
    }
  }
}

template <class T>
RecurrentOutput<T> Recurrent<T>::forward(const Variable<T>& x, const RecurrentState<T>& state) {
  check_sequence(x.shape(), input_, name_);
  const std::size_t n = x.shape()[0];
  const Shape state_shape{layers_, n, hidden_};
  auto initial = [&](const Variable<T>& given, const char* which) {
    if (!given.defined()) return full(state_shape, T(0));
    if (given.shape() != state_shape)
      fail(name_, ": state ", which, " is ", shape_str(given.shape()), ", expected ",
           shape_str(state_shape), " (layers, N, hidden)");
    return given;
  };
  const Variable<T> h0 = initial(state.h, "h");
  const Variable<T> c0 = has_cell() ? initial(state.c, "c") : Variable<T>();
  if (!has_cell() && state.c.defined()) fail(name_, ": has no cell state, but c was given");
  Variable<T> input = x;
  std::vector<Variable<T>> last_h, last_c;
  for (std::size_t l = 0; l < layers_; ++l) {
    Variable<T> h = select(h0, 0, l);
    Variable<T> c = has_cell() ? select(c0, 0, l) : Variable<T>();
    input = run_layer(l, input, h, c);
    last_h.push_back(h);
    if (has_cell()) last_c.push_back(c);
  }
  RecurrentOutput<T> out;
  out.output = input;
  out.state.h = stack(last_h, 0);
  if (has_cell()) out.state.c = stack(last_c, 0);
  return out;
}

template <class T>
Variable<T> LSTM<T>::run_layer(std::size_t layer, const Variable<T>& input, Variable<T>& h,
                               Variable<T>& c) {
  const std::size_t length = input.shape()[1];
  const Variable<T> y = lstm(input, this->w_ih(layer), this->w_hh(layer), this->b_ih(layer),
                             this->b_hh(layer), h, c);  // (N, L + 1, H): h of each step, then c
  if (length > 0) h = select(y, 1, length - 1);
  c = select(y, 1, length);
  return slice(y, 1, 0, length);
}

template <class T>
Variable<T> GRU<T>::run_layer(std::size_t layer, const Variable<T>& input, Variable<T>& h,
                              Variable<T>& /*c*/) {
  const std::size_t n = input.shape()[0], length = input.shape()[1], H = this->hidden_size();
  // The input projection of every step at once: (N, L, 3H).
  const Variable<T> xw = linear(input, this->w_ih(layer), this->b_ih(layer));
  std::vector<Variable<T>> outputs;
  outputs.reserve(length);
  for (std::size_t t = 0; t < length; ++t) {
    const Variable<T> x = select(xw, 1, t);
    const Variable<T> hw = linear(h, this->w_hh(layer), this->b_hh(layer));
    const Variable<T> r = sigmoid(gate(x, 0, H) + gate(hw, 0, H));
    const Variable<T> z = sigmoid(gate(x, 1, H) + gate(hw, 1, H));
    const Variable<T> cand = tanh(gate(x, 2, H) + r * gate(hw, 2, H));
    h = cand + z * (h - cand);  // (1 − z)·n + z·h
    outputs.push_back(h);
  }
  return length > 0 ? stack(outputs, 1) : Variable<T>(Array<T>(xt::zeros<T>({n, length, H})));
}

// ---- Attention

template <class T>
MultiheadAttention<T>::MultiheadAttention(std::size_t dim, std::size_t heads, Generator& rng,
                                          bool causal)
    : dim_(dim), heads_(heads), causal_(causal) {
  if (dim == 0 || heads == 0 || dim % heads != 0)
    fail("MultiheadAttention: heads (", heads, ") must be positive and divide dim (", dim, ")");
  Array<T> in_w = Array<T>::from_shape({3 * dim, dim});
  init::xavier_uniform(in_w, rng);
  in_w_ = this->register_parameter("in_proj_weight", std::move(in_w));
  in_b_ = this->register_parameter("in_proj_bias", Array<T>(xt::zeros<T>({3 * dim})));
  out_proj_ = this->register_module("out_proj", std::make_shared<Linear<T>>(dim, dim, rng));
  out_proj_->bias().mutable_value().fill(T(0));
}

template <class T>
Variable<T> MultiheadAttention<T>::project(const Variable<T>& x, std::size_t which) {
  const Variable<T>& w = this->parameter(in_w_);
  const Variable<T>& b = this->parameter(in_b_);
  return linear(x, slice(w, 0, which * dim_, (which + 1) * dim_),
                slice(b, 0, which * dim_, (which + 1) * dim_));
}

template <class T>
Variable<T> MultiheadAttention<T>::forward(const Variable<T>& x, AttentionCache<T>& cache) {
  check_sequence(x.shape(), dim_, "MultiheadAttention");
  const std::size_t n = x.shape()[0], length = x.shape()[1], past = cache.length();
  if (past &&
      (cache.k.shape()[0] != n || cache.k.shape()[2] != dim_ || cache.v.shape() != cache.k.shape()))
    fail("MultiheadAttention: the cache holds keys ",
         shape_str(Shape(cache.k.shape().begin(), cache.k.shape().end())), " and values ",
         shape_str(Shape(cache.v.shape().begin(), cache.v.shape().end())), ", not (", n,
         ", positions, ", dim_, ") each");
  Variable<T> q = project(x, 0), k = project(x, 1), v = project(x, 2);
  if (past) {
    k = concatenate<T>({Variable<T>(cache.k), k}, 1);
    v = concatenate<T>({Variable<T>(cache.v), v}, 1);
  }
  cache.k = k.value();
  cache.v = v.value();
  AttentionOptions options;
  options.heads = heads_;
  Variable<T> mask;
  if (causal_ && length > 1) {  // query i (position past + i) sees keys ≤ past + i
    Array<T> hide = xt::zeros<T>({length, past + length});
    for (std::size_t i = 0; i < length; ++i)
      for (std::size_t j = past + i + 1; j < past + length; ++j)
        hide(i, j) = -std::numeric_limits<T>::infinity();
    mask = Variable<T>(std::move(hide));
  }
  weights_ = Array<T>();
  return (*out_proj_)(scaled_dot_product_attention(q, k, v, options, mask));
}

template <class T>
Variable<T> MultiheadAttention<T>::forward(const Variable<T>& x) {
  check_sequence(x.shape(), dim_, "MultiheadAttention");
  const Variable<T> q = project(x, 0), k = project(x, 1), v = project(x, 2);
  AttentionOptions options;
  options.causal = causal_;
  options.heads = heads_;
  if (keep_weights_) {
    NoGradGuard no_grad;
    const std::size_t n = x.shape()[0], length = x.shape()[1];
    Variable<T> weights = attention_weights(q, k, options);
    if (heads_ > 1) weights = mean(weights, {1});
    weights_ = reshape(weights, Shape{n, length, length}).value();
  } else {
    weights_ = Array<T>();
  }
  return (*out_proj_)(scaled_dot_product_attention(q, k, v, options));
}

// ---- Positions

template <class T>
PositionalEmbedding<T>::PositionalEmbedding(std::size_t max_length, std::size_t dim,
                                            Generator& rng) {
  Array<T> table = Array<T>::from_shape({max_length, dim});
  init::normal(table, 0.0, 1.0, rng);
  table_ = this->register_parameter("weight", std::move(table));
}

template <class T>
Variable<T> PositionalEmbedding<T>::forward(const Variable<T>& x, std::size_t offset) {
  const Variable<T>& table = this->parameter(table_);
  check_sequence(x.shape(), table.shape()[1], "PositionalEmbedding");
  if (offset > table.shape()[0] || x.shape()[1] > table.shape()[0] - offset)
    fail("PositionalEmbedding: input ", shape_str(x.shape()), " after ", offset,
         " positions is longer than the ", table.shape()[0], " positions of the table");
  return x + slice(table, 0, offset, offset + x.shape()[1]);
}

template <class T>
SinusoidalPositionalEncoding<T>::SinusoidalPositionalEncoding(std::size_t max_length,
                                                              std::size_t dim)
    : table_(Array<T>::from_shape({max_length, dim})) {
  for (std::size_t p = 0; p < max_length; ++p)
    for (std::size_t j = 0; j < dim; ++j) {
      const double rate =
          std::pow(10000.0, -static_cast<double>(j - j % 2) / static_cast<double>(dim));
      table_(p, j) = static_cast<T>(j % 2 ? std::cos(p * rate) : std::sin(p * rate));
    }
}

template <class T>
Variable<T> SinusoidalPositionalEncoding<T>::forward(const Variable<T>& x) {
  check_sequence(x.shape(), table_.shape()[1], "SinusoidalPositionalEncoding");
  if (x.shape()[1] > table_.shape()[0])
    fail("SinusoidalPositionalEncoding: input ", shape_str(x.shape()), " is longer than its ",
         table_.shape()[0], " positions");
  const std::size_t length = x.shape()[1], dim = table_.shape()[1];
  Array<T> rows = Array<T>::from_shape({length, dim});
  std::copy(table_.data(), table_.data() + length * dim, rows.data());
  return x + Variable<T>(std::move(rows));
}

template class Recurrent<float>;
template class Recurrent<double>;
template class LSTM<float>;
template class LSTM<double>;
template class GRU<float>;
template class GRU<double>;
template class MultiheadAttention<float>;
template class MultiheadAttention<double>;
template class PositionalEmbedding<float>;
template class PositionalEmbedding<double>;
template class SinusoidalPositionalEncoding<float>;
template class SinusoidalPositionalEncoding<double>;

}  // namespace ad::nn
