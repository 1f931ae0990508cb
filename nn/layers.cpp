#include "nn/layers.hpp"

#include <algorithm>
#include <cmath>

#include "autodiff/ops.hpp"

namespace ad::nn {

// ---- Layers with a weight: Linear (the convolutions below)

template <class T>
void WeightedLayer<T>::add_parameters(Shape weight_shape, std::size_t bias_size, std::size_t fan_in,
                                      Generator& rng, bool with_bias) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<std::size_t>(fan_in, 1)));
  Array<T> w = Array<T>::from_shape(weight_shape);
  init::uniform(w, -bound, bound, rng);
  weight_ = this->register_parameter("weight", std::move(w));
  if (with_bias) {
    Array<T> b = Array<T>::from_shape({bias_size});
    init::uniform(b, -bound, bound, rng);
    bias_ = this->register_parameter("bias", std::move(b));
  }
}

template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, Generator& rng, bool bias) {
  this->add_parameters({out, in}, out, in, rng, bias);
}

template <class T>
Linear<T>::Linear(std::size_t in, std::size_t out, Activation activation, Generator& rng, bool bias)
    : Linear(in, out, rng, bias) {
  activation_name(activation, "Linear");  // refuses a value that is no activation
  activation_ = activation;
}

template <class T>
Variable<T> Linear<T>::forward(const Variable<T>& x) {
  return linear(x, this->weight(), this->bias(), activation_);
}

template <class T>
std::string Linear<T>::details() const {
  return activation_ == Activation::none ? "" : activation_name(activation_);
}

// ---- Convolutions

namespace {

/// Groups must divide both channel counts; `layer` names the error.
void check_groups(std::size_t in, std::size_t out, std::size_t groups, const char* layer) {
  if (groups == 0 || in % groups != 0 || out % groups != 0)
    fail(layer, ": ", groups, " groups must divide the ", in, " input and ", out,
         " output channels");
}

}  // namespace

template <class T>
Conv2d<T>::Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
                  Generator& rng, std::size_t stride, std::size_t padding, bool bias)
    : Conv2d(in_channels, out_channels, {kernel, kernel}, rng, ConvOptions::square(stride, padding),
             bias) {}

template <class T>
Conv2d<T>::Conv2d(std::size_t in_channels, std::size_t out_channels,
                  std::array<std::size_t, 2> kernel, Generator& rng, const ConvOptions& options,
                  bool bias)
    : options_(options) {
  check_groups(in_channels, out_channels, options.groups, "Conv2d");
  const std::size_t per_group = in_channels / options.groups;
  this->add_parameters({out_channels, per_group, kernel[0], kernel[1]}, out_channels,
                       per_group * kernel[0] * kernel[1], rng, bias);
}

template <class T>
Variable<T> Conv2d<T>::forward(const Variable<T>& x) {
  return conv2d(x, this->weight(), this->bias(), options_);
}

template <class T>
Conv1d<T>::Conv1d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
                  Generator& rng, std::size_t stride, std::size_t padding, std::size_t dilation,
                  std::size_t groups, bool bias) {
  check_groups(in_channels, out_channels, groups, "Conv1d");
  options_.stride_w = stride, options_.padding_w = padding, options_.dilation_w = dilation;
  options_.groups = groups;
  const std::size_t per_group = in_channels / groups;
  this->add_parameters({out_channels, per_group, kernel}, out_channels, per_group * kernel, rng,
                       bias);
}

template <class T>
Variable<T> Conv1d<T>::forward(const Variable<T>& x) {
  const Shape& s = x.shape();
  const Shape& w = this->weight().shape();
  if (s.size() != 3 || s[1] != w[1] * options_.groups)
    fail("Conv1d: input ", shape_str(s), " is not (N, ", w[1] * options_.groups, ", L)");
  // A height of 1: (N, C, 1, L) convolved with (O, C/groups, 1, k).
  const Variable<T> y =
      conv2d(reshape(x, Shape{s[0], s[1], 1, s[2]}),
             reshape(this->weight(), Shape{w[0], w[1], 1, w[2]}), this->bias(), options_);
  return reshape(y, Shape{s[0], w[0], y.shape()[3]});
}

