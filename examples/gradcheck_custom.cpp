// Defines a custom op (swish) with a hand-written backward, checks it with gradcheck, then shows
// a deliberately wrong backward caught by the same check, found among the ops of a model (the
// localisation), and shrunk to its smallest failing input by check_op. Last, the cost of the
// numerical gradient (two evaluations per parameter) beside one reverse pass on a small MLP.
#include <boost/program_options.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>

#include "autodiff/autodiff.hpp"
#include "cli.hpp"
#include "nn/gradcheck.hpp"
#include "nn/layers.hpp"
#include "swish.hpp"

namespace po = boost::program_options;

namespace {

using examples::swish;

/// swish as a layer, for a model.
struct Swish : ad::nn::Module<double> {
  explicit Swish(bool mistake) : mistake(mistake) {}
  ad::Variable<double> forward(const ad::Variable<double>& x) override { return swish(x, mistake); }
  bool mistake;
};

template <class T>
ad::Array<T> random_array(const ad::Shape& shape, std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> n(0.0, scale);
  ad::Array<T> a = ad::Array<T>::from_shape(shape);
  for (auto& v : a) v = static_cast<T>(n(rng));
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The five parts, printed; 0 when the right backward passes and the wrong one fails, is found
/// in the model, and is shrunk.
int run(std::size_t hidden, std::size_t batch, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  // The user's code is float; gradcheck runs it in double because it is generic over T.
  ad::Variable<float> x(random_array<float>({3, 4}, rng, 1.5), true);

  std::cout << "1. swish with the right backward, first and second order:\n";
  ad::GradcheckOptions second;
  second.second_order = true;
  auto good = ad::gradcheck([](const auto& x) { return swish(x); }, {x}, second);
  std::cout << good << "\n";

  std::cout << "2. swish with a mistake in its backward (the x·s·(1 − s) term dropped):\n";
  auto bad = ad::gradcheck([](const auto& x) { return swish(x, true); }, {x});
  std::cout << bad << "\n";

  std::cout << "3. the wrong swish inside a model (a block of two layers, twice): which op is "
               "wrong\n";
  namespace nn = ad::nn;
  nn::Generator init(seed);
  nn::Sequential<double> model;
  for (int b = 0; b < 2; ++b) {
    auto block = std::make_shared<nn::Sequential<double>>();
    block->add(std::make_shared<nn::Linear<double>>(4, 4, init));
    block->add(std::make_shared<Swish>(b == 1));
    model.add(block);
  }
  ad::Variable<double> input(random_array<double>({2, 4}, rng, 1.0), true);
  auto located = nn::gradcheck_module(model, input);
  std::cout << located << "\n";

  std::cout << "4. the wrong swish on many drawn inputs (check_op), the failure shrunk:\n";
  auto shrunk = ad::check_op([](const auto& x) { return swish(x, true); }, {ad::InputSpec{}});
  std::cout << shrunk << "\n";

  // 5. Cost: numerical gradient of every parameter of a 4-hidden-3 MLP vs one reverse pass.
  ad::Variable<double> data(random_array<double>({batch, 4}, rng, 1.0));
  ad::Variable<double> target(random_array<double>({batch, 3}, rng, 1.0));
  std::vector<ad::Variable<double>> params = {
      ad::param(random_array<double>({hidden, 4}, rng, 0.5)),
      ad::param(random_array<double>({hidden}, rng, 0.1)),
      ad::param(random_array<double>({3, hidden}, rng, 0.5)),
      ad::param(random_array<double>({3}, rng, 0.1))};
  auto loss = [&]() {
    auto h = swish(ad::linear(data, params[0], params[1]));
    return ad::mean(ad::square(ad::linear(h, params[2], params[3]) - target));
  };
  std::size_t count = 0;
  for (const auto& p : params) count += p.size();

  // Reverse mode: the median of a few forward+backward passes (the first one warms the caches).
  std::vector<double> times;
  for (int r = 0; r < 9; ++r) {
    for (auto& p : params) p.zero_grad();
    auto t = std::chrono::steady_clock::now();
    loss().backward();
    times.push_back(seconds_since(t));
  }
  std::nth_element(times.begin(), times.begin() + 4, times.end());
  const double reverse_s = times[4];

  auto t0 = std::chrono::steady_clock::now();
  double max_diff = 0;
  for (auto& p : params) {
    ad::Array<double> numeric = ad::numerical_gradient(loss, p);
    max_diff = std::max(max_diff, double(xt::amax(xt::abs(numeric - p.grad().value()))()));
  }
  const double numeric_s = seconds_since(t0);

  std::cout << "5. gradient of a 4-" << hidden << "-3 MLP (" << count << " parameters, batch "
            << batch << "):\n"
            << "   numerical, 2 evaluations per parameter: " << 2 * count << " evaluations, "
            << numeric_s * 1e3 << " ms\n"
            << "   reverse mode, one forward and backward pass (median of 9): " << reverse_s * 1e3
            << " ms (" << numeric_s / reverse_s << "x faster)\n"
            << "   largest difference between the two: " << max_diff << "\n";
  const bool found = located.localisation.found && located.localisation.failure.op == "swish" &&
                     located.localisation.failure.module == "1.1" && !shrunk.passed;
  return good.passed && !bad.passed && found ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t hidden = 32, batch = 16;
  std::uint64_t seed = 0;
  po::options_description desc(
      "gradcheck_custom: check a custom op's backward against central differences\nOptions");
  desc.add_options()("help,h", "show this help")(
      "hidden", examples::number(&hidden, std::size_t{1}, std::size_t{10000}, "hidden"),
      "hidden units of the timing MLP")(
      "batch", examples::number(&batch, std::size_t{1}, std::size_t{100000}, "batch"),
      "batch size of the timing MLP")(
      "seed", examples::number(&seed, std::uint64_t{0}, ~std::uint64_t{0}, "seed"), "random seed");
  return examples::run_program("gradcheck_custom", argc, argv, desc,
                               [&] { return run(hidden, batch, seed); });
}
