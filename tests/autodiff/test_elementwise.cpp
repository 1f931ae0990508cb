// Elementwise math and activations: gradchecks (second order where smooth), values, edge cases.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::test::away_from_zero;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

/// Checks f on a (3,4) tensor and on a 0-d tensor with values from `make`.
template <class F, class Make>
void check_unary(F f, Make make, bool second_order) {
  ad::GradcheckOptions o;
  o.second_order = second_order;
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(make(ad::Shape{3, 4}))}, o)));
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(make(ad::Shape{}))}, o)));
}

auto any_value = [](const ad::Shape& s) { return uniform(s, -2.0, 2.0, 11); };
auto positive = [](const ad::Shape& s) { return uniform(s, 0.2, 3.0, 12); };
auto off_kink = [](const ad::Shape& s) { return away_from_zero(s, 0.1, 2.0, 13); };

}  // namespace

BOOST_AUTO_TEST_SUITE(elementwise)

BOOST_AUTO_TEST_CASE(exp) {
  check_unary([](const auto& a) { return ad::exp(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(log) {
  check_unary([](const auto& a) { return ad::log(a); }, positive, true);
}
BOOST_AUTO_TEST_CASE(sqrt) {
  check_unary([](const auto& a) { return ad::sqrt(a); }, positive, true);
}
BOOST_AUTO_TEST_CASE(tanh) {
  check_unary([](const auto& a) { return ad::tanh(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(sigmoid) {
  check_unary([](const auto& a) { return ad::sigmoid(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(softplus) {
  check_unary([](const auto& a) { return ad::softplus(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(erf) {
  check_unary([](const auto& a) { return ad::erf(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(square) {
  check_unary([](const auto& a) { return ad::square(a); }, any_value, true);
}

BOOST_AUTO_TEST_CASE(sin_and_cos) {
  check_unary([](const auto& a) { return ad::sin(a); }, any_value, true);
  check_unary([](const auto& a) { return ad::cos(a); }, any_value, true);
}
BOOST_AUTO_TEST_CASE(silu_mish_logsigmoid) {
  check_unary([](const auto& a) { return ad::silu(a); }, any_value, true);
  check_unary([](const auto& a) { return ad::mish(a); }, any_value, true);
  check_unary([](const auto& a) { return ad::logsigmoid(a); }, any_value, true);
  // logsigmoid stays finite far out, where log(sigmoid(a)) would give -inf
  const Array<double> far = ad::logsigmoid(V(Array<double>{-800.0, 800.0})).value();
  BOOST_TEST(far(0) == -800.0);
  BOOST_TEST(far(1) == 0.0);
}
BOOST_AUTO_TEST_CASE(elu) {
  // Smooth on each side of 0: second order away from the kink (alpha ≠ 1 makes one).
  check_unary([](const auto& a) { return ad::elu(a, 0.7); }, off_kink, true);
  const Array<double> y = ad::elu(V(Array<double>{-1.0, 2.0}), 0.7).value();
  BOOST_TEST(y(0) == 0.7 * std::expm1(-1.0), tt::tolerance(1e-15));
  BOOST_TEST(y(1) == 2.0);
}
BOOST_AUTO_TEST_CASE(hardtanh) {
  auto make = [](const ad::Shape& s) {
    Array<double> a = uniform(s, -2.0, 2.0, 15);
    for (auto& x : a)
      if (std::abs(std::abs(x) - 1) < 0.1) x *= 0.8;
    return a;
  };
  check_unary([](const auto& a) { return ad::hardtanh(a); }, make, true);
}

// Piecewise-linear ops: first order away from their kinks; the second derivative is zero there,
// which the second-order check confirms.
BOOST_AUTO_TEST_CASE(abs) {
  check_unary([](const auto& a) { return ad::abs(a); }, off_kink, true);
}
BOOST_AUTO_TEST_CASE(relu) {
  check_unary([](const auto& a) { return ad::relu(a); }, off_kink, true);
}
BOOST_AUTO_TEST_CASE(leaky_relu) {
  check_unary([](const auto& a) { return ad::leaky_relu(a, 0.1); }, off_kink, true);
}
BOOST_AUTO_TEST_CASE(clamp) {
  // Values kept away from the bounds -0.5 and 0.5.
  auto make = [](const ad::Shape& s) {
    Array<double> a = away_from_zero(s, 0.1, 2.0, 14);
    for (auto& x : a)
      if (std::abs(std::abs(x) - 0.5) < 0.1) x *= 1.5;
    return a;
  };
  check_unary([](const auto& a) { return ad::clamp(a, -0.5, 0.5); }, make, true);
  BOOST_CHECK_THROW(ad::clamp(V(Array<double>{1.0}), 1.0, 0.0), ad::Error);
}

BOOST_AUTO_TEST_CASE(composite_of_many) {
  auto f = [](const auto& a) {
    return ad::softplus(ad::tanh(a) * ad::sigmoid(a)) +
           ad::exp(-ad::square(a)) / ad::sqrt(a * a + 1.0);
  };
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(uniform({5}, -2, 2))}, ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(values_and_stability) {
  V a(Array<double>{-1000.0, -1.0, 0.0, 1.0, 1000.0});
  Array<double> s = ad::sigmoid(a).value();
  BOOST_TEST(s(0) == 0.0);
  BOOST_TEST(s(2) == 0.5);
  BOOST_TEST(s(4) == 1.0);
  Array<double> sp = ad::softplus(a).value();
  BOOST_TEST(sp(4) == 1000.0);  // log(1 + e^1000) without overflow
  BOOST_TEST(sp(0) == 0.0);
  BOOST_TEST(sp(3) == std::log1p(std::exp(1.0)), tt::tolerance(1e-14));
  BOOST_TEST(ad::relu(a).value()(1) == 0.0);
  BOOST_TEST(ad::leaky_relu(a, 0.1).value()(1) == -0.1, tt::tolerance(1e-14));
  BOOST_TEST(ad::clamp(a, -2, 3).value()(4) == 3.0);
  BOOST_TEST(ad::abs(a).value()(1) == 1.0);
}

BOOST_AUTO_TEST_CASE(derivatives_at_kinks_follow_the_documented_choice) {
  V a = leaf(Array<double>{0.0, 0.0});
  ad::sum(ad::relu(a) + ad::abs(a)).backward();
  BOOST_TEST(a.grad().value()(0) == 0.0);
  // At their bounds clamp's gradient is 1 and hardtanh's 0, as in PyTorch.
  V c = leaf(Array<double>{-1.0, 1.0});
  ad::sum(ad::clamp(c, -1.0, 1.0)).backward();
  BOOST_TEST(c.grad().value()(0) == 1.0);
  BOOST_TEST(c.grad().value()(1) == 1.0);
  V h = leaf(Array<double>{-1.0, 1.0, 0.5});
  ad::sum(ad::hardtanh(h)).backward();
  BOOST_TEST(h.grad().value()(0) == 0.0);
  BOOST_TEST(h.grad().value()(1) == 0.0);
  BOOST_TEST(h.grad().value()(2) == 1.0);
  BOOST_CHECK_THROW(ad::hardtanh(V(Array<double>{1.0}), 1.0, 0.0), ad::Error);
}

BOOST_AUTO_TEST_CASE(float_values_match_double) {
  Array<double> x = uniform({64}, -3, 3);
  Array<float> xf(x);
  auto check = [&](auto f) {
    Array<double> d = f(V(x)).value();
    Array<float> s = f(ad::Variable<float>(xf)).value();
    for (std::size_t i = 0; i < d.size(); ++i) BOOST_TEST(s(i) == d(i), tt::tolerance(1e-5));
  };
  check([](const auto& v) { return ad::exp(v); });
  check([](const auto& v) { return ad::tanh(v); });
  check([](const auto& v) { return ad::sigmoid(v); });
  check([](const auto& v) { return ad::softplus(v); });
}

BOOST_AUTO_TEST_CASE(lstm_cell_equations_and_shapes) {
  // One position by hand: gates = x + h, c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c').
  Array<double> x{0.3, -0.7, 1.1, 0.4}, h{0.1, 0.2, -0.3, 0.5}, c0{-0.6};
  x.reshape({1, 4});
  h.reshape({1, 4});
  c0.reshape({1, 1});
  const Array<double> out = ad::lstm_cell(V(x), V(h), V(c0)).value();
  auto s = [](double v) { return 1 / (1 + std::exp(-v)); };
  const double c2 = s(-0.5) * -0.6 + s(0.4) * std::tanh(0.8);
  BOOST_TEST(out(0, 1) == c2, tt::tolerance(1e-15));
  BOOST_TEST(out(0, 0) == s(0.9) * std::tanh(c2), tt::tolerance(1e-15));
  // Gates must be (N, 4H), both alike, for a cell (N, H).
  auto zeros = [](std::size_t n, std::size_t k) {
    return V(Array<double>(xt::zeros<double>({n, k})));
  };
  auto names_shapes = [](const ad::Error& e) {
    return std::string(e.what()).find(
               "lstm_cell: gates (2,7) and (2,7) and cell (2,2) do not "
               "match") == 0;
  };
  BOOST_CHECK_EXCEPTION(ad::lstm_cell(zeros(2, 7), zeros(2, 7), zeros(2, 2)), ad::Error,
                        names_shapes);
  BOOST_CHECK_THROW(ad::lstm_cell(zeros(2, 8), zeros(1, 8), zeros(2, 2)), ad::Error);
  // A cell of no units: (N, 0) out, and gradients of the inputs' shapes.
  V none = zeros(2, 0);
  none.set_requires_grad();
  const V empty = ad::lstm_cell(none, zeros(2, 0), zeros(2, 0));
  BOOST_TEST(empty.shape() == ad::Shape({2, 0}));
  ad::sum(empty).backward();
  BOOST_TEST(none.grad().shape() == ad::Shape({2, 0}));
}

BOOST_AUTO_TEST_SUITE_END()
