// Variable<T>: an xtensor array with its place on the tape, and the machinery that records ops.
//
// A Variable is a cheap handle (a shared pointer) to its data: the value, whether it requires
// grad, its accumulated gradient, and the node of the op that made it. A node holds the op's
// inputs and its backward rule. Nodes carry a sequence number in the order they were made, which
// is a topological order: backward (engine.cpp) walks the reachable nodes from the highest number
// down, iteratively.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "autodiff/array.hpp"

namespace ad {

template <class T>
class Variable;
template <class T>
struct Node;

/// A short list of Variables, held inline up to three (no allocation): an op's inputs and its
/// rule's gradients, one list of each per recorded op.
template <class T>
using VariableList = boost::container::small_vector<Variable<T>, 3>;

/// One gradient per input of an op; an undefined Variable means "no gradient" (zero).
template <class T>
using Grads = VariableList<T>;

/// Options of backward() and grad().
struct BackwardOptions {
  /// Keep the graph so that another backward can run through it. Implied by create_graph.
  bool retain_graph = false;
  /// Record the backward pass itself, so that the gradients can be differentiated again.
  bool create_graph = false;
};

// ---------------------------------------------------------------------------------------------
// Modes (per thread, restored by RAII guards)

namespace detail {
inline thread_local bool grad_enabled = true;
inline thread_local bool anomaly_enabled = false;
}  // namespace detail

/// True unless inside a NoGradGuard (or a backward pass without create_graph).
inline bool is_grad_enabled() {
  return detail::grad_enabled;
}

/// Sets whether ops are recorded for the lifetime of the guard, then restores the previous mode.
class GradModeGuard {
 public:
  /// Records ops (or not) until the guard is destroyed.
  explicit GradModeGuard(bool enabled) : previous_(detail::grad_enabled) {
    detail::grad_enabled = enabled;
  }
  ~GradModeGuard() { detail::grad_enabled = previous_; }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};

/// Inside this scope nothing is recorded and nothing is kept for backward.
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

/// Inside this scope the first op whose forward or backward produces NaN or Inf throws ad::Error
/// naming the op and the shapes. It costs one pass over every result, so it is off by default.
class AnomalyGuard {
 public:
  /// Turns anomaly mode on (or off) until the guard is destroyed.
  explicit AnomalyGuard(bool enabled = true) : previous_(detail::anomaly_enabled) {
    detail::anomaly_enabled = enabled;
  }
  ~AnomalyGuard() { detail::anomaly_enabled = previous_; }
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool previous_;
};

inline bool is_anomaly_enabled() {
  return detail::anomaly_enabled;
}

// ---------------------------------------------------------------------------------------------
// Variable

template <class T>
struct VariableImpl;

/// A tensor that can take part in reverse-mode differentiation. T is float (training) or double
/// (gradient checking). Copies share the same data; use detach() for an independent copy.
template <class T>
class Variable {
  static_assert(std::is_floating_point_v<T>, "Variable<T> needs a floating-point T");

 public:
  /// The element type.
  using value_type = T;

  /// An undefined Variable (no data); defined() is false.
  Variable() = default;

  /// A leaf holding a copy of `value`.
  explicit Variable(const Array<T>& value, bool requires_grad = false);
  /// A leaf holding `value`, moved in (no copy).
  explicit Variable(Array<T>&& value, bool requires_grad = false);

  /// Whether it holds data (false for a default-constructed Variable).
  bool defined() const { return impl_ != nullptr; }

  /// The value.
  const Array<T>& value() const { return impl().value; }
  /// Writable access to a leaf's value, for in-place updates (optimizers, loading weights). It
  /// counts as a change (version() goes up): a graph recorded before it refuses to backpropagate
  /// through this leaf, since its rules would read the new value. Throws for a non-leaf, whose
  /// value the graph may need for backward.
  Array<T>& mutable_value();
  /// How many times the value was handed out for writing (see mutable_value).
  std::uint32_t version() const { return impl().version; }

