#include "distributed/communicator.hpp"

#include <mpi.h>

#include <iostream>
#include <limits>
#include <string>

#include "autodiff/error.hpp"

namespace ad::distributed {

namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail("MPI ", what, ": ", std::string(text, static_cast<std::size_t>(length)));
}

/// Collectives take int counts: large buffers go in pieces.
template <class F>
void in_pieces(std::size_t n, F&& piece) {
  const std::size_t most = static_cast<std::size_t>(std::numeric_limits<int>::max());
  for (std::size_t at = 0; at < n; at += most) piece(at, static_cast<int>(std::min(most, n - at)));
}

}  // namespace

Communicator::Communicator(int& argc, char**& argv) {
  int started = 0;
  MPI_Initialized(&started);
  int level = MPI_THREAD_SINGLE;
  if (!started)
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level), "init");
  else
    MPI_Query_thread(&level);
  thread_multiple_ = level >= MPI_THREAD_MULTIPLE;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

Communicator::~Communicator() {
  int finished = 0;
  MPI_Finalized(&finished);
  if (!finished) MPI_Finalize();
}

void Communicator::sum(double* values, std::size_t n) {
  in_pieces(n, [&](std::size_t at, int count) {
    check(MPI_Allreduce(MPI_IN_PLACE, values + at, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
          "all-reduce");
  });
}

void Communicator::sum(float* values, std::size_t n) {
  in_pieces(n, [&](std::size_t at, int count) {
    check(MPI_Allreduce(MPI_IN_PLACE, values + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "all-reduce");
  });
}

void Communicator::broadcast(void* data, std::size_t bytes, int root) {
  in_pieces(bytes, [&](std::size_t at, int count) {
    check(MPI_Bcast(static_cast<char*>(data) + at, count, MPI_BYTE, root, MPI_COMM_WORLD),
          "broadcast");
  });
}

void Communicator::barrier() {
  check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

void Communicator::abort(const std::string& message) {
  // One write of the whole line: written piece by piece, other ranks' output (and mpirun's own
  // note on the abort) could land inside it.
  const std::string line =
      "rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": " + message + "\n";
  std::cerr.write(line.data(), static_cast<std::streamsize>(line.size()));
  std::cerr.flush();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // (MPI_Abort does not return)
}

int run(int& argc, char**& argv, const std::function<int(Communicator&)>& program) {
  Communicator comm(argc, argv);
  try {
    return program(comm);
  } catch (const std::exception& e) {
    comm.abort(e.what());
  }
}

}  // namespace ad::distributed
