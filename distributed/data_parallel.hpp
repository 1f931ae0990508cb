// Data-parallel training: every process holds the whole model, takes its shard of each global
// batch (LoaderOptions::shard/shards), and the gradients are summed across processes before the
// same optimizer step runs everywhere. The gradients live in one flat buffer (FlatParameters),
// cut into buckets; each bucket's all-reduce starts as soon as backward has finished every
// parameter in it (a post-accumulate hook), while backward goes on with the earlier layers: a
// thread of its own runs the all-reduces, one bucket after the other and always in the buckets'
// order, so that every rank runs the same sequence even when backward reaches the parameters in
// another order on one of them.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "autodiff/flat.hpp"
#include "distributed/communicator.hpp"
#include "nn/module.hpp"
#include "nn/trainer.hpp"

namespace ad::distributed {

/// How DataParallel sums the gradients.
struct DataParallelOptions {
  /// Gradient buckets of at most this many bytes (or one parameter, if larger), each all-reduced
  /// on its own (a parameter is never split; the last layers' buckets are ready first).
  std::size_t bucket_bytes = 256 * 1024;
  /// Start each bucket's all-reduce as soon as backward has finished it (false: all of them
  /// after backward). The all-reduce thread polls while it waits; where every core computes, that
  /// can cost backward more than the overlap saves (BENCHMARKS.md).
  bool overlap = true;
  /// Every this many optimizer steps, check (a checksum all-reduce) that the parameters are
  /// bit-identical on every rank, and throw on divergence; 0: never.
  std::size_t check_every = 0;
};

/// Makes a model data-parallel over `comm`: flattens its parameters, broadcasts parameters,
/// buffers and states from rank 0, and sums gradients across ranks in overlapping buckets.
template <class T>
class DataParallel {
 public:
  /// Makes `model` data-parallel over `comm` (every rank must do it at the same point).
  DataParallel(nn::Module<T>& model, Communicator& comm, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// The flat parameters, for the optimizer (nn::SGD(dp.parameters(), options)).
  std::shared_ptr<FlatParameters<T>> parameters() const { return flat_; }
  /// Whether the next backward pass is the last of an optimizer step (with accumulation, the
  /// others must not all-reduce yet).
  void set_sync(bool on) { sync_ = on; }
  /// Completes the gradient sum: starts the buckets not started yet (parameters that got no
  /// gradient in this pass) and waits for all. Every rank then holds the same summed gradients.
  void synchronize();
  /// Throws ad::Error on every rank unless the parameters are bit-identical on all of them.
  void check_identical();
  /// Sets a trainer up for data-parallel training: its collective (sums of the epoch's figures,
  /// only rank 0 prints and writes), before_backward (sync on the last backward of a step) and
  /// on_gradients (synchronize, and the identity check every check_every steps).
  void attach(nn::Trainer<T>& trainer);

  /// Seconds spent waiting in synchronize() since the last reset: the all-reduce time the
  /// overlap did not hide.
  double wait_seconds() const { return wait_seconds_; }
  /// Seconds from the first bucket's start to synchronize(), summed since the last reset: the
  /// backward time under which the all-reduce could run.
  double overlap_seconds() const { return overlap_seconds_; }
  /// Starts wait_seconds() and overlap_seconds() over.
  void reset_wait() { wait_seconds_ = overlap_seconds_ = 0; }
  /// The number of gradient buckets.
  std::size_t buckets() const { return buckets_.size(); }
  /// The elements of each bucket, in the order backward makes them ready.
  std::vector<std::size_t> bucket_sizes() const;

 private:
  struct Bucket {
    std::size_t begin = 0, end = 0;  // elements of the flat gradient buffer
    std::size_t parameters = 0;      // how many parameters it holds
    std::size_t pending = 0;         // of those, how many are not final in this pass
    bool ready = false;              // all final (and views) in this pass
    bool deferred = false;           // a gradient is not its view: synchronize() starts it
  };
  struct Reducer;
  void start_ready();

  nn::Module<T>& model_;
  Communicator& comm_;
  DataParallelOptions options_;
  std::shared_ptr<FlatParameters<T>> flat_;
  std::vector<Bucket> buckets_;
  std::vector<std::size_t> bucket_of_;  // per parameter
  std::vector<std::size_t> hook_ids_;
  std::shared_ptr<Reducer> reducer_;
  std::size_t next_ = 0;  // the next bucket to hand to the reducer (they go in order)
  bool sync_ = true;
  std::size_t steps_ = 0;
  double wait_seconds_ = 0, overlap_seconds_ = 0;
  std::chrono::steady_clock::time_point first_start_;  // of this pass's first bucket
};

/// Σ over every rank of v, as an op: its gradient is the Σ over every rank of the incoming
/// gradient (all-reduce is its own adjoint), so statistics summed across processes backpropagate
/// exactly (SyncBatchNorm).
template <class T>
Variable<T> all_reduce_sum(const Variable<T>& v, Communicator& comm);

}  // namespace ad::distributed
