// The library's own threads: the same results on 1 and 2 threads, and the pool survives many
// batches, nested calls and exceptions.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "autodiff/parallel.hpp"
#include "helpers.hpp"

using ad::Array;
using F = ad::Variable<float>;

namespace {

/// A forward and backward pass through the parallel kernels (elementwise, conv, pooling), at
/// sizes that split them over two threads: 16 × 16 images give 65,536 conv outputs, 256 pooling
/// planes and groups of 4 samples a product; 24 × 24 images (576 columns) one sample a product,
/// the samples split between the threads.
std::vector<Array<float>> run(int threads, std::size_t side = 16) {
  ad::set_num_threads(threads);
  F x(ad::test::uniform<float>({32, 3, side, side}, -1, 1, 1), true);
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
  auto one = run(1), two = run(2);
  BOOST_TEST(ad::num_threads() == 1);
  // The output and the input and bias gradients are the same bit for bit. The weight gradient is
  // a product summed over all 8,192 output positions, a sum that oneDNN's sgemm (when the library
  // is built with it) splits over its threads: it may differ in rounding, by a few ulps (measured
  // 1.6e-7 of its largest entry). A race would differ by far more.
  for (std::size_t i : {0, 1, 3}) BOOST_TEST(one[i] == two[i]);
  BOOST_TEST(relative_difference(one[2], two[2]) <= 1e-6);
}

BOOST_AUTO_TEST_CASE(same_results_with_samples_split_between_threads) {
  // One sample a product: each thread takes its own samples, so the output and the input
  // gradient are the same bit for bit; the weight and bias gradients are each thread's share
  // summed apart, then added: rounding apart (a race, or a sample counted twice or missed, would
  // be far more).
  auto one = run(1, 24), two = run(2, 24), again = run(2, 24);
  for (std::size_t i : {0, 1}) BOOST_TEST(one[i] == two[i]);
  for (std::size_t i : {2, 3}) {
    BOOST_TEST(relative_difference(one[i], two[i]) <= 1e-6);
    BOOST_TEST(two[i] == again[i]);  // the same bits for the same thread count
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
