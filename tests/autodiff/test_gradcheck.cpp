// The gradient checker itself: it passes right gradients, catches wrong ones, and says where.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

/// swish(x) = x * sigmoid(x), as a custom op with a hand-written backward. With `mistake` the
/// derivative drops a term, the kind of slip gradcheck exists to catch.
template <class T>
ad::Variable<T> swish(const ad::Variable<T>& x, bool mistake = false) {
  ad::Array<T> s = 1.0 / (1.0 + xt::exp(-x.value()));
  ad::Array<T> y = x.value() * s;
  return ad::make_op<T>("swish", std::move(y), {x},
                        [mistake](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                          // d/dx = g * (s + x s (1 - s))
                          const auto& x = c.input(0);
                          auto s = ad::sigmoid(x);
                          if (mistake) return {c.grad * s};
                          return {c.grad * (s + x * s * (1.0 - s))};
                        });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gradcheck)

BOOST_AUTO_TEST_CASE(custom_op_passes) {
  V x = leaf(uniform({3, 4}, -2, 2));
  auto report =
      ad::gradcheck([](const auto& x) { return swish(x); }, {x}, ad::test::second_order());
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs[0].compared == 12u * 12u);
  BOOST_TEST(report.second_order != nullptr);
}

BOOST_AUTO_TEST_CASE(wrong_custom_backward_is_caught_and_located) {
  V x = leaf(uniform({3, 4}, -2, 2));
  auto report = ad::gradcheck([](const auto& x) { return swish(x, true); }, {x});
  BOOST_TEST(!report.passed);
  const auto& c = report.inputs[0];
  BOOST_TEST(!c.passed);
  BOOST_TEST(c.failures > 0u);
  // Only the diagonal of the Jacobian is nonzero: the worst entry is on it, and its numeric value
  // is the true derivative s + x s (1 - s) while the analytic one is s alone.
  BOOST_REQUIRE(c.has_worst);
  BOOST_TEST(c.worst_output == c.worst_input);
  const double xv = x.value()[c.worst_input];
  const double s = 1 / (1 + std::exp(-xv));
  BOOST_TEST(c.numeric == s + xv * s * (1 - s), tt::tolerance(1e-6));
  BOOST_TEST(c.analytic == s, tt::tolerance(1e-12));
  const std::string text = report.str();
  BOOST_TEST(text.find("FAILED") != std::string::npos);
  BOOST_TEST(text.find("worst: d out[") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(fast_mode_catches_the_mistake_too) {
  V x = leaf(uniform({50, 40}, -2, 2));
  ad::GradcheckOptions o;
  o.fast = true;
  BOOST_TEST(passed(ad::gradcheck([](const auto& x) { return swish(x); }, {x}, o)));
  auto bad = ad::gradcheck([](const auto& x) { return swish(x, true); }, {x}, o);
  BOOST_TEST(!bad.passed);
  BOOST_TEST(bad.str().find("random direction") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(second_order_catches_a_wrong_second_derivative) {
  // The first derivative is right, but its backward is written with a detached value, so the
  // gradient of the gradient is wrong: only the second-order check sees it.
  auto f = [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    ad::Array<T> y = x.value() * x.value() * x.value();
    return ad::make_op<T>("cube", std::move(y), {x},
                          [](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                            // d/dx = 3 g x², but x is detached: d²/dx² is lost
                            auto x = c.input(0).detach();
                            return {c.grad * x * x * 3.0};
                          });
  };
  V x = leaf(uniform({4}, 0.5, 1.5));
  BOOST_TEST(passed(ad::gradcheck(f, {x})));
  auto report = ad::gradcheck(f, {x}, ad::test::second_order());
  BOOST_TEST(!report.passed);
  BOOST_REQUIRE(report.second_order);
  BOOST_TEST(!report.second_order->passed);
}

BOOST_AUTO_TEST_CASE(float_inputs_run_in_double_and_the_report_says_so) {
  ad::Variable<float> x(uniform<float>({3}), true);
  auto report = ad::gradcheck([](const auto& x) { return ad::tanh(x) * x; }, {x});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.promoted_from_float);
  BOOST_TEST(report.str().find("promoted to float64") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(kinks_are_skipped_not_failed) {
  // abs at exactly 0 and relu at exactly 0: the one-sided differences disagree there.
  V x = leaf(Array<double>{-1.0, 0.0, 2.0});
  auto report = ad::gradcheck([](const auto& x) { return ad::abs(x) + ad::relu(x); }, {x});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs[0].kinks == 1u);
  BOOST_TEST(report.inputs[0].first_kink == ad::Shape({1}));
  BOOST_TEST(report.str().find("non-differentiable") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(several_inputs_and_unchecked_ones) {
  V a = leaf(uniform({2, 3}, -1, 1, 1));
  V b(uniform({3, 2}, -1, 1, 2));  // does not require grad: not checked
  V c = leaf(uniform({2}, -1, 1, 3));
  auto f = [](const auto& a, const auto& b, const auto& c) {
    return ad::tanh(ad::matmul(a, b) + c);
  };
  auto report = ad::gradcheck(f, {a, b, c}, ad::test::second_order());
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs[0].checked);
  BOOST_TEST(!report.inputs[1].checked);
  BOOST_TEST(report.str().find("not checked") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(vector_signature) {
  V a = leaf(uniform({3}));
  V b = leaf(uniform({3}));
  auto f = [](const std::vector<V>& xs) { return ad::sum(xs[0] * xs[1]); };
  BOOST_TEST(passed(ad::gradcheck(f, {a, b})));
}

BOOST_AUTO_TEST_CASE(large_outputs_are_projected) {
  V a = leaf(uniform({20, 20}));
  auto report = ad::gradcheck([](const auto& a) { return ad::sigmoid(a) * 2.0; }, {a});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.projected);
}

BOOST_AUTO_TEST_CASE(non_accumulating_or_unstable_backward_is_caught) {
  // A rule whose result changes from call to call: two backward runs disagree.
  auto counter = std::make_shared<int>(0);
  auto f = [counter](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return ad::make_op<T>("unstable", ad::Array<T>(x.value() * 2.0), {x},
                          [counter](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                            return {c.grad * (2.0 + 1e-3 * (*counter)++)};
                          });
  };
  V x = leaf(uniform({3}));
  ad::GradcheckOptions o;
  o.rtol = 1e-6;
  o.atol = 1e-9;
  auto report = ad::gradcheck(f, {x}, o);
  BOOST_TEST(!report.passed);
  BOOST_TEST(!report.problems.empty());
}

BOOST_AUTO_TEST_CASE(nothing_to_check_is_a_failure) {
  V a(uniform({3}));
  auto report = ad::gradcheck([](const auto& a) { return a * 2.0; }, {a});
  BOOST_TEST(!report.passed);
}

BOOST_AUTO_TEST_CASE(caller_inputs_untouched) {
  Array<double> values = uniform({4});
  V x = leaf(values);
  ad::gradcheck([](const auto& x) { return ad::exp(x); }, {x});
  BOOST_TEST(x.value() == values);
  BOOST_TEST(!x.has_grad());
}

BOOST_AUTO_TEST_CASE(numerical_gradient_of_an_array) {
  Array<double> x{0.3, -0.7, 1.1};
  auto f = [&x]() { return xt::sum(xt::sin(x))(); };
  Array<double> g = ad::numerical_gradient(f, x);
  for (std::size_t i = 0; i < 3; ++i) BOOST_TEST(g(i) == std::cos(x(i)), tt::tolerance(1e-8));
}

BOOST_AUTO_TEST_SUITE_END()
