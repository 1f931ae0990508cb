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

BOOST_AUTO_TEST_CASE(values_that_are_not_finite_stop_the_step_and_change_nothing) {
  auto says = [](const std::string& what) {
    return [what](const ad::Error& e) {
      const std::string m = e.what();
      BOOST_TEST_MESSAGE(m);
      return m.find(what) != std::string::npos &&
             m.find("the parameters are back where it started") != std::string::npos;
    };
  };
  // A NaN loss from the start.
  V a = ad::test::leaf(Array<double>{std::nan(""), 1.0});
  nn::LBFGS<double> first({a});
  BOOST_CHECK_EXCEPTION(first.step([&] { return ad::sum(ad::square(a)); }), ad::Error,
                        says("the loss is NaN at iteration 0 of the step (evaluation 1)"));
  BOOST_TEST(std::isnan(a.value()(0)));
  BOOST_TEST(a.value()(1) == 1.0);
  // A NaN gradient with a finite loss: sqrt(x²) at x = 0 (0·∞).
  V b = ad::test::leaf(Array<double>{0.0, 2.0});
  nn::LBFGS<double> second({b});
  BOOST_CHECK_EXCEPTION(second.step([&] { return ad::sum(ad::sqrt(ad::square(b))); }), ad::Error,
                        says("the gradient of parameter 0 (shape (2)) is NaN at entry 0"));
  BOOST_TEST(b.value() == (Array<double>{0.0, 2.0}));
  BOOST_TEST(second.evaluations() == 0u);
  // A line search that reaches NaN: sum(log(x)) falls towards x = 0 and beyond, where log is NaN.
  // After a step that went well, the failing one puts the parameters back where it started.
  V c = ad::test::leaf(Array<double>{3.0, 5.0});
  nn::LBFGSOptions o;
  o.max_iter = 2;
  nn::LBFGS<double> third({c}, o);
  auto log_loss = [&] { return ad::sum(ad::log(c)) + ad::sum(ad::square(c - 4.0)) * 1e-3; };
  Array<double> before = c.value();
  bool failed = false;
  for (int k = 0; k < 20 && !failed; ++k) {
    before = c.value();
    const std::size_t evaluations = third.evaluations(), iterations = third.iterations();
    try {
      third.step(log_loss);
    } catch (const ad::Error& e) {
      failed = true;
      BOOST_TEST_MESSAGE(e.what());
      BOOST_TEST(std::string(e.what()).find("LBFGS: the loss is NaN at iteration") == 0);
      BOOST_TEST(c.value() == before);
      BOOST_TEST(third.evaluations() == evaluations);
      BOOST_TEST(third.iterations() == iterations);
    }
  }
  BOOST_TEST(failed);
}

BOOST_AUTO_TEST_CASE(a_resumed_run_continues_as_the_uninterrupted_one) {
  // A model fitted by L-BFGS with short steps (its history carries over between them): two
  // steps, a checkpoint, two more; against two steps, a resume into a fresh model and minimiser,
  // two more. The parameters end bit for bit the same.
  auto fit = [](nn::Module<double>& model, nn::LBFGS<double>& opt, int steps) {
    const V x(ad::test::uniform({8, 3}, -1, 1, 2)), y(ad::test::uniform({8, 1}, -1, 1, 3));
    for (int k = 0; k < steps; ++k)
      opt.step([&] { return ad::mean(ad::square(ad::tanh(model(x)) - y)); });
  };
  nn::LBFGSOptions o;
  o.max_iter = 3;
  o.history_size = 4;
  auto make = [] {
    nn::Generator rng(5);
    return std::make_shared<nn::Sequential<double>>(
        std::make_shared<nn::Linear<double>>(3, 4, rng), std::make_shared<nn::Tanh<double>>(),
        std::make_shared<nn::Linear<double>>(4, 1, rng));
  };
  auto a = make();
  nn::LBFGS<double> opt_a(a->parameters(), o);
  fit(*a, opt_a, 2);
  const std::string path = std::string(AD_BINARY_DIR) + "/test_lbfgs_resume.npz";
  nn::save_checkpoint(path, *a, opt_a, {{"epoch", 2}});
  fit(*a, opt_a, 2);
  auto b = make();
  nn::LBFGS<double> opt_b(b->parameters(), o);
  BOOST_TEST(nn::load_checkpoint(path, *b, opt_b).at("epoch") == 2.0);
  BOOST_TEST(opt_b.iterations() == 6u);
  fit(*b, opt_b, 2);
  const auto pa = a->parameters(), pb = b->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) BOOST_TEST(pa[i].value() == pb[i].value());
  BOOST_TEST(opt_a.iterations() == opt_b.iterations());
  BOOST_TEST(opt_a.evaluations() == opt_b.evaluations());
  // Another optimizer's checkpoint, or none, is refused without a change; reset starts afresh.
  nn::SGDOptions so;
  nn::SGD<double> sgd(b->parameters(), so);
  nn::save_checkpoint(path, *b, &sgd);
  const Array<double> before = b->parameters()[0].value();
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(path, *b, opt_b), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("holds the state of a SGD optimizer, not of LBFGS") !=
           std::string::npos;
  });
  BOOST_TEST(b->parameters()[0].value() == before);
  nn::save_checkpoint(path, *a);
  BOOST_CHECK_THROW(nn::load_checkpoint(path, *b, opt_b), ad::Error);
  BOOST_TEST(b->parameters()[0].value() == before);
  nn::LoadOptions reset;
  reset.reset_optimizer = true;
  nn::load_checkpoint(path, *b, opt_b, reset);
  BOOST_TEST(b->parameters()[0].value() == a->parameters()[0].value());
  // A state that does not fit the minimiser's parameters names the entry.
  auto c = make();
  nn::save_checkpoint(path, *a, opt_a);
  nn::LBFGS<double> fewer({c->parameters()[0]}, o);
  BOOST_CHECK_EXCEPTION(nn::load_checkpoint(path, *c, fewer), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("the state's 'direction' has shape (21)") !=
           std::string::npos;
  });
  std::remove(path.c_str());
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
