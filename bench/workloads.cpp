// The comparison workloads, on this library; bench/references/ holds the same workloads for
// LibTorch, PyTorch and JAX, and bench/compare runs them side by side. Each run prints one
// "result" line of key=value pairs.
//
//   workloads mlp EPOCHS BATCH THREADS   MLP 784-256-128-10, SGD(0.1, momentum 0.9), Fashion-MNIST
//   workloads cnn EPOCHS BATCH THREADS   the fashion_mnist example's CNN, same optimizer
//   workloads tiny STEPS THREADS         MLP 2-16-16-1 (tanh), batch 8, MSE, SGD(0.05)
//   workloads gradcheck                  full and fast gradcheck of a 1,000-parameter function
//   workloads sgemm THREADS              plain sgemm (the library's: oneDNN or OpenBLAS) on the
//                                        MLP's and the CNN's products (the CNN's convolutions as
//                                        im2col products): the limits, also of each pass alone
//                                        and with each product's own operands
//   workloads lstm STEPS THREADS         char_lm's LSTM on random text, batch 64 × 64 bytes, Adam
//   workloads transformer SEQ STEPS THREADS
//                                        char_lm's transformer (2 blocks, width 128, 4 heads) at
//                                        sequence SEQ, 4,096 tokens a step: median step, peaks
//   workloads attention SEQ THREADS      causal attention alone at sequence SEQ, forward and
//                                        backward: peak bytes and time of the op and of the
//                                        composite it replaces
//   workloads recompute STEPS SEGMENT    a deep MLP (32 tanh layers of 256, batch 1024): peak bytes
//                                        of the arrays and step time, with checkpoint() every
//                                        SEGMENT layers (0: none)
//
// mlp and cnn report the fastest epoch and where its time went (loader_s, forward_s, backward_s,
// optimizer_s), to set beside the limits of the forward and backward passes.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "examples/models.hpp"
#include "nn/gradcheck.hpp"
#include "nn/nn.hpp"

namespace nn = ad::nn;
using F = ad::Variable<float>;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Peak resident memory of the whole process so far.
double peak_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

/// Where an epoch's time went: making the batches (and letting the last step's go), the forward
/// pass (to the loss), the backward pass, and the optimizer (zero_grad and step).
struct Phases {
  double loader = 0, forward = 0, backward = 0, optimizer = 0;
};

/// Trains for `epochs` epochs, timing each (data already in memory), then reports the fastest
/// epoch and where its time went, the test accuracy and the peak memory.
int train(const std::string& which, int epochs, std::size_t batch, int threads) {
  ad::set_num_threads(threads);
  const bool images = which == "cnn";
  auto train_split = nn::datasets::load_mnist(nn::datasets::fashion_mnist_dir, true);
  auto test_split = nn::datasets::load_mnist(nn::datasets::fashion_mnist_dir, false);
  auto train_data = nn::datasets::mnist_dataset(train_split, images);
  auto test_data = nn::datasets::mnist_dataset(test_split, images);
  train_split = {};
  test_split = {};
  nn::LoaderOptions lo;
  lo.batch_size = batch;
  nn::DataLoader<float> loader(train_data, lo);
  lo.shuffle = false;
  lo.batch_size = 1000;
  nn::DataLoader<float> test(test_data, lo);
  nn::Generator rng(0);
  std::shared_ptr<nn::Module<float>> model =
      images ? examples::make_cnn(rng) : examples::make_mlp(rng);
  nn::SGDOptions so;
  so.lr = 0.1, so.momentum = 0.9;
  if (images) so.lr = 0.05;
  nn::SGD<float> opt(model->parameters(), so);
  double best = 1e30;
  Phases best_phases;
  for (int e = 0; e < epochs; ++e) {
    Phases p;
    const auto t0 = Clock::now();
    auto t = t0;
    auto lap = [&t](double& into) {  // adds the time since the last lap to `into`
      const auto now = Clock::now();
      into += std::chrono::duration<double>(now - t).count();
      t = now;
    };
    for (const auto& b : loader.epoch(static_cast<std::size_t>(e))) {
      lap(p.loader);
      opt.zero_grad();
      lap(p.optimizer);
      F loss = nn::cross_entropy(model->forward(b.inputs), b.targets);
      lap(p.forward);
      loss.backward();
      lap(p.backward);
      opt.step();
      lap(p.optimizer);
    }
    const double s = seconds_since(t0);
    if (s < best) {
      best = s;
      best_phases = p;
    }
  }
  ad::NoGradGuard no_grad;
  model->eval();
  std::size_t correct = 0;
  for (const auto& b : test.epoch(0)) {
    auto predicted = nn::argmax_rows(model->forward(b.inputs).value());
    for (std::size_t i = 0; i < predicted.size(); ++i)
      correct += predicted[i] == static_cast<std::size_t>(b.targets.value()(i));
  }
  const Phases& p = best_phases;
  std::printf(
      "result workload=%s batch=%zu threads=%d epoch_s=%.4f peak_mib=%.1f test_acc=%.4f "
      "loader_s=%.4f forward_s=%.4f backward_s=%.4f optimizer_s=%.4f\n",
      which.c_str(), batch, threads, best, peak_mib(), double(correct) / test.samples(), p.loader,
      p.forward, p.backward, p.optimizer);
  return 0;
}

