// Data-parallel measurements under mpirun (bench/distributed_run runs them and the scaling model).
//
//   distributed allreduce FLOATS REPS   all-reduce of FLOATS floats: median time and the bus
//                                       bandwidth 2(N−1)/N · bytes / time (the ring's traffic)
//   distributed step MODEL BATCH STEPS  MODEL mlp or cnn, the global batch split over the ranks:
//                                       median step time, the step's compute alone (no all-reduce,
//                                       measured on the same ranks), the wait for the all-reduce
//                                       with and without overlap (buckets started by the hooks
//                                       during backward, or all at the end), and the window: the
//                                       backward time after the first bucket started
// Each rank uses AD_NUM_THREADS threads (default 1). Rank 0 prints one "result" line of key=value
// pairs.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "distributed/data_parallel.hpp"
#include "examples/cli.hpp"
#include "examples/models.hpp"
#include "nn/nn.hpp"

namespace nn = ad::nn;
namespace dist = ad::distributed;
using F = ad::Variable<float>;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int allreduce(dist::Communicator& comm, std::size_t floats, int reps) {
  std::vector<float> data(floats, 1.0f);
  std::vector<double> times;
  for (int r = 0; r < reps + 2; ++r) {
    comm.barrier();
    const auto t0 = Clock::now();
    comm.sum(data.data(), data.size());
    const double t = seconds_since(t0);
    if (r >= 2) times.push_back(t);  // the first two warm the path up
  }
  double t = median(times);
  comm.sum(&t, 1);  // the mean over ranks of their medians
  t /= comm.size();
  const double bytes = static_cast<double>(floats) * sizeof(float);
  const double bus = 2.0 * (comm.size() - 1) / comm.size() * bytes / t;
  if (comm.is_root())
    std::printf("result mode=allreduce ranks=%d floats=%zu seconds=%.6g bus_gbytes_per_s=%.4g\n",
                comm.size(), floats, t, bus / 1e9);
  return 0;
}

/// A model of the examples on random data, its global batch split over the ranks.
struct Stepper {
  Stepper(const std::string& name, std::size_t global_batch, dist::Communicator& comm)
      : comm(comm) {
    nn::Generator rng(0);
    model = name == "cnn" ? examples::make_cnn(rng) : examples::make_mlp(rng);
    const std::size_t local = global_batch / comm.size();
    ad::Shape shape = name == "cnn" ? ad::Shape{local, 1, 28, 28} : ad::Shape{local, 784};
    ad::Array<float> a = ad::Array<float>::from_shape(shape);
    nn::init::normal(a, 0.0, 0.3, rng);
    x = F(std::move(a));
    for (std::size_t i = 0; i < local; ++i) labels.push_back(i % 10);
    dp = std::make_unique<dist::DataParallel<float>>(*model, comm);
    opt = std::make_unique<nn::SGD<float>>(dp->parameters(), nn::SGDOptions{0.05, 0.9});
  }
  /// One step; `overlap`: buckets start during backward; `sync`: sum the gradients at all.
  double step(bool overlap, bool sync) {
    comm.barrier();
    const auto t0 = Clock::now();
    opt->zero_grad();
    dp->set_sync(overlap);
    nn::cross_entropy(model->forward(x), labels).backward();
    if (sync) dp->synchronize();
    opt->step();
    return seconds_since(t0);
  }
  dist::Communicator& comm;
  std::shared_ptr<nn::Sequential<float>> model;
  F x;
  std::vector<std::size_t> labels;
  std::unique_ptr<dist::DataParallel<float>> dp;
  std::unique_ptr<nn::SGD<float>> opt;
};

int step(dist::Communicator& comm, const std::string& name, std::size_t batch, int steps) {
  Stepper s(name, batch, comm);
  for (int i = 0; i < 3; ++i) s.step(true, true);  // warm-up
  std::vector<double> overlapped, serial, compute;
  double wait_overlapped = 0, wait_serial = 0, window = 0;
  for (int i = 0; i < steps; ++i) {
    s.dp->reset_wait();
    overlapped.push_back(s.step(true, true));
    wait_overlapped += s.dp->wait_seconds();
    window += s.dp->overlap_seconds();
    s.dp->reset_wait();
    serial.push_back(s.step(false, true));
    wait_serial += s.dp->wait_seconds();
    // (compute alone: no sum; the parameters then differ across ranks, which a timing ignores)
    compute.push_back(s.step(false, false));
  }
  if (comm.is_root())
    std::printf(
        "result mode=step model=%s ranks=%d threads=%d global_batch=%zu params=%zu buckets=%zu "
        "last_bucket=%zu step_s=%.6g step_without_overlap_s=%.6g compute_s=%.6g "
        "wait_overlap_s=%.6g wait_serial_s=%.6g window_s=%.6g hidden_fraction=%.3f\n",
        name.c_str(), comm.size(), ad::num_threads(), batch, s.dp->parameters()->size(),
        s.dp->buckets(), s.dp->bucket_sizes().back(), median(overlapped), median(serial),
        median(compute), wait_overlapped / steps, wait_serial / steps, window / steps,
        wait_serial > 0 ? 1.0 - wait_overlapped / wait_serial : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return dist::run(argc, argv, [&](dist::Communicator& comm) {
    ad::set_num_threads(ad::default_num_threads());
    const std::string mode = argc > 1 ? argv[1] : "";
    using examples::parse_number;
    const std::size_t most = std::size_t{1} << 32;
    if (mode == "allreduce" && argc == 4)
      return allreduce(comm, parse_number<std::size_t>(argv[2], 1, most, "FLOATS"),
                       parse_number<int>(argv[3], 1, 100000, "REPS"));
    const std::string model = argc > 2 ? argv[2] : "";
    if (mode == "step" && argc == 5 && (model == "mlp" || model == "cnn")) {
      const auto batch = parse_number<std::size_t>(argv[3], 1, most, "BATCH");
      if (batch < static_cast<std::size_t>(comm.size()))
        throw std::invalid_argument("BATCH must be at least the number of ranks");
      return step(comm, model, batch, parse_number<int>(argv[4], 1, 100000, "STEPS"));
    }
    if (comm.is_root())
      std::fprintf(stderr,
                   "usage: distributed allreduce FLOATS REPS | distributed step mlp|cnn BATCH "
                   "STEPS\n");
    return 2;
  });
}
