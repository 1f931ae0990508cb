// One exact step of each optimizer against numbers computed by hand.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "nn/nn.hpp"
#include "nn/optim.hpp"
#include "nn/schedule.hpp"

namespace tt = boost::test_tools;
using ad::Array;
namespace nn = ad::nn;
using V = ad::Variable<double>;

namespace {

/// A parameter p = (1, -2) whose gradient is g = (0.5, 0.25) (the loss is g·p).
V param_with_grad() {
  V p = ad::test::leaf(Array<double>{1.0, -2.0});
  ad::sum(p * V(Array<double>{0.5, 0.25})).backward();
  return p;
}

void regrad(V& p) {
  p.zero_grad();
  ad::sum(p * V(Array<double>{0.5, 0.25})).backward();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(optim)

BOOST_AUTO_TEST_CASE(plain_sgd) {
  V p = param_with_grad();
  nn::SGD<double> opt({p}, {0.1});
  opt.step();
  BOOST_TEST(p.value()(0) == 1.0 - 0.1 * 0.5, tt::tolerance(1e-15));
  BOOST_TEST(p.value()(1) == -2.0 - 0.1 * 0.25, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(sgd_momentum_weight_decay) {
  V p = param_with_grad();
  nn::SGDOptions o;
  o.lr = 0.1, o.momentum = 0.9, o.weight_decay = 0.01;
  nn::SGD<double> opt({p}, o);
  opt.step();  // d = g + 0.01 p = 0.51; b = d; p = 1 − 0.1·0.51 = 0.949
  BOOST_TEST(p.value()(0) == 0.949, tt::tolerance(1e-14));
  regrad(p);
  opt.step();  // d = 0.5 + 0.00949 = 0.50949; b = 0.9·0.51 + 0.50949 = 0.96849; p = 0.949 −
               // 0.096849
  BOOST_TEST(p.value()(0) == 0.949 - 0.096849, tt::tolerance(1e-14));
  BOOST_TEST(opt.state()[0].buffers["momentum_buffer"](0) == 0.96849, tt::tolerance(1e-14));
}

BOOST_AUTO_TEST_CASE(sgd_nesterov) {
  V p = param_with_grad();
  nn::SGDOptions o;
  o.lr = 0.1, o.momentum = 0.9, o.nesterov = true;
  nn::SGD<double> opt({p}, o);
  opt.step();  // b = 0.5; step = g + 0.9·b = 0.95; p = 1 − 0.095
  BOOST_TEST(p.value()(0) == 0.905, tt::tolerance(1e-14));
  regrad(p);
  opt.step();  // b = 0.9·0.5 + 0.5 = 0.95; step = 0.5 + 0.855 = 1.355; p = 0.905 − 0.1355
  BOOST_TEST(p.value()(0) == 0.905 - 0.1355, tt::tolerance(1e-14));
  nn::SGDOptions bad;
  bad.nesterov = true;
  BOOST_CHECK_THROW(nn::SGD<double>({p}, bad), ad::Error);
}

BOOST_AUTO_TEST_CASE(adam_first_step_and_second) {
  V p = param_with_grad();
  nn::AdamOptions o;
  o.lr = 0.01;
  nn::Adam<double> opt({p}, o);
  opt.step();  // m̂ = g, v̂ = g²: p −= lr·g/(|g| + eps) ≈ lr·sign(g)
  BOOST_TEST(p.value()(0) == 1.0 - 0.01 * 0.5 / (0.5 + 1e-8), tt::tolerance(1e-14));
  regrad(p);
  opt.step();  // m = 0.1·0.5 + 0.09·0.5 = 0.095, v = 0.001·0.25 + 0.000999·0.25
  const double m = 0.9 * 0.05 + 0.1 * 0.5, v = 0.999 * 0.00025 + 0.001 * 0.25;
  const double mhat = m / (1 - 0.81), vhat = v / (1 - 0.998001);
  BOOST_TEST(
      p.value()(0) == 1.0 - 0.01 * 0.5 / (0.5 + 1e-8) - 0.01 * mhat / (std::sqrt(vhat) + 1e-8),
      tt::tolerance(1e-13));
}

BOOST_AUTO_TEST_CASE(adam_l2_and_adamw_decoupled) {
  V p = param_with_grad();
  nn::AdamOptions o;
  o.lr = 0.01, o.weight_decay = 0.1;
  nn::Adam<double> adam({p}, o);
  adam.step();  // d = 0.5 + 0.1 = 0.6: still a step of lr·sign(d)
  BOOST_TEST(p.value()(0) == 1.0 - 0.01 * 0.6 / (0.6 + 1e-8), tt::tolerance(1e-14));
  V q = param_with_grad();
  nn::AdamWOptions ow;
  ow.lr = 0.01, ow.weight_decay = 0.1;
  nn::AdamW<double> adamw({q}, ow);
  adamw.step();  // q = 1 − 0.01·0.1·1 = 0.999, then − 0.01·0.5/(0.5 + 1e-8)
  BOOST_TEST(q.value()(0) == 0.999 - 0.01 * 0.5 / (0.5 + 1e-8), tt::tolerance(1e-14));
  BOOST_TEST(nn::AdamWOptions().weight_decay == 0.01);
}

BOOST_AUTO_TEST_CASE(rmsprop) {
  V p = param_with_grad();
  nn::RMSPropOptions o;
  o.lr = 0.01;
  nn::RMSProp<double> opt({p}, o);
  opt.step();  // v = 0.01·0.25 = 0.0025; p −= 0.01·0.5/(0.05 + 1e-8)
  BOOST_TEST(p.value()(0) == 1.0 - 0.01 * 0.5 / (0.05 + 1e-8), tt::tolerance(1e-14));
  V q = param_with_grad();
  o.momentum = 0.5;
  nn::RMSProp<double> mom({q}, o);
  mom.step();
  regrad(q);
  mom.step();  // v2 = 0.99·0.0025 + 0.0025; b2 = 0.5·b1 + 0.5/(√v2 + eps)
  const double b1 = 0.5 / (0.05 + 1e-8), v2 = 0.99 * 0.0025 + 0.01 * 0.25;
  const double b2 = 0.5 * b1 + 0.5 / (std::sqrt(v2) + 1e-8);
  BOOST_TEST(q.value()(0) == 1.0 - 0.01 * b1 - 0.01 * b2, tt::tolerance(1e-13));
}

BOOST_AUTO_TEST_CASE(adagrad) {
  V p = param_with_grad();  // p = 1, grad 0.5
  nn::AdagradOptions o;
  o.lr = 0.1;
  nn::Adagrad<double> opt({p}, o);
  opt.step();  // s = 0.25; p −= 0.1·0.5/(0.5 + 1e-10)
  const double p1 = 1.0 - 0.1 * 0.5 / (0.5 + 1e-10);
  BOOST_TEST(p.value()(0) == p1, tt::tolerance(1e-14));
  regrad(p);
  opt.step();  // s = 0.5; p −= 0.1·0.5/(√0.5 + 1e-10)
  BOOST_TEST(p.value()(0) == p1 - 0.1 * 0.5 / (std::sqrt(0.5) + 1e-10), tt::tolerance(1e-14));
  // Rate decay, weight decay and a starting accumulator.
  V q = param_with_grad();
  o.lr_decay = 0.5, o.weight_decay = 0.2, o.initial_accumulator_value = 1.0;
  nn::Adagrad<double> decayed({q}, o);
  decayed.step();  // d = 0.5 + 0.2·1 = 0.7; s = 1 + 0.49; rate 0.1
  const double q1 = 1.0 - 0.1 * 0.7 / (std::sqrt(1.49) + 1e-10);
  BOOST_TEST(q.value()(0) == q1, tt::tolerance(1e-14));
  regrad(q);
  decayed.step();  // d = 0.5 + 0.2·q1; s += d²; rate 0.1/(1 + 0.5)
  const double d2 = 0.5 + 0.2 * q1;
  BOOST_TEST(q.value()(0) == q1 - 0.1 / 1.5 * d2 / (std::sqrt(1.49 + d2 * d2) + 1e-10),
             tt::tolerance(1e-14));
  BOOST_TEST(decayed.name() == "Adagrad");
  o.lr_decay = -1;
  BOOST_CHECK_THROW(nn::Adagrad<double>({param_with_grad()}, o), ad::Error);
}

BOOST_AUTO_TEST_CASE(parameters_without_grad_are_skipped) {
  V p = param_with_grad();
  V untouched = ad::test::leaf(Array<double>{3.0});
  nn::SGD<double> opt({p, untouched}, {0.1});
  opt.step();
  BOOST_TEST(untouched.value()(0) == 3.0);
  BOOST_TEST(opt.state()[1].step == 0u);
  BOOST_CHECK_THROW(nn::SGD<double>({V(Array<double>{1.0})}, {0.1}), ad::Error);
  BOOST_CHECK_THROW(nn::SGD<double>({p}, {-1.0}), ad::Error);
}

BOOST_AUTO_TEST_CASE(parameter_groups_have_their_own_rates) {
  V a = param_with_grad(), b = param_with_grad();
  nn::SGD<double> opt(std::vector<nn::ParamGroup<double>>{{{a}, 0.1}, {{b}, 0.0}}, {0.01});
  opt.step();
  BOOST_TEST(a.value()(0) == 1.0 - 0.1 * 0.5, tt::tolerance(1e-15));
  BOOST_TEST(b.value()(0) == 1.0 - 0.01 * 0.5, tt::tolerance(1e-15));  // 0: the default rate
}

BOOST_AUTO_TEST_CASE(parameter_groups_have_their_own_options) {
  V a = param_with_grad(), b = param_with_grad();
  nn::GroupOptions decay;
  decay.weight_decay = 0.5;
  nn::SGDOptions o;
  o.lr = 0.1;
  nn::SGD<double> opt(std::vector<nn::ParamGroup<double>>{{{a}, 0.0, decay}, {{b}}}, o);
  opt.step();  // a: g + 0.5·p = 0.5 + 0.5; b: g = 0.5
  BOOST_TEST(a.value()(0) == 1.0 - 0.1 * 1.0, tt::tolerance(1e-15));
  BOOST_TEST(b.value()(0) == 1.0 - 0.1 * 0.5, tt::tolerance(1e-15));
  nn::GroupOptions betas;
  betas.beta1 = 0.5;
  BOOST_CHECK_EXCEPTION(nn::SGD<double>(std::vector<nn::ParamGroup<double>>{{{a}, 0.0, betas}}, o),
                        ad::Error, [](const ad::Error& e) {
                          return std::string(e.what()).find("sets beta1") != std::string::npos;
                        });
  BOOST_CHECK_NO_THROW(
      nn::Adam<double>(std::vector<nn::ParamGroup<double>>{{{a}, 0.0, betas}}, nn::AdamOptions{}));
}

BOOST_AUTO_TEST_CASE(sgd_over_flat_buffers_equals_sgd_per_parameter) {
  // The same model trained 5 steps both ways (momentum, Nesterov, weight decay): bit for bit.
  auto train = [](bool flat) {
    nn::Generator rng(9);
    nn::Sequential<float> m(std::make_shared<nn::Linear<float>>(5, 7, rng),
                            std::make_shared<nn::Tanh<float>>(),
                            std::make_shared<nn::Linear<float>>(7, 3, rng));
    nn::SGDOptions o;
    o.lr = 0.1, o.momentum = 0.9, o.nesterov = true, o.weight_decay = 1e-3;
    std::unique_ptr<nn::SGD<float>> opt =
        flat ? std::make_unique<nn::SGD<float>>(m.flatten_parameters(), o)
             : std::make_unique<nn::SGD<float>>(m.parameters(), o);
    ad::Variable<float> x(ad::test::uniform<float>({4, 5}));
    for (int step = 0; step < 5; ++step) {
      opt->zero_grad();
      ad::sum(ad::square(m(x))).backward();
      opt->step();
    }
    std::vector<Array<float>> out;
    for (const auto& p : m.parameters()) out.push_back(p.value());
    out.push_back(opt->state()[0].buffers.at("momentum_buffer"));
    return out;
  };
  auto a = train(false), b = train(true);
  BOOST_REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) BOOST_TEST(a[i] == b[i]);
}

BOOST_AUTO_TEST_CASE(clip_by_global_norm) {
  V a = ad::test::leaf(Array<double>{0.0, 0.0});
  V b = ad::test::leaf(Array<double>{0.0});
  (ad::sum(a * V(Array<double>{3.0, 0.0})) + ad::sum(b * 4.0)).backward();  // (3, 0), (4): norm 5
  const double norm = nn::clip_grad_norm<double>({a, b}, 1.0);
  BOOST_TEST(norm == 5.0, tt::tolerance(1e-15));
  BOOST_TEST(a.grad().value()(0) == 0.6, tt::tolerance(1e-15));
  BOOST_TEST(b.grad().value()(0) == 0.8, tt::tolerance(1e-15));
  nn::clip_grad_norm<double>({a, b}, 10.0);  // under the bound: unchanged
  BOOST_TEST(a.grad().value()(0) == 0.6, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(schedules) {
  nn::StepSchedule step(2, 0.5);
  BOOST_TEST(step.factor(0) == 1.0);
  BOOST_TEST(step.factor(3) == 0.5);
  BOOST_TEST(step.factor(4) == 0.25);
  nn::ExponentialSchedule exp(0.9);
  BOOST_TEST(exp.factor(2) == 0.81, tt::tolerance(1e-15));
  nn::CosineSchedule cos(10, 0.1);
  BOOST_TEST(cos.factor(0) == 1.0, tt::tolerance(1e-15));
  BOOST_TEST(cos.factor(5) == 0.55, tt::tolerance(1e-15));
  BOOST_TEST(cos.factor(10) == 0.1, tt::tolerance(1e-15));
  nn::WarmupSchedule warm(3, std::make_shared<nn::StepSchedule>(1, 0.5));
  BOOST_TEST(warm.factor(0) == 0.25);
  BOOST_TEST(warm.factor(2) == 0.75);
  BOOST_TEST(warm.factor(3) == 1.0);
  BOOST_TEST(warm.factor(4) == 0.5);
  V p = param_with_grad();
  nn::SGD<double> opt({p}, {0.1});
  nn::Scheduler<double> sched(opt, std::make_shared<nn::StepSchedule>(1, 0.5));
  sched.step();
  BOOST_TEST(opt.groups()[0].lr == 0.05, tt::tolerance(1e-15));
  BOOST_TEST(opt.base_lr(0) == 0.1);
  sched.set_step(3);
  BOOST_TEST(opt.groups()[0].lr == 0.0125, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(reduce_on_plateau_as_pytorch) {
  V p = param_with_grad();
  nn::SGDOptions so;
  so.lr = 1.0;
  nn::SGD<double> opt({p}, so);
  nn::ReduceLROnPlateau<double>::Options o;
  o.factor = 0.5, o.patience = 1, o.threshold = 0.1, o.cooldown = 1, o.min_factor = 0.2;
  nn::ReduceLROnPlateau<double> plateau(opt, o);
  // Figures, and whether each lowers the rate (worked by hand with PyTorch's rule: better means
  // below best · 0.9; more than one bad step lowers; a cooldown step resets the count).
  const double figures[] = {1.0, 0.95, 0.93, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6};
  const bool lowered[] = {false, false, true, false, false, true,
                          false, false, true, false, false, false};
  const double lr[] = {1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2};
  for (std::size_t i = 0; i < 12; ++i) {
    BOOST_TEST_CONTEXT("step " << i) {
      BOOST_TEST(plateau.step(figures[i]) == lowered[i]);
      BOOST_TEST(opt.groups()[0].lr == lr[i], tt::tolerance(1e-15));
    }
  }
  BOOST_TEST(plateau.best() == 0.5);
  // NaN is never an improvement.
  nn::ReduceLROnPlateau<double> other(opt, o);
  BOOST_TEST(opt.groups()[0].lr == 1.0);
  other.step(1.0);
  other.step(std::nan(""));
  BOOST_TEST(other.step(std::nan("")));
  // Its state goes through a meta map and comes back.
  std::map<std::string, double> meta;
  plateau.save(meta, "p_");
  nn::ReduceLROnPlateau<double> back(opt, o);
  back.load(meta, "p_");
  BOOST_TEST(back.factor() == plateau.factor());
  BOOST_TEST(back.best() == 0.5);
  BOOST_TEST(opt.groups()[0].lr == 0.2, tt::tolerance(1e-15));
  meta["p_bad_steps"] = 1.5;
  BOOST_CHECK_EXCEPTION(back.load(meta, "p_"), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("p_bad_steps") != std::string::npos;
  });
  o.factor = 1.0;
  BOOST_CHECK_THROW(nn::ReduceLROnPlateau<double>(opt, o), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