int tiny(long steps, int threads) {
  ad::set_num_threads(threads);
  nn::Generator rng(0);
  auto model = examples::make_tiny_mlp(rng);
  nn::SGD<float> opt(model->parameters(), {0.05});
  ad::Array<float> xa = xt::zeros<float>({8, 2}), ya = xt::zeros<float>({8, 1});
  nn::init::normal(xa, 0, 1, rng);
  nn::init::normal(ya, 0, 1, rng);
  F x(xa), y(ya), loss;
  const auto t0 = Clock::now();
  for (long i = 0; i < steps; ++i) {
    opt.zero_grad();
    loss = nn::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
  }
  std::printf("result workload=tiny threads=%d us_per_step=%.3f loss=%.5f\n", threads,
              seconds_since(t0) / steps * 1e6, loss.item());
  return 0;
}

/// The sequence models of the char_lm example on fixed random text (vocabulary 108, as the
/// fortunes'): the LSTM (embedding 64, hidden 128, batch 64, sequence 64), or the transformer
/// (width 128, 4 heads, 2 blocks) at sequence `seq` with batch 4096/seq, so that every step sees
/// 4,096 tokens. Adam (lr 2e-3), cross-entropy of every position's next byte. `steps` steps after
/// 3 warm-up ones: the median step, and the peak bytes of the library's arrays in a step.
int sequence(const std::string& which, std::size_t seq, long steps, int threads) {
  if (steps < 1) throw std::invalid_argument(which + ": STEPS must be at least 1");
  if (seq < 1 || seq > 4096) throw std::invalid_argument(which + ": SEQ must be in [1, 4096]");
  ad::set_num_threads(threads);
  const std::size_t vocab = 108, batch = std::max<std::size_t>(1, 4096 / seq);
  nn::Generator rng(0);
  std::shared_ptr<nn::Module<float>> model;
  if (which == "lstm")
    model = std::make_shared<examples::LstmModel>(vocab, 64, 128, 1, rng);
  else
    model = std::make_shared<examples::TransformerModel>(vocab, 128, 4, 2, seq, rng);
  nn::AdamOptions ao;
  ao.lr = 2e-3;
  nn::Adam<float> opt(model->parameters(), ao);
  // Token ids (as floats, as the embedding takes them) and the next token of each position.
  ad::Array<float> ids = ad::Array<float>::from_shape({batch, seq});
  ad::Array<float> next = ad::Array<float>::from_shape({batch * seq});
  std::uniform_int_distribution<int> token(0, int(vocab) - 1);
  for (std::size_t b = 0; b < batch; ++b) {
    int t = token(rng);
    for (std::size_t i = 0; i < seq; ++i) {
      ids(b, i) = float(t);
      next(b * seq + i) = float(t = token(rng));
    }
  }
  const F x(ids), y(next);
  std::vector<double> times;
  std::size_t peak = 0;
  double loss = 0;
  for (long s = 0; s < steps + 3; ++s) {
    ad::memory::reset_peak_memory();
    const std::size_t before = ad::memory::memory_stats().in_use;
    const auto t0 = Clock::now();
    opt.zero_grad();
    F l = nn::cross_entropy(model->forward(x), y);
    l.backward();
    opt.step();
    if (s < 3) continue;
    times.push_back(seconds_since(t0));
    peak = std::max(peak, ad::memory::memory_stats().peak - before);
    loss = l.item();
  }
  std::sort(times.begin(), times.end());
  std::printf(
      "result workload=%s seq=%zu batch=%zu threads=%d step_ms=%.3f arrays_peak_mib=%.1f "
      "peak_mib=%.1f loss=%.4f\n",
      which.c_str(), seq, batch, threads, times[times.size() / 2] * 1e3, peak / 1048576.0,
      peak_mib(), loss);
  return 0;
}

