#include "nn/gradcheck.hpp"

#include <unordered_map>

namespace ad::nn {

GradcheckReport gradcheck_module(Module<double>& module, const Variable<double>& x,
                                 const GradcheckOptions& options,
                                 const std::function<void()>& before_each) {
  // Each parameter once (tied ones too), with the name of every slot that holds it: the
  // checker's probes must replace all of them, or a tied weight would be half probed.
  const auto named = module.named_parameters();
  const auto slots = module.parameter_slots();
  std::vector<Variable<double>> inputs{x};
  std::vector<std::string> names{"input"};
  std::vector<std::vector<std::string>> holders(named.size());
  for (std::size_t i = 0; i < named.size(); ++i) {
    inputs.push_back(named[i].second);
    names.push_back(named[i].first);
    for (const auto& [slot, p] : slots)
      if (p.impl_ptr() == named[i].second.impl_ptr()) holders[i].push_back(slot);
  }
  auto set_all = [&](const std::vector<Variable<double>>& values) {
    for (std::size_t i = 0; i < holders.size(); ++i)
      for (const auto& slot : holders[i]) module.set_parameter(slot, values[i + 1]);
  };
  // Put the module's own parameter handles back however the check ends.
  struct Restore {
    std::function<void()> undo;
    ~Restore() { undo(); }
  } restore{[&] { set_all(inputs); }};
  detail::CheckedFunction f = [&](const std::vector<Variable<double>>& args) {
    set_all(args);
    if (before_each) before_each();
    return module.forward(args[0]);
  };
  // The dotted path of every module of the tree, for the localisation's report.
  std::unordered_map<const void*, std::string> paths;
  std::function<void(const Module<double>&, const std::string&)> walk =
      [&](const Module<double>& m, const std::string& path) {
        paths.emplace(&m, path);
        for (const auto& [name, child] : m.children())
          walk(*child, path.empty() ? name : path + "." + name);
      };
  walk(module, "");
  detail::ModuleNamer namer = [&paths](const void* m) {
    auto it = paths.find(m);
    return it == paths.end() ? std::string() : it->second;
  };
  return detail::run_gradcheck(f, inputs, options, names, nullptr, nullptr, namer);
}

}  // namespace ad::nn
