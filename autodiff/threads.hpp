// The one thread setting of the library.
#pragma once

namespace ad {

/// Sets how many threads the library uses: for the matrix products (OpenBLAS) and for its own
/// large kernels (elementwise ops, im2col, pooling). Until it is called the library's own kernels
/// run on the calling thread and OpenBLAS uses OPENBLAS_NUM_THREADS (or the core count). The
/// examples take --threads, defaulting to AD_NUM_THREADS or 1.
void set_num_threads(int threads);
/// The library's own thread count (1 until set_num_threads is called).
int num_threads();
/// The thread count to use when none is given: AD_NUM_THREADS if set (and positive), else
/// `fallback`.
int default_num_threads(int fallback = 1);

}  // namespace ad