/// Causal self-attention alone, forward and backward, at sequence `seq` (batch 1, width 128, 4
/// heads): the peak bytes of the library's arrays and the time, for the op
/// scaled_dot_product_attention and for the composite it replaces (softmax of the scores, then
/// the product with v: the (L, L) scores of every head in memory).
int attention(std::size_t seq, int threads) {
  ad::set_num_threads(threads);
  const std::size_t d = 128, heads = 4, w = d / heads;
  nn::Generator rng(0);
  auto input = [&] {
    ad::Array<float> a = ad::Array<float>::from_shape({1, seq, d});
    nn::init::normal(a, 0, 1, rng);
    return F(std::move(a), true);
  };
  const F q = input(), k = input(), v = input();
  ad::AttentionOptions o;
  o.causal = true;
  o.heads = heads;
  auto composite = [&] {
    const F p = ad::reshape(ad::attention_weights(q, k, o), ad::Shape{heads, seq, seq});
    const F vh = ad::reshape(ad::permute(ad::reshape(v, ad::Shape{seq, heads, w}), {1, 0, 2}),
                             ad::Shape{heads, seq, w});
    return ad::reshape(ad::permute(ad::matmul(p, vh), {1, 0, 2}), ad::Shape{1, seq, d});
  };
  for (const char* which : {"op", "composite"}) {
    const bool op = which[0] == 'o';
    ad::memory::reset_peak_memory();
    const std::size_t before = ad::memory::memory_stats().in_use;
    const auto t0 = Clock::now();
    {
      const F out = op ? ad::scaled_dot_product_attention(q, k, v, o) : composite();
      ad::grad(ad::sum(out), {q, k, v});
    }
    const double s = seconds_since(t0);
    std::printf("result workload=attention seq=%zu threads=%d which=%s ms=%.2f peak_mib=%.1f\n",
                seq, threads, which, s * 1e3,
                (ad::memory::memory_stats().peak - before) / 1048576.0);
  }
  return 0;
}

/// tanh(x·W) with W (100, 10): 1,000 parameters, 10 outputs, checked in double.
int gradcheck() {
  nn::Generator rng(0);
  ad::Array<double> xa = xt::zeros<double>({1, 100}), wa = xt::zeros<double>({100, 10});
  nn::init::normal(xa, 0, 1, rng);
  nn::init::normal(wa, 0, 0.1, rng);
  ad::Variable<double> x(xa), w(wa, true);
  auto f = [&x](const auto& w) { return ad::tanh(ad::matmul(x, w)); };
  ad::GradcheckOptions full;
  full.check_backward = false;
  ad::GradcheckOptions fast = full;
  fast.fast = true;
  auto t0 = Clock::now();
  const bool ok_full = ad::gradcheck(f, {w}, full).passed;
  const double full_s = seconds_since(t0);
  t0 = Clock::now();
  const bool ok_fast = ad::gradcheck(f, {w}, fast).passed;
  const double fast_s = seconds_since(t0);
  std::printf("result workload=gradcheck full_ms=%.3f fast_ms=%.3f passed=%d\n", full_s * 1e3,
              fast_s * 1e3, int(ok_full && ok_fast));
  return 0;
}

