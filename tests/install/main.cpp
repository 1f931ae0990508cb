// Uses the installed library: the gradient of x0² + x1² at (3, 4) is (6, 8), and an nn layer
// runs.
#include <autodiff/autodiff.hpp>
#include <nn/nn.hpp>

#include <cstdio>

int main() {
  ad::Variable<double> x(ad::Array<double>{3.0, 4.0}, true);
  ad::sum(x * x).backward();
  const auto& g = x.grad().value();
  std::printf("gradient %g %g\n", g(0), g(1));
  ad::nn::Generator rng(0);
  ad::nn::Linear<float> layer(2, 3, rng);
  auto y = layer(ad::Variable<float>(ad::Array<float>{{1.0f, 2.0f}}));
  return g(0) == 6.0 && g(1) == 8.0 && y.shape() == ad::Shape({1, 3}) ? 0 : 1;
}
