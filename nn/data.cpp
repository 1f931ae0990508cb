#include "nn/data.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "nn/init.hpp"

namespace ad::nn {

template <class S>
Dataset<S>::Dataset(Array<S> inputs, Array<float> targets, double scale)
    : inputs_(std::move(inputs)), targets_(std::move(targets)), scale_(scale) {
  if (inputs_.dimension() == 0 || targets_.dimension() == 0)
    fail("Dataset: inputs and targets need a leading sample axis, got ", shape_str(inputs_.shape()),
         " and ", shape_str(targets_.shape()));
  if (inputs_.shape()[0] != targets_.shape()[0])
    fail("Dataset: ", inputs_.shape()[0], " inputs but ", targets_.shape()[0], " targets");
}

template <class S>
Shape Dataset<S>::sample_shape() const {
  return Shape(inputs_.shape().begin() + 1, inputs_.shape().end());
}

template <class S>
Shape Dataset<S>::target_shape() const {
  return Shape(targets_.shape().begin() + 1, targets_.shape().end());
}

template <class S>
Dataset<S> Dataset<S>::slice(std::size_t begin, std::size_t end) const {
  if (begin > end || end > size())
    fail("Dataset::slice: [", begin, ", ", end, ") is not within ", size(), " samples");
  auto rows = [&](const auto& a) {
    using A = std::decay_t<decltype(a)>;
    Shape s(a.shape().begin(), a.shape().end());
    const std::size_t row = a.size() / std::max<std::size_t>(s[0], 1);
    s[0] = end - begin;
    A out = A::from_shape(s);
    std::copy(a.data() + begin * row, a.data() + end * row, out.data());
    return out;
  };
  return Dataset(rows(inputs_), rows(targets_), scale_);
}

template <class T>
std::size_t DataLoader<T>::batches() const {
  // n / b and the partial batch apart: (n + b - 1) / b wraps for a batch size near SIZE_MAX.
  const std::size_t b = options_.batch_size;
  return n_ / b + (!options_.drop_last && n_ % b != 0 ? 1 : 0);
}

template <class T>
std::vector<std::size_t> DataLoader<T>::order(std::size_t epoch) const {
  std::vector<std::size_t> idx(n_);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  if (options_.shuffle) {
    std::seed_seq seq{static_cast<std::uint32_t>(options_.seed),
                      static_cast<std::uint32_t>(options_.seed >> 32),
                      static_cast<std::uint32_t>(epoch), static_cast<std::uint32_t>(epoch >> 32)};
    Generator rng(seq);
    std::shuffle(idx.begin(), idx.end(), rng);
  }
  return idx;
}

template <class T>
Batch<T> DataLoader<T>::batch(const std::vector<std::size_t>& order, std::size_t i,
                              std::uint64_t epoch) const {
  if (order.size() != n_) fail("DataLoader: an order of ", order.size(), " for ", n_, " samples");
  if (i >= batches()) fail("DataLoader: batch ", i, " of ", batches());
  // The global batch, then this loader's shard of it.
  const std::size_t global_begin = i * options_.batch_size;
  const std::size_t global = std::min(options_.batch_size, n_ - global_begin);
  const std::size_t base = global / options_.shards, extra = global % options_.shards;
  const std::size_t begin = global_begin + options_.shard * base + std::min(options_.shard, extra);
  const std::size_t count = base + (options_.shard < extra ? 1 : 0);
  Shape xs{count}, ys{count};
  for (auto d : sample_shape_) xs.push_back(d);
  for (auto d : target_shape_) ys.push_back(d);
  Array<T> x = Array<T>::from_shape(xs);
  Array<T> y = Array<T>::from_shape(ys);
  if (count) fill_(order.data() + begin, count, x.data(), y.data());
  if (transform_ && count) {
    const std::size_t in = x.size() / count;
    detail::parallel_for(count, 1, [&](std::size_t lo, std::size_t hi) {
      for (std::size_t b = lo; b < hi; ++b) {
        const std::uint64_t sample = order[begin + b];
        std::seed_seq seq{static_cast<std::uint32_t>(options_.seed),
                          static_cast<std::uint32_t>(options_.seed >> 32),
                          static_cast<std::uint32_t>(epoch),
                          static_cast<std::uint32_t>(epoch >> 32),
                          static_cast<std::uint32_t>(sample),
                          static_cast<std::uint32_t>(sample >> 32),
                          0x6175u /* "au" */};
        Generator rng(seq);
        transform_(x.data() + b * in, sample_shape_, rng);
      }
    });
  }
  return Batch<T>{
      Variable<T>(std::move(x)), Variable<T>(std::move(y)),
      std::vector<std::size_t>(order.begin() + static_cast<std::ptrdiff_t>(begin),
                               order.begin() + static_cast<std::ptrdiff_t>(begin + count)),
      global};
}

template class Dataset<float>;
template class Dataset<double>;
template class Dataset<std::uint8_t>;
template class DataLoader<float>;
template class DataLoader<double>;

}  // namespace ad::nn
