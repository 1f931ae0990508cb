// Layers. Each is a composition of autodiff ops (nn/ writes no derivative); a new layer goes
// here, with its forward in layers.cpp and its gradcheck in tests/nn/test_layers.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "autodiff/conv.hpp"
#include "autodiff/elementwise.hpp"
#include "autodiff/index.hpp"
#include "autodiff/linalg.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// What the layers with a weight share (Linear and the convolutions): the weight and an optional
/// bias, registered as "weight" and "bias" and drawn like PyTorch's from U(±1/√fan_in).
template <class T = float>
class WeightedLayer : public Module<T> {
 public:
  /// The weight.
  Variable<T>& weight() { return this->parameter(weight_); }
  /// The bias; an undefined Variable (defined() is false) when built without one.
  Variable<T>& bias() { return has_bias() ? this->parameter(bias_) : no_bias_; }
  /// Whether the layer has a bias.
  bool has_bias() const { return bias_ != none; }

 protected:
  /// Registers the weight of `weight_shape` and, with `with_bias`, a bias of (bias_size).
  void add_parameters(Shape weight_shape, std::size_t bias_size, std::size_t fan_in, Generator& rng,
                      bool with_bias);

 private:
  static constexpr std::size_t none = ~std::size_t{0};
  std::size_t weight_ = none, bias_ = none;  ///< positions in the registry
  Variable<T> no_bias_;
};

/// y = x·Wᵀ + b with W (out, in) and b (out): one GEMM forward and one per gradient backward.
/// Initialised like PyTorch: W and b from U(±1/√in).
template <class T = float>
class Linear : public WeightedLayer<T> {
 public:
  /// A layer from `in` to `out` features, initialised from `rng`.
  Linear(std::size_t in, std::size_t out, Generator& rng, bool bias = true);
  /// A layer with its activation: act(x·Wᵀ + b) in one op (ad::linear with an Activation), the
  /// values and gradients of a Linear followed by a ReLU, Tanh or Sigmoid module, to the bit,
  /// with one array and one pass fewer. nn::summary shows it as "Linear(relu)".
  Linear(std::size_t in, std::size_t out, Activation activation, Generator& rng, bool bias = true);
  /// The layer applied to x (and its activation).
  Variable<T> forward(const Variable<T>& x) override;
  /// The activation applied in the layer's op (Activation::none: none).
  Activation activation() const { return activation_; }
  std::string details() const override;

 private:
  Activation activation_ = Activation::none;
};

/// 2-D convolution of (N, C, H, W) with a (out, in/groups, kh, kw) kernel, strides, zero padding
/// and dilations per axis, and groups (ad::ConvOptions); initialised like PyTorch:
/// U(±1/√(in/groups·kh·kw)).
template <class T = float>
class Conv2d : public WeightedLayer<T> {
 public:
  /// A layer from `in_channels` to `out_channels` with a kernel × kernel window.
  Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, Generator& rng,
         std::size_t stride = 1, std::size_t padding = 0, bool bias = true);
  /// A layer with a kernel[0] × kernel[1] window and the given options (groups must divide both
  /// channel counts).
  Conv2d(std::size_t in_channels, std::size_t out_channels, std::array<std::size_t, 2> kernel,
         Generator& rng, const ConvOptions& options, bool bias = true);
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  ConvOptions options_;
};

/// 1-D convolution of (N, C, L) with a (out, in/groups, k) kernel, stride, zero padding, dilation
/// and groups, as PyTorch's Conv1d (a Conv2d over a height of 1); initialised U(±1/√(in/groups·k)).
template <class T = float>
class Conv1d : public WeightedLayer<T> {
 public:
  /// A layer from `in_channels` to `out_channels` with a window of `kernel`.
  Conv1d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, Generator& rng,
         std::size_t stride = 1, std::size_t padding = 0, std::size_t dilation = 1,
         std::size_t groups = 1, bool bias = true);
  /// The layer applied to x. (The weight is (out, in/groups, k).)
  Variable<T> forward(const Variable<T>& x) override;

 private:
  ConvOptions options_;
};

