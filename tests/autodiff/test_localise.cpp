// The checker's localisation: a wrong rule planted into one op of a composite of 5, 50 or 500
// ops is named, every time, by its place in the program; a composition that is wrong while each
// op is right is said to be one.
#include <boost/test/unit_test.hpp>

#include <sstream>
#include <string>

#include "helpers.hpp"
#include "nn/gradcheck.hpp"
#include "nn/layers.hpp"

using ad::Array;
using ad::test::leaf;
using ad::test::uniform;
using V = ad::Variable<double>;

namespace {

/// The kinds of wrong rule planted, each into a custom op that wraps a real computation.
enum class Bug { none, sign, factor, axis, broadcast };

const char* bug_name(Bug bug) {
  switch (bug) {
    case Bug::none:
      return "none";
    case Bug::sign:
      return "sign";
    case Bug::factor:
      return "factor";
    case Bug::axis:
      return "axis";
    default:
      return "broadcast";
  }
}

/// tanh; Bug::sign flips its rule's sign.
V planted_tanh(const V& x, bool wrong) {
  Array<double> y = xt::tanh(x.value());
  return ad::make_op<double>("planted_tanh", std::move(y), {x},
                             [wrong](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                               V d = c.grad * (1.0 - c.output * c.output);
                               return {wrong ? -d : d};
                             });
}

/// 3x; Bug::factor forgets the 3.
V planted_scale(const V& x, bool wrong) {
  Array<double> y = 3.0 * x.value();
  return ad::make_op<double>("planted_scale", std::move(y), {x},
                             [wrong](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                               return {wrong ? c.grad : c.grad * 3.0};
                             });
}

/// The sums of the rows of a square x, as a column (n, 1); Bug::axis spreads the gradient along
/// the wrong axis (each row's gradient down a column).
V planted_row_sum(const V& x, bool wrong) {
  const std::size_t n = x.shape()[0];
  Array<double> y = Array<double>::from_shape({n, 1});
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < n; ++j) s += x.value()(i, j);
    y(i, 0) = s;
  }
  return ad::make_op<double>("planted_row_sum", std::move(y), {x},
                             [wrong, n](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                               Array<double> g = Array<double>::from_shape({n, n});
                               for (std::size_t i = 0; i < n; ++i)
                                 for (std::size_t j = 0; j < n; ++j)
                                   g(i, j) = c.grad.value()(wrong ? j : i, 0);
                               return {V(std::move(g))};
                             });
}

/// x + b with b (1, n) broadcast over the rows; Bug::broadcast gives b the first row's gradient
/// instead of the sum over the rows.
V planted_add_row(const V& x, const V& b, bool wrong) {
  Array<double> y = x.value() + b.value();
  return ad::make_op<double>("planted_add_row", std::move(y), {x, b},
                             [wrong](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                               const std::size_t n = c.grad.shape()[1];
                               V gb =
                                   wrong ? ad::slice(c.grad, 0, 0, 1) : ad::sum(c.grad, {0}, true);
                               (void)n;
                               return {c.grad, gb};
                             });
}

/// One planted op on a square x, of the same shape; it is wrong when `bug` is not none.
V plant(const V& x, Bug bug) {
  switch (bug) {
    case Bug::factor:
      return planted_scale(x, true) * (1.0 / 3);
    case Bug::axis:
      return x + planted_row_sum(x, true) * 0.25;
    case Bug::broadcast:
      return planted_add_row(x, ad::mean(x, {0}, true), true);
    case Bug::sign:
      return planted_tanh(x, true);
    default:
      return planted_tanh(x, false);
  }
}

/// 5 ops: x (4, 4) through a two-layer perceptron, the planted op after the first layer.
V mlp(const V& x, const V& w1, const V& w2, Bug bug) {
  V h = plant(ad::matmul(x, w1), bug);
  return ad::sum(ad::tanh(ad::matmul(h, w2)));
}

/// About 50 ops: a block of 4-head self-attention over 8 positions of width 8, written with the
/// basic ops, the planted op on the residual sum.
V attention_block(const V& x, const V& wq, const V& wk, const V& wv, Bug bug) {
  V h = ad::layer_norm(x);
  V q = ad::matmul(h, wq), k = ad::matmul(h, wk), v = ad::matmul(h, wv);
  std::vector<V> heads;
  for (std::size_t i = 0; i < 4; ++i) {
    V qi = ad::slice(q, 1, 2 * i, 2 * i + 2), ki = ad::slice(k, 1, 2 * i, 2 * i + 2);
    V vi = ad::slice(v, 1, 2 * i, 2 * i + 2);
    V scores = ad::matmul(qi, ki, false, true) * (1 / std::sqrt(2.0));
    heads.push_back(ad::matmul(ad::softmax(scores), vi));
  }
  V y = plant(x + ad::concatenate(heads, 1), bug);
  return ad::sum(ad::gelu(y) * y);
}

