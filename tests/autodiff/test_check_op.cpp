// ad::check_op: right ops pass on every drawn case; a rule wrong only for negative inputs, only
// when an axis has length 1, only in float, or one that loses a NaN is found, and shrunk to a
// case of at most 2 elements that a printed snippet reproduces.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>

#include "helpers.hpp"

using ad::Array;
using ad::CheckOpOptions;
using ad::InputSpec;

namespace {

/// Leaky relu (slope 0.1 below 0) as a custom op; with `wrong`, its rule uses 0.2 for negative
/// inputs.
template <class T>
ad::Variable<T> leaky(const ad::Variable<T>& x, bool wrong) {
  Array<T> y = Array<T>::from_shape(x.shape());
  for (std::size_t i = 0; i < y.size(); ++i)
    y.data()[i] = x.value().data()[i] > 0 ? x.value().data()[i] : T(0.1) * x.value().data()[i];
  return ad::make_op<T>("leaky", std::move(y), {x},
                        [wrong](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                          Array<T> g = c.grad.value();
                          for (std::size_t i = 0; i < g.size(); ++i)
                            if (!(c.input(0).value().data()[i] > 0))
                              g.data()[i] *= wrong ? 0.2 : 0.1;
                          return {ad::Variable<T>(std::move(g))};
                        });
}

/// The sum over the last axis (a 0-d input is returned as is); with `wrong`, the rule doubles
/// the gradient when that axis has length 1.
template <class T>
ad::Variable<T> last_axis_sum(const ad::Variable<T>& x, bool wrong) {
  if (x.shape().empty()) return x;
  const ad::Shape s = x.shape();
  const std::size_t n = s.back(), rows = n ? x.size() / n : 0;
  ad::Shape out_shape(s.begin(), s.end() - 1);
  Array<T> y = Array<T>::from_shape(out_shape);
  std::size_t count = 1;
  for (auto d : out_shape) count *= d;
  for (std::size_t r = 0; r < count; ++r) {
    T acc = 0;
    for (std::size_t j = 0; j < n && r < rows; ++j) acc += x.value().data()[r * n + j];
    y.data()[r] = acc;
  }
  return ad::make_op<T>("last_axis_sum", std::move(y), {x},
                        [wrong, s, n](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
                          Array<T> g = Array<T>::from_shape(s);
                          const T factor = wrong && n == 1 ? T(2) : T(1);
                          for (std::size_t i = 0; i < g.size(); ++i)
                            g.data()[i] = factor * c.grad.value().data()[i / n];
                          return {ad::Variable<T>(std::move(g))};
                        });
}

/// relu that turns NaN into 0 (std::max(x, 0) does, as `x > 0 ? x : 0` does).
template <class T>
ad::Variable<T> nan_losing_relu(const ad::Variable<T>& x) {
  Array<T> y = Array<T>::from_shape(x.shape());
  for (std::size_t i = 0; i < y.size(); ++i)
    y.data()[i] = x.value().data()[i] > 0 ? x.value().data()[i] : T(0);
  return ad::make_op<T>(
      "nan_losing_relu", std::move(y), {x}, [](const ad::BackwardContext<T>& c) -> ad::Grads<T> {
        return {c.grad * ad::Variable<T>(ad::Array<T>(c.input(0).value() > T(0)))};
      });
}

std::size_t elements(const ad::CheckOpReport& r) {
  std::size_t n = 0;
  for (const auto& a : r.inputs) n += a.size();
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(check_op)

BOOST_AUTO_TEST_CASE(right_ops_pass_every_case) {
  auto mul = ad::check_op([](const auto& a, const auto& b) { return a * b; }, {{}, {}});
  BOOST_TEST(mul.passed, mul);
  BOOST_TEST(mul.cases == 60u);
  InputSpec kinked;
  kinked.kinks = {0};
  auto relu = ad::check_op([](const auto& x) { return ad::relu(x); }, {kinked});
  BOOST_TEST(relu.passed, relu);
  auto right_leaky = ad::check_op([](const auto& x) { return leaky(x, false); }, {kinked});
  BOOST_TEST(right_leaky.passed, right_leaky);
  auto right_sum = ad::check_op([](const auto& x) { return last_axis_sum(x, false); }, {{}});
  BOOST_TEST(right_sum.passed, right_sum);
  // A matrix product needs its shapes: fixed by the specs.
  InputSpec a, b;
  a.shape = ad::Shape{2, 3};
  b.shape = ad::Shape{3, 4};
  CheckOpOptions o;
  o.cases = 10;
  auto mm = ad::check_op([](const auto& a, const auto& b) { return ad::matmul(a, b); }, {a, b}, o);
  BOOST_TEST(mm.passed, mm);
}

BOOST_AUTO_TEST_CASE(a_rule_wrong_for_negative_inputs_shrinks_to_one_negative_value) {
  InputSpec x;
  x.kinks = {0};
  auto r = ad::check_op([](const auto& x) { return leaky(x, true); }, {x});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.property == "gradient", r);
  BOOST_TEST(elements(r) <= 2u, r);
  bool negative = false;
  for (double v : r.inputs[0]) negative = negative || v < 0;
  BOOST_TEST(negative, r);
  BOOST_TEST(r.snippet.find("ad::gradcheck(f, {x0})") != std::string::npos, r);
}

BOOST_AUTO_TEST_CASE(a_rule_wrong_for_an_axis_of_length_one_shrinks_to_it) {
  auto r = ad::check_op([](const auto& x) { return last_axis_sum(x, true); }, {{}});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.property == "gradient", r);
  BOOST_TEST(elements(r) <= 2u, r);
  BOOST_REQUIRE(r.inputs[0].dimension() >= 1u);
  BOOST_TEST(r.inputs[0].shape().back() == 1u, r);
}