/// The cost of the gradient checker's localisation on the example models, in double: the
/// char_lm transformer (vocabulary 96, width 128, 4 heads, 2 blocks, sequence 64) or the
/// fashion_mnist CNN, at batch `batch`, every op checked alone (localise = true; the whole check
/// in fast mode).
int localise(const std::string& which, std::size_t batch) {
  nn::Generator rng(0);
  std::shared_ptr<nn::Module<double>> model;
  ad::Array<double> x;
  if (which == "transformer") {
    model = std::make_shared<examples::TransformerModelOf<double>>(96, 128, 4, 2, 64, rng);
    x = ad::Array<double>::from_shape({batch, 64});
    for (auto& v : x) v = static_cast<double>(rng() % 96);
  } else if (which == "cnn") {
    model = examples::make_cnn<double>(rng);
    x = ad::Array<double>::from_shape({batch, 1, 28, 28});
    nn::init::normal(x, 0, 1, rng);
  } else {
    throw std::invalid_argument("localise: the model is transformer or cnn, not '" + which + "'");
  }
  ad::GradcheckOptions o;
  o.fast = true;
  o.check_backward = false;
  o.localise = true;
  const auto t0 = Clock::now();
  const ad::GradcheckReport r = nn::gradcheck_module(*model, ad::Variable<double>(x), o);
  const double s = seconds_since(t0);
  std::printf(
      "result workload=localise model=%s batch=%zu seconds=%.2f ops=%zu checked=%zu kinks=%zu "
      "passed=%d found=%d\n",
      which.c_str(), batch, s, r.localisation.nodes, r.localisation.checked, r.localisation.kinks,
      int(r.passed), int(r.localisation.found));
  return r.passed && !r.localisation.found ? 0 : 1;
}

/// One product C (m×n) = op(A) (m×k) · op(B) (k×n), row-major, as a layer's step makes it, in
/// the forward pass or in the backward.
struct Product {
  int m, n, k;
  bool trans_a, trans_b;
  bool forward;
};

/// Times plain sgemm over `products` (one step), repeated: seconds per step, the best of five
/// blocks of `reps` steps (as a workload's epoch time is the best of its epochs: a moment of
/// others' load on the machine moves the limit no more than it moves the epoch). The products
/// share three buffers (the limit: operands as warm in the caches as they can be), or with
/// `distinct` each has its own operands and result, as in a training step.
double time_products(const std::vector<Product>& products, int reps, bool distinct = false) {
  struct Operands {
    std::vector<float> a, b, c;
  };
  std::vector<Operands> buffers(distinct ? products.size() : 1);
  for (std::size_t i = 0; i < products.size(); ++i) {
    const Product& p = products[i];
    Operands& o = buffers[distinct ? i : 0];
    o.a.resize(std::max(o.a.size(), std::size_t(p.m) * p.k), 0.5f);
    o.b.resize(std::max(o.b.size(), std::size_t(p.k) * p.n), 0.25f);
    o.c.resize(std::max(o.c.size(), std::size_t(p.m) * p.n));
  }
  auto step = [&] {
    for (std::size_t i = 0; i < products.size(); ++i) {
      const Product& p = products[i];
      Operands& o = buffers[distinct ? i : 0];
      ad::kernels::gemm(p.trans_a, p.trans_b, p.m, p.n, p.k, 1.0f, o.a.data(),
                        p.trans_a ? p.m : p.k, o.b.data(), p.trans_b ? p.k : p.n, 0.0f, o.c.data(),
                        p.n);
    }
  };
  step();
  double best = 1e30;
  for (int block = 0; block < 5; ++block) {
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) step();
    best = std::min(best, seconds_since(t0) / reps);
  }
  return best;
}

double flops(const std::vector<Product>& products) {
  double f = 0;
  for (const auto& p : products) f += 2.0 * p.m * p.n * p.k;
  return f;
}

/// The products of a linear layer (in → out) at batch B: y = x·Wᵀ, dW = gᵀ·x and, unless it is
/// the first layer, dx = g·W.
void linear_products(std::vector<Product>& ps, int batch, int in, int out, bool first) {
  ps.push_back({batch, out, in, false, true, true});
  ps.push_back({out, in, batch, true, false, false});
  if (!first) ps.push_back({batch, in, out, false, false, false});
}

/// A 3×3 same convolution (c_in → c_out on h×w images) in the im2col form at batch B: the
/// output over all positions = cols (B·h·w × 9·c_in) · W, dW = colsᵀ · g, and, unless it is the
/// first layer, dcols = g · Wᵀ.
void conv_products(std::vector<Product>& ps, int batch, int c_in, int c_out, int hw, bool first) {
  const int positions = batch * hw, k = 9 * c_in;
  ps.push_back({positions, c_out, k, false, false, true});
  ps.push_back({k, c_out, positions, true, false, false});
  if (!first) ps.push_back({positions, k, c_out, false, true, false});
}

/// The products of one pass: the forward's, or the backward's.
std::vector<Product> pass(const std::vector<Product>& products, bool forward) {
  std::vector<Product> out;
  for (const auto& p : products)
    if (p.forward == forward) out.push_back(p);
  return out;
}