/// Transposed 2-D convolution of (N, in, H, W) with a (in, out, k, k) kernel (the adjoint of a
/// Conv2d from out to in channels with the same stride and padding), as PyTorch's ConvTranspose2d:
/// output (N, out, (H − 1)·stride − 2·padding + k + output_padding, likewise for W), with
/// output_padding < stride. Initialised like PyTorch: U(±1/√(out·k·k)).
template <class T = float>
class ConvTranspose2d : public WeightedLayer<T> {
 public:
  /// A layer from `in_channels` to `out_channels` with a kernel × kernel window.
  ConvTranspose2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
                  Generator& rng, std::size_t stride = 1, std::size_t padding = 0,
                  std::size_t output_padding = 0, bool bias = true);
  /// The layer applied to x. (The weight is (in, out, k, k).)
  Variable<T> forward(const Variable<T>& x) override;

 private:
  std::size_t stride_, padding_, output_padding_;
};

/// Maximum over k×k windows (stride defaults to the kernel).
template <class T = float>
class MaxPool2d : public Module<T> {
 public:
  /// Pooling over kernel × kernel windows.
  explicit MaxPool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
      : kernel_(kernel), stride_(stride ? stride : kernel), padding_(padding) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  std::size_t kernel_, stride_, padding_;
};

/// Mean over k×k windows (stride defaults to the kernel).
template <class T = float>
class AvgPool2d : public Module<T> {
 public:
  /// Pooling over kernel × kernel windows.
  explicit AvgPool2d(std::size_t kernel, std::size_t stride = 0, std::size_t padding = 0)
      : kernel_(kernel), stride_(stride ? stride : kernel), padding_(padding) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  std::size_t kernel_, stride_, padding_;
};

/// Merges axes start..end (by default all but the batch axis).
template <class T = float>
class Flatten : public Module<T> {
 public:
  /// Merges axes start..end.
  explicit Flatten(long start = 1, long end = -1) : start_(start), end_(end) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  long start_, end_;
};

/// Inverted dropout: in training, zeroes each element with probability p and scales the rest by
/// 1/(1 − p); in evaluation, the identity. The masks come from the seed and a call counter (saved
/// in checkpoints as the state "calls"), so a resumed run draws the same masks.
template <class T = float>
class Dropout : public Module<T> {
 public:
  /// Drops with probability p, masks drawn from `seed`.
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0);
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  double p_;
  std::uint64_t seed_;
  StateArray* calls_;
};

/// Batch normalisation over every axis but axis 1 (features or channels), with learned scale
/// (weight) and shift (bias). In training it normalises with the batch statistics and updates the
/// running ones (momentum, unbiased variance, as PyTorch); in evaluation it uses the running ones.
template <class T = float>
class BatchNorm : public Module<T> {
 public:
  /// Over `features` channels of inputs with `input_dims` axes.
  BatchNorm(std::size_t features, std::size_t input_dims, double eps, double momentum);
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;
  /// The running mean (a buffer).
  Array<T>& running_mean() { return *running_mean_; }
  /// The running variance (a buffer).
  Array<T>& running_var() { return *running_var_; }

  /// A training batch's statistics per channel (keepdims shape), and how many values they are over.
  struct Statistics {
    Variable<T> mean;       ///< the mean
    Variable<T> var;        ///< the biased variance
    std::size_t count = 0;  ///< values per channel
  };

 protected:
  /// The statistics of x over `axes` (every axis but the channels'): this process's batch here;
  /// distributed/'s SyncBatchNorm sums them over every process's batch.
  virtual Statistics statistics(const Variable<T>& x, const std::vector<long>& axes);

 private:
  std::size_t features_, dims_;
  double eps_, momentum_;
  std::size_t weight_, bias_;  ///< positions in the registry
  Array<T>* running_mean_;
  Array<T>* running_var_;
};

