// Gradient checks of whole modules, with respect to their input and every parameter.
#pragma once

#include "autodiff/gradcheck.hpp"
#include "nn/module.hpp"

namespace ad::nn {

/// gradcheck of module.forward(x) with respect to x (when it requires grad) and every parameter,
/// named in the report by their dotted names. The module must be built in double. Its parameter
/// handles are swapped for the checker's probes during the check and restored after, even when
/// the check throws. A module with randomness (dropout) must reset it inside `before_each`
/// (called before every forward), or the check sees a different function at each call.
GradcheckReport gradcheck_module(Module<double>& module, const Variable<double>& x,
                                 const GradcheckOptions& options = {},
                                 const std::function<void()>& before_each = nullptr);

}  // namespace ad::nn
