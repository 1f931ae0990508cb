// The backward engine: recording a node, and walking the graph in reverse creation order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <unordered_map>

#include <xtensor/xio.hpp>

#include "autodiff/ops.hpp"
#include "autodiff/variable.hpp"

namespace ad {
namespace detail {

std::uint64_t next_seq() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

namespace {
std::uint64_t next_pass() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}
}  // namespace

template <class T>
void check_finite(const Array<T>& value, const char* op, const char* phase,
                  const std::vector<Variable<T>>& inputs) {
  const T* p = value.data();
  for (std::size_t i = 0, n = value.size(); i < n; ++i) {
    if (!std::isfinite(p[i])) {
      std::string shapes;
      for (const auto& in : inputs) shapes += (shapes.empty() ? "" : ", ") + shape_str(in.shape());
      fail("anomaly: ", op, " ", phase, " produced ", std::isnan(p[i]) ? "NaN" : "Inf",
           " at flat index ", i, " of a result of shape ", shape_str(value.shape()),
           " (input shapes: ", shapes, ")");
    }
  }
}

template <class T>
Variable<T> record(const char* op, Array<T>&& value, std::vector<Variable<T>>&& inputs,
                   BackwardFn<T>&& backward) {
  auto impl = std::make_shared<VariableImpl<T>>(std::move(value), true);
  Node<T>& node = impl->node.emplace();
  node.op = op;
  node.seq = next_seq();
  node.inputs = std::move(inputs);
  for (const auto& in : node.inputs) node.versions.push_back(in.impl().version);
  node.backward = std::move(backward);
  return Variable<T>(std::move(impl));
}

namespace {

/// Adds `g` into the slot `acc`. Without create_graph, a gradient that nobody else holds is taken
/// over as is, and later contributions are added in place into an array the slot owns.
template <class T>
void accumulate(Variable<T>& acc, bool& owned, Variable<T>&& g, bool create_graph) {
  if (!acc.defined()) {
    owned = !create_graph && g.impl_ptr().use_count() == 1;
    acc = std::move(g);
    return;
  }
  if (create_graph) {
    acc = acc + g;
    return;
  }
  if (!owned) {
    acc = Variable<T>(Array<T>(acc.value()));
    owned = true;
  }
  T* a = acc.impl().value.data();
  const T* b = g.value().data();
  for (std::size_t i = 0, n = acc.size(); i < n; ++i) a[i] += b[i];
  ++acc.impl().version;  // a graph that used this gradient's old value must not run on the new
}

/// The lock of a leaf's .grad: threads that backpropagate graphs sharing a leaf (a parameter)
/// add into its gradient one at a time. Leaves hash onto a fixed set of mutexes, so a leaf costs
/// no memory for it.
std::mutex& grad_lock(const void* leaf) {
  static std::mutex locks[64];
  return locks[(reinterpret_cast<std::uintptr_t>(leaf) >> 6) % 64];
}

/// Accumulates into a leaf's .grad: the gradient it keeps must not alias any other array.
template <class T>
void accumulate_leaf(VariableImpl<T>& leaf, Variable<T>&& g, bool create_graph) {
  std::lock_guard<std::mutex> lock(grad_lock(&leaf));
  bool owned = true;
  if (!leaf.grad.defined() && !create_graph && g.impl_ptr().use_count() > 1)
    g = Variable<T>(Array<T>(g.value()));
  accumulate(leaf.grad, owned, std::move(g), create_graph);
}

template <class T>
struct Entry {
  std::uint64_t seq;
  Variable<T> var;
  bool operator<(const Entry& o) const { return seq < o.seq; }
};

template <class T>
void check_grad_shape(const Variable<T>& g, const Variable<T>& target, const char* what,
                      const char* op, std::size_t index) {
  if (g.shape() != target.shape())
    fail(op, " backward: ", what, " ", index, " got a gradient of shape ", shape_str(g.shape()),
         " but its shape is ", shape_str(target.shape()),
         " (a broadcast input's gradient must be summed back with sum_to)");
}

/// Throws when an input of the node was written (mutable_value) after the node recorded it: its
/// rule would read the new value and give a wrong gradient.
template <class T>
void check_versions(const Node<T>& node) {
  for (std::size_t i = 0; i < node.inputs.size(); ++i) {
    const std::uint32_t now = node.inputs[i].impl().version;
    if (now != node.versions[i])
      fail("backward: input ", i, " of '", node.op, "' (shape ", shape_str(node.inputs[i].shape()),
           ") was modified after '", node.op, "' recorded it (version ", node.versions[i], ", now ",
           now,
           "); its gradient would be computed from the new value. Run the forward pass again "
           "after changing it, or change a copy");
  }
}

}  // namespace

/// Runs one backward pass from `roots` seeded with `seeds`. When `wanted` is given, gradients
/// reaching those Variables are returned in the same order and no .grad is touched; otherwise
/// they accumulate into the .grad of the leaves that require grad.
template <class T>
std::vector<Variable<T>> run_backward(const std::vector<Variable<T>>& roots,
                                      const std::vector<Variable<T>>& seeds,
                                      const BackwardOptions& options,
                                      const std::vector<Variable<T>>* wanted) {
  const bool create_graph = options.create_graph;
  const bool retain = options.retain_graph || options.create_graph;
  GradModeGuard mode(create_graph);
  const bool anomaly = anomaly_enabled;
  const std::uint64_t pass = next_pass();

  std::unordered_map<const VariableImpl<T>*, std::size_t> wanted_index;
  std::vector<Variable<T>> results;
  std::vector<char> results_owned;
  if (wanted) {
    results.resize(wanted->size());
    results_owned.resize(wanted->size());
    for (std::size_t i = 0; i < wanted->size(); ++i) wanted_index[&(*wanted)[i].impl()] = i;
  }

  // A max-heap on the sequence number. Its storage is reused by the next pass on this thread
  // (a nested pass, started from inside a backward rule, finds none and makes its own).
  thread_local std::vector<Entry<T>> spare;
  std::vector<Entry<T>> heap;
  heap.swap(spare);
  struct KeepStorage {
    std::vector<Entry<T>>& heap;
    ~KeepStorage() {
      heap.clear();
      if (heap.capacity() > spare.capacity()) spare.swap(heap);
    }
  } keep_storage{heap};
  auto route = [&](const Variable<T>& target, Variable<T>&& g) {
    VariableImpl<T>& impl = target.impl();
    if (impl.node) {
      Node<T>& node = *impl.node;
      if (node.pass != pass) {
        node.pass = pass;
        node.pending = Variable<T>();
        heap.push_back(Entry<T>{node.seq, target});
        std::push_heap(heap.begin(), heap.end());
      }
      accumulate(node.pending, node.pending_owned, std::move(g), create_graph);
      return;
    }
    if (wanted) {
      auto it = wanted_index.find(&impl);
      if (it != wanted_index.end()) {
        bool owned = results_owned[it->second];
        accumulate(results[it->second], owned, std::move(g), create_graph);
        results_owned[it->second] = owned;
      }
    } else if (impl.requires_grad) {
      accumulate_leaf(impl, std::move(g), create_graph);
    }
  };

  for (std::size_t r = 0; r < roots.size(); ++r) {
    const Variable<T>& root = roots[r];
    if (!root.requires_grad())
      fail("backward: the output (", root.op_name(), ", shape ", shape_str(root.shape()),
           ") does not require grad: no input that requires grad was used to compute it");
    Variable<T> seed = seeds[r];
    if (!seed.defined()) {
      if (root.size() != 1)
        fail("backward: the output has shape ", shape_str(root.shape()),
             "; a non-scalar output needs an explicit seed gradient of that shape");
      seed = Variable<T>(Array<T>(xt::ones<T>(root.shape())));
    } else if (seed.shape() != root.shape()) {
      fail("backward: seed gradient of shape ", shape_str(seed.shape()),
           " does not match the output's shape ", shape_str(root.shape()));
    }
    route(root, std::move(seed));
  }

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Variable<T> out = std::move(heap.back().var);
    heap.pop_back();
    VariableImpl<T>& impl = out.impl();
    Node<T>& node = *impl.node;
    Variable<T> g = std::move(node.pending);
    node.pending = Variable<T>();
    if (node.released)
      fail("backward: the graph behind '", node.op,
           "' was freed by an earlier backward; pass retain_graph = true to the first backward "
           "to run backward through it again");
    if (wanted) {
      auto it = wanted_index.find(&impl);
      if (it != wanted_index.end()) {
        bool owned = false;
        Variable<T> copy = g;
        accumulate(results[it->second], owned, std::move(copy), create_graph);
      }
    } else if (impl.retains_grad) {
      Variable<T> copy = g;
      accumulate_leaf(impl, std::move(copy), create_graph);
    }

    check_versions(node);
    Grads<T> grads;
    {
      // The ops inside a rule are not checked one by one: the gradients it returns are, below,
      // under the name of the op whose rule made them.
      AnomalyGuard inner(false);
      const bool exclusive = !create_graph && g.impl_ptr().use_count() == 1;
      grads = node.backward(BackwardContext<T>{g, out, node.inputs, create_graph, exclusive});
    }
    g = Variable<T>();
    if (grads.size() != node.inputs.size())
      fail(node.op, " backward: returned ", grads.size(), " gradients for ", node.inputs.size(),
           " inputs");
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Variable<T>& input = node.inputs[i];
      if (!grads[i].defined() || !input.requires_grad()) continue;
      check_grad_shape(grads[i], input, "input", node.op, i);
      if (anomaly) check_finite(grads[i].value(), node.op, "backward", node.inputs);
      route(input, std::move(grads[i]));
    }
    if (!retain) node.release();
  }

  if (wanted) {
    for (std::size_t i = 0; i < results.size(); ++i)
      if (!results[i].defined())
        results[i] = Variable<T>(Array<T>(xt::zeros<T>((*wanted)[i].shape())));
  }
  return results;
}

}  // namespace detail

