// The backward engine: recording a node, and walking the graph in reverse creation order.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <xtensor/xio.hpp>

#include "autodiff/kernels/indexing.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"
#include "autodiff/variable.hpp"

namespace ad {
namespace detail {

void undefined_variable() {
  throw Error("Variable: use of an undefined Variable (default-constructed or empty)");
}

std::atomic<int>& hooked_leaves() {
  static std::atomic<int> count{0};
  return count;
}

std::size_t next_hook_id() {
  static std::atomic<std::size_t> counter{0};
  return ++counter;
}

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
                  const VariableList<T>& inputs) {
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

namespace {

template <class T, class Input>
Variable<T> record_node(const char* op, std::shared_ptr<VariableImpl<T>>&& impl,
                        const Input* inputs, std::size_t count, BackwardFn<T>&& backward) {
  impl->requires_grad = true;
  Node<T>& node = impl->node.emplace();
  node.op = op;
  node.seq = next_seq();
  node.inputs.assign(inputs, inputs + count);
  for (const auto& in : node.inputs) node.versions.push_back(in.impl().version);
  node.backward = std::move(backward);
  Variable<T> output(std::move(impl));
  if (__builtin_expect(tape_observer<T> != nullptr, 0)) tape_observer<T>->recorded(output);
  return output;
}

}  // namespace

template <class T>
Variable<T> record(const char* op, std::shared_ptr<VariableImpl<T>>&& impl,
                   const Variable<T>* inputs, std::size_t count, BackwardFn<T>&& backward) {
  return record_node(op, std::move(impl), inputs, count, std::move(backward));
}

template <class T>
Variable<T> record(const char* op, std::shared_ptr<VariableImpl<T>>&& impl,
                   const std::reference_wrapper<const Variable<T>>* inputs, std::size_t count,
                   BackwardFn<T>&& backward) {
  return record_node(op, std::move(impl), inputs, count, std::move(backward));
}

template <class T>
Variable<T> placed_gradient(Variable<T> part, Placement where) {
  part.impl().placed = std::make_unique<Placement>(std::move(where));
  return part;
}

namespace {

/// Makes a placed gradient (see Placement) the whole one it stands for; others stay as they are.
template <class T>
void make_whole(Variable<T>& g) {
  if (const Placement* p = g.impl().placed.get())
    g = Variable<T>(kernels::unslice(g.value(), p->shape, p->axis, p->start, p->step));
}

/// Adds `g` into the slot `acc`. Without create_graph, a gradient that nobody else holds is taken
/// over as is, and later contributions are added in place into an array the slot owns; a placed
/// gradient (part of a larger one) is added in place at its part only.
template <class T>
void accumulate(Variable<T>& acc, bool& owned, Variable<T>&& g, bool create_graph) {
  if (const Placement* p = g.impl().placed.get(); p && acc.defined() && !create_graph) {
    if (!owned) {
      acc = Variable<T>(Array<T>(acc.value()));
      owned = true;
    }
    kernels::add_slice(acc.impl().value, g.value(), p->axis, p->start, p->step);
    ++acc.impl().version;
    return;
  }
  make_whole(g);
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
/// add into its gradient one at a time. Taking it costs one atomic exchange (a std::mutex's lock
/// and unlock cost two, and two calls, at every parameter of every step); a thread that finds it
/// taken yields until it is free.
class alignas(64) GradLock {
 public:
  void lock() {
    while (locked_.exchange(true, std::memory_order_acquire))
      while (locked_.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void unlock() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

/// Leaves hash onto a fixed set of locks, so a leaf costs no memory for its own.
GradLock& grad_lock(const void* leaf) {
  static GradLock locks[64];
  return locks[(reinterpret_cast<std::uintptr_t>(leaf) >> 6) % 64];
}

/// Accumulates into a leaf's .grad: the gradient it keeps must not alias any other array.
template <class T>
void accumulate_leaf(VariableImpl<T>& leaf, Variable<T>&& g, bool create_graph) {
  std::lock_guard<GradLock> lock(grad_lock(&leaf));
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
  const Shape& shape = g.impl().placed ? g.impl().placed->shape : g.shape();
  if (!same_shape(shape, target.shape()))
    fail(op, " backward: ", what, " ", index, " got a gradient of shape ", shape_str(shape),
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

/// One backward pass from a root: each node's gradient is summed from what its consumers
/// routed to it, then its rule runs, in reverse creation order (a max-heap on the sequence number;
/// no recursion). With `wanted`, the gradients reaching those Variables are returned and no .grad
/// is touched; otherwise they accumulate into the .grad of the leaves that require grad, and each
/// leaf's post-accumulate hooks run once its gradient is final for the pass.
template <class T>
class BackwardPass {
 public:
  BackwardPass(const BackwardOptions& options, const std::vector<Variable<T>>* wanted,
               bool stop_at_wanted = false)
      : stop_at_wanted_(stop_at_wanted),
        create_graph_(options.create_graph),
        retain_(options.retain_graph || options.create_graph),
        anomaly_(anomaly_enabled),
        pass_(next_pass()),
        wanted_(wanted) {
    if (wanted_) {
      results_.resize(wanted_->size());
      results_owned_.resize(wanted_->size());
      for (std::size_t i = 0; i < wanted_->size(); ++i) wanted_index_[&(*wanted_)[i].impl()] = i;
    }
    // The heap's storage is reused by the next pass on this thread (a nested pass, started
    // from inside a backward rule, finds none and makes its own).
    heap_.swap(spare());
  }
  ~BackwardPass() {
    heap_.clear();
    if (heap_.capacity() > spare().capacity()) spare().swap(heap_);
  }
  BackwardPass(const BackwardPass&) = delete;
  BackwardPass& operator=(const BackwardPass&) = delete;

  std::vector<Variable<T>> run(const Variable<T>& root, const Variable<T>& seed) {
    GradModeGuard mode(create_graph_);
    TraceSuspend<T> untraced;  // a trace describes the forward computation only
    if (!wanted_ && hooked_leaves() > 0) count_hooked_edges(root);
    route(root, checked_seed(root, seed));
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end());
      Variable<T> out = std::move(heap_.back().var);
      heap_.pop_back();
      process(out);
    }
    run_remaining_hooks();
    return results();
  }

 private:
  static std::vector<Entry<T>>& spare() {
    thread_local std::vector<Entry<T>> storage;
    return storage;
  }

  /// The seed of a root: the given one (of the root's shape) or 1 for a one-element root.
  static Variable<T> checked_seed(const Variable<T>& root, Variable<T> seed) {
    if (!root.requires_grad())
      fail("backward: the output (", root.op_name(), ", shape ", shape_str(root.shape()),
           ") does not require grad: no input that requires grad was used to compute it");
    if (!seed.defined()) {
      if (root.size() != 1)
        fail("backward: the output has shape ", shape_str(root.shape()),
             "; a non-scalar output needs an explicit seed gradient of that shape");
      return Variable<T>(Array<T>(root.shape(), T(1)));
    }
    if (seed.shape() != root.shape())
      fail("backward: seed gradient of shape ", shape_str(seed.shape()),
           " does not match the output's shape ", shape_str(root.shape()));
    return seed;
  }

  /// Adds a gradient where it belongs: the pending gradient of the node that made `target`, a
  /// wanted result, or a leaf's .grad. `handle`, when given, is a handle of target's that its
  /// holder no longer needs: the queue takes it over instead of a copy.
  void route(const Variable<T>& target, Variable<T>&& g, Variable<T>* handle = nullptr) {
    VariableImpl<T>& impl = target.impl();
    if (impl.node && !(stop_at_wanted_ && wanted_index_.count(&impl))) {
      Node<T>& node = *impl.node;
      if (node.pass != pass_) {
        node.pass = pass_;
        node.pending = Variable<T>();
        heap_.push_back(Entry<T>{node.seq, handle ? std::move(*handle) : target});
        std::push_heap(heap_.begin(), heap_.end());
      }
      accumulate(node.pending, node.pending_owned, std::move(g), create_graph_);
      return;
    }
    if (wanted_) {
      auto it = wanted_index_.find(&impl);
      if (it != wanted_index_.end()) {
        bool owned = results_owned_[it->second];
        accumulate(results_[it->second], owned, std::move(g), create_graph_);
        results_owned_[it->second] = owned;
      }
    } else if (impl.requires_grad) {
      auto it = hooked_.find(&impl);
      if (it == hooked_.end()) {
        finish_leaf(target, std::move(g));  // (a root that is itself a leaf, or no hooks)
        return;
      }
      Hooked& h = it->second;
      h.received = true;
      if (impl.hooks->grad.empty())
        accumulate_leaf(impl, std::move(g), create_graph_);
      else  // summed first: the hooks see the pass's whole gradient
        accumulate(h.pending, h.pending_owned, std::move(g), create_graph_);
    }
  }

  /// A leaf's gradient for the pass: through its gradient hooks into .grad, then its
  /// post-accumulate hooks.
  void finish_leaf(const Variable<T>& leaf, Variable<T>&& g) {
    VariableImpl<T>& impl = leaf.impl();
    if (impl.hooks) g = apply_grad_hooks(leaf, std::move(g));
    accumulate_leaf(impl, std::move(g), create_graph_);
    if (impl.hooks) run_post_hooks(leaf);
  }

  /// g through the Variable's register_hook hooks, in order.
  static Variable<T> apply_grad_hooks(const Variable<T>& v, Variable<T> g) {
    make_whole(g);  // a hook sees the whole gradient
    for (const auto& [id, hook] : v.impl().hooks->grad) {
      Variable<T> replaced = hook(g);
      if (!replaced.defined()) continue;
      if (replaced.shape() != v.shape())
        fail("backward: a hook of a Variable of shape ", shape_str(v.shape()), " (", v.op_name(),
             ") returned a gradient of shape ", shape_str(replaced.shape()));
      g = std::move(replaced);
    }
    return g;
  }

  /// Runs one node's rule on its summed gradient and routes what it returns to the inputs.
  void process(const Variable<T>& out) {
    VariableImpl<T>& impl = out.impl();
    Node<T>& node = *impl.node;
    Variable<T> g = std::move(node.pending);
    node.pending = Variable<T>();
    if (node.released)
      fail("backward: the graph behind '", node.op,
           "' was freed by an earlier backward; pass retain_graph = true to the first backward "
           "to run backward through it again");
    if (impl.hooks) g = apply_grad_hooks(out, std::move(g));
    keep_intermediate(impl, g);
    check_versions(node);
    const bool exclusive = !create_graph_ && g.impl_ptr().use_count() == 1;
    Grads<T> grads = [&] {  // (made in place: a list of Variables costs more to move than build)
      // The ops inside a rule are not checked one by one: the gradients it returns are, below,
      // under the name of the op whose rule made them.
      AnomalyGuard inner(false);
      return node.backward(BackwardContext<T>{g, out, node.inputs, create_graph_, exclusive});
    }();
    g = Variable<T>();
    if (grads.size() != node.inputs.size())
      fail(node.op, " backward: returned ", grads.size(), " gradients for ", node.inputs.size(),
           " inputs");
    // Without retain_graph the node lets go of its inputs below: the queue takes their handles
    // over (a Variable's copy costs an atomic count), unless the loop still reads them after
    // routing (anomaly checks, post-accumulate hooks).
    const bool hand_over = !retain_ && !anomaly_ && hooked_.empty();
    for (std::size_t i = 0; i < grads.size(); ++i) {
      Variable<T>& input = node.inputs[i];
      if (grads[i].defined() && input.requires_grad()) {
        check_grad_shape(grads[i], input, "input", node.op, i);
        if (anomaly_) check_finite(grads[i].value(), node.op, "backward", node.inputs);
        route(input, std::move(grads[i]), hand_over ? &input : nullptr);
      }
      if (!hooked_.empty()) edge_done(input);
    }
    if (!retain_) node.release();
  }

  /// A wanted intermediate's gradient, or a retained one's .grad (retain_grad).
  void keep_intermediate(VariableImpl<T>& impl, const Variable<T>& g) {
    if (wanted_) {
      auto it = wanted_index_.find(&impl);
      if (it != wanted_index_.end()) {
        bool owned = false;
        Variable<T> copy = g;
        accumulate(results_[it->second], owned, std::move(copy), create_graph_);
      }
    } else if (impl.retains_grad) {
      Variable<T> copy = g;
      accumulate_leaf(impl, std::move(copy), create_graph_);
    }
  }

  // Post-accumulate hooks. A hooked leaf's gradient is final once every node of this pass that
  // has it as an input has run: the edges are counted before the pass (only when some leaf has
  // hooks), and each processed node takes its own off.

  struct Hooked {
    Variable<T> leaf;
    std::size_t edges = 0;
    bool received = false, done = false;
    Variable<T> pending;  ///< the pass's gradient so far, when the leaf has gradient hooks
    bool pending_owned = false;
  };

  void count_hooked_edges(const Variable<T>& root) {
    std::vector<const Variable<T>*> stack{&root};
    std::unordered_set<const VariableImpl<T>*> seen;
    while (!stack.empty()) {
      const Variable<T>* v = stack.back();
      stack.pop_back();
      const VariableImpl<T>& impl = v->impl();
      if (!impl.node || !seen.insert(&impl).second) continue;
      for (const auto& in : impl.node->inputs) {
        const VariableImpl<T>& i = in.impl();
        if (!i.node && i.hooks && !i.hooks->empty() && i.requires_grad) {
          Hooked& h = hooked_[&i];
          h.leaf = in;
          ++h.edges;
        }
        if (i.node) stack.push_back(&in);
      }
    }
  }

  void edge_done(const Variable<T>& input) {
    auto it = hooked_.find(&input.impl());
    if (it == hooked_.end()) return;
    Hooked& h = it->second;
    if (--h.edges == 0) complete(h);
  }

  void run_remaining_hooks() {
    for (auto& [impl, h] : hooked_) complete(h);
  }

  /// A hooked leaf whose gradient is final for the pass.
  void complete(Hooked& h) {
    if (!h.received || h.done) return;
    h.done = true;
    if (h.pending.defined())
      finish_leaf(h.leaf, std::move(h.pending));
    else
      run_post_hooks(h.leaf);
  }

  static void run_post_hooks(const Variable<T>& leaf) {
    Variable<T> handle = leaf;
    for (const auto& [id, hook] : leaf.impl().hooks->post_accumulate) hook(handle);
  }

  std::vector<Variable<T>> results() {
    if (wanted_)
      for (std::size_t i = 0; i < results_.size(); ++i) {
        const Variable<T>& w = (*wanted_)[i];
        if (!results_[i].defined())
          results_[i] = Variable<T>(Array<T>(xt::zeros<T>(w.shape())));
        else if (w.is_leaf() && w.impl().hooks && !stop_at_wanted_)  // (a non-leaf's ran)
          results_[i] = apply_grad_hooks(w, std::move(results_[i]));
      }
    return std::move(results_);
  }

  const bool stop_at_wanted_, create_graph_, retain_, anomaly_;
  const std::uint64_t pass_;
  const std::vector<Variable<T>>* wanted_;
  std::unordered_map<const VariableImpl<T>*, std::size_t> wanted_index_;
  std::vector<Variable<T>> results_;
  std::vector<char> results_owned_;
  std::vector<Entry<T>> heap_;
  std::unordered_map<const VariableImpl<T>*, Hooked> hooked_;
};

template <class T>
std::vector<Variable<T>> grad_until(const Variable<T>& output,
                                    const std::vector<Variable<T>>& inputs, const Variable<T>& seed,
                                    const BackwardOptions& options) {
  return BackwardPass<T>(options, &inputs, true).run(output, seed);
}

}  // namespace detail

template <class T>
void Variable<T>::backward(const BackwardOptions& options) const {
  detail::BackwardPass<T>(options, nullptr).run(*this, Variable<T>());
}

template <class T>
void Variable<T>::backward(const Variable<T>& seed, const BackwardOptions& options) const {
  detail::BackwardPass<T>(options, nullptr).run(*this, seed);
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
  return detail::BackwardPass<T>(options, &inputs).run(output, seed);
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
                                        const VariableList<T>&);                                 \
  template Variable<T> detail::record<T>(const char*, std::shared_ptr<VariableImpl<T>>&&,        \
                                         const Variable<T>*, std::size_t, BackwardFn<T>&&);      \
  template Variable<T> detail::record<T>(const char*, std::shared_ptr<VariableImpl<T>>&&,        \
                                         const std::reference_wrapper<const Variable<T>>*,       \
                                         std::size_t, BackwardFn<T>&&);                          \
  template Variable<T> detail::placed_gradient<T>(Variable<T>, detail::Placement);               \
  template std::vector<Variable<T>> detail::grad_until<T>(                                       \
      const Variable<T>&, const std::vector<Variable<T>>&, const Variable<T>&,                   \
      const BackwardOptions&);                                                                   \
  template class Variable<T>;                                                                    \
  template std::vector<Variable<T>> grad<T>(const Variable<T>&, const std::vector<Variable<T>>&, \
                                            const Variable<T>&, const BackwardOptions&);         \
  template std::ostream& operator<< <T>(std::ostream&, const Variable<T>&);

AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
