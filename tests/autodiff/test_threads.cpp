// The library's own threads: the same results on 1 and 2 threads, and the pool survives many
// batches, nested calls and exceptions.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "autodiff/parallel.hpp"
#include "helpers.hpp"

using ad::Array;
using F = ad::Variable<float>;

namespace {

/// A forward and backward pass through the parallel kernels (elementwise, conv, pooling) on n
/// images, at sizes that split them over two threads: 32 images of 16 × 16 give 65,536 conv
/// outputs, 256 pooling planes and groups of 4 samples a product (30 images: the last group of
/// 2); images of 24 × 24 (576 columns) make one sample a product.
std::vector<Array<float>> run(int threads, std::size_t side, std::size_t n) {
  ad::set_num_threads(threads);
  F x(ad::test::uniform<float>({n, 3, side, side}, -1, 1, 1), true);
  F w(ad::test::uniform<float>({8, 3, 3, 3}, -1, 1, 2), true);
  F b(ad::test::uniform<float>({8}, -1, 1, 3), true);
  F y = ad::max_pool2d(ad::relu(ad::conv2d(x, w, b, 1, 1)), 2, 2);
  F loss = ad::sum(ad::tanh(y) * ad::exp(y * 0.1f));
  loss.backward();
  ad::set_num_threads(1);
  return {y.value(), x.grad().value(), w.grad().value(), b.grad().value()};
}

/// The largest difference between a and b, relative to a's largest entry.
double relative_difference(const Array<float>& a, const Array<float>& b) {
  double largest = 0, diff = 0;
  for (std::size_t j = 0; j < a.size(); ++j) {
    largest = std::max(largest, double(std::abs(a.data()[j])));
    diff = std::max(diff, double(std::abs(a.data()[j] - b.data()[j])));
  }
  return diff / largest;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(threads)

BOOST_AUTO_TEST_CASE(same_results_on_one_and_two_threads) {
  // The convolution's groups of samples are split between the threads, each group's products on
  // one thread: the output and the input gradient are the same bit for bit. The weight and bias
  // gradients are each thread's share summed apart, then added: rounding apart (measured 1.6e-7
  // of the largest entry; a race, or a sample counted twice or missed, would differ by far more),
  // and the same bits again for the same thread count.
  for (auto [side, n] : {std::pair<std::size_t, std::size_t>{16, 32}, {16, 30}, {24, 7}}) {
    auto one = run(1, side, n), two = run(2, side, n), again = run(2, side, n);
    BOOST_TEST(ad::num_threads() == 1);
    for (std::size_t i = 0; i < 4; ++i) {
      const std::string what = std::to_string(n) + " images of side " + std::to_string(side) +
                               ", array " + std::to_string(i);
      if (i < 2)
        BOOST_TEST(one[i] == two[i], what);
      else
        BOOST_TEST(relative_difference(one[i], two[i]) <= 1e-6, what);
      BOOST_TEST(two[i] == again[i], what);
    }
  }
}

BOOST_AUTO_TEST_CASE(set_num_threads_runs_tasks_at_the_same_time) {
  // Two tasks that each wait (up to 10 s) for the other to start: they meet only if two threads
  // run them.
  ad::set_num_threads(2);
  BOOST_TEST(ad::num_threads() == 2);
  std::atomic<int> started{0};
  std::atomic<int> met{0};
  ad::detail::run_tasks(2, [&](std::size_t) {
    ++started;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
    if (started.load() == 2) ++met;
  });
  BOOST_TEST(met.load() == 2);
  ad::set_num_threads(1);
  BOOST_TEST(ad::num_threads() == 1);
}

BOOST_AUTO_TEST_CASE(pool_runs_many_batches_and_nested_calls) {
  ad::set_num_threads(2);
  std::atomic<long> total{0};
  for (int batch = 0; batch < 200; ++batch)
    ad::detail::parallel_for(1000, 10, [&](std::size_t begin, std::size_t end) {
      // A nested call runs on the calling thread.
      ad::detail::parallel_for(
          end - begin, 1, [&](std::size_t b, std::size_t e) { total += static_cast<long>(e - b); });
    });
  BOOST_TEST(total.load() == 200L * 1000);
  BOOST_CHECK_THROW(ad::detail::run_tasks(4,
                                          [](std::size_t i) {
                                            if (i == 2) throw std::runtime_error("task 2");
                                          }),
                    std::runtime_error);
  // Still usable after a task threw.
  std::atomic<int> count{0};
  ad::detail::run_tasks(5, [&](std::size_t) { ++count; });
  BOOST_TEST(count.load() == 5);
  ad::set_num_threads(1);
  BOOST_CHECK_THROW(ad::set_num_threads(0), ad::Error);
}

BOOST_AUTO_TEST_CASE(threads_backpropagating_graphs_that_share_a_leaf) {
  // Two threads each run 300 forward and backward passes whose graphs share the leaf x, so both
  // add into x.grad. Small integers keep every sum exact: the total is known exactly, and a lost
  // update would show (ThreadSanitizer, in scripts/test, reports the race itself).
  ad::Variable<double> x(Array<double>{1.0, 2.0, 3.0}, true);
  const int passes = 300;
  auto work = [&](double k) {
    ad::Variable<double> w(Array<double>{k, 2 * k, 3 * k});
    for (int i = 0; i < passes; ++i) ad::sum(x * w + x).backward();
  };
  std::thread a(work, 1.0), b(work, 2.0);
  a.join();
  b.join();
  // d/dx Σ (x·w + x) = w + 1 per pass: 300·(1 + 1, 2 + 1, 3 + 1) + 300·(2 + 1, 4 + 1, 6 + 1)
  BOOST_TEST(x.grad().value() == (Array<double>{1500.0, 2400.0, 3300.0}));
}

BOOST_AUTO_TEST_SUITE_END()
