#include "autodiff/flat.hpp"

#include <algorithm>
#include <unordered_set>

namespace ad {

template <class T>
FlatParameters<T>::FlatParameters(std::vector<Variable<T>> params) : params_(std::move(params)) {
  std::unordered_set<const VariableImpl<T>*> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Variable<T>& p = params_[i];
    if (!p.defined() || !p.is_leaf() || !p.requires_grad())
      fail("FlatParameters: parameter ", i, " is not a leaf that requires grad");
    if (!seen.insert(p.impl_ptr().get()).second)
      fail("FlatParameters: parameter ", i, " (shape ", shape_str(p.shape()),
           ") is listed more than once");
    offsets_.push_back(size_);
    size_ += p.size();
  }
  arena_ = std::make_shared<memory::Arena>(2 * size_ * sizeof(T));
  values_ = reinterpret_cast<T*>(arena_->data());
  grads_ = values_ + size_;
  std::fill(grads_, grads_ + size_, T(0));
  for (auto& p : params_) p.impl().grad_view = true;
  attach();
}

template <class T>
bool FlatParameters<T>::attached() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const VariableImpl<T>& p = params_[i].impl();
    if (p.value.size() == 0) continue;
    if (p.value.data() != values_ + offsets_[i] || !p.grad.defined() ||
        p.grad.value().data() != grads_ + offsets_[i])
      return false;
  }
  return true;
}

template <class T>
void FlatParameters<T>::attach() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    VariableImpl<T>& p = params_[i].impl();
    const Shape shape = p.value.shape();
    if (p.value.size() == 0) continue;
    if (p.value.data() != values_ + offsets_[i]) {
      Array<T> view = placed_array(values_ + offsets_[i], shape);
      std::copy(p.value.begin(), p.value.end(), view.begin());
      p.value = std::move(view);  // the same numbers, so the version stays
    }
    if (!p.grad.defined() || p.grad.value().data() != grads_ + offsets_[i]) {
      Array<T> view = placed_array(grads_ + offsets_[i], shape);
      if (p.grad.defined() && p.grad.shape() == shape)
        std::copy(p.grad.value().begin(), p.grad.value().end(), view.begin());
      else
        std::fill(view.begin(), view.end(), T(0));
      p.grad = Variable<T>(std::move(view));
    }
  }
}

template <class T>
void FlatParameters<T>::zero_grad() {
  attach();
  std::fill(grads_, grads_ + size_, T(0));
  for (auto& p : params_) ++p.impl().grad.impl().version;
}

template class FlatParameters<float>;
template class FlatParameters<double>;

}  // namespace ad
