// Datasets of (input, target) pairs backed by arrays, and a DataLoader that makes mini-batches.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "autodiff/parallel.hpp"
#include "autodiff/variable.hpp"
#include "nn/init.hpp"

namespace ad::nn {

/// Inputs (N, ...) stored compactly as S (uint8 images, say) and targets (N, ...) as float
/// (class indices or values). Batches convert inputs to the training type, times `scale`.
template <class S = float>
class Dataset {
 public:
  /// Inputs (N, ...) and targets (N, ...), batches scaling inputs by `scale`.
  Dataset(Array<S> inputs, Array<float> targets, double scale = 1.0);
  /// The number of samples.
  std::size_t size() const { return inputs_.shape()[0]; }
  /// Shape of one input (without the leading N).
  Shape sample_shape() const;
  /// Shape of one target (empty for scalar targets such as labels).
  Shape target_shape() const;
  /// All inputs.
  const Array<S>& inputs() const { return inputs_; }
  /// All targets.
  const Array<float>& targets() const { return targets_; }
  /// The factor batches apply to the inputs.
  double scale() const { return scale_; }
  /// A new dataset with the samples [begin, end).
  Dataset slice(std::size_t begin, std::size_t end) const;

 private:
  Array<S> inputs_;
  Array<float> targets_;
  double scale_;
};

/// A mini-batch: inputs (B, ...) and targets (B, ...), and where each row came from.
template <class T = float>
struct Batch {
  /// Inputs (B, ...).
  Variable<T> inputs;
  /// Targets (B, ...).
  Variable<T> targets;
  /// The position in the dataset of each row's sample (for messages that name a sample).
  std::vector<std::size_t> samples;
  /// The size of the global batch this is a shard of (its own size when not sharded): the share
  /// of this batch in a data-parallel step is samples.size() / global_size.
  std::size_t global_size = 0;
};

/// How a DataLoader makes batches.
struct LoaderOptions {
  /// Samples per batch.
  std::size_t batch_size = 32;
  /// Reshuffle every epoch; the order of epoch e depends only on (seed, e).
  bool shuffle = true;
  /// Seed of the shuffling.
  std::uint64_t seed = 0;
  /// Drop the last partial batch (otherwise it is yielded, smaller).
  bool drop_last = false;
  /// Data-parallel sharding: this loader yields shard `shard` of `shards` of every global batch
  /// (batch_size samples, in the order one process would use with the same seed), the samples of
  /// a global batch split into contiguous parts whose sizes differ by at most one. A shard may be
  /// empty in a tail batch smaller than `shards`.
  std::size_t shard = 0;
  std::size_t shards = 1;  ///< (see shard)
};

/// Makes batches from a dataset; a batch copies its own samples only (the dataset is never
/// copied, an epoch's order is a vector of indices).
template <class T = float>
class DataLoader {
 public:
  /// Batches of `data`, which the loader shares (never copies).
  template <class S>
  DataLoader(std::shared_ptr<const Dataset<S>> data, const LoaderOptions& options);
  /// The same from a non-const dataset.
  template <class S>
  DataLoader(std::shared_ptr<Dataset<S>> data, const LoaderOptions& options)
      : DataLoader(std::shared_ptr<const Dataset<S>>(std::move(data)), options) {}

  /// The number of samples.
  std::size_t samples() const { return n_; }
  /// The number of batches an epoch yields.
  std::size_t batches() const;
  /// Its options.
  const LoaderOptions& options() const { return options_; }
  /// The order of the samples in epoch `epoch`.
  std::vector<std::size_t> order(std::size_t epoch) const;
  /// Batch `i` of epoch `epoch` whose order is `order` (the epoch seeds the transform).
  Batch<T> batch(const std::vector<std::size_t>& order, std::size_t i,
                 std::uint64_t epoch = 0) const;

  /// Changes one sample's input in place (augmentation: see nn/augment.hpp): the sample, its
  /// shape (without the batch axis), and a generator seeded by (seed, epoch, the sample's index
  /// in the dataset), so that a sample gets the same change whichever batch, shard or thread
  /// makes it, and runs are reproducible.
  using Transform = std::function<void(T* sample, const Shape& shape, Generator& rng)>;
  /// Applies `transform` to every sample of every batch (null: none). Set it on the training
  /// loader only.
  void set_transform(Transform transform) { transform_ = std::move(transform); }

