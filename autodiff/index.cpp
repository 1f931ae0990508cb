#include "autodiff/index.hpp"

#include <algorithm>
#include <cmath>

namespace ad {

Index::Index(std::vector<std::size_t> values)
    : values_(Array<std::size_t>::from_shape({values.size()})) {
  std::copy(values.begin(), values.end(), values_.begin());
  find_max();
}

Index::Index(std::initializer_list<std::size_t> values) : Index(std::vector<std::size_t>(values)) {}

Index::Index(Array<std::size_t> values) : values_(std::move(values)) {
  find_max();
}

void Index::find_max() {
  max_ = 0;
  for (std::size_t v : values_) max_ = std::max(max_, v);
}

template <class T>
Index Index::from_values(const Array<T>& values, const std::string& what) {
  Array<std::size_t> out = Array<std::size_t>::from_shape(values.shape());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const T v = values.data()[i];
    // below 2^53 (2^24 for float) every whole number is exact
    if (!(v >= 0 && v == std::floor(v) && v < T(1ull << (sizeof(T) == 4 ? 24 : 53))))
      fail(what, ": ", v, " at position ", i, " is not an index (a whole number >= 0)");
    out.data()[i] = static_cast<std::size_t>(v);
  }
  return Index(std::move(out));
}

void Index::check_below(std::size_t extent, const std::string& context, const std::string& what,
                        bool labels) const {
  if (size() == 0 || max_ < extent) return;
  for (std::size_t i = 0; i < size(); ++i)
    if ((*this)[i] >= extent) {
      if (labels)
        fail(context, ": label ", (*this)[i], " at row ", i, " is out of range for ", what);
      fail(context, ": index ", (*this)[i], " (position ", i, ") is out of range for ", what);
    }
}

template Index Index::from_values(const Array<float>&, const std::string&);
template Index Index::from_values(const Array<double>&, const std::string&);

}  // namespace ad
