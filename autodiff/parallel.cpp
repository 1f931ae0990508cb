#include "autodiff/parallel.hpp"

#include <cblas.h>
#ifdef AD_WITH_DNNL
#include <omp.h>
#endif

#include <cstdlib>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "autodiff/error.hpp"
#include "autodiff/threads.hpp"

namespace ad::detail {

namespace {

thread_local bool inside_task = false;

/// Runs task(i) on this thread for each index that `next` hands out below `count`, as a task
/// (inside_task set, so that nested parallel work runs in turn); the first exception is kept in
/// `error` (under `mutex`), and `after()` runs after each task. The pool's threads and OpenMP's
/// team take tasks through it alike.
template <class After>
void take_tasks(std::atomic<std::size_t>& next, std::size_t count,
                const std::function<void(std::size_t)>& task, std::exception_ptr& error,
                std::mutex& mutex, After&& after) {
  const bool was_inside = inside_task;
  inside_task = true;
  for (std::size_t i; (i = next.fetch_add(1)) < count;) {
    try {
      task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
    }
    after();
  }
  inside_task = was_inside;
}

/// A fixed set of workers that wait for one batch of tasks at a time. A worker that wakes late,
/// after its batch is over, finds no task left; a new batch starts only once no worker is still
/// inside the previous one.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() const { return threads_.load(); }
  void set_threads(int n) { threads_ = std::max(1, n); }

  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    std::lock_guard<std::mutex> one_batch(run_mutex_);
    while (workers_.size() + 1 < static_cast<std::size_t>(threads_.load()))
      workers_.emplace_back([this] { loop(); });
    {
      std::unique_lock<std::mutex> lock(mutex_);
      idle_.wait(lock, [&] { return active_ == 0; });
      task_ = &task;
      count_ = count;
      next_ = 0;
      done_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    work(task, count);  // the calling thread takes tasks too
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return done_ == count && active_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  /// Takes tasks of the current batch until none is left.
  void work(const std::function<void(std::size_t)>& task, std::size_t count) {
    take_tasks(next_, count, task, error_, mutex_, [this] {
      std::lock_guard<std::mutex> lock(mutex_);
      ++done_;
      idle_.notify_all();
    });
  }

  void loop() {
    std::uint64_t seen = 0;
    while (true) {
      const std::function<void(std::size_t)>* task;
      std::size_t count;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
        count = task ? count_ : 0;
        ++active_;
      }
      if (task) work(*task, count);
      std::lock_guard<std::mutex> lock(mutex_);
      --active_;
      idle_.notify_all();
    }
  }

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, idle_;
  const std::function<void(std::size_t)>* task_ = nullptr;
  std::size_t count_ = 0, done_ = 0, active_ = 0;
  std::atomic<std::size_t> next_{0};
  std::uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int pool_threads() {
  return inside_task ? 1 : pool().threads();
}

void set_pool_threads(int threads) {
  pool().set_threads(threads);
}

std::size_t elementwise_grain() {
#ifdef AD_WITH_DNNL
  return std::size_t{1} << 12;
#else
  return std::size_t{1} << 15;
#endif
}

void run_tasks(std::size_t count, const std::function<void(std::size_t)>& task) {
  if (inside_task || pool().threads() <= 1 || count <= 1) {
    for (std::size_t i = 0; i < count; ++i) task(i);
    return;
  }
#ifdef AD_WITH_DNNL
  // With oneDNN the products run on OpenMP's threads, which spin a while after each product: a
  // second set of threads would fight them for the cores, so the library's own work goes to the
  // same OpenMP team (measured: BENCHMARKS.md, "Two threads").
  const int threads = static_cast<int>(std::min<std::size_t>(count, pool().threads()));
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
  take_tasks(next, count, task, error, error_mutex, [] {});
  if (error) std::rethrow_exception(error);
#else
  pool().run(count, task);
#endif
}

}  // namespace ad::detail

namespace ad {

void set_num_threads(int threads) {
  if (threads < 1) fail("set_num_threads: ", threads, " threads; at least 1 is needed");
  openblas_set_num_threads(threads);
#ifdef AD_WITH_DNNL
  omp_set_num_threads(threads);  // oneDNN's threads (the float products)
#endif
  detail::set_pool_threads(threads);
}

int num_threads() {
  return detail::pool_threads();
}

int default_num_threads(int fallback) {
  const char* env = std::getenv("AD_NUM_THREADS");
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : fallback;
}

}  // namespace ad
