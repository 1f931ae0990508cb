// Module: the base of layers and models (parameters, buffers, submodules, train/eval), and
// Sequential.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/flat.hpp"
#include "autodiff/variable.hpp"

namespace ad::nn {
template <class T>
class Module;
}  // namespace ad::nn

namespace ad::detail {
/// One call of a module noted while nn::summary runs a model: the module and its output's shape.
template <class T>
struct ModuleCall {
  const nn::Module<T>* module;
  Shape output;
};
/// Where calls are noted on this thread (null: nowhere; only summary() sets it).
template <class T>
inline thread_local std::vector<ModuleCall<T>>* module_calls = nullptr;

/// Makes `module` the current one (detail::current_module) for its lifetime while a tape observer
/// is installed (the gradient checker's localisation names ops by their module); otherwise
/// nothing.
template <class T>
class ModuleScope {
 public:
  explicit ModuleScope(const void* module) : saved_(current_module<T>) {
    if (tape_observer<T>) current_module<T> = module;
  }
  ~ModuleScope() { current_module<T> = saved_; }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  const void* saved_;
};
}  // namespace ad::detail

namespace ad::nn {

/// Integer state a module keeps besides its float buffers (a random stream's position).
using StateArray = Array<std::uint64_t>;

/// The base of every layer and model. A module registers its parameters, buffers and submodules
/// under names; the names of a tree of modules join with dots ("0.weight", "encoder.fc1.bias").
/// Parameters are held by value (handles that share data with every copy); a module can be moved,
/// not copied (copies would share parameters silently).
template <class T = float>
class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  /// Moves the module (its parameters go along).
  Module(Module&&) = default;
  /// Moves the module (its parameters go along).
  Module& operator=(Module&&) = default;
  virtual ~Module() = default;

  /// The computation of the module.
  virtual Variable<T> forward(const Variable<T>& x) = 0;
  /// What nn::summary shows after the module's class, in parentheses ("" for nothing).
  virtual std::string details() const { return {}; }
  /// forward(x). (nn::summary sees the calls made this way.)
  Variable<T> operator()(const Variable<T>& x) {
    detail::ModuleScope<T> scope(this);
    if (!detail::module_calls<T>) return forward(x);
    const std::size_t at = detail::module_calls<T>->size();  // the caller's row before its parts'
    detail::module_calls<T>->push_back({this, {}});
    Variable<T> y = forward(x);
    (*detail::module_calls<T>)[at].output = y.shape();
    return y;
  }
  /// The output for `x` in evaluation mode (dropout off, BatchNorm's running statistics) without
  /// recording a graph; the module's mode is put back afterwards, also when forward throws.
  Array<T> predict(const Array<T>& x);

  /// Handles to every parameter of the tree, in registration order (they share data with it).
  /// A parameter registered in several places (tied weights: b.weight() = a.weight()) is listed
  /// once, so an optimizer steps it once and a checkpoint saves it once.
  std::vector<Variable<T>> parameters() const;
  /// Every parameter with its dotted name (a tied one once, under its first name), as handles.
  std::vector<std::pair<std::string, Variable<T>>> named_parameters() const;
  /// Every registered parameter slot by dotted name, tied ones under each of their names.
  std::vector<std::pair<std::string, Variable<T>>> parameter_slots() const;
  /// Replaces the handle registered under `name` ("fc1.weight"): the module then uses `value`
  /// (code that probes parameters, such as gradcheck_module, swaps them this way). Throws when
  /// there is no such parameter or the shape differs.
  void set_parameter(const std::string& name, Variable<T> value);
  /// Every buffer (state that is saved but not trained, e.g. running statistics).
  std::vector<std::pair<std::string, Array<T>*>> named_buffers() const;
  /// Every integer state array (e.g. a dropout layer's random stream position).
  std::vector<std::pair<std::string, StateArray*>> named_states() const;
  /// Number of parameter elements.
  std::size_t parameter_count() const;
  /// Lays out every parameter of the tree in one contiguous buffer and their gradients in a
  /// matching one (each a view: see autodiff/flat.hpp), and returns them for an optimizer
  /// (SGD(model.flatten_parameters(), options) updates them in one pass) or an all-reduce. The
  /// module keeps them; calling it again returns the same buffers. From then on every parameter
  /// always has a gradient (zero_grad() zeroes it in place).
  std::shared_ptr<FlatParameters<T>> flatten_parameters();

  /// Forgets the gradients of all parameters.
  void zero_grad();
  /// Switches the tree to training (or evaluation) behaviour: dropout, batch statistics.
  void train(bool on = true);
  /// train(false).
  void eval() { train(false); }
  /// Whether it is in training mode.
  bool is_training() const { return training_; }

  /// The submodules with their names.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

 protected:
  /// Adds a parameter (a leaf that requires grad) initialised to `value`; returns its position,
  /// for parameter(i).
  std::size_t register_parameter(const std::string& name, Array<T> value);
  /// This module's i-th registered parameter (the registry holds the handle by value; a layer keeps
  /// its position, never a pointer into it).
  Variable<T>& parameter(std::size_t i) { return parameters_[i].second; }
  /// This module's i-th registered parameter.
  const Variable<T>& parameter(std::size_t i) const { return parameters_[i].second; }
  /// Adds a buffer initialised to `value`.
  Array<T>& register_buffer(const std::string& name, Array<T> value);
  /// Adds an integer state array.
  StateArray& register_state(const std::string& name, StateArray value);
  /// Adds a submodule; returns it for storing in a member.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_name(name);
    if (!module) fail("register_module: module '", name, "' is null");
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void check_name(const std::string& name) const;
  template <class Entry, class F>
  void collect(const std::string& prefix, std::vector<Entry>& out, F pick) const;

  std::vector<std::pair<std::string, Variable<T>>> parameters_;
  std::vector<std::pair<std::string, std::unique_ptr<Array<T>>>> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<StateArray>>> states_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::shared_ptr<FlatParameters<T>> flat_;
  bool training_ = true;
};

/// Modules applied one after the other; the i-th is named "i".
template <class T = float>
class Sequential : public Module<T> {
 public:
  Sequential() = default;
  /// The modules, in order.
  template <class... M>
  explicit Sequential(std::shared_ptr<M>... modules) {
    (add(std::move(modules)), ...);
  }

  /// Appends a module.
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> module) {
    return this->register_module(std::to_string(this->children().size()), std::move(module));
  }
  /// How many modules it holds.
  std::size_t size() const { return this->children().size(); }
  /// The i-th module.
  const std::shared_ptr<Module<T>>& operator[](std::size_t i) const {
    return this->children().at(i).second;
  }

  /// Runs the modules in order, each as it is (nothing is fused behind them: a Linear built with
  /// its activation is one op); an error names the module that raised it.
  Variable<T> forward(const Variable<T>& x) override;
};

}  // namespace ad::nn