template <class T>
ConvTranspose2d<T>::ConvTranspose2d(std::size_t in_channels, std::size_t out_channels,
                                    std::size_t kernel, Generator& rng, std::size_t stride,
                                    std::size_t padding, std::size_t output_padding, bool bias)
    : stride_(stride), padding_(padding), output_padding_(output_padding) {
  if (in_channels == 0 || out_channels == 0 || kernel == 0 || stride == 0)
    fail("ConvTranspose2d: channels (", in_channels, ", ", out_channels, "), kernel (", kernel,
         ") and stride (", stride, ") must be positive");
  if (output_padding >= stride)
    fail("ConvTranspose2d: output_padding (", output_padding, ") must be less than the stride (",
         stride, ")");
  this->add_parameters({in_channels, out_channels, kernel, kernel}, out_channels,
                       out_channels * kernel * kernel, rng, bias);
}

template <class T>
Variable<T> ConvTranspose2d<T>::forward(const Variable<T>& x) {
  const Shape& w = this->weight().shape();
  const Shape& s = x.shape();
  if (s.size() != 4 || s[1] != w[0])
    fail("ConvTranspose2d: input ", shape_str(s), " is not (N, ", w[0], ", H, W)");
  // The output size; an input too small for it (a negative size) is refused.
  auto out = [&](std::size_t in) -> std::size_t {
    const std::size_t grown = (in - 1) * stride_ + w[2] + output_padding_;
    if (in == 0 || grown <= 2 * padding_)
      fail("ConvTranspose2d: input ", shape_str(s), " with kernel ", w[2], ", stride ", stride_,
           ", padding ", padding_, " gives no output");
    return grown - 2 * padding_;
  };
  // The adjoint of the convolution from the output's shape back to x's: conv2d's input gradient.
  Variable<T> y = conv2d_input_grad(x, this->weight(), Shape{s[0], w[1], out(s[2]), out(s[3])},
                                    stride_, padding_);
  if (this->has_bias()) y = y + reshape(this->bias(), Shape{1, w[1], 1, 1});
  return y;
}

// ---- Pooling, Flatten

template <class T>
Variable<T> MaxPool2d<T>::forward(const Variable<T>& x) {
  return max_pool2d(x, kernel_, stride_, padding_);
}

template <class T>
Variable<T> AvgPool2d<T>::forward(const Variable<T>& x) {
  return avg_pool2d(x, kernel_, stride_, padding_);
}

template <class T>
Variable<T> Flatten<T>::forward(const Variable<T>& x) {
  return flatten(x, start_, end_);
}

// ---- Dropout

template <class T>
Dropout<T>::Dropout(double p, std::uint64_t seed) : p_(p), seed_(seed) {
  if (!(p >= 0 && p <= 1)) fail("Dropout: probability ", p, " is not in [0, 1]");
  calls_ = &this->register_state("calls", xt::zeros<std::uint64_t>({1}));
}

template <class T>
Variable<T> Dropout<T>::forward(const Variable<T>& x) {
  if (!this->is_training() || p_ == 0) return x;
  // A fresh stream per call, from (seed, call number): reproducible and resumable.
  std::uint64_t& calls = (*calls_)(0);
  std::seed_seq seq{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32),
                    static_cast<std::uint32_t>(calls), static_cast<std::uint32_t>(calls >> 32)};
  ++calls;
  Generator rng(seq);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const T scale = p_ < 1 ? static_cast<T>(1.0 / (1.0 - p_)) : T(0);
  Array<T> mask = Array<T>::from_shape(x.shape());
  for (auto& m : mask) m = u(rng) < p_ ? T(0) : scale;
  return x * Variable<T>(std::move(mask));
}

// ---- BatchNorm