template <class T>
void Variable<T>::backward(const BackwardOptions& options) const {
  detail::run_backward<T>({*this}, {Variable<T>()}, options, nullptr);
}

template <class T>
void Variable<T>::backward(const Variable<T>& seed, const BackwardOptions& options) const {
  detail::run_backward<T>({*this}, {seed}, options, nullptr);
}

template <class T>
std::vector<Variable<T>> grad(const Variable<T>& output, const std::vector<Variable<T>>& inputs,
                              const Variable<T>& seed, const BackwardOptions& options) {
  for (std::size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].defined()) fail("grad: input ", i, " is an undefined Variable");
  if (!output.requires_grad()) {
    if (seed.defined() && seed.shape() != output.shape())
      fail("grad: seed gradient of shape ", shape_str(seed.shape()),
           " does not match the output's shape ", shape_str(output.shape()));
    std::vector<Variable<T>> zeros;
    for (const auto& x : inputs) zeros.emplace_back(Array<T>(xt::zeros<T>(x.shape())));
    return zeros;
  }
  return detail::run_backward<T>({output}, {seed}, options, &inputs);
}

template <class T>
std::ostream& operator<<(std::ostream& os, const Variable<T>& v) {
  if (!v.defined()) return os << "Variable(undefined)";
  os << "Variable(" << v.value() << ", shape " << shape_str(v.shape());
  if (!v.is_leaf()) os << ", op " << v.op_name();
  if (v.requires_grad()) os << ", requires_grad";
  return os << ")";
}

#define AD_INSTANTIATE(T)                                                                        \
  template void detail::check_finite<T>(const Array<T>&, const char*, const char*,               \
                                        const std::vector<Variable<T>>&);                        \
  template Variable<T> detail::record<T>(const char*, Array<T>&&, std::vector<Variable<T>>&&,    \
                                         BackwardFn<T>&&);                                       \
  template class Variable<T>;                                                                    \
  template std::vector<Variable<T>> grad<T>(const Variable<T>&, const std::vector<Variable<T>>&, \
                                            const Variable<T>&, const BackwardOptions&);         \
  template std::ostream& operator<< <T>(std::ostream&, const Variable<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
