// Data-parallel training: every process holds the whole model, takes its shard of each global
// batch (LoaderOptions::shard/shards), and the gradients are summed across processes before the
// same optimizer step runs everywhere. The gradients live in one flat buffer (FlatParameters),
// cut into buckets; each bucket's all-reduce starts as soon as backward has finished every
// parameter in it (a post-accumulate hook), while backward goes on with the earlier layers.
#pragma once

#include <memory>
#include <vector>

#include "autodiff/flat.hpp"
#include "distributed/communicator.hpp"
#include "nn/module.hpp"
#include "nn/trainer.hpp"

namespace ad::dist {

/// How DataParallel sums the gradients.
struct DataParallelOptions {
  /// Gradient buckets of about this many bytes, each all-reduced on its own (a parameter is never
  /// split; the last layers' buckets are ready first).
  std::size_t bucket_bytes = 256 * 1024;
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

  /// Seconds spent waiting in synchronize() since the last reset (the all-reduce time the
  /// overlap did not hide), and the number of buckets.
  double wait_seconds() const { return wait_seconds_; }
  /// Starts wait_seconds() over.
  void reset_wait() { wait_seconds_ = 0; }
  /// The number of gradient buckets.
  std::size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket;
  void start(Bucket& b);
  void progress();

  nn::Module<T>& model_;
  Communicator& comm_;
  DataParallelOptions options_;
  std::shared_ptr<FlatParameters<T>> flat_;
  std::vector<Bucket> buckets_;
  std::vector<std::size_t> bucket_of_;  // per parameter
  std::vector<std::size_t> hook_ids_;
  bool sync_ = true;
  std::size_t steps_ = 0;
  double wait_seconds_ = 0;
};

/// Σ over every rank of v, as an op: its gradient is the Σ over every rank of the incoming
/// gradient (all-reduce is its own adjoint), so statistics summed across processes backpropagate
/// exactly (SyncBatchNorm).
template <class T>
Variable<T> all_reduce_sum(const Variable<T>& v, Communicator& comm);

}  // namespace ad::dist
