// All ops of the tape.
#pragma once

#include "autodiff/arithmetic.hpp"
#include "autodiff/attention.hpp"
#include "autodiff/conv.hpp"
#include "autodiff/elementwise.hpp"
#include "autodiff/linalg.hpp"
#include "autodiff/recurrent.hpp"
#include "autodiff/reduce.hpp"
#include "autodiff/shape.hpp"
#include "autodiff/variable.hpp"

namespace ad::detail {

/// The addresses of the given functions. An op file lists its ops for float and double with it,
/// in one function that it instantiates explicitly: that compiles each op into the library without
/// writing its signature a third time (header, definition, instantiation).
template <class... F>
std::vector<const void*> addresses(F... f) {
  return {reinterpret_cast<const void*>(f)...};
}

}  // namespace ad::detail
