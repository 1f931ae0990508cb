#include "autodiff/kernels/scratch.hpp"

#include <vector>

#include "autodiff/allocator.hpp"

namespace ad::kernels {

namespace {

template <class T>
std::vector<T>* buffers() {
  thread_local std::vector<T> b[2];
  return b;
}

void release() {
  for (int slot = 0; slot < 2; ++slot) {
    std::vector<float>().swap(buffers<float>()[slot]);
    std::vector<double>().swap(buffers<double>()[slot]);
  }
}

const bool registered = (memory::detail::on_release(&release), true);

}  // namespace

template <class T>
T* scratch(std::size_t n, int slot) {
  (void)registered;
  std::vector<T>& b = buffers<T>()[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

template float* scratch(std::size_t, int);
template double* scratch(std::size_t, int);

}  // namespace ad::kernels
