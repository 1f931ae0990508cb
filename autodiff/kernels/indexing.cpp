#include "autodiff/kernels/indexing.hpp"

#include <algorithm>
#include <vector>

#include "autodiff/parallel.hpp"

namespace ad::kernels {

namespace {

/// The contiguous runs of a strided part of an axis (len entries from some start, `step` apart)
/// within one outer index: one run of len·inner values when step is 1, else len runs of inner.
struct Runs {
  std::size_t count, length;
  Runs(const AxisView& v, std::size_t len, std::size_t step)
      : count(step == 1 ? std::min<std::size_t>(len, 1) : len),
        length(step == 1 ? len * v.inner : v.inner) {}
};

}  // namespace

template <class T>
Array<T> permute(const Array<T>& a, const std::vector<std::size_t>& axes) {
  const Shape& in = a.shape();
  const std::size_t rank = in.size();
  if (rank < 2) return a;
  Shape shape(rank);
  std::vector<std::size_t> from(rank);  // the input stride of each output axis
  {
    std::vector<std::size_t> stride(rank);
    for (std::size_t d = rank, s = 1; d-- > 0; s *= in[d]) stride[d] = s;
    for (std::size_t d = 0; d < rank; ++d) {
      shape[d] = in[axes[d]];
      from[d] = stride[axes[d]];
    }
  }
  Array<T> out(shape);
  if (out.size() == 0) return out;
  // The output's trailing axes that keep their place are contiguous runs in both arrays; with
  // none, the last output axis is read with its stride.
  std::size_t tail = rank;
  while (tail > 0 && axes[tail - 1] == tail - 1) --tail;
  const std::size_t outer_axes = tail < rank ? tail : rank - 1;
  std::size_t inner = 1;
  for (std::size_t d = outer_axes; d < rank; ++d) inner *= shape[d];
  const std::size_t step = tail < rank ? 1 : from[rank - 1];
  const T* pa = a.data();
  T* po = out.data();
  detail::parallel_rows(out.size() / inner, inner, [&](std::size_t o) {
    std::size_t offset = 0;
    for (std::size_t d = outer_axes, rest = o; d-- > 0; rest /= shape[d])
      offset += rest % shape[d] * from[d];
    T* to = po + o * inner;
    if (step == 1)
      std::copy_n(pa + offset, inner, to);
    else
      for (std::size_t j = 0; j < inner; ++j) to[j] = pa[offset + j * step];
  });
  return out;
}

template <class T>
Array<T> slice(const Array<T>& a, std::size_t axis, std::size_t start, std::size_t len,
               std::size_t step) {
  AxisView v(a.shape(), axis);
  Shape shape(a.shape().begin(), a.shape().end());
  shape[axis] = len;
  Array<T> out(shape);
  const T* pa = a.data();
  T* po = out.data();
  const Runs r(v, len, step);
  detail::parallel_rows(v.outer, len * v.inner, [&](std::size_t o) {
    for (std::size_t j = 0; j < r.count; ++j)
      std::copy_n(pa + (o * v.extent + start + j * step) * v.inner, r.length,
                  po + (o * len + j) * v.inner);
  });
  return out;
}

template <class T>
Array<T> unslice(const Array<T>& a, const Shape& shape, std::size_t axis, std::size_t start,
                 std::size_t step) {
  AxisView v(shape, axis);
  const std::size_t len = a.shape()[axis];
  Array<T> out = xt::zeros<T>(shape);
  const T* pa = a.data();
  T* po = out.data();
  const Runs r(v, len, step);
  detail::parallel_rows(v.outer, v.extent * v.inner, [&](std::size_t o) {
    for (std::size_t j = 0; j < r.count; ++j)
      std::copy_n(pa + (o * len + j) * v.inner, r.length,
                  po + (o * v.extent + start + j * step) * v.inner);
  });
  return out;
}

template <class T>
void add_slice(Array<T>& dst, const Array<T>& part, std::size_t axis, std::size_t start,
               std::size_t step) {
  AxisView v(dst.shape(), axis);
  const std::size_t len = part.shape()[axis];
  const T* pa = part.data();
  T* po = dst.data();
  const Runs r(v, len, step);
  detail::parallel_rows(v.outer, len * v.inner, [&](std::size_t o) {
    for (std::size_t j = 0; j < r.count; ++j) {
      const T* from = pa + (o * len + j) * v.inner;
      T* to = po + (o * v.extent + start + j * step) * v.inner;
      for (std::size_t i = 0; i < r.length; ++i) to[i] += from[i];
    }
  });
}

template <class T>
Array<T> index_select(const Array<T>& a, std::size_t axis, const Index& indices) {
  AxisView v(a.shape(), axis);
  Shape shape(a.shape().begin(), a.shape().end());
  const std::size_t len = indices.size();
  shape[axis] = len;
  Array<T> out(shape);
  const T* pa = a.data();
  T* po = out.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t j = 0; j < len; ++j)
      std::copy_n(pa + (o * v.extent + indices[j]) * v.inner, v.inner,
                  po + (o * len + j) * v.inner);
  return out;
}

