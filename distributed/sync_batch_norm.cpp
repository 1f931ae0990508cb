#include "distributed/sync_batch_norm.hpp"

#include "autodiff/ops.hpp"
#include "distributed/data_parallel.hpp"

namespace ad::distributed {

template <class T>
typename nn::BatchNorm<T>::Statistics sync_statistics(const Variable<T>& x,
                                                      const std::vector<long>& axes,
                                                      Communicator& comm) {
  // mean = Σx / n and var = Σx² / n − mean² over the n values of every process; the sums are one
  // op each, summed across processes forward and backward.
  double count = x.size() / x.shape()[1];
  comm.sum(&count, 1);
  Variable<T> sum_x = all_reduce_sum(sum(x, axes, true), comm);
  Variable<T> sum_x2 = all_reduce_sum(sum(square(x), axes, true), comm);
  Variable<T> mean = sum_x * (1.0 / count);
  Variable<T> var = sum_x2 * (1.0 / count) - square(mean);
  return {mean, var, static_cast<std::size_t>(count)};
}

template <class T>
typename nn::BatchNorm<T>::Statistics SyncBatchNorm<T>::statistics(const Variable<T>& x,
                                                                   const std::vector<long>& axes) {
  return sync_statistics(x, axes, comm_);
}

template class SyncBatchNorm<float>;
template class SyncBatchNorm<double>;
template class SyncBatchNorm1d<float>;
template class SyncBatchNorm1d<double>;
template class SyncBatchNorm2d<float>;
template class SyncBatchNorm2d<double>;

}  // namespace ad::distributed