/// About 500 ops: 60 residual blocks of a 3x3 convolution on one 8x8 channel, the planted op in
/// block 40.
V cnn(const V& x, const V& w, Bug bug) {
  V y = x;
  for (std::size_t i = 0; i < 60; ++i) {
    V z = ad::tanh(ad::conv2d(y, w, 1, 1)) * 0.5;
    if (i == 40) z = ad::reshape(plant(ad::reshape(z, {8, 8}), bug), {1, 1, 8, 8});
    y = (y + z) * 0.9 + ad::sigmoid(z) * 0.1;
  }
  return ad::sum(y * y);
}

/// Line `node` of the localisation's program.
std::string program_line(const ad::Localisation& l, std::size_t node) {
  std::istringstream lines(l.program);
  std::string line;
  for (std::size_t n = 0; std::getline(lines, line); ++n)
    if (n == node) return line;
  return "";
}

/// The whole check of f fails (or passes, for Bug::none), and the localisation names the planted
/// op; returns the report.
template <class F>
ad::GradcheckReport check_planted(F f, const std::vector<V>& inputs, Bug bug,
                                  std::size_t min_nodes) {
  ad::GradcheckOptions o;
  o.fast = true;
  o.check_backward = false;
  o.localise = true;
  ad::GradcheckReport r = ad::gradcheck(f, inputs, o);
  const ad::Localisation& l = r.localisation;
  BOOST_TEST_CONTEXT("bug " << bug_name(bug) << "\n" << r) {
    BOOST_TEST(l.ran);
    BOOST_TEST(l.nodes >= min_nodes);
    if (bug == Bug::none) {
      BOOST_TEST(r.passed);
      BOOST_TEST(!l.found);
      BOOST_TEST(l.checked == l.nodes);
    } else {
      BOOST_TEST(!r.passed);
      BOOST_REQUIRE(l.found);
      BOOST_TEST(l.failure.op.rfind("planted_", 0) == 0);
      BOOST_TEST(program_line(l, l.failure.node).find("= " + l.failure.op + "(") !=
                 std::string::npos);
      BOOST_TEST(l.checked == l.failure.node + 1);  // every op before it passed
      BOOST_TEST(l.failure.max_abs_error > l.failure.tolerance);
    }
  }
  return r;
}

const Bug all_bugs[] = {Bug::none, Bug::sign, Bug::factor, Bug::axis, Bug::broadcast};

}  // namespace

BOOST_AUTO_TEST_SUITE(localise)

BOOST_AUTO_TEST_CASE(names_the_planted_op_in_a_perceptron) {
  std::vector<V> in{leaf(uniform({4, 4}, -1, 1, 1)), leaf(uniform({4, 4}, -1, 1, 2)),
                    leaf(uniform({4, 4}, -1, 1, 3))};
  for (Bug bug : all_bugs) {
    auto r = check_planted(
        [bug](const V& x, const V& w1, const V& w2) { return mlp(x, w1, w2, bug); }, in, bug, 5);
    if (bug == Bug::none) BOOST_TEST(r.localisation.nodes <= 10u);
  }
}

BOOST_AUTO_TEST_CASE(names_the_planted_op_in_an_attention_block) {
  std::vector<V> in{leaf(uniform({8, 8}, -1, 1, 1)), leaf(uniform({8, 8}, -1, 1, 2)),
                    leaf(uniform({8, 8}, -1, 1, 3)), leaf(uniform({8, 8}, -1, 1, 4))};
  for (Bug bug : all_bugs) {
    auto r = check_planted([bug](const V& x, const V& wq, const V& wk,
                                 const V& wv) { return attention_block(x, wq, wk, wv, bug); },
                           in, bug, 40);
    // The program gives each op's attributes.
    BOOST_TEST(
        r.localisation.program.find("= layer_norm(x0) axes=1 eps=1e-05") != std::string::npos,
        r.localisation.program);
  }
}

