// The library's own threads: large elementwise kernels, im2col and pooling split their work
// over ad::num_threads() threads (the setting that also drives OpenBLAS). Each output element is
// computed by one thread in a fixed order, so results do not depend on the thread count, except
// the order of a few sums (bit-identical for a given count).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>

namespace ad::detail {

/// The number of threads parallel work may use (1: everything on the calling thread).
int pool_threads();
/// Sets it (threads beyond the first are started when first needed).
void set_pool_threads(int threads);
/// Runs task(0) ... task(count - 1), spread over the pool and the calling thread, and returns
/// when all are done. Called from inside a task, it runs the tasks in turn on that thread.
void run_tasks(std::size_t count, const std::function<void(std::size_t)>& task);

/// Elementwise work below this many elements stays on one thread (waking a second costs more):
/// 4,096 where the threads are OpenMP's (they spin between products), 32,768 for the library's own.
std::size_t elementwise_grain();

/// Calls body(begin, end) on consecutive chunks of [0, n), in parallel when there are at least
/// two chunks of `grain` items.
template <class F>
void parallel_for(std::size_t n, std::size_t grain, F&& body) {
  const std::size_t most = n / std::max<std::size_t>(grain, 1);  // chunks of at least `grain`
  const std::size_t chunks =
      most <= 1 ? most : std::min(static_cast<std::size_t>(pool_threads()), most);
  if (chunks <= 1) {
    if (n > 0) body(std::size_t{0}, n);
    return;
  }
  run_tasks(chunks, [&](std::size_t c) { body(c * n / chunks, (c + 1) * n / chunks); });
}

/// Calls body(i) for each of n rows of `per` elements, rows split between threads when the whole
/// is large enough (elementwise_grain()): row-wise copies and kernels.
template <class F>
void parallel_rows(std::size_t n, std::size_t per, F&& body) {
  parallel_for(n, std::max<std::size_t>(1, elementwise_grain() / std::max<std::size_t>(per, 1)),
               [&](std::size_t begin, std::size_t end) {
                 for (std::size_t i = begin; i < end; ++i) body(i);
               });
}

}  // namespace ad::detail
