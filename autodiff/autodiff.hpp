// The whole autodiff layer: Variable, the ops, grad(), second-order helpers and gradcheck.
#pragma once

#include "autodiff/check_op.hpp"
#include "autodiff/checkpoint.hpp"
#include "autodiff/flat.hpp"
#include "autodiff/functional.hpp"
#include "autodiff/gradcheck.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/program.hpp"
#include "autodiff/threads.hpp"
#include "autodiff/variable.hpp"
