// The main() of the Google Benchmark programs: the library's thread setting comes from
// AD_NUM_THREADS (bench/run sets it beside OPENBLAS_NUM_THREADS).
#include <benchmark/benchmark.h>

#include "autodiff/threads.hpp"

int main(int argc, char** argv) {
  ad::set_num_threads(ad::default_num_threads());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