template <class T>
BatchNorm<T>::BatchNorm(std::size_t features, std::size_t input_dims, double eps, double momentum)
    : features_(features), dims_(input_dims), eps_(eps), momentum_(momentum) {
  weight_ = this->register_parameter("weight", xt::ones<T>({features}));
  bias_ = this->register_parameter("bias", xt::zeros<T>({features}));
  running_mean_ = &this->register_buffer("running_mean", xt::zeros<T>({features}));
  running_var_ = &this->register_buffer("running_var", xt::ones<T>({features}));
}

template <class T>
Variable<T> BatchNorm<T>::forward(const Variable<T>& x) {
  const Shape& s = x.shape();
  const bool ok =
      (dims_ == 2 ? (s.size() == 2 || s.size() == 3) : s.size() == dims_) && s[1] == features_;
  if (!ok)
    fail("BatchNorm", dims_ == 2 ? "1d" : "2d", ": input ", shape_str(s), " is not (N, ", features_,
         dims_ == 2 ? "[, L])" : ", H, W)");
  // Statistics over every axis but 1; the per-feature vectors broadcast as (1, C, 1, ...).
  std::vector<long> axes{0};
  Shape param_shape(s.size(), 1);
  param_shape[1] = features_;
  for (std::size_t d = 2; d < s.size(); ++d) axes.push_back(static_cast<long>(d));
  Variable<T> mean, var;
  if (this->is_training()) {
    Statistics st = statistics(x, axes);
    const std::size_t count = st.count;
    if (count < 2)
      fail("BatchNorm: training needs more than one value per feature, input ", shape_str(s));
    mean = st.mean;
    var = st.var;
    // Running statistics: exponential average, with the unbiased variance.
    const T m = static_cast<T>(momentum_);
    const T unbias = static_cast<T>(double(count) / double(count - 1));
    for (std::size_t c = 0; c < features_; ++c) {
      (*running_mean_)(c) = (1 - m) * (*running_mean_)(c) + m * mean.value().data()[c];
      (*running_var_)(c) = (1 - m) * (*running_var_)(c) + m * var.value().data()[c] * unbias;
    }
  } else {
    Array<T> rm = *running_mean_, rv = *running_var_;
    rm.reshape(param_shape);
    rv.reshape(param_shape);
    mean = Variable<T>(std::move(rm));
    var = Variable<T>(std::move(rv));
  }
  Variable<T> normalized = (x - mean) / sqrt(var + eps_);
  return normalized * reshape(this->parameter(weight_), param_shape) +
         reshape(this->parameter(bias_), param_shape);
}

template <class T>
typename BatchNorm<T>::Statistics BatchNorm<T>::statistics(const Variable<T>& x,
                                                           const std::vector<long>& axes) {
  Variable<T> mean = ad::mean(x, axes, true);
  return {mean, ad::mean(square(x - mean), axes, true), x.size() / features_};
}

// ---- LayerNorm, GroupNorm

template <class T>
LayerNorm<T>::LayerNorm(Shape shape, double eps, bool affine)
    : shape_(std::move(shape)), eps_(eps), affine_(affine) {
  if (shape_.empty() || shape_size(shape_) == 0)
    fail("LayerNorm: the normalised shape ", shape_str(shape_), " must have axes and elements");
  if (!(eps > 0)) fail("LayerNorm: eps must be > 0, got ", eps);
  if (affine_) {
    weight_ = this->register_parameter("weight", xt::ones<T>(shape_));
    bias_ = this->register_parameter("bias", xt::zeros<T>(shape_));
  }
}

template <class T>
Variable<T> LayerNorm<T>::forward(const Variable<T>& x) {
  const Shape& s = x.shape();
  const std::size_t k = shape_.size();
  if (s.size() < k || !std::equal(shape_.begin(), shape_.end(), s.end() - long(k)))
    fail("LayerNorm: input ", shape_str(s), " does not end in the normalised shape ",
         shape_str(shape_));
  return affine_ ? layer_norm(x, k, this->parameter(weight_), this->parameter(bias_), eps_)
                 : layer_norm(x, k, Variable<T>(), Variable<T>(), eps_);
}

