#include "distributed/data_parallel.hpp"

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "autodiff/ops.hpp"

namespace ad::distributed {

namespace {

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<std::size_t>(length));
}

/// FNV-1a over bytes: a checksum that differs whenever a single bit does.
std::uint64_t fnv(const void* data, std::size_t bytes, std::uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

/// The thread that runs the gradient all-reduces, on a communicator of its own (so that the
/// collectives of the main thread, SyncBatchNorm's during backward among them, never interleave
/// with its). Shared with the thread, so that a DataParallel destroyed while an all-reduce waits
/// for a failed rank (the run is then ending) can leave it behind.
template <class T>
struct DataParallel<T>::Reducer {
  std::shared_ptr<FlatParameters<T>> flat;  // the gradients it sums, kept alive for the thread
  MPI_Comm comm = MPI_COMM_NULL;
  std::mutex mutex;
  std::condition_variable wake, done;
  std::deque<std::pair<std::size_t, std::size_t>> queue;  // element ranges of the gradients
  std::size_t pending = 0;                                // queued or running
  bool stop = false;
  std::string error;
  std::thread thread;

  void push(std::size_t begin, std::size_t end) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      queue.emplace_back(begin, end);
      ++pending;
    }
    wake.notify_one();
  }
  /// Waits until every pushed range is summed; throws if an all-reduce failed.
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return pending == 0; });
    if (!error.empty()) fail("DataParallel: the gradient all-reduce failed: ", error);
  }
  static void loop(std::shared_ptr<Reducer> self) {
    Reducer& r = *self;
    for (;;) {
      std::pair<std::size_t, std::size_t> range;
      {
        std::unique_lock<std::mutex> lock(r.mutex);
        r.wake.wait(lock, [&] { return r.stop || !r.queue.empty(); });
        if (r.queue.empty()) return;
        range = r.queue.front();
        r.queue.pop_front();
      }
      T* grads = r.flat->grads();
      int code = MPI_SUCCESS;
      const std::size_t most = static_cast<std::size_t>(std::numeric_limits<int>::max());
      for (std::size_t at = range.first; at < range.second && code == MPI_SUCCESS; at += most)
        code = MPI_Allreduce(MPI_IN_PLACE, grads + at,
                             static_cast<int>(std::min(most, range.second - at)), mpi_type<T>(),
                             MPI_SUM, r.comm);
      {
        std::lock_guard<std::mutex> lock(r.mutex);
        if (code != MPI_SUCCESS && r.error.empty()) r.error = mpi_error(code);
        --r.pending;
      }
      r.done.notify_all();
    }
  }
};

template <class T>
DataParallel<T>::DataParallel(nn::Module<T>& model, Communicator& comm, DataParallelOptions options)
    : model_(model), comm_(comm), options_(options), flat_(model.flatten_parameters()) {
  if (!comm_.thread_multiple())
    fail(
        "DataParallel: this MPI does not provide MPI_THREAD_MULTIPLE, which the gradient "
        "all-reduce on its own thread needs");
  // The same starting point everywhere: rank 0's parameters, buffers and states.
  comm_.broadcast(flat_->values(), flat_->size() * sizeof(T));
  for (auto& [name, b] : model_.named_buffers()) comm_.broadcast(b->data(), b->size() * sizeof(T));
  for (auto& [name, s] : model_.named_states())
    comm_.broadcast(s->data(), s->size() * sizeof(std::uint64_t));
  // Buckets from the last parameter back (backward makes the last layers' gradients first).
  const auto& params = flat_->parameters();
  bucket_of_.resize(params.size());
  const std::size_t most = std::max<std::size_t>(options_.bucket_bytes / sizeof(T), 1);
  for (std::size_t i = params.size(); i-- > 0;) {
    const std::size_t begin = flat_->offset(i), end = begin + params[i].size();
    if (buckets_.empty() || buckets_.back().end - begin > most) {
      buckets_.emplace_back();
      buckets_.back().end = end;
    }
    Bucket& b = buckets_.back();
    b.begin = begin;
    ++b.parameters;
    bucket_of_[i] = buckets_.size() - 1;
  }
  for (auto& b : buckets_) b.pending = b.parameters;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Variable<T> p = params[i];
    hook_ids_.push_back(p.register_post_accumulate_hook([this, i](Variable<T>& v) {
      if (!sync_ || !options_.overlap) return;
      Bucket& b = buckets_[bucket_of_[i]];
      const auto& g = v.impl().grad;
      if (!g.defined() || g.value().data() != flat_->grads() + flat_->offset(i)) b.deferred = true;
      if (--b.pending == 0 && !b.deferred) {
        b.ready = true;
        start_ready();
      }
    }));
  }
  reducer_ = std::make_shared<Reducer>();
  reducer_->flat = flat_;
  MPI_Comm_dup(MPI_COMM_WORLD, &reducer_->comm);
  reducer_->thread = std::thread(&Reducer::loop, reducer_);
}