/// BatchNorm over (N, C) or (N, C, L) inputs.
template <class T = float>
class BatchNorm1d : public BatchNorm<T> {
 public:
  /// Over `features` features.
  explicit BatchNorm1d(std::size_t features, double eps = 1e-5, double momentum = 0.1)
      : BatchNorm<T>(features, 2, eps, momentum) {}
};

/// BatchNorm over (N, C, H, W) inputs.
template <class T = float>
class BatchNorm2d : public BatchNorm<T> {
 public:
  /// Over `channels` channels.
  explicit BatchNorm2d(std::size_t channels, double eps = 1e-5, double momentum = 0.1)
      : BatchNorm<T>(channels, 4, eps, momentum) {}
};

/// Layer normalisation: each sample normalised over its last axes (those of `shape`), then
/// scaled and shifted per element: (x − mean) / sqrt(var + eps)·weight + bias, with the biased
/// variance (as PyTorch's LayerNorm), computed by the one op ad::layer_norm. Without `affine`, no
/// weight and bias.
template <class T = float>
class LayerNorm : public Module<T> {
 public:
  /// Over trailing axes of `shape` (for example {features}, or {C, H, W}).
  explicit LayerNorm(Shape shape, double eps = 1e-5, bool affine = true);
  /// The layer applied to x, whose last axes must be `shape`.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  Shape shape_;
  double eps_;
  bool affine_;
  std::size_t weight_ = 0, bias_ = 0;  ///< positions in the registry
};

/// Group normalisation of (N, C, ...) inputs: the C channels in `groups` groups, each sample's
/// group normalised over its channels and positions, then a weight and bias per channel.
template <class T = float>
class GroupNorm : public Module<T> {
 public:
  /// `channels` in `groups` groups (groups must divide channels).
  GroupNorm(std::size_t groups, std::size_t channels, double eps = 1e-5, bool affine = true);
  /// The layer applied to x of shape (N, channels, ...).
  Variable<T> forward(const Variable<T>& x) override;

 private:
  std::size_t groups_, channels_;
  double eps_;
  bool affine_;
  std::size_t weight_ = 0, bias_ = 0;
};

/// A table of `count` vectors of size `dim`, initialised from N(0, 1). Its input holds integer
/// indices (as T values); the output appends an axis of size dim.
template <class T = float>
class Embedding : public Module<T> {
 public:
  /// A table of `count` rows of `dim`, from `rng`.
  Embedding(std::size_t count, std::size_t dim, Generator& rng);
  /// The rows at `indices` given as T values (whole numbers in [0, count)).
  Variable<T> forward(const Variable<T>& indices) override;
  /// The rows at `indices`, shaped (indices' shape..., dim).
  Variable<T> forward(const Index& indices);
  /// The weight.
  Variable<T>& weight() { return this->parameter(weight_); }

 private:
  std::size_t weight_;  ///< position in the registry
};

/// max(x, 0).
template <class T = float>
class ReLU : public Module<T> {
 public:
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;
};

/// x for x > 0, slope·x otherwise.
template <class T = float>
class LeakyReLU : public Module<T> {
 public:
  /// With the slope below 0.
  explicit LeakyReLU(double slope = 0.01) : slope_(slope) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  double slope_;
};

/// The hyperbolic tangent.
template <class T = float>
class Tanh : public Module<T> {
 public:
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;
};

/// The logistic sigmoid.
template <class T = float>
class Sigmoid : public Module<T> {
 public:
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;
};

/// GELU (ad::gelu): exact, x·Φ(x) = x/2·(1 + erf(x/√2)), or its tanh approximation.
template <class T = float>
class GELU : public Module<T> {
 public:
  /// The exact form by default; Gelu::tanh is PyTorch's GELU(approximate="tanh").
  explicit GELU(Gelu form = Gelu::erf) : form_(form) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  Gelu form_;
};

/// Softmax along an axis (the last by default).
template <class T = float>
class Softmax : public Module<T> {
 public:
  /// Along `axis`.
  explicit Softmax(long axis = -1) : axis_(axis) {}
  /// The layer applied to x.
  Variable<T> forward(const Variable<T>& x) override;

 private:
  long axis_;
};

}  // namespace ad::nn
