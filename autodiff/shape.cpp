#include "autodiff/shape.hpp"

#include <algorithm>
#include <numeric>

#include "autodiff/kernels/indexing.hpp"
#include "autodiff/kernels/reduce.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// Throws unless `a` and `b` agree on every axis but `axis`.
void check_same_but_axis(const Shape& a, const Shape& b, std::size_t axis, const char* op,
                         const char* what_a, const char* what_b) {
  bool ok = a.size() == b.size();
  for (std::size_t d = 0; ok && d < a.size(); ++d) ok = d == axis || a[d] == b[d];
  if (!ok)
    fail(op, ": ", what_a, " ", shape_str(a), " and ", what_b, " ", shape_str(b),
         " must agree on every axis but axis ", axis);
}

std::size_t slice_length(std::size_t start, std::size_t stop, std::size_t step) {
  return start < stop ? (stop - start + step - 1) / step : 0;
}

/// A first-order rule's output gradient as a Variable it may change (reshape, place): the
/// gradient itself when the rule holds it alone, else a copy.
template <class T>
Variable<T> own_gradient(const BackwardContext<T>& c) {
  return c.grad_exclusive ? c.grad : Variable<T>(Array<T>(c.grad.value()));
}

}  // namespace

template <class T>
Variable<T> reshape(const Variable<T>& a, const Shape& shape) {
  return detail::traced<T>(
      "reshape", {&a},
      [&] {
        if (shape_size(shape) != a.size())
          fail("reshape: cannot reshape ", shape_str(a.shape()), " (", a.size(), " elements) to ",
               shape_str(shape), " (", shape_size(shape), " elements)");
        if (same_shape(shape, a.shape())) return a;
        Array<T> out = a.value();
        out.reshape(shape);
        return make_op<T>("reshape", std::move(out), {a},
                          [](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g reshaped back
                            if (c.create_graph) return {reshape(c.grad, c.input(0).shape())};
                            Variable<T> g = own_gradient(c);
                            g.mutable_value().reshape(c.input(0).shape());
                            return {g};
                          });
      },
      "shape", shape);
}

template <class T>
Variable<T> flatten(const Variable<T>& a, long start, long end) {
  return detail::traced<T>(
      "flatten", {&a},
      [&] {
        if (a.dim() == 0) return reshape(a, Shape{1});
        const std::size_t s = normalize_axis(start, a.shape(), "flatten");
        const std::size_t e = normalize_axis(end, a.shape(), "flatten");
        if (s > e)
          fail("flatten: start axis ", start, " comes after end axis ", end, " in shape ",
               shape_str(a.shape()));
        Shape shape;
        for (std::size_t d = 0; d < a.dim(); ++d) {
          if (d <= s || d > e)
            shape.push_back(a.shape()[d]);
          else
            shape.back() *= a.shape()[d];
        }
        return reshape(a, shape);
      },
      "start", start, "end", end);
}

template <class T>
Variable<T> permute(const Variable<T>& a, const std::vector<std::size_t>& axes) {
  return detail::traced<T>(
      "permute", {&a},
      [&] {
        std::vector<std::size_t> sorted = axes;
        std::sort(sorted.begin(), sorted.end());
        bool ok = axes.size() == a.dim();
        for (std::size_t d = 0; ok && d < sorted.size(); ++d) ok = sorted[d] == d;
        if (!ok)
          fail("permute: axes ", shape_str(axes), " are not a permutation of the axes of shape ",
               shape_str(a.shape()));
        return make_op<T>("permute", kernels::permute(a.value(), axes), {a},
                          [axes](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g permuted back by the inverse permutation
                            std::vector<std::size_t> inverse(axes.size());
                            for (std::size_t d = 0; d < axes.size(); ++d) inverse[axes[d]] = d;
                            return {permute(c.grad, inverse)};
                          });
      },
      "axes", axes);
}

template <class T>
Variable<T> transpose(const Variable<T>& a, long axis0, long axis1) {
  if (a.dim() < 2) fail("transpose: needs at least 2 axes, shape is ", shape_str(a.shape()));
  std::vector<std::size_t> axes(a.dim());
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[normalize_axis(axis0, a.shape(), "transpose")],
            axes[normalize_axis(axis1, a.shape(), "transpose")]);
  return permute(a, axes);
}

