// The one thread setting of the library.
#pragma once

namespace ad {

/// Sets how many threads the matrix products use (OpenBLAS); the library's own kernels run on the
/// calling thread. OpenBLAS starts from OPENBLAS_NUM_THREADS (or the core count); the examples
/// take --threads, defaulting to AD_NUM_THREADS or 1, which was fastest on 2 cores (BENCHMARKS.md).
void set_num_threads(int threads);
/// The current setting.
int num_threads();
/// The thread count to use when none is given: AD_NUM_THREADS if set (and positive), else
/// `fallback`.
int default_num_threads(int fallback = 1);

}  // namespace ad
