#include "nn/checkpoint.hpp"

#include <functional>
#include <set>

#include "nn/npz.hpp"

namespace ad::nn {

namespace {

/// The name of each optimizer parameter: its dotted name in the model when it belongs to it,
/// else "param<i>".
template <class T>
std::vector<std::string> optimizer_names(const Module<T>& model, const Optimizer<T>& optimizer) {
  std::map<const void*, std::string> by_impl;
  for (const auto& [name, p] : model.named_parameters()) by_impl[p.impl_ptr().get()] = name;
  std::vector<std::string> names;
  const auto params = optimizer.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto it = by_impl.find(params[i].impl_ptr().get());
    names.push_back(it != by_impl.end() ? it->second : "param" + std::to_string(i));
  }
  return names;
}

/// The entry "optimizer/type": the optimizer's name as bytes.
npz::Entry type_entry(const std::string& type) {
  Array<std::uint8_t> bytes = Array<std::uint8_t>::from_shape({type.size()});
  std::copy(type.begin(), type.end(), bytes.begin());
  return npz::from_array(bytes);
}

/// The model's parameters, buffers and states, as checkpoint entries.
template <class T>
std::vector<std::pair<std::string, npz::Entry>> model_entries(const Module<T>& model) {
  std::vector<std::pair<std::string, npz::Entry>> entries;
  for (const auto& [name, p] : model.named_parameters())
    entries.emplace_back(name, npz::from_array(p.value()));
  for (const auto& [name, b] : model.named_buffers())
    entries.emplace_back(name, npz::from_array(*b));
  for (const auto& [name, s] : model.named_states())
    entries.emplace_back(name, npz::from_array(*s));
  return entries;
}

}  // namespace

template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model, const Optimizer<T>* optimizer,
                     const Meta& meta) {
  std::vector<std::pair<std::string, npz::Entry>> entries = model_entries(model);
  if (optimizer) {
    entries.emplace_back("optimizer/type", type_entry(optimizer->name()));
    const auto names = optimizer_names(model, *optimizer);
    for (std::size_t i = 0; i < names.size(); ++i) {
      const ParamState<T>& s = optimizer->state()[i];
      const std::string prefix = "optimizer/" + names[i] + "/";
      entries.emplace_back(prefix + "step", npz::from_array(Array<std::uint64_t>(s.step)));
      for (const auto& [buffer, value] : s.buffers)
        entries.emplace_back(prefix + buffer, npz::from_array(value));
    }
  }
  for (const auto& [key, value] : meta)
    entries.emplace_back("meta/" + key, npz::from_array(Array<double>(value)));
  npz::save(path, entries);
}

template <class T>
Meta load_checkpoint(const std::string& path, Module<T>& model, Optimizer<T>* optimizer,
                     const LoadOptions& options) {
  auto entries = npz::load(path);
  std::map<std::string, const npz::Entry*> by_name;
  for (const auto& [name, e] : entries) by_name[name] = &e;

  // Every check first; the writes are collected and run only once all have passed.
  std::vector<std::function<void()>> writes;
  std::set<std::string> used;
  auto take = [&](const std::string& name, const Shape& shape) -> const npz::Entry& {
    auto it = by_name.find(name);
    if (it == by_name.end()) fail("'", path, "': entry '", name, "' is missing");
    if (it->second->shape != shape)
      fail("'", path, "': entry '", name, "' has shape ", shape_str(it->second->shape),
           ", expected ", shape_str(shape));
    used.insert(name);
    return *it->second;
  };
  for (auto& [name, p] : model.named_parameters()) {
    auto a = npz::to_array<Array<T>>(take(name, p.shape()), name, path);
    // Copied into the parameter's own array (which may be a view of a flat buffer).
    writes.push_back([p = p, a = std::move(a)]() mutable {
      std::copy(a.begin(), a.end(), p.mutable_value().begin());
    });
  }
  for (auto& [name, b] : model.named_buffers()) {
    auto a = npz::to_array<Array<T>>(take(name, b->shape()), name, path);
    writes.push_back([b = b, a = std::move(a)]() mutable { *b = std::move(a); });
  }
  for (auto& [name, s] : model.named_states()) {
    auto a = npz::to_array<StateArray>(take(name, s->shape()), name, path);
    writes.push_back([s = s, a = std::move(a)]() mutable { *s = std::move(a); });
  }
  bool has_optimizer_state = false;
  for (const auto& [name, e] : entries)
    has_optimizer_state |= name.compare(0, 10, "optimizer/") == 0;
  if (optimizer && !options.reset_optimizer) {
    if (!has_optimizer_state)
      fail("'", path,
           "' holds no optimizer state (it was saved without an optimizer); start the "
           "optimizer afresh explicitly (LoadOptions::reset_optimizer, --reset-optimizer)");
    auto it = by_name.find("optimizer/type");
    if (it == by_name.end() || it->second->shape.size() != 1)
      fail("'", path, "': entry 'optimizer/type' (the optimizer's name) is missing or not 1-D");
    const auto bytes = npz::to_array<Array<std::uint8_t>>(*it->second, "optimizer/type", path);
    const std::string type(bytes.begin(), bytes.end());
    used.insert("optimizer/type");
    if (type != optimizer->name())
      fail("'", path, "' holds the state of a ", type, " optimizer, not of ", optimizer->name(),
           "; resume with the same optimizer, or start it afresh explicitly "
           "(LoadOptions::reset_optimizer, --reset-optimizer)");
    const auto names = optimizer_names(model, *optimizer);
    const auto params = optimizer->parameters();
    std::vector<ParamState<T>> states(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string prefix = "optimizer/" + names[i] + "/";
      for (const auto& [name, e] : entries) {
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string buffer = name.substr(prefix.size());
        if (buffer == "step") {
          auto a = npz::to_array<Array<std::uint64_t>>(take(name, Shape{}), name, path);
          states[i].step = a();
        } else {
          states[i].buffers[buffer] =
              npz::to_array<Array<T>>(take(name, params[i].shape()), name, path);
        }
      }
    }
    writes.push_back([optimizer, states = std::move(states)]() mutable {
      optimizer->state() = std::move(states);
    });
  }
  Meta meta;
  for (const auto& [name, e] : entries) {
    if (name.compare(0, 5, "meta/") == 0) {
      meta[name.substr(5)] = npz::to_array<Array<double>>(take(name, Shape{}), name, path)();
    } else if (!used.count(name) && !(name.compare(0, 10, "optimizer/") == 0 &&
                                      (!optimizer || options.reset_optimizer))) {
      fail("'", path, "': unexpected entry '", name,
           "' (the model has no such parameter, buffer "
           "or state)");
    }
  }
  if (options.check_meta) options.check_meta(meta);
  for (auto& w : writes) w();
  return meta;
}