template <class T>
Variable<T> slice(const Variable<T>& a, long axis, std::size_t start, std::size_t stop,
                  std::size_t step) {
  return detail::traced<T>(
      "slice", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "slice");
        const std::size_t extent = a.shape()[ax];
        if (step == 0) fail("slice: step must be positive");
        if (start > extent)
          fail("slice: start ", start, " is beyond axis ", ax, " of shape ", shape_str(a.shape()));
        stop = std::min(stop, extent);
        const std::size_t len = slice_length(start, stop, step);
        return make_op<T>("slice", kernels::slice(a.value(), ax, start, len, step), {a},
                          [ax, start, step](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g placed back at the sliced positions, zero elsewhere (first
                            // order: added there in place by the backward pass, see Placement)
                            if (!c.create_graph)
                              return {detail::placed_gradient<T>(
                                  own_gradient(c), {c.input(0).shape(), ax, start, step})};
                            return {unslice(c.grad, c.input(0).shape(), long(ax), start, step)};
                          });
      },
      "axis", axis, "start", start, "stop", stop, "step", step);
}

template <class T>
Variable<T> select(const Variable<T>& a, long axis, std::size_t index) {
  return detail::traced<T>(
      "select", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "select");
        if (index >= a.shape()[ax])
          fail("select: index ", index, " is beyond axis ", ax, " of shape ", shape_str(a.shape()));
        Array<T> part = kernels::slice(a.value(), ax, index, 1, 1);
        Shape shape = a.shape();
        shape.erase(shape.begin() + static_cast<std::ptrdiff_t>(ax));
        part.reshape(shape);
        return make_op<T>("select", std::move(part), {a}, [ax, index](const BackwardContext<T>& c) {
          // d/da = g placed back at the index, with the axis of length 1 (first order: added there
          // in place by the backward pass, see Placement)
          Shape kept = c.input(0).shape();
          kept[ax] = 1;
          if (c.create_graph)
            return Grads<T>{unslice(reshape(c.grad, kept), c.input(0).shape(), long(ax), index)};
          Variable<T> g = own_gradient(c);
          g.mutable_value().reshape(kept);
          return Grads<T>{
              detail::placed_gradient<T>(std::move(g), {c.input(0).shape(), ax, index, 1})};
        });
      },
      "axis", axis, "index", index);
}

template <class T>
Variable<T> unslice(const Variable<T>& a, const Shape& shape, long axis, std::size_t start,
                    std::size_t step) {
  return detail::traced<T>(
      "unslice", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, shape, "unslice");
        check_same_but_axis(a.shape(), shape, ax, "unslice", "part", "target");
        const std::size_t len = a.shape()[ax];
        if (step == 0 || (len > 0 && start + (len - 1) * step >= shape[ax]))
          fail("unslice: ", len, " entries from ", start, " with step ", step, " do not fit axis ",
               ax, " of shape ", shape_str(shape));
        return make_op<T>("unslice", kernels::unslice(a.value(), shape, ax, start, step), {a},
                          [ax, start, step, len](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = the slice of g at the placed positions
                            return {slice(c.grad, long(ax), start, start + len * step, step)};
                          });
      },
      "shape", shape, "axis", axis, "start", start, "step", step);
}

template <class T>
Variable<T> index_select(const Variable<T>& a, long axis, const Index& indices) {
  return detail::traced<T>(
      "index_select", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "index_select");
        indices.check_below(a.shape()[ax], "index_select",
                            "axis " + std::to_string(ax) + " of shape " + shape_str(a.shape()));
        return make_op<T>("index_select", kernels::index_select(a.value(), ax, indices), {a},
                          [ax, indices](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g added back at the selected positions
                            return {index_add(c.grad, c.input(0).shape(), long(ax), indices)};
                          });
      },
      "axis", axis, "indices", indices);
}

template <class T>
Variable<T> index_add(const Variable<T>& a, const Shape& shape, long axis, const Index& indices) {
  return detail::traced<T>(
      "index_add", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, shape, "index_add");
        check_same_but_axis(a.shape(), shape, ax, "index_add", "source", "target");
        if (a.shape()[ax] != indices.size())
          fail("index_add: source ", shape_str(a.shape()), " has ", a.shape()[ax],
               " entries along axis ", ax, " but ", indices.size(), " indices were given");
        indices.check_below(shape[ax], "index_add",
                            "axis " + std::to_string(ax) + " of shape " + shape_str(shape));
        return make_op<T>("index_add", kernels::index_add(a.value(), shape, ax, indices), {a},
                          [ax, indices](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g read at the indices
                            return {index_select(c.grad, long(ax), indices)};
                          });
      },
      "shape", shape, "axis", axis, "indices", indices);
}

