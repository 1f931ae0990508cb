// The processes of a data-parallel run, over MPI: rank and size, sums and broadcasts, and the way
// a failure on one rank ends them all. Only distributed/ includes mpi.h; autodiff/ and nn/ know
// nothing of MPI.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "nn/collective.hpp"

namespace ad::distributed {

/// MPI_COMM_WORLD as the processes of one run. It is also the trainer's nn::Collective: the
/// trainer sums its per-epoch figures with it and lets only rank 0 print and write.
class Communicator : public nn::Collective {
 public:
  /// Starts MPI (once per process; mpirun gives the rank and the size), asking for
  /// MPI_THREAD_MULTIPLE (DataParallel's all-reduces run on a thread of their own).
  Communicator(int& argc, char**& argv);
  /// Ends MPI.
  ~Communicator() override;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// This process's rank, 0 to size() − 1.
  int rank() const { return rank_; }
  /// The number of processes.
  int size() const { return size_; }
  /// Whether this is rank 0, which prints and writes.
  bool is_root() const override { return rank_ == 0; }
  /// Whether MPI lets several threads call it at once (MPI_THREAD_MULTIPLE).
  bool thread_multiple() const { return thread_multiple_; }
  /// Sums `values` over every rank, in place (all ranks get the same sums).
  void sum(double* values, std::size_t n) override;
  /// The same for floats.
  void sum(float* values, std::size_t n);
  /// Rank `root`'s bytes to every rank.
  void broadcast(void* data, std::size_t bytes, int root = 0);
  /// Waits for every rank.
  void barrier();
  /// Ends every rank of the run at once, printing `message` from this one (no rank is left
  /// waiting in a collective).
  [[noreturn]] void abort(const std::string& message);

 private:
  int rank_ = 0, size_ = 1;
  bool thread_multiple_ = false;
};

/// Runs `program` on every rank of an mpirun (or alone), with MPI started; an exception on any rank
/// prints its message ("rank 2: ...") and ends all ranks with a non-zero status, so that none
/// hangs. Returns the program's exit status.
int run(int& argc, char**& argv, const std::function<int(Communicator&)>& program);

}  // namespace ad::distributed