/// Prints the limit of one workload: a step's products together, then those of the forward and
/// of the backward pass alone, then the step's products each on its own operands (distinct_s),
/// each the best of its own blocks, in seconds per epoch.
void print_limit(const char* model, int batch, int threads, const std::vector<Product>& ps,
                 int reps) {
  const double per_step = time_products(ps, reps);
  const double steps = 60000 / batch;
  std::printf(
      "result workload=sgemm model=%s batch=%d threads=%d epoch_s=%.4f gflops=%.1f gemm=%s "
      "forward_s=%.4f backward_s=%.4f distinct_s=%.4f\n",
      model, batch, threads, per_step * steps, flops(ps) / per_step * 1e-9,
      ad::kernels::float_gemm_library(), time_products(pass(ps, true), reps) * steps,
      time_products(pass(ps, false), reps) * steps, time_products(ps, reps, true) * steps);
}

/// The products of a training step of the sequence workloads (see sequence()): the LSTM's input
/// projection and head as one product each, its recurrence one product per step forward and one
/// backward, its weight gradients one product each; the transformer's projections and MLP as
/// linear layers, and per head its attention's products (q·kᵀ and p·v forward, four backward).
std::vector<Product> sequence_products(const std::string& which, int seq) {
  std::vector<Product> ps;
  const int tokens = 4096, batch = tokens / seq, vocab = 108;
  if (which == "lstm") {
    const int e = 64, h = 128;
    ps.push_back({tokens, 4 * h, e, false, true, true});  // x·W_ihᵀ
    for (int t = 0; t < seq; ++t) {
      ps.push_back({batch, 4 * h, h, false, true, true});    // h·W_hhᵀ
      ps.push_back({batch, h, 4 * h, false, false, false});  // dg·W_hh
    }
    ps.push_back({4 * h, h, tokens, true, false, false});   // dW_hh
    ps.push_back({4 * h, e, tokens, true, false, false});   // dW_ih
    ps.push_back({tokens, e, 4 * h, false, false, false});  // dx
    linear_products(ps, tokens, h, vocab, false);
    return ps;
  }
  const int d = 128, heads = 4, w = d / heads;
  for (int block = 0; block < 2; ++block) {
    for (int k = 0; k < 4; ++k) linear_products(ps, tokens, d, d, false);  // q, k, v, out
    linear_products(ps, tokens, d, 4 * d, false);
    linear_products(ps, tokens, 4 * d, d, false);
    for (int p = 0; p < batch * heads; ++p) {
      ps.push_back({seq, seq, w, false, true, true});    // s = q·kᵀ
      ps.push_back({seq, w, seq, false, false, true});   // o = p·v
      ps.push_back({seq, w, seq, true, false, false});   // dv = pᵀ·do
      ps.push_back({seq, seq, w, false, true, false});   // dp = do·vᵀ
      ps.push_back({seq, w, seq, false, false, false});  // dq = ds·k
      ps.push_back({seq, w, seq, true, false, false});   // dk = dsᵀ·q
    }
  }
  linear_products(ps, tokens, d, vocab, false);
  return ps;
}

/// The limit of a sequence workload: its step's products on plain sgemm (ms per step).
void print_sequence_limit(const std::string& which, int seq, int threads) {
  const std::vector<Product> ps = sequence_products(which, seq);
  const double step = time_products(ps, 3);
  std::printf("result workload=sgemm model=%s seq=%d threads=%d step_ms=%.3f gflops=%.1f gemm=%s\n",
              which.c_str(), seq, threads, step * 1e3, flops(ps) / step * 1e-9,
              ad::kernels::float_gemm_library());
}

/// Plain sgemm (the library's: oneDNN's or OpenBLAS's, float_gemm_library()) on the products of
/// one step, repeated: the arithmetic limit of an epoch. The MLP at batches 100 and 1000; the CNN
/// at batch 100, its convolutions as im2col products.
int sgemm(int threads) {
  ad::set_num_threads(threads);
  for (int batch : {100, 1000}) {
    std::vector<Product> ps;
    linear_products(ps, batch, 784, 256, true);
    linear_products(ps, batch, 256, 128, false);
    linear_products(ps, batch, 128, 10, false);
    print_limit("mlp", batch, threads, ps, batch == 100 ? 60 : 6);
  }
  const int batch = 100;
  std::vector<Product> ps;
  conv_products(ps, batch, 1, 32, 28 * 28, true);
  conv_products(ps, batch, 32, 64, 14 * 14, false);
  linear_products(ps, batch, 64 * 7 * 7, 128, false);
  linear_products(ps, batch, 128, 10, false);
  print_limit("cnn", batch, threads, ps, 2);
  print_sequence_limit("lstm", 64, threads);
  for (int seq : {64, 256, 1024}) print_sequence_limit("transformer", seq, threads);
  return 0;
}

