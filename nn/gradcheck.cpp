#include "nn/gradcheck.hpp"

namespace ad::nn {

GradcheckReport gradcheck_module(Module<double>& module, const Variable<double>& x,
                                 const GradcheckOptions& options,
                                 const std::function<void()>& before_each) {
  // Each parameter once (tied ones too), with every slot that holds it: the checker's probes
  // must replace all of them, or a tied weight would be half probed.
  auto named = module.named_parameters();
  auto slots = module.parameter_slots();
  std::vector<Variable<double>> inputs{x};
  std::vector<std::string> names{"input"};
  std::vector<std::vector<Variable<double>*>> holders(named.size());
  for (std::size_t i = 0; i < named.size(); ++i) {
    inputs.push_back(*named[i].second);
    names.push_back(named[i].first);
    for (const auto& slot : slots)
      if (slot.second->impl_ptr() == named[i].second->impl_ptr()) holders[i].push_back(slot.second);
  }
  // Put the module's own parameter handles back however the check ends.
  struct Restore {
    const std::vector<std::vector<Variable<double>*>>& holders;
    const std::vector<Variable<double>>& saved;
    ~Restore() {
      for (std::size_t i = 0; i < holders.size(); ++i)
        for (auto* h : holders[i]) *h = saved[i + 1];
    }
  } restore{holders, inputs};
  detail::CheckedFunction f = [&](const std::vector<Variable<double>>& args) {
    for (std::size_t i = 0; i < holders.size(); ++i)
      for (auto* h : holders[i]) *h = args[i + 1];
    if (before_each) before_each();
    return module.forward(args[0]);
  };
  return detail::run_gradcheck(f, inputs, options, names);
}

}  // namespace ad::nn