template <class T>
GroupNorm<T>::GroupNorm(std::size_t groups, std::size_t channels, double eps, bool affine)
    : groups_(groups), channels_(channels), eps_(eps), affine_(affine) {
  if (groups == 0 || channels % groups != 0)
    fail("GroupNorm: ", groups, " groups do not divide ", channels, " channels");
  if (!(eps > 0)) fail("GroupNorm: eps must be > 0, got ", eps);
  if (affine_) {
    weight_ = this->register_parameter("weight", xt::ones<T>({channels}));
    bias_ = this->register_parameter("bias", xt::zeros<T>({channels}));
  }
}

template <class T>
Variable<T> GroupNorm<T>::forward(const Variable<T>& x) {
  const Shape& s = x.shape();
  if (s.size() < 2 || s[1] != channels_)
    fail("GroupNorm: input ", shape_str(s), " is not (N, ", channels_, ", ...)");
  // (N, G, C/G·positions): each sample's group is one row.
  std::size_t row = channels_ / groups_;
  for (std::size_t d = 2; d < s.size(); ++d) row *= s[d];
  Variable<T> y = reshape(
      layer_norm(reshape(x, Shape{s[0], groups_, row}), 1, Variable<T>(), Variable<T>(), eps_), s);
  if (!affine_) return y;
  Shape param_shape(s.size(), 1);
  param_shape[1] = channels_;
  return y * reshape(this->parameter(weight_), param_shape) +
         reshape(this->parameter(bias_), param_shape);
}

// ---- Embedding

template <class T>
Embedding<T>::Embedding(std::size_t count, std::size_t dim, Generator& rng) {
  Array<T> w = Array<T>::from_shape({count, dim});
  init::normal(w, 0.0, 1.0, rng);
  weight_ = this->register_parameter("weight", std::move(w));
}

template <class T>
Variable<T> Embedding<T>::forward(const Index& indices) {
  Array<std::size_t> flat = indices.values();
  flat.reshape({indices.size()});
  Shape shape = indices.shape();
  shape.push_back(weight().shape()[1]);
  return reshape(index_select(weight(), 0, Index(std::move(flat))), shape);
}

template <class T>
Variable<T> Embedding<T>::forward(const Variable<T>& indices) {
  return embedding(weight(), indices);
}

// ---- Activations

template <class T>
Variable<T> ReLU<T>::forward(const Variable<T>& x) {
  return relu(x);
}

template <class T>
Variable<T> LeakyReLU<T>::forward(const Variable<T>& x) {
  return leaky_relu(x, slope_);
}

template <class T>
Variable<T> Tanh<T>::forward(const Variable<T>& x) {
  return tanh(x);
}

template <class T>
Variable<T> Sigmoid<T>::forward(const Variable<T>& x) {
  return sigmoid(x);
}

template <class T>
Variable<T> GELU<T>::forward(const Variable<T>& x) {
  return gelu(x, form_);
}

template <class T>
Variable<T> Softmax<T>::forward(const Variable<T>& x) {
  return softmax(x, axis_);
}

#define AD_INSTANTIATE(T)            \
  template class Linear<T>;          \
  template class WeightedLayer<T>;   \
  template class Conv2d<T>;          \
  template class Conv1d<T>;          \
  template class ConvTranspose2d<T>; \
  template class MaxPool2d<T>;       \
  template class AvgPool2d<T>;       \
  template class Flatten<T>;         \
  template class Dropout<T>;         \
  template class BatchNorm<T>;       \
  template class BatchNorm1d<T>;     \
  template class BatchNorm2d<T>;     \
  template class LayerNorm<T>;       \
  template class GroupNorm<T>;       \
  template class Embedding<T>;       \
  template class ReLU<T>;            \
  template class LeakyReLU<T>;       \
  template class Tanh<T>;            \
  template class Sigmoid<T>;         \
  template class GELU<T>;            \
  template class Softmax<T>;

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::nn