template <class T>
void save_checkpoint(const std::string& path, const Module<T>& model, const LBFGS<T>& lbfgs,
                     const Meta& meta) {
  std::vector<std::pair<std::string, npz::Entry>> entries = model_entries(model);
  entries.emplace_back("optimizer/type", type_entry("LBFGS"));
  for (const auto& [name, a] : lbfgs.state_arrays())
    entries.emplace_back("optimizer/lbfgs/" + name, npz::from_array(a));
  for (const auto& [key, value] : meta)
    entries.emplace_back("meta/" + key, npz::from_array(Array<double>(value)));
  npz::save(path, entries);
}

template <class T>
Meta load_checkpoint(const std::string& path, Module<T>& model, LBFGS<T>& lbfgs,
                     const LoadOptions& options) {
  if (options.reset_optimizer) return load_checkpoint<T>(path, model, nullptr, options);
  // The minimiser's state first (read and checked; nothing written), then the model, which
  // checks everything of its own before it writes; then the state, which cannot fail.
  std::map<std::string, Array<double>> arrays;
  std::string type;
  for (const auto& [name, e] : npz::load(path)) {
    if (name == "optimizer/type") {
      const auto bytes = npz::to_array<Array<std::uint8_t>>(e, name, path);
      type.assign(bytes.begin(), bytes.end());
    } else if (name.compare(0, 16, "optimizer/lbfgs/") == 0) {
      arrays[name.substr(16)] = npz::to_array<Array<double>>(e, name, path);
    }
  }
  if (type.empty())
    fail("'", path,
         "' holds no optimizer state (it was saved without one); start L-BFGS afresh explicitly "
         "(LoadOptions::reset_optimizer)");
  if (type != "LBFGS") fail("'", path, "' holds the state of a ", type, " optimizer, not of LBFGS");
  LBFGS<T> check = lbfgs;
  try {
    check.load_state_arrays(arrays);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
  LoadOptions model_only = options;
  model_only.reset_optimizer = true;  // the optimizer/ entries were read above
  Meta meta = load_checkpoint<T>(path, model, nullptr, model_only);
  lbfgs.load_state_arrays(arrays);
  return meta;
}

template void save_checkpoint(const std::string&, const Module<float>&, const LBFGS<float>&,
                              const Meta&);
template void save_checkpoint(const std::string&, const Module<double>&, const LBFGS<double>&,
                              const Meta&);
template Meta load_checkpoint(const std::string&, Module<float>&, LBFGS<float>&,
                              const LoadOptions&);
template Meta load_checkpoint(const std::string&, Module<double>&, LBFGS<double>&,
                              const LoadOptions&);
template void save_checkpoint(const std::string&, const Module<float>&, const Optimizer<float>*,
                              const Meta&);
template void save_checkpoint(const std::string&, const Module<double>&, const Optimizer<double>*,
                              const Meta&);
template Meta load_checkpoint(const std::string&, Module<float>&, Optimizer<float>*,
                              const LoadOptions&);
template Meta load_checkpoint(const std::string&, Module<double>&, Optimizer<double>*,
                              const LoadOptions&);

}  // namespace ad::nn