template <class T>
DataParallel<T>::~DataParallel() {
  const auto& params = flat_->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    Variable<T> p = params[i];
    p.remove_post_accumulate_hook(hook_ids_[i]);
  }
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(reducer_->mutex);
    reducer_->stop = true;
    idle = reducer_->pending == 0;
  }
  reducer_->wake.notify_one();
  if (idle) {
    reducer_->thread.join();
    MPI_Comm_free(&reducer_->comm);
  } else {
    // An all-reduce still waits for other ranks: this rank is failing, and its exception ends
    // the run (dist::run aborts every rank). The thread keeps what it uses alive.
    reducer_->thread.detach();
  }
}

template <class T>
std::vector<std::size_t> DataParallel<T>::bucket_sizes() const {
  std::vector<std::size_t> sizes;
  for (const auto& b : buckets_) sizes.push_back(b.end - b.begin);
  return sizes;
}

template <class T>
void DataParallel<T>::start_ready() {
  // Buckets go to the reducer in their order, whatever order backward finishes them in, so that
  // every rank runs the same sequence of all-reduces even when their graphs differ (a parameter
  // that one rank's batch does not reach).
  for (; next_ < buckets_.size() && buckets_[next_].ready; ++next_) {
    if (next_ == 0) first_start_ = std::chrono::steady_clock::now();
    reducer_->push(buckets_[next_].begin, buckets_[next_].end);
  }
}

template <class T>
void DataParallel<T>::synchronize() {
  const auto begin = std::chrono::steady_clock::now();
  if (next_ > 0) overlap_seconds_ += std::chrono::duration<double>(begin - first_start_).count();
  reducer_->wait();  // the buckets the hooks started
  // Gradients that are not their views (a recorded gradient, or none yet) go back into the flat
  // buffer before their buckets start.
  flat_->attach();
  for (auto& b : buckets_) b.ready = true;
  start_ready();
  reducer_->wait();
  for (auto& b : buckets_) {
    b.ready = b.deferred = false;
    b.pending = b.parameters;
  }
  next_ = 0;
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  ++steps_;
  if (options_.check_every && steps_ % options_.check_every == 0) check_identical();
}

template <class T>
void DataParallel<T>::check_identical() {
  std::uint64_t h = fnv(flat_->values(), flat_->size() * sizeof(T));
  for (auto& [name, b] : model_.named_buffers()) h = fnv(b->data(), b->size() * sizeof(T), h);
  std::uint64_t low = h, high = h;
  MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  if (low != high)
    fail("DataParallel: the parameters differ between ranks after step ", steps_,
         " (checksums from ", low, " to ", high, "; this rank's ", h, ")");
}

template <class T>
void DataParallel<T>::attach(nn::Trainer<T>& trainer) {
  trainer.set_collective(&comm_);
  trainer.before_backward = [this](bool last_of_step) { set_sync(last_of_step); };
  trainer.on_gradients = [this] { synchronize(); };
}

template <class T>
Variable<T> all_reduce_sum(const Variable<T>& v, Communicator& comm) {
  Array<T> out = v.value();
  comm.sum(out.data(), out.size());
  return make_op<T>("all_reduce_sum", std::move(out), {v},
                    [&comm](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dv = Σ over ranks of the incoming gradient (each rank's output is
                      // the same sum, so each rank's v feeds every rank's loss)
                      return {all_reduce_sum(c.grad, comm)};
                    });
}

template class DataParallel<float>;
template class DataParallel<double>;
template Variable<float> all_reduce_sum(const Variable<float>&, Communicator&);
template Variable<double> all_reduce_sum(const Variable<double>&, Communicator&);

}  // namespace ad::distributed
