// L-BFGS with the strong-Wolfe line search: the iterates of PyTorch's implementation on the
// Rosenbrock function, the minimum of a quadratic, a float model, and bad use.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include <xtensor-blas/xlinalg.hpp>

#include "helpers.hpp"
#include "nn/nn.hpp"

namespace tt = boost::test_tools;
using ad::Array;
namespace nn = ad::nn;
using V = ad::Variable<double>;

BOOST_AUTO_TEST_SUITE(lbfgs)

BOOST_AUTO_TEST_CASE(rosenbrock_follows_pytorch_step_by_step) {
  V x = ad::test::leaf(Array<double>{-1.5, 2.0});
  nn::LBFGS<double> opt({x});
  auto rosenbrock = [&] {
    V a = ad::slice(x, 0, 0, 1), b = ad::slice(x, 0, 1, 2);
    return ad::sum(ad::square(1.0 - a) + 100.0 * ad::square(b - a * a));
  };
  // torch.optim.LBFGS([x], lr=1, max_iter=20, line_search_fn="strong_wolfe") in float64
  // (PyTorch 1.13): x after each step, the loss step() returned, function evaluations and
  // iterations so far.
  const double want[3][2] = {{-0.08511855589860293, -0.028757058413769698},
                             {0.9995835472529905, 0.9991550319577943},
                             {0.9999979943196398, 0.9999973438921637}};
  const double returned[3] = {12.5, 1.3070983150500495, 1.884048137837783e-07};
  const std::size_t evals[3] = {25, 50, 53}, iters[3] = {19, 38, 41};
  for (std::size_t k = 0; k < 3; ++k) {
    BOOST_TEST_CONTEXT("step " << k + 1) {
      const double loss = opt.step(rosenbrock);
      BOOST_TEST(loss == returned[k], tt::tolerance(1e-6));
      BOOST_TEST(x.value()(0) == want[k][0], tt::tolerance(1e-6));
      BOOST_TEST(x.value()(1) == want[k][1], tt::tolerance(1e-6));
      BOOST_TEST(opt.evaluations() == evals[k]);
      BOOST_TEST(opt.iterations() == iters[k]);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_quadratic_to_its_minimum) {
  // f(x) = ½ xᵀAx − bᵀx with A symmetric positive definite: the minimum is A⁻¹b.
  const std::size_t n = 8;
  Array<double> m = ad::test::uniform<double>({n, n}, -1, 1, 3);
  Array<double> a = xt::linalg::dot(xt::transpose(m), m) + 0.5 * xt::eye<double>(n);
  Array<double> b = ad::test::uniform<double>({n, 1}, -1, 1, 4);
  V x = ad::test::leaf(Array<double>(xt::zeros<double>(ad::Shape{n, 1})));
  nn::LBFGSOptions o;
  o.max_iter = 100;
  o.max_eval = 200;
  o.tolerance_grad = 1e-12;    // run until the gradient is gone,
  o.tolerance_change = 1e-20;  // not until the loss stops moving at 1e-9
  nn::LBFGS<double> opt({x}, o);
  opt.step([&] { return 0.5 * ad::sum(x * ad::matmul(V(a), x)) - ad::sum(V(b) * x); });
  const Array<double> solution = xt::linalg::solve(a, b);
  for (std::size_t i = 0; i < n; ++i)
    BOOST_TEST(std::abs(x.value()(i, 0) - solution(i, 0)) < 1e-7);  // f's rounding limits it
  // Fixed steps without the line search still go down.
  V y = ad::test::leaf(Array<double>(xt::zeros<double>(ad::Shape{n, 1})));
  o.strong_wolfe = false;
  o.lr = 0.05;
  nn::LBFGS<double> plain({y}, o);
  auto f = [&] { return 0.5 * ad::sum(y * ad::matmul(V(a), y)) - ad::sum(V(b) * y); };
  const double start = plain.step(f);
  BOOST_TEST(f().item() < start);
}

BOOST_AUTO_TEST_CASE(fits_a_float_linear_model) {
  nn::Generator rng(2);
  nn::Linear<float> model(3, 1, rng);
  Array<float> inputs = ad::test::uniform<float>({50, 3}, -1, 1, 5);
  Array<float> targets = xt::zeros<float>({50, 1});
  for (std::size_t i = 0; i < 50; ++i)
    targets(i, 0) = 2 * inputs(i, 0) - inputs(i, 1) + 0.5f * inputs(i, 2) + 0.25f;
  nn::LBFGS<float> opt(model.parameters());
  auto loss = [&] {
    return nn::mse_loss(model(ad::Variable<float>(inputs)), ad::Variable<float>(targets));
  };
  for (int k = 0; k < 5; ++k) opt.step(loss);
  BOOST_TEST(loss().item() < 1e-8);
  BOOST_TEST(model.weight().value()(0, 0) == 2.0f, tt::tolerance(1e-3f));
  BOOST_TEST(model.bias().value()(0) == 0.25f, tt::tolerance(1e-3f));
}

BOOST_AUTO_TEST_CASE(bad_use_is_refused) {
  BOOST_CHECK_THROW(nn::LBFGS<double>({}), ad::Error);
  BOOST_CHECK_THROW(nn::LBFGS<double>({V(Array<double>{1.0})}), ad::Error);  // no grad
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  nn::LBFGSOptions o;
  o.lr = 0;
  BOOST_CHECK_THROW(nn::LBFGS<double>({x}, o), ad::Error);
  nn::LBFGS<double> opt({x});
  BOOST_CHECK_EXCEPTION(opt.step([&] { return x * x; }), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("LBFGS: the loss has shape (2), not one value") !=
           std::string::npos;
  });
}

BOOST_AUTO_TEST_SUITE_END()