BOOST_AUTO_TEST_CASE(a_rule_wrong_only_in_float_is_found_in_float) {
  auto r = ad::check_op([](const auto& x) { return ad::test::float_only_wrong_cube(x); }, {{}});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.property == "float32", r);
  BOOST_TEST(r.float32);
  BOOST_TEST(elements(r) <= 2u, r);
  BOOST_TEST(r.snippet.find("ad::Variable<float> x0(") != std::string::npos, r);
  // The double path alone passes.
  CheckOpOptions o;
  o.float32 = false;
  BOOST_TEST(ad::check_op([](const auto& x) { return ad::test::float_only_wrong_cube(x); }, {{}}, o)
                 .passed);
}

BOOST_AUTO_TEST_CASE(an_op_that_loses_a_nan_is_found) {
  InputSpec x;
  x.kinks = {0};
  auto r = ad::check_op([](const auto& x) { return nan_losing_relu(x); }, {x});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.property == "NaN propagation", r);
  BOOST_TEST(elements(r) <= 2u, r);
  BOOST_TEST(r.snippet.find("x0.mutable_value().data()[0] = NAN;") != std::string::npos, r);
}

BOOST_AUTO_TEST_CASE(every_seed_finds_and_shrinks_each_planted_bug) {
  // Over 20 seeds, with extents up to 6 (first failing cases of up to 90 elements): each bug is
  // found, keeps its property while shrinking, and ends at most 2 elements.
  InputSpec kinked;
  kinked.kinks = {0};
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    CheckOpOptions o;
    o.seed = seed;
    o.max_extent = 6;
    const ad::CheckOpReport found[] = {
        ad::check_op([](const auto& x) { return leaky(x, true); }, {kinked}, o),
        ad::check_op([](const auto& x) { return last_axis_sum(x, true); }, {{}}, o),
        ad::check_op([](const auto& x) { return ad::test::float_only_wrong_cube(x); }, {{}}, o),
        ad::check_op([](const auto& x) { return nan_losing_relu(x); }, {kinked}, o)};
    const char* property[] = {"gradient", "gradient", "float32", "NaN propagation"};
    for (int k = 0; k < 4; ++k) {
      BOOST_TEST(found[k].property == property[k], "seed " << seed << ":\n" << found[k]);
      BOOST_TEST(elements(found[k]) <= 2u, "seed " << seed << ":\n" << found[k]);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_snippet_writes_the_case_exactly) {
  auto r = ad::check_op([](const auto& x) { return leaky(x, true); },
                        {InputSpec{-2, -1, {}, 0.01, ad::Shape{1, 2}, true}});
  BOOST_TEST(!r.passed);
  BOOST_REQUIRE(r.inputs[0].shape() == (ad::Shape{1, 2}));
  // Values shrunk to the simplest in the domain: -1 (and the snippet's literals are exact).
  const bool f32 = r.float32;
  const std::string type = f32 ? "float" : "double";
  const std::string one = f32 ? "-1.0f" : "-1.0";
  BOOST_TEST(r.snippet.find("ad::Variable<" + type + "> x0(ad::Array<" + type + ">{{" + one + ", " +
                            one + "}}, true);") != std::string::npos,
             r);
}

BOOST_AUTO_TEST_SUITE_END()
