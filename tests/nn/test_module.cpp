// Module: registration, dotted names, train/eval, Sequential, a user-written module.
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "helpers.hpp"
#include "nn/nn.hpp"

using ad::Array;
using ad::Shape;
namespace nn = ad::nn;
using V = ad::Variable<float>;

namespace {

/// A user-written module: two linear layers with a ReLU between.
struct Net : nn::Module<float> {
  std::shared_ptr<nn::Linear<float>> fc1, fc2;
  explicit Net(nn::Generator& rng)
      : fc1(register_module("fc1", std::make_shared<nn::Linear<float>>(4, 8, rng))),
        fc2(register_module("fc2", std::make_shared<nn::Linear<float>>(8, 3, rng))) {}
  V forward(const V& x) override { return fc2->forward(ad::relu(fc1->forward(x))); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(module)

BOOST_AUTO_TEST_CASE(user_module_names_and_parameters) {
  nn::Generator rng(1);
  Net net(rng);
  auto named = net.named_parameters();
  BOOST_REQUIRE(named.size() == 4u);
  BOOST_TEST(named[0].first == "fc1.weight");
  BOOST_TEST(named[1].first == "fc1.bias");
  BOOST_TEST(named[3].first == "fc2.bias");
  BOOST_TEST(net.parameter_count() == 4u * 8 + 8 + 8 * 3 + 3);
  V y = net(V(ad::test::uniform<float>({5, 4})));
  BOOST_TEST(y.shape() == Shape({5, 3}));
  ad::sum(y).backward();
  for (const auto& p : net.parameters()) BOOST_TEST(p.has_grad());
  net.zero_grad();
  for (const auto& p : net.parameters()) BOOST_TEST(!p.has_grad());
  // Handles share data with the module.
  net.parameters()[0].mutable_value()(0, 0) = 42.0f;
  BOOST_TEST(net.fc1->weight().value()(0, 0) == 42.0f);
}

BOOST_AUTO_TEST_CASE(sequential_names_and_forward) {
  nn::Generator rng(2);
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(784, 256, rng),
                              std::make_shared<nn::ReLU<float>>(),
                              std::make_shared<nn::Linear<float>>(256, 10, rng));
  auto named = model.named_parameters();
  BOOST_REQUIRE(named.size() == 4u);
  BOOST_TEST(named[0].first == "0.weight");
  BOOST_TEST(named[2].first == "2.weight");
  BOOST_TEST(model.size() == 3u);
  BOOST_TEST(model(V(Array<float>(xt::zeros<float>({2, 784})))).shape() == Shape({2, 10}));
  // A shape error names the module that raised it.
  BOOST_CHECK_EXCEPTION(
      model(V(Array<float>(xt::zeros<float>({2, 100})))), ad::Error, [](const ad::Error& e) {
        std::string m = e.what();
        return m.find("Sequential module 0") == 0 && m.find("linear") != std::string::npos;
      });
}

BOOST_AUTO_TEST_CASE(a_linear_built_with_its_activation_is_one_op) {
  // Linear(in, out, act, rng) runs ad::linear with the activation: the same values and parameter
  // gradients, to the bit, as a Linear followed by the activation's module, in one op. A
  // Sequential runs its modules as they are: a Linear followed by a ReLU stays two ops.
  auto same_bits = [](const Array<float>& a, const Array<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  Array<float> xa = Array<float>::from_shape({7, 4});
  const Array<double> xd = ad::test::uniform({7, 4}, -2, 2, 4);
  std::copy(xd.begin(), xd.end(), xa.begin());
  const V x(xa);
  nn::Generator rng_a(3), rng_b(3);
  nn::Sequential<float> fused(
      std::make_shared<nn::Linear<float>>(4, 6, ad::Activation::relu, rng_a),
      std::make_shared<nn::Linear<float>>(6, 5, ad::Activation::tanh, rng_a),
      std::make_shared<nn::Linear<float>>(5, 3, ad::Activation::sigmoid, rng_a),
      std::make_shared<nn::Linear<float>>(3, 2, rng_a));
  nn::Sequential<float> apart(
      std::make_shared<nn::Linear<float>>(4, 6, rng_b), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::Linear<float>>(6, 5, rng_b), std::make_shared<nn::Tanh<float>>(),
      std::make_shared<nn::Linear<float>>(5, 3, rng_b), std::make_shared<nn::Sigmoid<float>>(),
      std::make_shared<nn::Linear<float>>(3, 2, rng_b));
  const V y = fused(x), z = apart(x);
  BOOST_TEST(std::string(y.op_name()) == "linear");
  BOOST_TEST(std::string(fused[2]->forward(V(Array<float>(xt::zeros<float>({1, 5})))).op_name()) ==
             "linear_sigmoid");
  const V relu_out = apart[1]->forward(apart[0]->forward(x));
  BOOST_TEST(std::string(relu_out.op_name()) == "relu");
  BOOST_TEST(same_bits(y.value(), z.value()));
  y.backward(V(Array<float>(xt::ones<float>({7, 2}))));
  z.backward(V(Array<float>(xt::ones<float>({7, 2}))));
  const auto pf = fused.parameters(), pa = apart.parameters();
  BOOST_REQUIRE(pf.size() == pa.size());
  for (std::size_t i = 0; i < pf.size(); ++i)
    BOOST_TEST(same_bits(pf[i].grad().value(), pa[i].grad().value()), "parameter " << i);
  // The summary shows the activation; the parameters are named by the modules' places.
  const std::string table = nn::summary(fused, {7, 4}).str();
  BOOST_TEST(table.find("Linear(relu)") != std::string::npos, table);
  BOOST_TEST(table.find("Linear(sigmoid)") != std::string::npos, table);
  BOOST_TEST(fused.named_parameters()[2].first == "1.weight");
  BOOST_CHECK_THROW(nn::Linear<float>(2, 2, static_cast<ad::Activation>(9), rng_a), ad::Error);
}

BOOST_AUTO_TEST_CASE(train_and_eval_propagate) {
  nn::Generator rng(3);
  auto inner = std::make_shared<nn::Dropout<float>>(0.5);
  nn::Sequential<float> model(std::make_shared<nn::Linear<float>>(3, 3, rng), inner);
  BOOST_TEST(inner->is_training());
  model.eval();
  BOOST_TEST(!inner->is_training());
  model.train();
  BOOST_TEST(inner->is_training());
}

BOOST_AUTO_TEST_CASE(names_are_checked) {
  struct Bad : nn::Module<float> {
    V forward(const V& x) override { return x; }
    void add(const std::string& name) { register_parameter(name, Array<float>{1.0f}); }
  } bad;
  bad.add("w");
  BOOST_CHECK_THROW(bad.add("w"), ad::Error);
  BOOST_CHECK_THROW(bad.add("a.b"), ad::Error);
  BOOST_CHECK_THROW(bad.add(""), ad::Error);
}

BOOST_AUTO_TEST_CASE(modules_move_without_losing_parameters) {
  nn::Generator rng(4);
  nn::Linear<float> a(3, 2, rng);
  const float w = a.weight().value()(1, 2);
  nn::Linear<float> b = std::move(a);
  BOOST_TEST(b.weight().value()(1, 2) == w);
  BOOST_TEST(b.named_parameters()[0].second.value()(1, 2) == w);
}

BOOST_AUTO_TEST_CASE(tied_weights_are_one_parameter) {
  // b's weight tied to a's: one parameter, stepped once by -lr·g with g the sum of both uses,
  // saved once, and loaded back into both places.
  nn::Generator rng(5);
  auto a = std::make_shared<nn::Linear<float>>(3, 3, rng, false);
  auto b = std::make_shared<nn::Linear<float>>(3, 3, rng, false);
  b->weight() = a->weight();
  nn::Sequential<float> m(a, b);
  BOOST_TEST(m.parameters().size() == 1u);
  BOOST_TEST(m.named_parameters()[0].first == "0.weight");
  BOOST_TEST(m.parameter_slots().size() == 2u);
  BOOST_TEST(m.parameter_count() == 9u);
  ad::Variable<float> x(ad::test::uniform<float>({2, 3}));
  ad::sum(m(x)).backward();
  const Array<float> w = a->weight().value(), g = a->weight().grad().value();
  nn::SGD<float>(m.parameters(), {0.1}).step();
  for (std::size_t i = 0; i < w.size(); ++i)
    BOOST_TEST(a->weight().value().data()[i] == w.data()[i] - 0.1f * g.data()[i]);
  BOOST_TEST(b->weight().value() == a->weight().value());
  // An optimizer given the same parameter twice refuses (it would step it twice).
  BOOST_CHECK_THROW(nn::SGD<float>({a->weight(), b->weight()}, {0.1}), ad::Error);
}

BOOST_AUTO_TEST_CASE(layers_without_bias_have_an_undefined_bias) {
  nn::Generator rng(6);
  nn::Linear<float> lin(3, 2, rng, false);
  nn::Conv2d<float> conv(1, 2, 3, rng, 1, 0, false);
  BOOST_TEST(!lin.has_bias());
  BOOST_TEST(!conv.has_bias());
  BOOST_TEST(!lin.bias().defined());
  BOOST_TEST(!conv.bias().defined());
  BOOST_TEST(lin.parameters().size() == 1u);
  nn::Linear<float> with(3, 2, rng);
  BOOST_TEST(with.bias().defined());
  BOOST_TEST(with.bias().shape() == ad::Shape({2}));
}

BOOST_AUTO_TEST_CASE(predict_is_eval_mode_without_a_graph_and_puts_the_mode_back) {
  nn::Generator rng(3);
  nn::Sequential<float> m(std::make_shared<nn::Linear<float>>(4, 8, rng),
                          std::make_shared<nn::Dropout<float>>(0.5, 7),
                          std::make_shared<nn::BatchNorm1d<float>>(8));
  Array<float> x = ad::test::uniform<float>({6, 4});
  m.eval();
  Array<float> expected = m(V(x)).value();
  m.train();
  Array<float> y = m.predict(x);
  BOOST_TEST(m.is_training());  // the mode is put back
  BOOST_TEST(y == expected);    // no dropout, running statistics
  BOOST_TEST(m.predict(x) == y);
  // The running statistics were not updated (eval mode) and no graph was recorded.
  for (const auto& [name, buffer] : m.named_buffers())
    if (name == "2.running_mean") BOOST_TEST(*buffer == Array<float>(xt::zeros<float>({8})));
  for (const auto& p : m.parameters()) BOOST_TEST(!p.has_grad());
  // A failing forward still puts the mode back.
  BOOST_CHECK_THROW(m.predict(ad::test::uniform<float>({6, 5})), ad::Error);
  BOOST_TEST(m.is_training());
  m.eval();
  BOOST_CHECK_THROW(m.predict(ad::test::uniform<float>({6, 5})), ad::Error);
  BOOST_TEST(!m.is_training());
}

BOOST_AUTO_TEST_CASE(summary_lists_layers_shapes_and_parameters) {
  nn::Generator rng(5);
  auto head = std::make_shared<nn::Sequential<float>>(
      std::make_shared<nn::Linear<float>>(4 * 5 * 5, 10, rng), std::make_shared<nn::ReLU<float>>());
  nn::Sequential<float> m(
      std::make_shared<nn::Conv2d<float>>(1, 4, 3, rng, 1, 1), std::make_shared<nn::ReLU<float>>(),
      std::make_shared<nn::MaxPool2d<float>>(2), std::make_shared<nn::Flatten<float>>(), head);
  nn::ModelSummary s = nn::summary(m, Shape{2, 1, 10, 10});
  BOOST_REQUIRE(s.rows.size() == 8u);
  const char* names[] = {"", "0", "1", "2", "3", "4", "4.0", "4.1"};
  const char* types[] = {"Sequential", "Conv2d",     "ReLU",   "MaxPool2d",
                         "Flatten",    "Sequential", "Linear", "ReLU"};
  const std::size_t depths[] = {0, 1, 1, 1, 1, 1, 2, 2};
  const Shape shapes[] = {{2, 10},  {2, 4, 10, 10}, {2, 4, 10, 10}, {2, 4, 5, 5},
                          {2, 100}, {2, 10},        {2, 10},        {2, 10}};
  const std::size_t params[] = {4 * 9 + 4 + 100 * 10 + 10, 4 * 9 + 4, 0, 0, 0, 1010, 1010, 0};
  for (std::size_t i = 0; i < 8; ++i) {
    BOOST_TEST_CONTEXT("row " << i) {
      BOOST_TEST(s.rows[i].name == names[i]);
      BOOST_TEST(s.rows[i].type == types[i]);
      BOOST_TEST(s.rows[i].depth == depths[i]);
      BOOST_TEST(s.rows[i].output == shapes[i]);
      BOOST_TEST(s.rows[i].parameters == params[i]);
    }
  }
  BOOST_TEST(s.total_parameters == m.parameter_count());
  BOOST_TEST(s.parameter_bytes == 4 * m.parameter_count());
  const std::string text = s.str();
  BOOST_TEST(text.find("  4.0: Linear") != std::string::npos);
  BOOST_TEST(text.find("(2,4,5,5)") != std::string::npos);
  BOOST_TEST(text.find("total parameters: 1050") != std::string::npos);
  BOOST_TEST(m.is_training());
  // A wrong input shape is the forward pass's error; nothing is left noting calls.
  BOOST_CHECK_THROW(nn::summary(m, Shape{2, 3, 10, 10}), ad::Error);
  BOOST_TEST(nn::summary(m, Shape{1, 1, 10, 10}).rows.size() == 8u);
}

BOOST_AUTO_TEST_SUITE_END()