template <class T>
Array<T> index_add(const Array<T>& a, const Shape& shape, std::size_t axis, const Index& indices) {
  AxisView v(shape, axis);
  Array<T> out = xt::zeros<T>(shape);
  const T* pa = a.data();
  T* po = out.data();
  const std::size_t len = indices.size();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t j = 0; j < len; ++j) {
      T* dst = po + (o * v.extent + indices[j]) * v.inner;
      const T* src = pa + (o * len + j) * v.inner;
      for (std::size_t i = 0; i < v.inner; ++i) dst[i] += src[i];
    }
  return out;
}

namespace {

/// Calls f(flat offset in the target, flat offset in the index) for every entry of the index,
/// whose value picks the position along `axis` of the target.
template <class F>
void for_each_gathered(const Index& index, std::size_t axis, const Shape& target, F&& f) {
  AxisView vt(target, axis);
  AxisView vi(index.shape(), axis);
  for (std::size_t o = 0; o < vi.outer; ++o)
    for (std::size_t j = 0; j < vi.extent; ++j)
      for (std::size_t i = 0; i < vi.inner; ++i) {
        const std::size_t at = (o * vi.extent + j) * vi.inner + i;
        f((o * vt.extent + index[at]) * vt.inner + i, at);
      }
}

}  // namespace

template <class T>
Array<T> gather(const Array<T>& a, std::size_t axis, const Index& index) {
  Array<T> out(index.shape());
  const T* pa = a.data();
  T* po = out.data();
  for_each_gathered(index, axis, Shape(a.shape().begin(), a.shape().end()),
                    [&](std::size_t src, std::size_t at) { po[at] = pa[src]; });
  return out;
}

template <class T>
Array<T> scatter_add(const Array<T>& a, const Shape& shape, std::size_t axis, const Index& index) {
  Array<T> out = xt::zeros<T>(shape);
  const T* pa = a.data();
  T* po = out.data();
  for_each_gathered(index, axis, shape,
                    [&](std::size_t dst, std::size_t at) { po[dst] += pa[at]; });
  return out;
}

template <class T>
Array<T> concatenate(const std::vector<const Array<T>*>& parts, std::size_t axis) {
  Shape shape(parts[0]->shape().begin(), parts[0]->shape().end());
  shape[axis] = 0;
  for (const auto* p : parts) shape[axis] += p->shape()[axis];
  AxisView v(shape, axis);
  Array<T> out(shape);
  T* po = out.data();
  std::size_t offset = 0;
  std::vector<std::size_t> offsets;  // of each part along the axis
  for (const auto* part : parts) {
    offsets.push_back(offset);
    offset += part->shape()[axis];
  }
  detail::parallel_rows(v.outer, v.extent * v.inner, [&](std::size_t o) {
    for (std::size_t p = 0; p < parts.size(); ++p) {
      const std::size_t chunk = parts[p]->shape()[axis] * v.inner;
      std::copy_n(parts[p]->data() + o * chunk, chunk,
                  po + o * v.extent * v.inner + offsets[p] * v.inner);
    }
  });
  return out;
}

#define AD_INSTANTIATE(T)                                                                          \
  template Array<T> permute(const Array<T>&, const std::vector<std::size_t>&);                     \
  template Array<T> slice(const Array<T>&, std::size_t, std::size_t, std::size_t, std::size_t);    \
  template Array<T> unslice(const Array<T>&, const Shape&, std::size_t, std::size_t, std::size_t); \
  template void add_slice(Array<T>&, const Array<T>&, std::size_t, std::size_t, std::size_t);      \
  template Array<T> index_select(const Array<T>&, std::size_t, const Index&);                      \
  template Array<T> index_add(const Array<T>&, const Shape&, std::size_t, const Index&);           \
  template Array<T> gather(const Array<T>&, std::size_t, const Index&);                            \
  template Array<T> scatter_add(const Array<T>&, const Shape&, std::size_t, const Index&);         \
  template Array<T> concatenate(const std::vector<const Array<T>*>&, std::size_t);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::kernels
