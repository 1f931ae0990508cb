// Benchmarks of training steps on the models of examples/models.hpp: the MLP 784-256-128-10 at
// batch 100 broken into forward, backward and optimizer, the fashion_mnist example's CNN, and the
// tiny MLP 2-16-16-1 (tanh, batch 8, MSE, SGD) whose step is all per-op overhead. bench/run prints
// the figures, with LibTorch's tiny MLP beside when it is installed; and a shuffled loader's
// batches of Fashion-MNIST-sized data.
#include <benchmark/benchmark.h>

#include "autodiff/autodiff.hpp"
#include "examples/models.hpp"
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

/// A model of examples/models.hpp with SGD (momentum 0.9) on a fixed random batch of 100 with
/// labels 0..9 in turn.
struct Trained {
  Trained(std::shared_ptr<nn::Sequential<float>> m, double lr, const ad::Shape& input,
          std::uint64_t seed)
      : model(std::move(m)),
        opt(model->parameters(), options(lr)),
        x(random_array(input, seed, 0.3)) {
    for (std::size_t i = 0; i < 100; ++i) labels.push_back(i % 10);
  }
  static nn::SGDOptions options(double lr) {
    nn::SGDOptions o;
    o.lr = lr, o.momentum = 0.9;
    return o;
  }
  F loss() { return nn::cross_entropy(model->forward(x), labels); }

  std::shared_ptr<nn::Sequential<float>> model;
  nn::SGD<float> opt;
  F x;
  std::vector<std::size_t> labels;
};

Trained trained_mlp() {
  nn::Generator rng(0);
  return Trained(examples::make_mlp(rng), 0.1, {100, 784}, 1);
}

// 1.41 MFLOP per sample for forward and backward (the three layers' GEMMs), as the anchors count.
constexpr double kMlpFlopPerStep = 100 * 1.41e6;

void mlp_forward(benchmark::State& state) {
  Trained m = trained_mlp();
  for (auto _ : state) benchmark::DoNotOptimize(m.loss());
}
BENCHMARK(mlp_forward);

void mlp_forward_backward(benchmark::State& state) {
  Trained m = trained_mlp();
  for (auto _ : state) {
    m.opt.zero_grad();
    m.loss().backward();
  }
}
BENCHMARK(mlp_forward_backward);

void mlp_step(benchmark::State& state) {
  Trained m = trained_mlp();
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
  Trained m = trained_mlp();
  m.loss().backward();
  for (auto _ : state) m.opt.step();
}
BENCHMARK(mlp_optimizer_only);

/// The same over flat parameter and gradient buffers: SGD updates them in one pass.
struct TrainedFlat : Trained {
  TrainedFlat() : Trained(trained_mlp()), flat_opt(model->flatten_parameters(), options(0.1)) {}
  nn::SGD<float> flat_opt;
};

void mlp_step_flat(benchmark::State& state) {
  TrainedFlat m;
  for (auto _ : state) {
    m.flat_opt.zero_grad();
    m.loss().backward();
    m.flat_opt.step();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(kMlpFlopPerStep * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(mlp_step_flat);

void mlp_optimizer_only_flat(benchmark::State& state) {
  TrainedFlat m;
  m.loss().backward();
  for (auto _ : state) m.flat_opt.step();
}
BENCHMARK(mlp_optimizer_only_flat);

// --- The fashion_mnist example's CNN at batch 100.

Trained trained_cnn() {
  nn::Generator rng(0);
  return Trained(examples::make_cnn(rng), 0.05, {100, 1, 28, 28}, 3);
}

void cnn_forward(benchmark::State& state) {
  Trained m = trained_cnn();
  for (auto _ : state) benchmark::DoNotOptimize(m.loss());
}
BENCHMARK(cnn_forward)->Unit(benchmark::kMillisecond);

void cnn_step(benchmark::State& state) {
  Trained m = trained_cnn();
  for (auto _ : state) {
    m.opt.zero_grad();
    m.loss().backward();
    m.opt.step();
  }
}
BENCHMARK(cnn_step)->Unit(benchmark::kMillisecond);

// --- A batch of a shuffled loader over a dataset the size of Fashion-MNIST's training set (60,000
// images of 28×28 bytes, 47 MB: more than the caches hold), as an epoch of the MLP makes them.

void loader_batch(benchmark::State& state) {
  const std::size_t n = 60000, batch = static_cast<std::size_t>(state.range(0));
  ad::Array<std::uint8_t> images = ad::Array<std::uint8_t>::from_shape({n, 28, 28});
  nn::Generator rng(3);
  for (auto& v : images) v = static_cast<std::uint8_t>(rng() & 0xff);
  ad::Array<float> labels = ad::Array<float>::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) labels(i) = float(i % 10);
  auto data =
      std::make_shared<nn::Dataset<std::uint8_t>>(std::move(images), std::move(labels), 1.0 / 255);
  nn::LoaderOptions o;
  o.batch_size = batch;
  nn::DataLoader<float> loader(data, o);
  const std::vector<std::size_t> order = loader.order(0);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(loader.batch(order, i, 0));
    i = (i + 1) % loader.batches();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch * 28 * 28));
}
BENCHMARK(loader_batch)->Arg(100)->Arg(1000);

// The MLP's loss alone: cross-entropy of a batch of 100 × 10 logits against float labels (as the
// loader gives them), forward and backward.
void cross_entropy_step(benchmark::State& state) {
  F logits(random_array({100, 10}, 4), true);
  ad::Array<float> labels = ad::Array<float>::from_shape({100});
  for (std::size_t i = 0; i < 100; ++i) labels(i) = float(i % 10);
  F targets(labels);
  for (auto _ : state) {
    logits.zero_grad();
    F loss = nn::cross_entropy(logits, targets);
    loss.backward();
    benchmark::DoNotOptimize(loss);
  }
}
BENCHMARK(cross_entropy_step);

// --- The tiny MLP 2-16-16-1 (as in bench/references/libtorch/workloads.cpp).

void tiny_mlp_step(benchmark::State& state) {
  nn::Generator rng(0);
  auto model = examples::make_tiny_mlp(rng);
  nn::SGD<float> opt(model->parameters(), {0.05});
  F x(random_array({8, 2}, 1)), y(random_array({8, 1}, 2));
  for (auto _ : state) {
    opt.zero_grad();
    F loss = nn::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss);
  }
}
BENCHMARK(tiny_mlp_step);

}  // namespace