template <class T>
Variable<T> gather(const Variable<T>& a, long axis, const Index& index) {
  return detail::traced<T>(
      "gather", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, a.shape(), "gather");
        check_same_but_axis(index.shape(), a.shape(), ax, "gather", "index", "input");
        index.check_below(a.shape()[ax], "gather",
                          "axis " + std::to_string(ax) + " of shape " + shape_str(a.shape()));
        return make_op<T>("gather", kernels::gather(a.value(), ax, index), {a},
                          [ax, index](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g scattered (added) back to the gathered positions
                            return {scatter_add(c.grad, c.input(0).shape(), long(ax), index)};
                          });
      },
      "axis", axis, "index", index);
}

template <class T>
Variable<T> scatter_add(const Variable<T>& a, const Shape& shape, long axis, const Index& index) {
  return detail::traced<T>(
      "scatter_add", {&a},
      [&] {
        const std::size_t ax = normalize_axis(axis, shape, "scatter_add");
        if (index.shape() != a.shape())
          fail("scatter_add: index ", shape_str(index.shape()), " and source ",
               shape_str(a.shape()), " must have the same shape");
        check_same_but_axis(index.shape(), shape, ax, "scatter_add", "index", "target");
        index.check_below(shape[ax], "scatter_add",
                          "axis " + std::to_string(ax) + " of shape " + shape_str(shape));
        return make_op<T>("scatter_add", kernels::scatter_add(a.value(), shape, ax, index), {a},
                          [ax, index](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g gathered at the scattered positions
                            return {gather(c.grad, long(ax), index)};
                          });
      },
      "shape", shape, "axis", axis, "index", index);
}

template <class T>
Variable<T> concatenate(const std::vector<Variable<T>>& parts, long axis) {
  return detail::traced<T>(
      "concatenate", parts,
      [&] {
        if (parts.empty()) fail("concatenate: needs at least one tensor");
        const Shape& first = parts[0].shape();
        const std::size_t ax = normalize_axis(axis, first, "concatenate");
        Shape shape = first;
        shape[ax] = 0;
        for (std::size_t p = 0; p < parts.size(); ++p) {
          check_same_but_axis(parts[p].shape(), first, ax, "concatenate", "a part",
                              "the first part");
          shape[ax] += parts[p].shape()[ax];
        }
        std::vector<const Array<T>*> arrays;
        for (const auto& part : parts) arrays.push_back(&part.value());
        return make_op<T>("concatenate", kernels::concatenate(arrays, ax), parts,
                          [ax](const BackwardContext<T>& c) -> Grads<T> {
                            // d/d(part i) = the slice of g where part i was placed
                            Grads<T> grads(c.inputs.size());
                            std::size_t offset = 0;
                            for (std::size_t i = 0; i < c.inputs.size(); ++i) {
                              const std::size_t len = c.input(i).shape()[ax];
                              if (c.needs(i))
                                grads[i] = slice(c.grad, long(ax), offset, offset + len);
                              offset += len;
                            }
                            return grads;
                          });
      },
      "axis", axis);
}

template <class T>
Variable<T> stack(const std::vector<Variable<T>>& parts, long axis) {
  if (parts.empty()) fail("stack: needs at least one tensor");
  const Shape& first = parts[0].shape();
  Shape extended = first;
  extended.push_back(1);
  const std::size_t ax = normalize_axis(axis, extended, "stack");
  Shape shape;
  for (std::size_t d = 0; d <= first.size(); ++d) {
    if (d == ax) shape.push_back(1);
    if (d < first.size()) shape.push_back(first[d]);
  }
  std::vector<Variable<T>> expanded;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    if (parts[p].shape() != first)
      fail("stack: part ", p, " has shape ", shape_str(parts[p].shape()), " but part 0 has ",
           shape_str(first));
    expanded.push_back(reshape(parts[p], shape));
  }
  return concatenate(expanded, long(ax));
}

template <class T>
Variable<T> broadcast_to(const Variable<T>& a, const Shape& shape) {
  return detail::traced<T>(
      "broadcast_to", {&a},
      [&] {
        if (same_shape(a.shape(), shape)) return a;
        return make_op<T>("broadcast_to", kernels::broadcast_to(a.value(), shape), {a},
                          [](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g summed over the broadcast axes
                            return {sum_to(c.grad, c.input(0).shape())};
                          });
      },
      "shape", shape);
}