BOOST_AUTO_TEST_CASE(names_the_planted_op_in_a_deep_cnn) {
  std::vector<V> in{leaf(uniform({1, 1, 8, 8}, -1, 1, 1)),
                    leaf(uniform({1, 1, 3, 3}, -0.4, 0.4, 2))};
  for (Bug bug : all_bugs) {
    auto r = check_planted([bug](const V& x, const V& w) { return cnn(x, w, bug); }, in, bug, 480);
    if (bug != Bug::none) BOOST_TEST(r.localisation.failure.node > 300u);
  }
}

BOOST_AUTO_TEST_CASE(runs_when_a_check_fails_and_prints_the_place) {
  V x = leaf(uniform({4, 4}, -1, 1, 1));
  auto r =
      ad::gradcheck([](const V& x) { return ad::sum(ad::exp(planted_tanh(x * 2.0, true))); }, {x});
  BOOST_TEST(!r.passed);
  BOOST_REQUIRE(r.localisation.ran);  // not asked for: the failure started it
  BOOST_TEST(r.localisation.found);
  BOOST_TEST(r.localisation.failure.node == 1u);
  const std::string text = r.str();
  BOOST_TEST(text.find("op %1 `planted_tanh`, inputs (4,4): input 0") != std::string::npos, text);
  BOOST_TEST(text.find("  > %1: f64(4,4) = planted_tanh(%0)") != std::string::npos, text);
  // A check that passes does not localise unless asked.
  auto ok = ad::gradcheck([](const V& x) { return ad::sum(planted_tanh(x, false)); }, {x});
  BOOST_TEST(ok.passed);
  BOOST_TEST(!ok.localisation.ran);
}

BOOST_AUTO_TEST_CASE(a_wrong_composition_of_right_ops_is_said_to_be_one) {
  // The value leaves the tape: y's second factor is a new leaf with x's value, so the gradient
  // misses one use of x. Every op is right alone.
  V x = leaf(uniform({3}, 0.5, 1, 1));
  auto r = ad::gradcheck([](const V& x) { return ad::sum(x * V(x.value())); }, {x});
  BOOST_TEST(!r.passed);
  BOOST_REQUIRE(r.localisation.ran);
  BOOST_TEST(!r.localisation.found);
  BOOST_TEST(r.localisation.off_tape);
  BOOST_TEST(r.localisation.off_tape_node == 0u);
  BOOST_TEST(r.localisation.verdict.find("the composition is wrong: input 1 (c0) of op %0 (mul) "
                                         "changes with its input 0 (x0)") != std::string::npos,
             r);
}

BOOST_AUTO_TEST_CASE(a_shared_input_is_probed_once_for_all_its_uses) {
  // x * x: both inputs of mul are one Variable; the rule's two gradients are checked as a sum.
  V x = leaf(uniform({5}, -1, 1, 1));
  ad::GradcheckOptions o;
  o.localise = true;
  auto r = ad::gradcheck([](const V& x) { return ad::sum(x * x); }, {x}, o);
  BOOST_TEST(r.passed);
  BOOST_TEST(!r.localisation.found);
  BOOST_TEST(r.localisation.checked == 2u);
}

BOOST_AUTO_TEST_CASE(kinks_are_skipped_not_blamed) {
  // relu at exactly 0 and abs at 0: the rule's value lies between the one-sided slopes.
  Array<double> v = uniform({6}, -1, 1, 1);
  v(0) = 0;
  v(3) = 0;
  V x = leaf(v);
  ad::GradcheckOptions o;
  o.localise = true;
  auto r = ad::gradcheck([](const V& x) { return ad::sum(ad::relu(x) + ad::abs(x)); }, {x}, o);
  BOOST_TEST(!r.localisation.found, r);
}