  /// The value's shape.
  const Shape& shape() const { return impl().value.shape(); }
  /// The number of axes.
  std::size_t dim() const { return impl().value.dimension(); }
  /// The number of elements.
  std::size_t size() const { return impl().value.size(); }
  /// The single element of a 0-d (or one-element) Variable.
  T item() const;

  /// Whether gradients flow to it (a leaf that requires grad, or an op output that depends on one).
  bool requires_grad() const { return impl().requires_grad; }
  /// Marks a leaf as requiring grad (or not). Throws for a non-leaf.
  Variable& set_requires_grad(bool requires_grad = true);
  /// True when no recorded op made this Variable (a leaf: data or parameter).
  bool is_leaf() const { return !impl().node.has_value(); }
  /// Name of the op that made it ("leaf" for leaves).
  const char* op_name() const;

  /// The accumulated gradient (undefined until a backward reaches this leaf).
  const Variable& grad() const { return impl().grad; }
  /// Whether a backward pass has left a gradient in .grad().
  bool has_grad() const { return impl().grad.defined(); }
  /// Forgets the accumulated gradient (zeroes it in place when it is a view of a flat gradient
  /// buffer: see FlatParameters).
  void zero_grad();
  /// Asks backward() to store the gradient of this non-leaf too.
  void retain_grad() { impl().retains_grad = true; }

  /// Calls `hook(g)` with the gradient g flowing into this Variable, in every backward pass and
  /// grad() that reaches it (for a leaf: the sum of the pass's contributions, before it is added
  /// to .grad). The Variable the hook returns replaces g from there on (it must have g's shape;
  /// an undefined one keeps g): clip or rescale one tensor's gradient, or just read it. Under
  /// create_graph, g and what the hook computes from it are recorded, so second order sees the
  /// replaced gradient. The hook must not write into g. Hooks run in the order they were
  /// registered; returns an id for remove_hook.
  std::size_t register_hook(std::function<Variable(const Variable&)> hook);
  /// Removes the hook that register_hook returned `id` for.
  void remove_hook(std::size_t id);

  /// Calls `hook(leaf)` in every backward pass (not grad()) that reaches this leaf, once its .grad
  /// holds the pass's last contribution: the gradient is final for the pass, while the rest of
  /// the pass may still run (PyTorch's name). Data-parallel training starts averaging a bucket
  /// of gradients there; a hook may also read or scale the gradient. Leaves only; returns an id
  /// for remove_post_accumulate_hook.
  std::size_t register_post_accumulate_hook(std::function<void(Variable&)> hook);
  /// Removes the hook that register_post_accumulate_hook returned `id` for.
  void remove_post_accumulate_hook(std::size_t id);

  /// Backpropagates from this Variable: seeds a scalar with 1, accumulates into the .grad of the
  /// leaves that require grad, then frees the graph unless options.retain_graph.
  void backward(const BackwardOptions& options = {}) const;
  /// Backpropagates with an explicit seed gradient of this Variable's shape.
  void backward(const Variable& seed, const BackwardOptions& options = {}) const;

  /// A new leaf with a copy of the value, cut from the graph.
  Variable detach() const { return Variable(impl().value, false); }

  /// \cond INTERNAL
  // Internals used by the tape (make_op, the engine).
  VariableImpl<T>& impl() const;
  const std::shared_ptr<VariableImpl<T>>& impl_ptr() const { return impl_; }
  explicit Variable(std::shared_ptr<VariableImpl<T>> impl) : impl_(std::move(impl)) {}
  /// \endcond

