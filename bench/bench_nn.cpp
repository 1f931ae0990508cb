// Benchmarks of training steps: the MLP 784-256-128-10 at batch 100 broken into forward, backward
// and optimizer, and the tiny MLP 2-16-16-1 (tanh, batch 8, MSE, SGD) whose step is all per-op
// overhead. bench/run prints the figures, with LibTorch's tiny MLP beside when it is installed.
#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

namespace {

using F = ad::Variable<float>;
namespace nn = ad::nn;

ad::Array<float> random_array(const ad::Shape& shape, std::uint64_t seed, double std = 1.0) {
  nn::Generator rng(seed);
  ad::Array<float> a = ad::Array<float>::from_shape(shape);
  nn::init::normal(a, 0.0, std, rng);
  return a;
}

struct Mlp {
  nn::Generator rng{0};
  nn::Sequential<float> model{
      std::make_shared<nn::Linear<float>>(784, 256, rng), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::Linear<float>>(256, 128, rng), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::Linear<float>>(128, 10, rng)};
  nn::SGD<float> opt{model.parameters(), [] {
                       nn::SGDOptions o;
                       o.lr = 0.1, o.momentum = 0.9;
                       return o;
                     }()};
  F x{random_array({100, 784}, 1, 0.3)};
  std::vector<std::size_t> labels = [] {
    std::vector<std::size_t> l(100);
    for (std::size_t i = 0; i < 100; ++i) l[i] = i % 10;
    return l;
  }();
  F loss() { return nn::cross_entropy(model(x), labels); }
};

// 1.41 MFLOP per sample for forward and backward (the three layers' GEMMs), as the anchors count.
constexpr double kMlpFlopPerStep = 100 * 1.41e6;

void mlp_forward(benchmark::State& state) {
  Mlp m;
  for (auto _ : state) benchmark::DoNotOptimize(m.loss());
}
BENCHMARK(mlp_forward);

void mlp_forward_backward(benchmark::State& state) {
  Mlp m;
  for (auto _ : state) {
    m.opt.zero_grad();
    m.loss().backward();
  }
}
BENCHMARK(mlp_forward_backward);

void mlp_step(benchmark::State& state) {
  Mlp m;
  for (auto _ : state) {
    m.opt.zero_grad();
    m.loss().backward();
    m.opt.step();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(kMlpFlopPerStep * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(mlp_step);

void mlp_optimizer_only(benchmark::State& state) {
  Mlp m;
  m.loss().backward();
  for (auto _ : state) m.opt.step();
}
BENCHMARK(mlp_optimizer_only);

// --- The fashion_mnist example's CNN at batch 100.

struct Cnn {
  nn::Generator rng{0};
  nn::Sequential<float> model{std::make_shared<nn::Conv2d<float>>(1, 32, 3, rng, 1, 1),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::MaxPool2d<float>>(2),
                              std::make_shared<nn::Conv2d<float>>(32, 64, 3, rng, 1, 1),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::MaxPool2d<float>>(2),
                              std::make_shared<nn::Flatten<float>>(),
                              std::make_shared<nn::Linear<float>>(64 * 7 * 7, 128, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(128, 10, rng)};
  nn::SGD<float> opt{model.parameters(), [] {
                       nn::SGDOptions o;
                       o.lr = 0.05, o.momentum = 0.9;
                       return o;
                     }()};
  F x{random_array({100, 1, 28, 28}, 3, 0.3)};
  std::vector<std::size_t> labels = Mlp().labels;
  F loss() { return nn::cross_entropy(model(x), labels); }
};

void cnn_forward(benchmark::State& state) {
  Cnn m;
  for (auto _ : state) benchmark::DoNotOptimize(m.loss());
}
BENCHMARK(cnn_forward)->Unit(benchmark::kMillisecond);

void cnn_step(benchmark::State& state) {
  Cnn m;
  for (auto _ : state) {
    m.opt.zero_grad();
    m.loss().backward();
    m.opt.step();
  }
}
BENCHMARK(cnn_step)->Unit(benchmark::kMillisecond);

// --- The tiny MLP of ../shared/anchors/libtorch_mlp/tiny.cpp.

void tiny_mlp_step(benchmark::State& state) {
  nn::Generator rng(0);
  nn::Sequential<float> model(
      std::make_shared<nn::Linear<float>>(2, 16, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(16, 16, rng), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(16, 1, rng));
  nn::SGD<float> opt(model.parameters(), {0.05});
  F x(random_array({8, 2}, 1)), y(random_array({8, 1}, 2));
  for (auto _ : state) {
    opt.zero_grad();
    F loss = nn::mse_loss(model(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss);
  }
}
BENCHMARK(tiny_mlp_step);

}  // namespace
