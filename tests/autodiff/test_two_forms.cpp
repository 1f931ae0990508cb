// The ops whose derivative has two forms: a fused kernel for the first-order backward (speed),
// and a composite of recorded ops under create_graph (differentiable again). Both forms must give
// the same first-order gradients; every such op is listed here, and a check over the op files'
// sources fails when a rule that branches on create_graph is added without being listed.
#include <boost/test/unit_test.hpp>

#include <functional>
#include <iterator>
#include <map>
#include <regex>
#include <string>

#include "helpers.hpp"

namespace {

using ad::test::uniform;

template <class T>
using Fn = std::function<ad::Variable<T>(const std::vector<ad::Variable<T>>&)>;

/// The gradients of Σ w·f(inputs) (w fixed, random) with respect to every input, computed by the
/// fused first-order rules (create_graph off) or by the recorded ones (on).
template <class T>
std::vector<ad::Array<T>> gradients(const Fn<T>& f, const std::vector<ad::Array<double>>& values,
                                    bool create_graph) {
  std::vector<ad::Variable<T>> inputs;
  for (const auto& v : values) inputs.emplace_back(ad::Array<T>(v), true);
  ad::Variable<T> y = f(inputs);
  ad::Variable<T> w(ad::Array<T>(uniform(y.shape(), -1, 1, 99)));
  std::vector<ad::Array<T>> out;
  for (const auto& g :
       ad::grad(ad::sum(y * w), inputs, ad::BackwardOptions{create_graph, create_graph}))
    out.push_back(g.value());
  return out;
}

/// The largest difference between the two forms' gradients, relative to the largest gradient.
template <class T>
double difference(const Fn<T>& f, const std::vector<ad::Array<double>>& values) {
  const auto fused = gradients(f, values, false), recorded = gradients(f, values, true);
  double diff = 0, scale = 1e-300;
  for (std::size_t i = 0; i < fused.size(); ++i) {
    BOOST_REQUIRE(fused[i].shape() == recorded[i].shape());
    for (std::size_t j = 0; j < fused[i].size(); ++j) {
      diff = std::max(diff, std::abs(double(fused[i].data()[j]) - recorded[i].data()[j]));
      scale = std::max(scale, std::abs(double(recorded[i].data()[j])));
    }
  }
  return diff / scale;
}

/// An op on given inputs, in double and in float.
struct Case {
  template <class F>
  Case(std::string op, std::vector<ad::Array<double>> values, F f)
      : op(std::move(op)), values(std::move(values)), f64(f), f32(f) {}
  std::string op;
  std::vector<ad::Array<double>> values;
  Fn<double> f64;
  Fn<float> f32;
};

std::vector<Case> cases() {
  ad::AttentionOptions heads;
  heads.heads = 2;
  heads.causal = true;
  const std::vector<std::size_t> labels{2, 0, 4, 1, 3, 0};
  std::vector<Case> c;
  for (auto act :
       {ad::Activation::none, ad::Activation::relu, ad::Activation::tanh, ad::Activation::sigmoid})
    c.push_back({"linear",
                 {uniform({2, 3, 5}, -1, 1, 1), uniform({4, 5}, -1, 1, 2), uniform({4}, -1, 1, 3)},
                 [=](const auto& x) { return ad::linear(x[0], x[1], x[2], act); }});
  c.push_back(
      {"conv2d",
       {uniform({2, 3, 6, 5}, -1, 1, 4), uniform({4, 3, 3, 2}, -1, 1, 5), uniform({4}, -1, 1, 6)},
       [=](const auto& x) { return ad::conv2d(x[0], x[1], x[2], 2, 1); }});
  c.push_back({"softmax_cross_entropy", {uniform({6, 5}, -3, 3, 7)}, [=](const auto& x) {
                 return ad::softmax_cross_entropy(x[0], labels, 0.1);
               }});
  c.push_back({"softmax_cross_entropy", {uniform({6, 140}, -3, 3, 8)}, [=](const auto& x) {
                 return ad::softmax_cross_entropy(x[0], labels, 0.0);
               }});
  c.push_back({"lstm_cell",
               {uniform({3, 8}, -2, 2, 9), uniform({3, 8}, -2, 2, 10), uniform({3, 2}, -1, 1, 11)},
               [=](const auto& x) { return ad::lstm_cell(x[0], x[1], x[2]); }});
  c.push_back({"lstm",
               {uniform({2, 4, 3}, -1, 1, 12), uniform({8, 3}, -1, 1, 13),
                uniform({8, 2}, -1, 1, 14), uniform({8}, -1, 1, 15), uniform({8}, -1, 1, 16),
                uniform({2, 2}, -1, 1, 17), uniform({2, 2}, -1, 1, 18)},
               [=](const auto& x) { return ad::lstm(x[0], x[1], x[2], x[3], x[4], x[5], x[6]); }});
  c.push_back({"scaled_dot_product_attention",
               {uniform({2, 5, 4}, -1, 1, 19), uniform({2, 7, 4}, -1, 1, 20),
                uniform({2, 7, 6}, -1, 1, 21), uniform({5, 7}, -1, 1, 22)},
               [=](const auto& x) {
                 return ad::scaled_dot_product_attention(x[0], x[1], x[2], heads, x[3]);
               }});
  c.push_back(
      {"layer_norm",
       {uniform({3, 4, 5}, -2, 2, 23), uniform({4, 5}, -1, 1, 24), uniform({4, 5}, -1, 1, 25)},
       [=](const auto& x) { return ad::layer_norm(x[0], 2, x[1], x[2]); }});
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(two_forms)

BOOST_AUTO_TEST_CASE(fused_and_recorded_rules_give_the_same_gradients) {
  // The two forms differ only by the order of their sums (the kernels sum in blocks, the
  // composites through matmul and sum_to) and of their products: measured, at most 3.6e-16 of
  // the largest gradient in double and 9.6e-8 in float (linear with no activation, with relu or
  // sigmoid, and the cross-entropy's short rows agree to the bit).
  for (const Case& c : cases()) {
    BOOST_TEST_CONTEXT(c.op) {
      BOOST_TEST(difference(c.f64, c.values) <= 2e-15);
      BOOST_TEST(difference(c.f32, c.values) <= 5e-7);
    }
  }
}

BOOST_AUTO_TEST_CASE(every_op_with_two_forms_is_listed) {
  // The op files whose rules branch on create_graph into a second form, and how many such rules
  // each has: the ops above, and the rules whose two branches are one formula written once
  // (div's and pow's lambda on numbers and on Variables, gelu's slope, squared_distance's d, the
  // placements of reshape, slice and select). A new branch changes a count here and must be
  // looked at: a fused kernel with a composite gets a case above.
  const std::map<std::string, int> expected{{"arithmetic", 2},  {"attention", 1}, {"conv", 1},
                                            {"elementwise", 2}, {"linalg", 1},    {"recurrent", 1},
                                            {"reduce", 3},      {"shape", 3}};
  for (const char* file : {"arithmetic", "attention", "conv", "elementwise", "linalg", "recurrent",
                           "reduce", "shape", "index", "flat"}) {
    const std::string text = ad::test::source(std::string("autodiff/") + file + ".cpp");
    BOOST_TEST_REQUIRE(!text.empty(), file);
    // A rule's BackwardContext is named c or ctx.
    const std::regex branch("\\b(c|ctx)\\.create_graph");
    const auto branches = std::distance(std::sregex_iterator(text.begin(), text.end(), branch),
                                        std::sregex_iterator());
    const auto it = expected.find(file);
    BOOST_TEST(branches == (it == expected.end() ? 0 : it->second),
               "autodiff/" << file << ".cpp has " << branches
                           << " rules that branch on create_graph: a new one with a fused kernel "
                              "needs a case in fused_and_recorded_rules_give_the_same_gradients");
  }
}

BOOST_AUTO_TEST_SUITE_END()
