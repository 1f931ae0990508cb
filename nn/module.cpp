#include "nn/module.hpp"

#include <unordered_set>

namespace ad::nn {

template <class T>
void Module<T>::check_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos || name.find('/') != std::string::npos)
    fail("Module: name '", name, "' must be non-empty and contain no '.' or '/'");
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  if (taken(parameters_) || taken(buffers_) || taken(states_) || taken(children_))
    fail("Module: the name '", name, "' is already registered");
}

template <class T>
std::size_t Module<T>::register_parameter(const std::string& name, Array<T> value) {
  check_name(name);
  parameters_.emplace_back(name, Variable<T>(std::move(value), true));
  return parameters_.size() - 1;
}

template <class T>
Array<T>& Module<T>::register_buffer(const std::string& name, Array<T> value) {
  check_name(name);
  buffers_.emplace_back(name, std::make_unique<Array<T>>(std::move(value)));
  return *buffers_.back().second;
}

template <class T>
StateArray& Module<T>::register_state(const std::string& name, StateArray value) {
  check_name(name);
  states_.emplace_back(name, std::make_unique<StateArray>(std::move(value)));
  return *states_.back().second;
}

namespace {

/// What a registry entry gives out: a parameter's handle, or a pointer to a buffer or state.
template <class T>
const Variable<T>& held(const Variable<T>& v) {
  return v;
}
template <class A>
A* held(const std::unique_ptr<A>& p) {
  return p.get();
}

}  // namespace

/// Walks the tree depth first: a module's own entries, then its children's, with dotted names.
template <class T>
template <class Entry, class F>
void Module<T>::collect(const std::string& prefix, std::vector<Entry>& out, F pick) const {
  for (const auto& [name, item] : pick(*this)) out.emplace_back(prefix + name, held(item));
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, pick);
}

template <class T>
std::vector<std::pair<std::string, Variable<T>>> Module<T>::parameter_slots() const {
  std::vector<std::pair<std::string, Variable<T>>> out;
  collect(
      "", out, [](const Module& m) -> const auto& { return m.parameters_; });
  return out;
}

template <class T>
std::vector<std::pair<std::string, Variable<T>>> Module<T>::named_parameters() const {
  std::vector<std::pair<std::string, Variable<T>>> out;
  std::unordered_set<const VariableImpl<T>*> seen;
  for (auto& entry : parameter_slots())
    if (seen.insert(entry.second.impl_ptr().get()).second) out.push_back(std::move(entry));
  return out;
}

template <class T>
void Module<T>::set_parameter(const std::string& name, Variable<T> value) {
  const auto dot = name.find('.');
  if (dot != std::string::npos) {
    for (auto& [child_name, child] : children_)
      if (child_name == name.substr(0, dot))
        return child->set_parameter(name.substr(dot + 1), value);
  } else {
    for (auto& [own, p] : parameters_)
      if (own == name) {
        if (value.shape() != p.shape())
          fail("Module::set_parameter: '", name, "' has shape ", shape_str(p.shape()),
               ", the new value ", shape_str(value.shape()));
        p = std::move(value);
        return;
      }
  }
  fail("Module::set_parameter: no parameter '", name, "'");
}

template <class T>
std::vector<std::pair<std::string, Array<T>*>> Module<T>::named_buffers() const {
  std::vector<std::pair<std::string, Array<T>*>> out;
  collect(
      "", out, [](const Module& m) -> const auto& { return m.buffers_; });
  return out;
}

template <class T>
std::vector<std::pair<std::string, StateArray*>> Module<T>::named_states() const {
  std::vector<std::pair<std::string, StateArray*>> out;
  collect(
      "", out, [](const Module& m) -> const auto& { return m.states_; });
  return out;
}

template <class T>
std::vector<Variable<T>> Module<T>::parameters() const {
  std::vector<Variable<T>> out;
  for (auto& entry : named_parameters()) out.push_back(std::move(entry.second));
  return out;
}

template <class T>
std::size_t Module<T>::parameter_count() const {
  std::size_t n = 0;
  for (const auto& entry : named_parameters()) n += entry.second.size();
  return n;
}

template <class T>
std::shared_ptr<FlatParameters<T>> Module<T>::flatten_parameters() {
  if (!flat_ || flat_->parameters().size() != parameters().size())
    flat_ = std::make_shared<FlatParameters<T>>(parameters());
  return flat_;
}

template <class T>
void Module<T>::zero_grad() {
  for (auto& entry : named_parameters()) entry.second.zero_grad();
}

template <class T>
void Module<T>::train(bool on) {
  training_ = on;
  for (auto& entry : children_) entry.second->train(on);
}

template <class T>
Array<T> Module<T>::predict(const Array<T>& x) {
  struct Restore {
    Module& m;
    bool was_training;
    ~Restore() { m.train(was_training); }
  } restore{*this, training_};
  NoGradGuard no_grad;
  eval();
  return (*this)(Variable<T>(x)).value();
}

template <class T>
Variable<T> Sequential<T>::forward(const Variable<T>& x) {
  // x itself goes to the first module (a Variable's copy costs an atomic count), then each
  // module's output to the next, whatever it is.
  Variable<T> y;
  const Variable<T>* in = &x;
  const auto& children = this->children();
  for (std::size_t i = 0; i < children.size(); ++i) {
    const auto& [name, module] = children[i];
    try {
      y = (*module)(*in);
    } catch (const Error& e) {
      fail("Sequential module ", name, ": ", e.what());
    }
    in = &y;
  }
  return *in;
}

template class Module<float>;
template class Module<double>;
template class Sequential<float>;
template class Sequential<double>;

}  // namespace ad::nn
