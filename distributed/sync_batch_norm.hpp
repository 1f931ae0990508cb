// Batch normalisation whose statistics are those of the global batch: the per-channel sums of x
// and x² and the count are summed over every process (an op whose gradient is summed too), so that
// N processes normalise, and backpropagate, as one process on the whole batch would.
#pragma once

#include "distributed/communicator.hpp"
#include "nn/layers.hpp"

namespace ad::distributed {

/// BatchNorm with statistics over every process's batch. (Plain BatchNorm in a data-parallel run
/// normalises each process's shard by its own statistics, as PyTorch's DDP does.)
template <class T = float>
class SyncBatchNorm : public nn::BatchNorm<T> {
 public:
  /// Over `features` channels of inputs with `input_dims` axes, summing statistics over `comm`.
  SyncBatchNorm(std::size_t features, std::size_t input_dims, Communicator& comm, double eps,
                double momentum)
      : nn::BatchNorm<T>(features, input_dims, eps, momentum), comm_(comm) {}

 protected:
  /// The global batch's statistics (sync_statistics).
  typename nn::BatchNorm<T>::Statistics statistics(const Variable<T>& x,
                                                   const std::vector<long>& axes) override;

 private:
  Communicator& comm_;
};

/// SyncBatchNorm over (N, C) or (N, C, L) inputs.
template <class T = float>
class SyncBatchNorm1d : public SyncBatchNorm<T> {
 public:
  /// Over `features` features, summing statistics over `comm`.
  SyncBatchNorm1d(std::size_t features, Communicator& comm, double eps = 1e-5,
                  double momentum = 0.1)
      : SyncBatchNorm<T>(features, 2, comm, eps, momentum) {}
};

/// SyncBatchNorm over (N, C, H, W) inputs.
template <class T = float>
class SyncBatchNorm2d : public SyncBatchNorm<T> {
 public:
  /// Over `channels` channels, summing statistics over `comm`.
  SyncBatchNorm2d(std::size_t channels, Communicator& comm, double eps = 1e-5,
                  double momentum = 0.1)
      : SyncBatchNorm<T>(channels, 4, comm, eps, momentum) {}
};

/// The global batch's statistics: Σx and Σx² per channel and the count, summed over `comm`.
template <class T>
typename nn::BatchNorm<T>::Statistics sync_statistics(const Variable<T>& x,
                                                      const std::vector<long>& axes,
                                                      Communicator& comm);

}  // namespace ad::distributed