template <class T>
Variable<T> sum_to(const Variable<T>& a, const Shape& shape) {
  return detail::traced<T>(
      "sum_to", {&a},
      [&] {
        if (same_shape(a.shape(), shape)) return a;
        return make_op<T>("sum_to", kernels::sum_to(a.value(), shape), {a},
                          [](const BackwardContext<T>& c) -> Grads<T> {
                            // d/da = g repeated along the summed axes
                            return {broadcast_to(c.grad, c.input(0).shape())};
                          });
      },
      "shape", shape);
}

template <class T>
Variable<T> embedding(const Variable<T>& table, const Variable<T>& ids) {
  return detail::traced<T>("embedding", {&table, &ids}, [&] {
    if (table.dim() != 2)
      fail("embedding: the table must be (count, dim), got ", shape_str(table.shape()));
    Index index = Index::from_values(ids.value(), "embedding: ids");
    index.check_below(table.shape()[0], "embedding: ids",
                      "a table of " + std::to_string(table.shape()[0]) + " rows");
    Shape shape = ids.shape();
    shape.push_back(table.shape()[1]);
    Array<std::size_t> flat = index.values();
    flat.reshape({index.size()});
    return reshape(index_select(table, 0, Index(std::move(flat))), shape);
  });
}

template <class T>
Variable<T> full(const Shape& shape, T value) {
  return detail::traced<T>(
      "full", {}, [&] { return Variable<T>(Array<T>(xt::broadcast(value, shape))); }, "shape",
      shape, "value", double(value));
}

template <class T>
std::vector<const void*> shape_ops() {
  return detail::addresses(&reshape<T>, &flatten<T>, &permute<T>, &transpose<T>, &slice<T>,
                           &select<T>, &unslice<T>, &index_select<T>, &index_add<T>, &gather<T>,
                           &scatter_add<T>, &concatenate<T>, &stack<T>, &broadcast_to<T>,
                           &sum_to<T>, &embedding<T>, &full<T>);
}
template std::vector<const void*> shape_ops<float>();
template std::vector<const void*> shape_ops<double>();

namespace detail {
template <class T>
Replays<T> shape_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"reshape", [](const In& x, const A& a) { return reshape(x.at(0), a.shape("shape")); }},
      {"flatten",
       [](const In& x, const A& a) {
         return flatten(x.at(0), a.integer("start"), a.integer("end"));
       }},
      {"permute", [](const In& x, const A& a) { return permute(x.at(0), a.sizes("axes")); }},
      {"slice",
       [](const In& x, const A& a) {
         return slice(x.at(0), a.integer("axis"), std::size_t(a.integer("start")),
                      std::size_t(a.integer("stop")), std::size_t(a.integer("step")));
       }},
      {"select",
       [](const In& x, const A& a) {
         return select(x.at(0), a.integer("axis"), std::size_t(a.integer("index")));
       }},
      {"unslice",
       [](const In& x, const A& a) {
         return unslice(x.at(0), a.shape("shape"), a.integer("axis"),
                        std::size_t(a.integer("start")), std::size_t(a.integer("step")));
       }},
      {"index_select",
       [](const In& x, const A& a) {
         return index_select(x.at(0), a.integer("axis"), a.index("indices"));
       }},
      {"index_add",
       [](const In& x, const A& a) {
         return index_add(x.at(0), a.shape("shape"), a.integer("axis"), a.index("indices"));
       }},
      {"gather", [](const In& x,
                    const A& a) { return gather(x.at(0), a.integer("axis"), a.index("index")); }},
      {"scatter_add",
       [](const In& x, const A& a) {
         return scatter_add(x.at(0), a.shape("shape"), a.integer("axis"), a.index("index"));
       }},
      {"concatenate", [](const In& x, const A& a) { return concatenate(x, a.integer("axis")); }},
      {"broadcast_to",
       [](const In& x, const A& a) { return broadcast_to(x.at(0), a.shape("shape")); }},
      {"sum_to", [](const In& x, const A& a) { return sum_to(x.at(0), a.shape("shape")); }},
      {"embedding", [](const In& x, const A&) { return embedding(x.at(0), x.at(1)); }},
      {"full",
       [](const In&, const A& a) {
         return full(a.shape("shape"), static_cast<T>(a.number("value")));
       }},
  };
}
template Replays<float> shape_replays<float>();
template Replays<double> shape_replays<double>();
}  // namespace detail

}  // namespace ad
