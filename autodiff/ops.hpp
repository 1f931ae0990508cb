// All ops of the tape.
#pragma once

#include "autodiff/arithmetic.hpp"
#include "autodiff/conv.hpp"
#include "autodiff/elementwise.hpp"
#include "autodiff/linalg.hpp"
#include "autodiff/reduce.hpp"
#include "autodiff/shape.hpp"
#include "autodiff/variable.hpp"
