// Benchmarks of the tape: per-op overhead, a dense layer beside plain sgemm, and the cost of the
// gradient relative to the forward pass. Run through bench/run, which prints the ratios.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <random>

#include "autodiff/autodiff.hpp"

namespace {

using F = ad::Variable<float>;

ad::Array<float> random_array(const ad::Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.1f);
  ad::Array<float> a = ad::Array<float>::from_shape(shape);
  for (auto& x : a) x = n(rng);
  return a;
}

// --- Per-op overhead: forward + backward of a chain of small ops on a 4-element tensor.

constexpr int kChainSteps = 25;  // each step is 4 ops: mul, add, tanh, mul
constexpr int kChainOps = 4 * kChainSteps + 1;

void chain_of_small_ops(benchmark::State& state) {
  F x(ad::Array<float>{0.1f, 0.2f, 0.3f, 0.4f}, true);
  F c(ad::Array<float>{0.9f, 1.1f, 0.8f, 1.2f});
  for (auto _ : state) {
    F y = x;
    for (int i = 0; i < kChainSteps; ++i) y = ad::tanh(y * c + x) * c;
    F loss = ad::sum(y);
    loss.backward();
    x.zero_grad();
    benchmark::DoNotOptimize(loss);
  }
  state.counters["s_per_op"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kChainOps,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_of_small_ops);

// --- The same chain's forward, recorded by ad::trace (one trace, fixed shapes): what a trace
// costs per op when it records. (When none records, an op pays one thread-local test: the chain
// above.)

void chain_of_small_ops_traced(benchmark::State& state) {
  F x(ad::Array<float>{0.1f, 0.2f, 0.3f, 0.4f}, true);
  F c(ad::Array<float>{0.9f, 1.1f, 0.8f, 1.2f});
  ad::TraceOptions<float> options;
  options.dynamic_batch = false;
  const std::function<F(const F&)> chain = [&](const F& in) {
    F y = in;
    for (int i = 0; i < kChainSteps; ++i) y = ad::tanh(y * c + in) * c;
    return ad::sum(y);
  };
  for (auto _ : state) {
    ad::Program<float> program = ad::trace<float>(chain, x, options);
    benchmark::DoNotOptimize(program.nodes.data());
  }
  state.counters["s_per_op"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kChainOps,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_of_small_ops_traced);

// --- relu(x·W + b) at x 100x784, W 784x256, with W and b requiring grad (x is data).

constexpr std::size_t kBatch = 100, kIn = 784, kOut = 256;
constexpr double kGemmFlop = 2.0 * kBatch * kIn * kOut;

struct Layer {
  F x{random_array({kBatch, kIn}, 1)};
  F w{random_array({kOut, kIn}, 2), true};  // (out, in): y = x·Wᵀ + b
  F b{random_array({kOut}, 3), true};
  F loss() const { return ad::sum(ad::relu(ad::linear(x, w, b))); }
};

void layer_forward(benchmark::State& state) {
  Layer l;
  for (auto _ : state) benchmark::DoNotOptimize(l.loss());
  state.counters["GFLOPs"] =
      benchmark::Counter(kGemmFlop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(layer_forward);

void layer_forward_backward(benchmark::State& state) {
  Layer l;
  for (auto _ : state) {
    l.loss().backward();
    l.w.zero_grad();
    l.b.zero_grad();
  }
  // forward GEMM + the weight-gradient GEMM (x needs no gradient)
  state.counters["GFLOPs"] =
      benchmark::Counter(2 * kGemmFlop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(layer_forward_backward);

// The same layer written as matmul + add + relu with W stored (in, out), as x·W + b.
void layer_composite_forward_backward(benchmark::State& state) {
  F x(random_array({kBatch, kIn}, 1));
  F w(random_array({kIn, kOut}, 2), true);
  F b(random_array({kOut}, 3), true);
  for (auto _ : state) {
    ad::sum(ad::relu(ad::matmul(x, w) + b)).backward();
    w.zero_grad();
    b.zero_grad();
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(2 * kGemmFlop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(layer_composite_forward_backward);

// Plain OpenBLAS for the same two products: y = x·Wᵀ and dW = gᵀ·x.
void sgemm_same_shapes(benchmark::State& state) {
  ad::Array<float> x = random_array({kBatch, kIn}, 1), w = random_array({kOut, kIn}, 2);
  ad::Array<float> y = ad::Array<float>::from_shape({kBatch, kOut});
  ad::Array<float> dw = ad::Array<float>::from_shape({kOut, kIn});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kBatch, kOut, kIn, 1.0f, x.data(), kIn,
                w.data(), kIn, 0.0f, y.data(), kOut);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kOut, kIn, kBatch, 1.0f, y.data(), kOut,
                x.data(), kIn, 0.0f, dw.data(), kIn);
    benchmark::DoNotOptimize(dw.data());
  }
  state.counters["GFLOPs"] =
      benchmark::Counter(2 * kGemmFlop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(sgemm_same_shapes);

// --- Gradient cost of a 1000-element elementwise composite.

F composite(const F& x) {
  return ad::sum(ad::tanh(x) * ad::sigmoid(x) + ad::exp(-(x * x)) * 0.5f);
}

void composite_forward(benchmark::State& state) {
  F x(random_array({1000}, 4), true);
  for (auto _ : state) benchmark::DoNotOptimize(composite(x));
}
BENCHMARK(composite_forward);

void composite_forward_backward(benchmark::State& state) {
  F x(random_array({1000}, 4), true);
  for (auto _ : state) {
    composite(x).backward();
    x.zero_grad();
  }
}
BENCHMARK(composite_forward_backward);

}  // namespace
