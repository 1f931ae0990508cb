// The models of the fashion_mnist example and the tiny MLP, shared with the benchmarks
// (bench/bench_nn.cpp, and bench/workloads.cpp that compares them with LibTorch, PyTorch and JAX).
#pragma once

#include "nn/layers.hpp"

namespace examples {

/// 784-256-128-10 with ReLU.
inline std::shared_ptr<ad::nn::Sequential<float>> make_mlp(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(784, 256, rng), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::Linear<float>>(256, 128, rng), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::Linear<float>>(128, 10, rng));
}

/// Two conv+pool blocks (32 and 64 channels, 3×3, padding 1, 2×2 max pooling), then 3136-128-10.
inline std::shared_ptr<ad::nn::Sequential<float>> make_cnn(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Conv2d<float>>(1, 32, 3, rng, 1, 1), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::MaxPool2d<float>>(2),
      std::make_shared<nn::Conv2d<float>>(32, 64, 3, rng, 1, 1),
      std::make_shared<nn::ReLU<float>>(), std::make_shared<nn::MaxPool2d<float>>(2),
      std::make_shared<nn::Flatten<float>>(),
      std::make_shared<nn::Linear<float>>(64 * 7 * 7, 128, rng),
      std::make_shared<nn::ReLU<float>>(), std::make_shared<nn::Linear<float>>(128, 10, rng));
}

/// The tiny MLP 2-16-16-1 with tanh of ../shared/anchors/libtorch_mlp/tiny.cpp: all per-op cost.
inline std::shared_ptr<ad::nn::Sequential<float>> make_tiny_mlp(ad::nn::Generator& rng) {
  namespace nn = ad::nn;
  return std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(2, 16, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(16, 16, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(16, 1, rng));
}

}  // namespace examples