BOOST_AUTO_TEST_CASE(a_max_pool_over_the_zeros_of_a_relu_is_judged) {
  // Ties in every pooling window: along a random direction the pool is at a kink; along the
  // direction keyed by value they stay ties, and its rule is checked there.
  V x = leaf(uniform({1, 2, 6, 6}, -1, 1, 3));
  V w = leaf(uniform({3, 2, 3, 3}, -0.5, 0.5, 4));
  ad::GradcheckOptions o;
  o.fast = true;
  o.localise = true;
  auto r = ad::gradcheck(
      [](const V& x, const V& w) {
        return ad::sum(ad::max_pool2d(ad::relu(ad::conv2d(x, w, 1, 1)), 2, 2) * 1.5);
      },
      {x, w}, o);
  BOOST_TEST(r.passed, r);
  BOOST_TEST(!r.localisation.found, r);
  BOOST_TEST(r.localisation.kinks == 0u, r);
  // The case has ties: some window of the relu's output is all zeros.
  const Array<double> h = ad::relu(ad::conv2d(x, w, 1, 1)).value();
  std::size_t zero_windows = 0;
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t i = 0; i < 6; i += 2)
      for (std::size_t j = 0; j < 6; j += 2)
        zero_windows += h(0, c, i, j) == 0 && h(0, c, i + 1, j) == 0 && h(0, c, i, j + 1) == 0 &&
                        h(0, c, i + 1, j + 1) == 0;
  BOOST_TEST(zero_windows > 0u);
}

BOOST_AUTO_TEST_CASE(names_the_module_of_the_wrong_op) {
  // A custom module with the planted rule, inside a Sequential inside a Sequential.
  struct Planted : ad::nn::Module<double> {
    V forward(const V& x) override { return planted_tanh(x, true); }
  };
  ad::nn::Generator rng(7);
  auto inner = std::make_shared<ad::nn::Sequential<double>>();
  inner->add(std::make_shared<ad::nn::Linear<double>>(4, 4, rng));
  inner->add(std::make_shared<Planted>());
  ad::nn::Sequential<double> model;
  model.add(std::make_shared<ad::nn::Linear<double>>(3, 4, rng));
  model.add(std::make_shared<ad::nn::ReLU<double>>());
  model.add(inner);
  V x = leaf(uniform({2, 3}, -1, 1, 5));
  auto r = ad::nn::gradcheck_module(model, x);
  BOOST_TEST(!r.passed);
  BOOST_REQUIRE(r.localisation.found);
  BOOST_TEST(r.localisation.failure.op == "planted_tanh");
  BOOST_TEST(r.localisation.failure.module == "2.1");
  BOOST_TEST(r.str().find("`planted_tanh` in `2.1`") != std::string::npos, r);
  BOOST_TEST(r.localisation.program.find("# 0") != std::string::npos, r.localisation.program);
}

BOOST_AUTO_TEST_CASE(a_wrong_second_order_rule_is_localised_in_the_gradient) {
  // A custom op whose first-order rule is right, but is written with a wrong op underneath
  // (a planted scale): the second-order check fails and names it.
  V x = leaf(uniform({4}, -1, 1, 1));
  ad::GradcheckOptions o;
  o.second_order = true;
  auto r = ad::gradcheck(
      [](const V& x) {
        Array<double> y = x.value() * x.value() * x.value();
        return ad::sum(
            ad::make_op<double>("cube", std::move(y), {x},
                                [](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                                  const V& x = c.input(0);
                                  // 3x² g, as (3x)·x·g with the 3x from a planted op whose rule
                                  // forgets the 3.
                                  return {planted_scale(x, true) * x * c.grad};
                                }));
      },
      {x}, o);
  BOOST_TEST(!r.passed);
  BOOST_REQUIRE(r.second_order);
  BOOST_TEST(r.inputs[0].passed);  // first order is right
  BOOST_REQUIRE(r.second_order->localisation.found);
  BOOST_TEST(r.second_order->localisation.failure.op == "planted_scale");
}

BOOST_AUTO_TEST_CASE(a_rule_wrong_only_in_float_is_found_on_the_float_path) {
  ad::Variable<float> x(uniform<float>({4, 4}, -1, 1, 1), true);
  ad::Variable<float> w(uniform<float>({4, 4}, -1, 1, 2), true);
  auto r = ad::gradcheck(
      [](const auto& x, const auto& w) {
        return ad::sum(ad::tanh(ad::matmul(ad::test::float_only_wrong_cube(ad::matmul(x, w)), w)));
      },
      {x, w});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.inputs[0].passed);  // float64 is right
  BOOST_TEST(!r.inputs[0].float32.passed);
  BOOST_REQUIRE(r.localisation.found);
  BOOST_TEST(r.localisation.failure.float32);
  BOOST_TEST(r.localisation.failure.op == "float_cube");
  BOOST_TEST(r.localisation.failure.node == 1u);
  BOOST_TEST(
      r.str().find("op %1 `float_cube`, inputs (4,4): input 0: float32 rule") != std::string::npos,
      r);
}

BOOST_AUTO_TEST_SUITE_END()
