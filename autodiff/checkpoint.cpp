#include "autodiff/checkpoint.hpp"

#include <cmath>
#include <unordered_set>

#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// The Variables that `out`'s graph reads from outside the ops made after sequence number `start`
/// and that require grad: fn's inputs, and the parameters it captured.
template <class T>
std::vector<Variable<T>> outside_inputs(const Variable<T>& out, std::uint64_t start) {
  std::vector<Variable<T>> found;
  std::unordered_set<const VariableImpl<T>*> seen{&out.impl()};
  std::vector<const Variable<T>*> stack{&out};
  while (!stack.empty()) {
    const VariableImpl<T>& impl = stack.back()->impl();
    stack.pop_back();
    for (const auto& in : impl.node->inputs) {
      if (!seen.insert(&in.impl()).second) continue;
      if (in.impl().node && in.impl().node->seq > start)
        stack.push_back(&in);
      else if (in.requires_grad())
        found.push_back(in);
    }
  }
  return found;
}

/// Whether two arrays hold the same numbers (NaN equal to NaN).
template <class T>
bool same_values(const Array<T>& a, const Array<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const T x = a.data()[i], y = b.data()[i];
    if (!(x == y || (std::isnan(x) && std::isnan(y)))) return false;
  }
  return true;
}

}  // namespace

template <class T>
Variable<T> checkpoint(const typename detail::identity<CheckpointFn<T>>::type& fn,
                       const std::vector<Variable<T>>& inputs) {
  if (!fn) fail("checkpoint: the function is empty");
  // Nothing to recompute without a graph; in a trace, fn's own ops are the program's nodes.
  if (!is_grad_enabled() || detail::active_trace<T>) return fn(inputs);
  const std::uint64_t start = detail::next_seq();
  Variable<T> out = fn(inputs);
  if (!out.defined()) fail("checkpoint: the function returned an undefined Variable");
  if (!out.requires_grad() || out.is_leaf() || out.impl().node->seq <= start) return out;

  // The op's inputs: fn's own, then what else its graph reads (parameters, captured Variables).
  std::vector<Variable<T>> op_inputs = inputs;
  std::unordered_set<const VariableImpl<T>*> given;
  for (const auto& v : inputs) given.insert(&v.impl());
  for (auto& v : outside_inputs(out, start))
    if (!given.count(&v.impl())) op_inputs.push_back(std::move(v));
  Array<T> value = out.impl_ptr().use_count() == 1 ? std::move(out.impl().value) : out.value();
  out = Variable<T>();  // frees fn's intermediates

  const std::size_t own = inputs.size();
  return make_op<T>(
      "checkpoint", std::move(value), op_inputs,
      [fn, own](const BackwardContext<T>& c) -> Grads<T> {
        // d/d(inputs) = the gradient of fn run again, from g; the recomputed graph is cut at the
        // op's inputs (fn's own through a fresh identity op), so that the pass stays inside it.
        GradModeGuard recording(true);
        std::vector<Variable<T>> args(c.inputs.begin(), c.inputs.begin() + long(own));
        std::vector<Variable<T>> wanted;
        std::vector<std::size_t> slot;
        for (std::size_t i = 0; i < c.inputs.size(); ++i) {
          if (!c.needs(i)) continue;
          if (i < own)
            args[i] = make_op<T>("checkpoint_input", Array<T>(args[i].value()), {args[i]},
                                 [](const BackwardContext<T>& a) -> Grads<T> { return {a.grad}; });
          wanted.push_back(i < own ? args[i] : c.inputs[i]);
          slot.push_back(i);
        }
        Variable<T> again = fn(args);
        if (!again.defined() || !same_values(again.value(), c.output.value()))
          fail(
              "checkpoint: running the function again in backward gave a different output "
              "(shape ",
              again.defined() ? shape_str(again.shape()) : "undefined", ", first run ",
              shape_str(c.output.shape()),
              "); it must be deterministic (dropout draws new masks: keep it outside)");
        Grads<T> grads(c.inputs.size());
        if (!again.requires_grad()) return grads;
        std::vector<Variable<T>> got = detail::grad_until(
            again, wanted, c.grad, BackwardOptions{c.create_graph, c.create_graph});
        for (std::size_t k = 0; k < slot.size(); ++k) grads[slot[k]] = std::move(got[k]);
        return grads;
      });
}

template Variable<float> checkpoint<float>(const CheckpointFn<float>&,
                                           const std::vector<Variable<float>>&);
template Variable<double> checkpoint<double>(const CheckpointFn<double>&,
                                             const std::vector<Variable<double>>&);

}  // namespace ad