  /// The batches of one epoch, for a range-for loop.
  class Epoch {
   public:
    /// Walks the batches of an epoch.
    class iterator {
     public:
      /// At batch i of epoch e.
      iterator(const Epoch* e, std::size_t i) : e_(e), i_(i) {}
      /// The batch (made on demand).
      Batch<T> operator*() const { return e_->loader_->batch(e_->order_, i_, e_->epoch_); }
      /// To the next batch.
      iterator& operator++() {
        ++i_;
        return *this;
      }
      /// Whether they are at different batches.
      bool operator!=(const iterator& o) const { return i_ != o.i_; }

     private:
      const Epoch* e_;
      std::size_t i_;
    };
    /// The batches of epoch `epoch` of `loader` in sample order `order`.
    Epoch(const DataLoader* loader, std::vector<std::size_t> order, std::uint64_t epoch)
        : loader_(loader), order_(std::move(order)), epoch_(epoch) {}
    /// The first batch.
    iterator begin() const { return iterator(this, 0); }
    /// Past the last batch.
    iterator end() const { return iterator(this, loader_->batches()); }

   private:
    const DataLoader* loader_;
    std::vector<std::size_t> order_;
    std::uint64_t epoch_;
  };
  /// The batches of epoch `epoch`, for a range-for loop.
  Epoch epoch(std::size_t epoch) const { return Epoch(this, order(epoch), epoch); }

 private:
  std::function<void(const std::size_t*, std::size_t, T*, T*)> fill_;
  Transform transform_;
  Shape sample_shape_, target_shape_;
  std::size_t n_;
  LoaderOptions options_;
};

template <class T>
template <class S>
DataLoader<T>::DataLoader(std::shared_ptr<const Dataset<S>> data, const LoaderOptions& options)
    : options_(options) {
  if (!data) fail("DataLoader: dataset is null");
  if (options.batch_size == 0) fail("DataLoader: batch_size must be positive");
  if (options.shards == 0 || options.shard >= options.shards)
    fail("DataLoader: shard ", options.shard, " of ", options.shards, " does not exist");
  n_ = data->size();
  sample_shape_ = data->sample_shape();
  target_shape_ = data->target_shape();
  // Copies the chosen samples into a batch, converting S to T (times the scale). The samples lie
  // far apart in a dataset larger than the caches: the lines of the sample `ahead` rows on are
  // requested while a row is converted, so that their wait for memory overlaps the work (a batch
  // of 1,000 Fashion-MNIST images, bench_nn's loader_batch: 2.2 times faster).
  fill_ = [data](const std::size_t* idx, std::size_t count, T* x, T* y) {
    const std::size_t in = data->inputs().size() / std::max<std::size_t>(data->size(), 1);
    const std::size_t out = data->targets().size() / std::max<std::size_t>(data->size(), 1);
    const T scale = static_cast<T>(data->scale());
    const S* px = data->inputs().data();
    const float* py = data->targets().data();
    constexpr std::size_t ahead = 8, line = 64;
    detail::parallel_for(count, (std::size_t{1} << 15) / std::max<std::size_t>(in, 1) + 1,
                         [&](std::size_t begin, std::size_t end) {
                           for (std::size_t b = begin; b < end; ++b) {
                             if (b + ahead < count) {
                               const char* next =
                                   reinterpret_cast<const char*>(px + idx[b + ahead] * in);
                               for (std::size_t o = 0; o < in * sizeof(S); o += line)
                                 __builtin_prefetch(next + o);
                               __builtin_prefetch(py + idx[b + ahead] * out);
                             }
                             const S* src = px + idx[b] * in;
                             T* dst = x + b * in;
                             for (std::size_t j = 0; j < in; ++j)
                               dst[j] = static_cast<T>(src[j]) * scale;
                             for (std::size_t j = 0; j < out; ++j)
                               y[b * out + j] = static_cast<T>(py[idx[b] * out + j]);
                           }
                         });
  };
}

}  // namespace ad::nn
