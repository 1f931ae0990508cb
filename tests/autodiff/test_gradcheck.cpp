// The gradient checker itself: it passes right gradients, catches wrong ones, and says where.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "examples/swish.hpp"
#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;
using examples::swish;

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

BOOST_AUTO_TEST_CASE(float_inputs_are_checked_in_float_against_the_double_reference) {
  ad::Variable<float> x(uniform<float>({3}), true);
  auto report = ad::gradcheck([](const auto& x) { return ad::tanh(x) * x; }, {x});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.float32_checked);
  BOOST_TEST(report.inputs[0].float32.checked);
  BOOST_TEST(report.inputs[0].float32.compared == 9u);
  BOOST_TEST(report.str().find("float32 path: passed") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_backward_wrong_only_in_float_fails) {
  // The float path of this op (think of a SIMD kernel or a fused rule written for float only)
  // scales its gradient by 1.01; the double path is right. The float64 check alone cannot see
  // it: promoting the inputs to double never runs the float code.
  auto f = [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return ad::make_op<T>("float_slip", ad::Array<T>(x.value() * x.value()), {x},
                          [](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                            // d/dx = 2 g x
                            const double k = std::is_same_v<T, float> ? 2.02 : 2.0;
                            return {c.grad * c.input(0) * k};
                          });
  };
  Array<double> values = uniform({2, 3}, 0.5, 1.5);
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(values)})));
  ad::Variable<float> xf(Array<float>(values), true);
  auto report = ad::gradcheck(f, {xf});
  BOOST_TEST(!report.passed);
  BOOST_TEST(report.inputs[0].passed);  // the float64 reference is right
  BOOST_TEST(!report.inputs[0].float32.passed);
  BOOST_TEST(report.inputs[0].float32.failures == 6u);
  BOOST_TEST(report.str().find("float32 path: FAILED") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_wrong_float_forward_fails) {
  auto f = [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return std::is_same_v<T, float> ? x * 3.001 : x * 3.0;
  };
  ad::Variable<float> x(uniform<float>({4}), true);
  auto report = ad::gradcheck(f, {x});
  BOOST_TEST(!report.passed);
  BOOST_TEST(report.str().find("float32 output differs") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(kinks_are_skipped_not_failed) {
  // abs at exactly 0 and relu at exactly 0: the one-sided differences disagree there at every
  // step, and the analytic value (0 + 0) lies between them (-1 and 2).
  V x = leaf(Array<double>{-1.0, 0.0, 2.0});
  auto report = ad::gradcheck([](const auto& x) { return ad::abs(x) + ad::relu(x); }, {x});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs[0].kinks == 1u);
  BOOST_TEST(report.inputs[0].first_kink == ad::Shape({1}));
  BOOST_TEST(report.str().find("skipped at kinks") != std::string::npos);
}

namespace {

/// y = k x² as a custom op whose backward adds `slip` to the true 2 k x.
auto square_with_slip(double k, double slip) {
  return [k, slip](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    ad::Array<T> y = x.value() * x.value() * k;
    return ad::make_op<T>("square_slip", std::move(y), {x},
                          [k, slip](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                            return {c.grad * (c.input(0) * (2 * k) + slip)};
                          });
  };
}

}  // namespace

BOOST_AUTO_TEST_CASE(high_curvature_is_not_a_kink) {
  // y = 50x² with a backward of 100x + 1, at x = 0: the one-sided differences at h = 1e-6 are
  // ±5e-5, apart by more than the tolerance, which once made it a "kink" and passed the wrong
  // gradient ("PASSED, compared 0, kinks 1"). Their gap shrinks with the step: it is curvature.
  V x = leaf(Array<double>{0.0});
  auto report = ad::gradcheck(square_with_slip(50, 1), {x});
  BOOST_TEST(!report.passed);
  BOOST_TEST(report.inputs[0].kinks == 0u);
  BOOST_TEST(report.inputs[0].failures == 1u);
  BOOST_TEST(report.inputs[0].numeric == 0.0, tt::tolerance(1e-6));
  // The right backward passes, compared at a smaller step.
  auto right = ad::gradcheck(square_with_slip(50, 0), {x});
  BOOST_TEST(passed(right));
  BOOST_TEST(right.inputs[0].compared == 1u);
}

BOOST_AUTO_TEST_CASE(a_wrong_backward_near_a_pole_fails) {
  // 1/x at x = 1e-3: f'' h = 2e3 at h = 1e-6, more than the tolerance of f' = -1e6, so the
  // one-sided differences disagree; a wrong backward (-g/x instead of -g/x²) must still fail.
  auto f = [](bool right) {
    return [right](const auto& x) {
      using T = typename std::decay_t<decltype(x)>::value_type;
      ad::Array<T> y = 1.0 / x.value();
      return ad::make_op<T>("reciprocal", std::move(y), {x},
                            [right](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                              const auto& x = c.input(0);
                              return {right ? -c.grad / (x * x) : -c.grad / x};
                            });
    };
  };
  V x = leaf(Array<double>{1e-3, 0.5});
  auto wrong = ad::gradcheck(f(false), {x});
  BOOST_TEST(!wrong.passed);
  BOOST_TEST(wrong.inputs[0].kinks == 0u);
  BOOST_TEST(wrong.inputs[0].failures == 2u);
  BOOST_TEST(passed(ad::gradcheck(f(true), {x})));
}

BOOST_AUTO_TEST_CASE(a_wrong_value_at_a_kink_fails) {
  // relu with a backward that gives 2 at x = 0: not between the one-sided slopes 0 and 1.
  auto f = [](const auto& x) {
    using T = typename std::decay_t<decltype(x)>::value_type;
    return ad::make_op<T>("bad_relu", Array<T>(ad::relu(x.detach()).value()), {x},
                          [](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                            Array<T> d = Array<T>::from_shape(c.input(0).shape());
                            for (std::size_t i = 0; i < d.size(); ++i) {
                              const T v = c.input(0).value().data()[i];
                              d.data()[i] = v > 0 ? 1 : v == 0 ? 2 : 0;
                            }
                            return {c.grad * ad::Variable<T>(std::move(d))};
                          });
  };
  V x = leaf(Array<double>{-0.5, 0.0, 0.5});
  auto report = ad::gradcheck(f, {x});
  BOOST_TEST(!report.passed);
  BOOST_TEST(report.inputs[0].worst_at_kink);
  BOOST_TEST(report.inputs[0].left_slope == 0.0, tt::tolerance(1e-6));
  BOOST_TEST(report.inputs[0].right_slope == 1.0, tt::tolerance(1e-6));
  BOOST_TEST(report.str().find("not between the one-sided slopes") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_kink_closer_than_the_step_is_resolved) {
  // relu at 3e-7 < h: at h the backward difference straddles 0, at h/10 it no longer does.
  V x = leaf(Array<double>{3e-7, -4e-7});
  auto report = ad::gradcheck([](const auto& x) { return ad::relu(x) * 2.0; }, {x});
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs[0].kinks == 0u);
  BOOST_TEST(report.inputs[0].compared == 4u);
}

BOOST_AUTO_TEST_CASE(a_check_that_compares_nothing_fails) {
  // Every entry at a kink: nothing was compared, which is not a pass.
  V x = leaf(Array<double>{0.0, 0.0});
  auto report = ad::gradcheck([](const auto& x) { return ad::sum(ad::relu(x)); }, {x});
  BOOST_TEST(!report.passed);
  BOOST_TEST(report.inputs[0].compared == 0u);
  BOOST_TEST(report.str().find("nothing was compared") != std::string::npos);
  BOOST_TEST(report.str().find("PASSED") == std::string::npos);
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