 private:
  std::shared_ptr<VariableImpl<T>> impl_;
};

namespace detail {
/// Where a first-order gradient that is part of a larger one belongs: its value is the part at
/// start, start + step, ... along `axis` of a zero tensor of `shape` (slice's gradient). The
/// backward pass adds it there in place instead of making the zero tensor each time (a step of
/// a recurrence slices one position of a sequence: without this, each step's gradient would
/// cost the whole sequence).
struct Placement {
  Shape shape;
  std::size_t axis, start, step;
};
/// How many leaves have hooks: backward counts a graph's edges only when some do.
std::atomic<int>& hooked_leaves();
/// The next hook id.
std::size_t next_hook_id();
}  // namespace detail

/// The hooks of one Variable, by id (allocated only when one is registered).
template <class T>
struct VariableHooks {
  /// register_hook: gradient in, gradient out.
  std::vector<std::pair<std::size_t, std::function<Variable<T>(const Variable<T>&)>>> grad;
  /// register_post_accumulate_hook (leaves).
  std::vector<std::pair<std::size_t, std::function<void(Variable<T>&)>>> post_accumulate;
  /// Whether there is no hook of either kind.
  bool empty() const { return grad.empty() && post_accumulate.empty(); }
};

template <class T>
struct VariableImpl {
  // Built from its value: a default-constructed xarray allocates one element.
  VariableImpl(const Array<T>& v, bool requires) : value(v), requires_grad(requires) {}
  VariableImpl(Array<T>&& v, bool requires) : value(std::move(v)), requires_grad(requires) {}
  /// A value of `shape`, made in place (moving an xarray costs more than its small data): its
  /// elements uninitialised.
  explicit VariableImpl(const Shape& shape) : value(shape) {}
  /// The value `make()` returns, made in place.
  template <class Make>
  VariableImpl(std::in_place_t, Make&& make) : value(make()) {}
  ~VariableImpl() {
    if (hooks && !hooks->empty() && !node) --detail::hooked_leaves();
  }
  VariableImpl(const VariableImpl&) = delete;
  VariableImpl& operator=(const VariableImpl&) = delete;
  Array<T> value;
  Variable<T> grad;             ///< accumulated gradient
  std::optional<Node<T>> node;  ///< the op that made it (held inline: one allocation less per op);
                                ///< empty for a leaf
  std::uint32_t version = 0;    ///< bumped by every write access to value (and in-place grads)
  bool requires_grad = false;
  bool retains_grad = false;
  bool grad_view = false;  ///< .grad is a view of a flat gradient buffer: zero_grad() zeroes it
  std::unique_ptr<VariableHooks<T>> hooks;
  /// Set on a gradient that is part of a larger one (detail::placed_gradient); only the backward
  /// pass sees such a Variable.
  std::unique_ptr<detail::Placement> placed;
};

/// A leaf that requires grad (a parameter or an input to differentiate with respect to).
template <class T>
Variable<T> param(Array<T> value) {
  return Variable<T>(std::move(value), true);
}

/// A 0-d constant.
template <class T>
Variable<T> scalar(T value) {
  return Variable<T>(Array<T>(value));
}

/// What a backward rule sees: the gradient of the op's output, the output, and the inputs.
/// Under create_graph these are recorded Variables, so rules written with Variable ops are
/// differentiable again.
template <class T>
struct BackwardContext {
  /// The gradient of the op's output.
  const Variable<T>& grad;
  /// The op's output.
  const Variable<T>& output;
  /// The op's inputs.
  const VariableList<T>& inputs;
  /// Whether the backward pass is recorded (create_graph): a rule must then compute its result
  /// with Variable ops (recorded, so differentiable again); otherwise it may compute the same
  /// values with a fused kernel. The two forms come from one definition of the derivative.
  bool create_graph = false;
  /// True when nothing else refers to grad's data (never under create_graph): a rule may then
  /// overwrite it with its result and return grad itself, saving an array (the fused elementwise
  /// rules do).
  bool grad_exclusive = false;

  /// Input i.
  const Variable<T>& input(std::size_t i) const { return inputs[i]; }
  /// Whether input i needs a gradient; rules skip expensive work for inputs that do not.
  bool needs(std::size_t i) const { return inputs[i].requires_grad(); }
};

template <class T>
using BackwardFn = std::function<Grads<T>(const BackwardContext<T>&)>;

/// A recorded op: its inputs and its backward rule, held inside the data of the op's output. It
/// does not refer to that output (that would be a cycle); the engine passes the output in.
template <class T>
struct Node {
  const char* op = "";
  std::uint64_t seq = 0;
  VariableList<T> inputs;
  /// The inputs' versions when the op was recorded: backward checks that they are unchanged.
  xt::svector<std::uint32_t, 4> versions;
  BackwardFn<T> backward;
  bool released = false;
  // Scratch of the backward pass in progress.
  std::uint64_t pass = 0;
  Variable<T> pending;  ///< gradient of the output accumulated so far
  bool pending_owned = false;

