// Collective: how the processes of a data-parallel run combine what each computed. The trainer
// (nn/trainer.hpp) uses it; distributed/ implements it over MPI, so that nn/ needs no MPI.
#pragma once

#include <cstddef>

namespace ad::nn {

/// How the processes of a data-parallel run combine what each computed (distributed/ implements
/// it over MPI; nn/ does not depend on MPI). Without one, a trainer is a single process.
class Collective {
 public:
  virtual ~Collective() = default;
  /// Whether this process prints and writes files (rank 0).
  virtual bool is_root() const = 0;
  /// Sums `values` over every process, in place.
  virtual void sum(double* values, std::size_t n) = 0;
};

}  // namespace ad::nn
