// Uses the installed library: the gradient of x0² + x1² at (3, 4) is (6, 8).
#include <autodiff/autodiff.hpp>
#include <cstdio>

int main() {
  ad::Variable<double> x(ad::Array<double>{3.0, 4.0}, true);
  ad::sum(x * x).backward();
  const auto& g = x.grad().value();
  std::printf("gradient %g %g\n", g(0), g(1));
  return g(0) == 6.0 && g(1) == 8.0 ? 0 : 1;
}