  // Every member initialises itself: a defaulted constructor would have optional::emplace()
  // zero the whole node first (value-initialisation), a memset an op.
  Node() {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();

  /// Drops the inputs and the rule once backward has run without retain_graph.
  void release();
};

namespace detail {

std::uint64_t next_seq();

/// Sees every op recorded on its thread while installed (tape_observer): the gradient checker's
/// localisation (gradcheck.cpp) lists a computation's ops this way and perturbs or reads their
/// values. recorded() may throw to end the computation early.
template <class T>
struct TapeObserver {
  virtual ~TapeObserver() = default;
  /// Called with each new op's output, its node set and its value computed.
  virtual void recorded(const Variable<T>& output) = 0;
};
/// The observer of this thread (null: none; one thread-local test per recorded op).
template <class T>
inline thread_local TapeObserver<T>* tape_observer = nullptr;
/// The module whose forward runs on this thread while an observer is installed (nn::Module sets
/// it), so that an observed op can be named by the module it belongs to.
template <class T>
inline thread_local const void* current_module = nullptr;

/// Throws when anomaly mode is on and `value` holds NaN or Inf.
template <class T>
void check_finite(const Array<T>& value, const char* op, const char* phase,
                  const VariableList<T>& inputs);

/// Records the op that made `output` (whose value is set): it then requires grad. Its inputs are
/// the `count` Variables from `inputs` on (or that many references to them).
template <class T>
Variable<T> record(const char* op, std::shared_ptr<VariableImpl<T>>&& output,
                   const Variable<T>* inputs, std::size_t count, BackwardFn<T>&& backward);
template <class T>
Variable<T> record(const char* op, std::shared_ptr<VariableImpl<T>>&& output,
                   const std::reference_wrapper<const Variable<T>>* inputs, std::size_t count,
                   BackwardFn<T>&& backward);

/// A new VariableImpl from the arguments of one of its constructors.
template <class T, class... Args>
std::shared_ptr<VariableImpl<T>> new_impl(Args&&... args) {
  return std::allocate_shared<VariableImpl<T>>(memory::RecordAllocator<VariableImpl<T>>(),
                                               std::forward<Args>(args)...);
}

/// grad() that stops at the given Variables: the gradients reaching them are returned, and the
/// graph above them is not visited (checkpoint's recomputation inside a backward pass). `output`
/// must require grad.
template <class T>
std::vector<Variable<T>> grad_until(const Variable<T>& output,
                                    const std::vector<Variable<T>>& inputs, const Variable<T>& seed,
                                    const BackwardOptions& options);

/// A first-order gradient that is `part` placed in a zero tensor (see Placement): what a rule
/// returns for an input it read only part of, without making the whole zero tensor. `part` must
/// be a Variable nobody else holds (a new one, or the rule's exclusive gradient).
template <class T>
Variable<T> placed_gradient(Variable<T> part, Placement where);

/// Puts a new gradient of `shape` into grads[i] and returns its data, where a fused rule's kernel
/// writes it: zeros when `zeroed` (a kernel that adds into it), else uninitialised (a kernel that
/// writes every element).
template <class T>
T* new_gradient(Grads<T>& grads, std::size_t i, const Shape& shape, bool zeroed = false) {
  grads[i] = Variable<T>(new_impl<T>(shape));
  Array<T>& value = grads[i].impl().value;
  if (zeroed) std::fill_n(value.data(), value.size(), T(0));
  return value.data();
}

template <class T, class List>
bool any_requires_grad(const List& inputs) {
  for (const Variable<T>& v : inputs)
    if (v.requires_grad()) return true;
  return false;
}

/// The one body of make_op and make_op_in_place, over a list of inputs (Variables, or references
/// to them).
template <class T, class Make, class List, class F>
Variable<T> make_recorded(const char* op, Make&& make, const List& inputs, F&& backward) {
  auto output = new_impl<T>(std::in_place, std::forward<Make>(make));
  if (anomaly_enabled)
    check_finite(output->value, op, "forward", VariableList<T>(inputs.begin(), inputs.end()));
  if (!grad_enabled || !any_requires_grad<T>(inputs)) return Variable<T>(std::move(output));
  return record<T>(op, std::move(output), std::data(inputs), inputs.size(),
                   BackwardFn<T>(std::forward<F>(backward)));
}

}  // namespace detail

/// Whether an op with these inputs would be recorded (grad mode on and an input requiring grad):
/// a forward pass may keep what its backward will want only then.
template <class T>
bool records(std::initializer_list<Variable<T>> inputs) {
  return detail::grad_enabled && detail::any_requires_grad<T>(inputs);
}

/// make_op with the forward result made by `make()` (a function returning Array<T>) straight
/// into the output Variable, and the inputs taken by reference (each is copied once, into the
/// record; a Variable's copy costs an atomic count): the library's own ops on small arrays use
/// this form, where an xarray costs more to move than its data.
template <class T, class Make, class F>
Variable<T> make_op_in_place(
    const char* op, Make&& make,
    std::initializer_list<std::reference_wrapper<const Variable<T>>> inputs, F&& backward) {
  return detail::make_recorded<T>(op, std::forward<Make>(make), inputs, std::forward<F>(backward));
}

/// Records an op: `value` is its forward result, `inputs` its Variable inputs, and `backward`
/// maps a BackwardContext to one gradient per input (each of that input's shape; undefined for
/// "none"). Nothing is recorded when grad mode is off or no input requires grad. This is also the
/// way to write a custom op: see docs/gradients.md ("Custom ops").
template <class T, class F>
Variable<T> make_op(const char* op, Array<T>&& value, std::initializer_list<Variable<T>> inputs,
                    F&& backward) {
  return detail::make_recorded<T>(
      op, [&value]() -> Array<T> { return std::move(value); }, inputs, std::forward<F>(backward));
}

/// make_op for a list of inputs only known at run time (concatenate, custom ops).
template <class T, class F>
Variable<T> make_op(const char* op, Array<T>&& value, const std::vector<Variable<T>>& inputs,
                    F&& backward) {
  return detail::make_recorded<T>(
      op, [&value]() -> Array<T> { return std::move(value); }, inputs, std::forward<F>(backward));
}

/// Gradients of `output` with respect to `inputs`, without touching any leaf's .grad. An input
/// that `output` does not depend on gets zeros. `seed` is the gradient of `output` (default: 1
/// for a scalar output; required otherwise).
template <class T>
std::vector<Variable<T>> grad(const Variable<T>& output, const std::vector<Variable<T>>& inputs,
                              const Variable<T>& seed, const BackwardOptions& options = {});
template <class T>
std::vector<Variable<T>> grad(const Variable<T>& output, const std::vector<Variable<T>>& inputs,
                              const BackwardOptions& options = {}) {
  return grad(output, inputs, Variable<T>(), options);
}

/// Prints the value (and the op that made it).
template <class T>
std::ostream& operator<<(std::ostream& os, const Variable<T>& v);

// ---------------------------------------------------------------------------------------------
// Inline definitions

/// \cond INTERNAL
template <class T>
Variable<T>::Variable(const Array<T>& value, bool requires_grad)
    : impl_(detail::new_impl<T>(value, requires_grad)) {}

template <class T>
Variable<T>::Variable(Array<T>&& value, bool requires_grad)
    : impl_(detail::new_impl<T>(std::move(value), requires_grad)) {}

namespace detail {
/// Throws the error of a use of an undefined Variable (out of line, so that impl() inlines).
[[noreturn]] void undefined_variable();
}  // namespace detail

template <class T>
inline VariableImpl<T>& Variable<T>::impl() const {
  if (__builtin_expect(!impl_, 0)) detail::undefined_variable();
  return *impl_;
}

template <class T>
Array<T>& Variable<T>::mutable_value() {
  if (!is_leaf())
    fail("Variable::mutable_value: '", op_name(),
         "' output is not a leaf; its value may be needed by backward");
  ++impl().version;
  return impl().value;
}

template <class T>
T Variable<T>::item() const {
  if (size() != 1) fail("Variable::item: needs exactly one element, shape is ", shape_str(shape()));
  return *impl().value.data();
}

template <class T>
Variable<T>& Variable<T>::set_requires_grad(bool requires_grad) {
  if (!is_leaf())
    fail("Variable::set_requires_grad: '", op_name(), "' output is not a leaf; detach() it first");
  impl().requires_grad = requires_grad;
  return *this;
}

template <class T>
void Variable<T>::zero_grad() {
  VariableImpl<T>& i = impl();
  if (i.grad_view && i.grad.defined() && i.grad.is_leaf()) {
    Array<T>& g = i.grad.impl().value;
    std::fill(g.begin(), g.end(), T(0));
    ++i.grad.impl().version;
    return;
  }
  i.grad = Variable();
}

namespace detail {
/// Adds `hook` to one of a Variable's hook lists (keeping the count of hooked leaves).
template <class T, class List, class H>
std::size_t add_hook(VariableImpl<T>& i, List VariableHooks<T>::*list, H&& hook) {
  if (!i.hooks) i.hooks = std::make_unique<VariableHooks<T>>();
  if (i.hooks->empty() && !i.node) ++hooked_leaves();
  const std::size_t id = next_hook_id();
  ((*i.hooks).*list).emplace_back(id, std::forward<H>(hook));
  return id;
}

/// Removes hook `id` from whichever list holds it.
template <class T>
void remove_hook(VariableImpl<T>& i, std::size_t id) {
  if (!i.hooks || i.hooks->empty()) return;
  auto drop = [id](auto& list) {
    list.erase(
        std::remove_if(list.begin(), list.end(), [id](const auto& e) { return e.first == id; }),
        list.end());
  };
  drop(i.hooks->grad);
  drop(i.hooks->post_accumulate);
  if (i.hooks->empty() && !i.node) --hooked_leaves();
}
}  // namespace detail

template <class T>
std::size_t Variable<T>::register_hook(std::function<Variable(const Variable&)> hook) {
  if (!hook) fail("Variable::register_hook: the hook is empty");
  if (!requires_grad())
    fail("Variable::register_hook: this Variable (", op_name(), ", shape ", shape_str(shape()),
         ") does not require grad, so no gradient will flow into it");
  return detail::add_hook(impl(), &VariableHooks<T>::grad, std::move(hook));
}

template <class T>
void Variable<T>::remove_hook(std::size_t id) {
  detail::remove_hook(impl(), id);
}

template <class T>
std::size_t Variable<T>::register_post_accumulate_hook(std::function<void(Variable&)> hook) {
  if (!is_leaf())
    fail("Variable::register_post_accumulate_hook: '", op_name(), "' output is not a leaf");
  if (!hook) fail("Variable::register_post_accumulate_hook: the hook is empty");
  return detail::add_hook(impl(), &VariableHooks<T>::post_accumulate, std::move(hook));
}

template <class T>
void Variable<T>::remove_post_accumulate_hook(std::size_t id) {
  detail::remove_hook(impl(), id);
}

template <class T>
const char* Variable<T>::op_name() const {
  return impl().node ? impl().node->op : "leaf";
}

template <class T>
Node<T>::~Node() {
  // Tear long chains down iteratively: a recursive chain of destructors would overflow the stack
  // for a graph of a million ops. Inputs whose only owner is this chain are unhooked one by one.
  VariableList<T> stack = std::move(inputs);
  while (!stack.empty()) {
    Variable<T> v = std::move(stack.back());
    stack.pop_back();
    const auto& p = v.impl_ptr();
    if (p && p.use_count() == 1 && p->node) {
      for (auto& in : p->node->inputs) stack.push_back(std::move(in));
      p->node->inputs.clear();
    }
  }
}

template <class T>
void Node<T>::release() {
  inputs.clear();
  versions.clear();
  backward = nullptr;
  pending = Variable<T>();
  released = true;
}

/// \endcond

}  // namespace ad
