#include "autodiff/kernels/elementwise.hpp"

namespace ad::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t nd = std::max(a.size(), b.size());
  Shape out(nd, 1);
  for (std::size_t i = 0; i < nd; ++i) {
    std::size_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    std::size_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, ": shapes ", shape_str(a), " and ", shape_str(b), " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Strides contiguous_strides(const Shape& shape) {
  Strides s(shape.size(), 0);
  std::ptrdiff_t acc = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    s[d] = acc;
    acc *= static_cast<std::ptrdiff_t>(shape[d]);
  }
  return s;
}

Strides broadcast_strides(const Shape& in, const Shape& out) {
  Strides s(out.size(), 0);
  Strides c = contiguous_strides(in);
  const std::size_t lead = out.size() - in.size();
  for (std::size_t d = 0; d < in.size(); ++d) s[lead + d] = in[d] == 1 ? 0 : c[d];
  return s;
}

}  // namespace ad::kernels
