#include "distributed/data_parallel.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#include "autodiff/ops.hpp"

namespace ad::dist {

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

/// FNV-1a over bytes: a checksum that differs whenever a single bit does.
std::uint64_t fnv(const void* data, std::size_t bytes, std::uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

template <class T>
struct DataParallel<T>::Bucket {
  std::size_t begin = 0, end = 0;  // elements of the flat gradient buffer
  std::size_t parameters = 0;      // how many parameters it holds
  std::size_t pending = 0;         // of those, how many are not final in this pass
  MPI_Request request = MPI_REQUEST_NULL;
  bool started = false;
};

template <class T>
DataParallel<T>::DataParallel(nn::Module<T>& model, Communicator& comm, DataParallelOptions options)
    : model_(model), comm_(comm), options_(options), flat_(model.flatten_parameters()) {
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
    if (buckets_.empty() || buckets_.back().end - buckets_.back().begin >= most) {
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
    hook_ids_.push_back(p.register_post_accumulate_hook([this, i](Variable<T>&) {
      if (!sync_) return;
      Bucket& b = buckets_[bucket_of_[i]];
      if (--b.pending == 0) start(b);
      progress();
    }));
  }
}

template <class T>
DataParallel<T>::~DataParallel() {
  const auto& params = flat_->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    Variable<T> p = params[i];
    p.remove_post_accumulate_hook(hook_ids_[i]);
  }
  for (auto& b : buckets_)
    if (b.started) MPI_Request_free(&b.request);
}

template <class T>
void DataParallel<T>::start(Bucket& b) {
  if (b.started) return;
  b.started = true;
  const int code =
      MPI_Iallreduce(MPI_IN_PLACE, flat_->grads() + b.begin, static_cast<int>(b.end - b.begin),
                     mpi_type<T>(), MPI_SUM, MPI_COMM_WORLD, &b.request);
  if (code != MPI_SUCCESS) fail("DataParallel: the gradient all-reduce failed to start");
}

template <class T>
void DataParallel<T>::progress() {
  // Open MPI moves non-blocking collectives along inside MPI calls: a test of the started ones
  // at every hook keeps them going while backward runs.
  for (auto& b : buckets_)
    if (b.started && b.request != MPI_REQUEST_NULL) {
      int done = 0;
      MPI_Test(&b.request, &done, MPI_STATUS_IGNORE);
    }
}

template <class T>
void DataParallel<T>::synchronize() {
  const auto begin = std::chrono::steady_clock::now();
  flat_->attach();
  for (auto& b : buckets_) start(b);
  for (auto& b : buckets_) {
    if (MPI_Wait(&b.request, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      fail("DataParallel: the gradient all-reduce failed");
    b.started = false;
    b.pending = b.parameters;
  }
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

}  // namespace ad::dist