/// A training step of a 32-layer tanh MLP (width 256, batch 1024, MSE against zeros, plain SGD),
/// its layers checkpointed in segments of `segment` (0: none), on 1 thread: the peak bytes of the
/// library's arrays during a step and the median step time.
int recompute(int steps, int segment) {
  if (segment < 0 || segment > 32)
    throw std::invalid_argument("recompute: SEGMENT must be in [0, 32], got " +
                                std::to_string(segment));
  ad::set_num_threads(1);
  const std::size_t depth = 32, width = 256, batch = 1024;
  nn::Generator rng(7);
  std::vector<std::shared_ptr<nn::Linear<float>>> layers;
  for (std::size_t k = 0; k < depth; ++k)
    layers.push_back(std::make_shared<nn::Linear<float>>(width, width, rng));
  F x(ad::Array<float>(xt::ones<float>({batch, width}) * 0.5f));
  auto run = [&layers](F h, std::size_t from, std::size_t to) {
    for (std::size_t k = from; k < to; ++k) h = ad::tanh(layers[k]->forward(h));
    return h;
  };
  std::vector<double> times;
  std::size_t peak = 0;
  for (int s = 0; s <= steps; ++s) {
    ad::memory::reset_peak_memory();
    const std::size_t before = ad::memory::memory_stats().in_use;
    const auto t0 = Clock::now();
    F h = x;
    for (std::size_t k = 0; k < depth; k += segment ? std::size_t(segment) : depth) {
      const std::size_t to = segment ? std::min(depth, k + std::size_t(segment)) : depth;
      h = segment ? ad::checkpoint([&run, k, to](const F& in) { return run(in, k, to); }, h)
                  : run(h, k, to);
    }
    F loss = ad::mean(ad::square(h));
    loss.backward();
    ad::NoGradGuard no_grad;
    for (auto& l : layers)
      for (auto& p : l->parameters()) {
        p.mutable_value() -= 0.01f * p.grad().value();
        p.zero_grad();
      }
    if (s == 0) continue;  // warm-up
    times.push_back(seconds_since(t0));
    peak = std::max(peak, ad::memory::memory_stats().peak - before);
  }
  std::sort(times.begin(), times.end());
  std::printf("result workload=recompute segment=%d step_ms=%.2f peak_mib=%.1f\n", segment,
              times[times.size() / 2] * 1e3, peak / 1048576.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  try {
    if (mode == "mlp" || mode == "cnn")
      return train(mode, static_cast<int>(arg(2, 2)), static_cast<std::size_t>(arg(3, 100)),
                   static_cast<int>(arg(4, 1)));
    if (mode == "tiny") return tiny(arg(2, 20000), static_cast<int>(arg(3, 1)));
    if (mode == "attention")
      return attention(static_cast<std::size_t>(arg(2, 1024)), static_cast<int>(arg(3, 1)));
    if (mode == "lstm") return sequence(mode, 64, arg(2, 20), static_cast<int>(arg(3, 1)));
    if (mode == "transformer")
      return sequence(mode, static_cast<std::size_t>(arg(2, 64)), arg(3, 20),
                      static_cast<int>(arg(4, 1)));
    if (mode == "gradcheck") return gradcheck();
    if (mode == "localise")
      return localise(argc > 2 ? argv[2] : "", static_cast<std::size_t>(arg(3, 8)));
    if (mode == "sgemm") return sgemm(static_cast<int>(arg(2, 1)));
    if (mode == "recompute")
      return recompute(static_cast<int>(std::max(1L, arg(2, 5))), static_cast<int>(arg(3, 0)));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "workloads: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: workloads mlp|cnn EPOCHS BATCH THREADS | tiny STEPS THREADS | gradcheck | "
               "sgemm THREADS | recompute STEPS SEGMENT | lstm STEPS THREADS | transformer SEQ "
               "STEPS THREADS | attention SEQ THREADS | localise transformer|cnn BATCH\n");
  return 2;
}
