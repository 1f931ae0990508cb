// Every layer, gradchecked in double with respect to its input and parameters.
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>

#include "helpers.hpp"
#include "nn/gradcheck.hpp"
#include "nn/nn.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
namespace nn = ad::nn;
using V = ad::Variable<double>;

BOOST_AUTO_TEST_SUITE(layers)

BOOST_AUTO_TEST_CASE(linear) {
  nn::Generator rng(1);
  nn::Linear<double> layer(4, 3, rng);
  auto report = nn::gradcheck_module(layer, leaf(uniform({5, 4})), ad::test::second_order());
  BOOST_TEST(passed(report));
  BOOST_TEST(report.inputs.size() == 3u);
  BOOST_TEST(report.inputs[1].name == "weight");
  BOOST_TEST(report.str().find("'bias'") != std::string::npos);
  nn::Linear<double> no_bias(4, 3, rng, false);
  BOOST_TEST(passed(nn::gradcheck_module(no_bias, leaf(uniform({5, 4})))));
  // Initialised from U(±1/√in).
  for (double w : layer.weight().value()) BOOST_TEST(std::abs(w) <= 0.5);
}

BOOST_AUTO_TEST_CASE(conv2d_with_stride_and_padding) {
  nn::Generator rng(2);
  nn::Conv2d<double> layer(2, 3, 3, rng, 2, 1);
  V x = leaf(uniform({2, 2, 5, 6}));
  BOOST_TEST(layer(x).shape() == Shape({2, 3, 3, 3}));
  BOOST_TEST(passed(nn::gradcheck_module(layer, x)));
}

BOOST_AUTO_TEST_CASE(conv_transpose2d_scatters_each_input_through_the_kernel) {
  for (auto [stride, padding, extra] :
       {std::array<std::size_t, 3>{1, 0, 0}, {2, 1, 1}, {3, 2, 0}}) {
    BOOST_TEST_CONTEXT("stride " << stride << ", padding " << padding << ", output_padding "
                                 << extra) {
      nn::Generator rng(9);
      nn::ConvTranspose2d<double> layer(2, 3, 3, rng, stride, padding, extra);
      const Array<double> x = uniform({2, 2, 4, 3});
      const Array<double> y = layer(V(x)).value();
      const std::size_t ho = (4 - 1) * stride - 2 * padding + 3 + extra,
                        wo = (3 - 1) * stride - 2 * padding + 3 + extra;
      BOOST_REQUIRE(y.shape() == Shape({2, 3, ho, wo}));
      // The definition: every input element adds x·w[c, o] at its window of the output.
      const Array<double> w = layer.weight().value();
      Array<double> expected = xt::zeros<double>(Shape{2, 3, ho, wo});
      Array<double> bias;
      for (const auto& [name, p] : layer.named_parameters())
        if (name == "bias") bias = p.value();
      for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t o = 0; o < 3; ++o) {
          for (std::size_t i = 0; i < ho; ++i)
            for (std::size_t j = 0; j < wo; ++j) expected(n, o, i, j) = bias(o);
          for (std::size_t c = 0; c < 2; ++c)
            for (std::size_t i = 0; i < 4; ++i)
              for (std::size_t j = 0; j < 3; ++j)
                for (std::size_t a = 0; a < 3; ++a)
                  for (std::size_t b = 0; b < 3; ++b) {
                    const long r = long(i * stride + a) - long(padding),
                               q = long(j * stride + b) - long(padding);
                    if (r >= 0 && q >= 0 && r < long(ho) && q < long(wo))
                      expected(n, o, std::size_t(r), std::size_t(q)) +=
                          x(n, c, i, j) * w(c, o, a, b);
                  }
        }
      for (std::size_t k = 0; k < y.size(); ++k)
        BOOST_TEST(y.data()[k] == expected.data()[k], tt::tolerance(1e-12));
      BOOST_TEST(passed(nn::gradcheck_module(layer, leaf(x), ad::test::second_order())));
    }
  }
  nn::Generator rng(10);
  BOOST_CHECK_THROW(nn::ConvTranspose2d<double>(2, 3, 3, rng, 2, 0, 2), ad::Error);
  nn::ConvTranspose2d<double> layer(2, 3, 3, rng, 1, 0, 0, false);
  BOOST_TEST(layer.parameters().size() == 1u);
  BOOST_CHECK_EXCEPTION(layer(V(uniform({2, 3, 4, 4}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("ConvTranspose2d: input (2,3,4,4) is not (N, 2, H, W)") !=
           std::string::npos;
  });
  nn::ConvTranspose2d<double> shrinking(2, 3, 3, rng, 1, 2);
  BOOST_CHECK_EXCEPTION(shrinking(V(uniform({1, 2, 1, 1}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("gives no output") != std::string::npos;
  });
  // Initialised from U(±1/√(out·k·k)).
  for (double v : layer.weight().value()) BOOST_TEST(std::abs(v) <= 1 / std::sqrt(27.0));
}

BOOST_AUTO_TEST_CASE(conv2d_with_a_rectangular_dilated_grouped_kernel) {
  nn::Generator rng(11);
  ad::ConvOptions o;
  o.stride_h = 2, o.padding_w = 1, o.dilation_h = 2, o.groups = 2;
  nn::Conv2d<double> layer(4, 6, {3, 2}, rng, o);
  BOOST_TEST(layer.weight().shape() == Shape({6, 2, 3, 2}));
  V x = leaf(uniform({2, 4, 7, 5}));
  BOOST_TEST(layer(x).shape() == Shape({2, 6, 2, 6}));
  BOOST_TEST(passed(nn::gradcheck_module(layer, x, ad::test::second_order())));
  for (double w : layer.weight().value()) BOOST_TEST(std::abs(w) <= 1 / std::sqrt(12.0));
  BOOST_CHECK_EXCEPTION(nn::Conv2d<double>(4, 6, {3, 3}, rng,
                                           [] {
                                             ad::ConvOptions bad;
                                             bad.groups = 4;
                                             return bad;
                                           }()),
                        ad::Error, [](const ad::Error& e) {
                          return std::string(e.what()).find(
                                     "Conv2d: 4 groups must divide the 4 "
                                     "input and 6 output channels") != std::string::npos;
                        });
}

BOOST_AUTO_TEST_CASE(conv1d_matches_its_definition) {
  nn::Generator rng(12);
  nn::Conv1d<double> layer(4, 2, 3, rng, /*stride=*/2, /*padding=*/1, /*dilation=*/2,
                           /*groups=*/2);
  const Array<double> x = uniform({3, 4, 9});
  const Array<double> y = layer(V(x)).value();
  const std::size_t lo = (9 + 2 - 2 * 2 - 1) / 2 + 1;
  BOOST_REQUIRE(y.shape() == Shape({3, 2, lo}));
  const Array<double> w = layer.weight().value();
  Array<double> b;
  for (const auto& [name, p] : layer.named_parameters())
    if (name == "bias") b = p.value();
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t f = 0; f < 2; ++f)
      for (std::size_t t = 0; t < lo; ++t) {
        double want = b(f);
        for (std::size_t c = 0; c < 2; ++c)  // input channels of f's group
          for (std::size_t k = 0; k < 3; ++k) {
            const long at = long(t * 2 + k * 2) - 1;
            if (at >= 0 && at < 9) want += x(n, f * 2 + c, std::size_t(at)) * w(f, c, k);
          }
        BOOST_TEST(y(n, f, t) == want, tt::tolerance(1e-12));
      }
  BOOST_TEST(passed(nn::gradcheck_module(layer, leaf(x), ad::test::second_order())));
  BOOST_CHECK_EXCEPTION(layer(V(uniform({3, 3, 9}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("Conv1d: input (3,3,9) is not (N, 4, L)") !=
           std::string::npos;
  });
  nn::Conv1d<double> no_bias(2, 3, 2, rng, 1, 0, 1, 1, false);
  BOOST_TEST(no_bias.parameters().size() == 1u);
}

BOOST_AUTO_TEST_CASE(pooling_away_from_ties) {
  Array<double> a = xt::arange<double>(2 * 3 * 4 * 4);
  std::shuffle(a.begin(), a.end(), std::mt19937(5));
  a.reshape({2, 3, 4, 4});
  V x = leaf(a / 96.0);
  nn::MaxPool2d<double> maxpool(2);
  nn::AvgPool2d<double> avgpool(2);
  nn::MaxPool2d<double> overlapping(3, 1, 1);
  BOOST_TEST(maxpool(x).shape() == Shape({2, 3, 2, 2}));
  BOOST_TEST(passed(nn::gradcheck_module(maxpool, x)));
  BOOST_TEST(passed(nn::gradcheck_module(avgpool, x)));
  BOOST_TEST(passed(nn::gradcheck_module(overlapping, x)));
}

BOOST_AUTO_TEST_CASE(flatten) {
  nn::Flatten<double> layer;
  V x = leaf(uniform({2, 3, 4}));
  BOOST_TEST(layer(x).shape() == Shape({2, 12}));
  BOOST_TEST(passed(nn::gradcheck_module(layer, x)));
}

BOOST_AUTO_TEST_CASE(dropout) {
  nn::Dropout<double> layer(0.3, 7);
  V x = leaf(uniform({40, 50}, 0.5, 1.0));
  Array<double> y = layer(x).value();
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y.data()[i] == 0)
      ++zeros;
    else
      BOOST_TEST(y.data()[i] == x.value().data()[i] / 0.7, tt::tolerance(1e-12));
  }
  BOOST_TEST(zeros > 500u);  // about 600 of 2000
  BOOST_TEST(zeros < 700u);
  // Reset the stream before each forward so that the check sees one function.
  auto reset = [&] { (*layer.named_states()[0].second)(0) = 0; };
  BOOST_TEST(passed(nn::gradcheck_module(layer, leaf(uniform({4, 5})), {}, reset)));
  layer.eval();
  BOOST_TEST(layer(x).value() == x.value());
  BOOST_CHECK_THROW(nn::Dropout<double>(1.5), ad::Error);
}

BOOST_AUTO_TEST_CASE(layer_norm) {
  nn::LayerNorm<double> ln({4});
  V x = leaf(uniform({3, 4}, -2, 2));
  // Random weight and bias, so that the check covers them.
  ln.named_parameters()[0].second.mutable_value() = uniform({4}, 0.5, 1.5, 3);
  ln.named_parameters()[1].second.mutable_value() = uniform({4}, -0.5, 0.5, 4);
  ad::GradcheckOptions o;
  o.second_order = true;
  BOOST_TEST(passed(nn::gradcheck_module(ln, x, o)));
  // Without affine: each row has mean 0 and (biased) variance 1/(1 + eps/var).
  nn::LayerNorm<double> plain({2, 3}, 1e-5, false);
  BOOST_TEST(plain.named_parameters().empty());
  V img = leaf(uniform({2, 2, 3}, -2, 2, 5));
  Array<double> y = plain(img).value();
  for (std::size_t n = 0; n < 2; ++n) {
    double m = 0, v = 0, raw_m = 0, raw_v = 0;
    for (std::size_t i = 0; i < 6; ++i) {
      m += y.data()[n * 6 + i] / 6;
      raw_m += img.value().data()[n * 6 + i] / 6;
    }
    for (std::size_t i = 0; i < 6; ++i) {
      v += (y.data()[n * 6 + i] - m) * (y.data()[n * 6 + i] - m) / 6;
      raw_v +=
          (img.value().data()[n * 6 + i] - raw_m) * (img.value().data()[n * 6 + i] - raw_m) / 6;
    }
    BOOST_TEST(m == 0.0, tt::tolerance(1e-12));
    BOOST_TEST(v == raw_v / (raw_v + 1e-5), tt::tolerance(1e-12));
  }
  BOOST_TEST(passed(nn::gradcheck_module(plain, img, o)));
  BOOST_CHECK_EXCEPTION(ln(leaf(uniform({3, 5}))), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()) ==
           "LayerNorm: input (3,5) does not end in the normalised shape (4)";
  });
  BOOST_CHECK_THROW(nn::LayerNorm<double>(ad::Shape{}), ad::Error);
}

BOOST_AUTO_TEST_CASE(group_norm) {
  nn::GroupNorm<double> gn(2, 4);
  gn.named_parameters()[0].second.mutable_value() = uniform({4}, 0.5, 1.5, 6);
  gn.named_parameters()[1].second.mutable_value() = uniform({4}, -0.5, 0.5, 7);
  V x = leaf(uniform({2, 4, 2, 2}, -2, 2, 8));
  ad::GradcheckOptions o;
  o.second_order = true;
  BOOST_TEST(passed(nn::gradcheck_module(gn, x, o)));
  // One group is LayerNorm over (C, H, W), without affine.
  nn::GroupNorm<double> one(1, 4, 1e-5, false);
  nn::LayerNorm<double> ln({4, 2, 2}, 1e-5, false);
  BOOST_TEST(ad::test::all_close(one(x).value(), ln(x).value(), 1e-14, 1e-14));
  // Group 0 of sample 1 is channels 0 and 1: its values have mean 0 after the layer.
  nn::GroupNorm<double> bare(2, 4, 1e-5, false);
  Array<double> y = bare(x).value();
  double m = 0;
  for (std::size_t i = 0; i < 8; ++i) m += y.data()[16 + i];
  BOOST_TEST(m == 0.0, tt::tolerance(1e-12));
  BOOST_CHECK_THROW(nn::GroupNorm<double>(3, 4), ad::Error);
  BOOST_CHECK_THROW(gn(leaf(uniform({2, 3, 2}))), ad::Error);
}

BOOST_AUTO_TEST_CASE(batchnorm_train_and_eval) {
  nn::BatchNorm1d<double> bn1(3);
  V x = leaf(uniform({6, 3}, -2, 2));
  BOOST_TEST(passed(nn::gradcheck_module(bn1, x)));
  // Training output: each feature has mean 0 and variance 1 (weight 1, bias 0).
  Array<double> y = bn1(x).value();
  for (std::size_t c = 0; c < 3; ++c) {
    double m = 0, v = 0;
    for (std::size_t i = 0; i < 6; ++i) m += y(i, c) / 6;
    for (std::size_t i = 0; i < 6; ++i) v += (y(i, c) - m) * (y(i, c) - m) / 6;
    BOOST_TEST(m == 0.0, tt::tolerance(1e-9));
    BOOST_TEST(v == 1.0, tt::tolerance(1e-4));
  }
  nn::BatchNorm2d<double> bn2(2);
  V img = leaf(uniform({3, 2, 3, 3}, -2, 2));
  BOOST_TEST(passed(nn::gradcheck_module(bn2, img)));
  // Running statistics: after one batch, mean = 0.1·batch mean, var = 0.9 + 0.1·unbiased var.
  nn::BatchNorm1d<double> fresh(3);
  fresh(x);
  double mean0 = 0;
  for (std::size_t i = 0; i < 6; ++i) mean0 += x.value()(i, 0) / 6;
  BOOST_TEST(fresh.running_mean()(0) == 0.1 * mean0, tt::tolerance(1e-12));
  fresh.eval();
  BOOST_TEST(passed(nn::gradcheck_module(fresh, x)));
  Array<double> ye = fresh(x).value();
  BOOST_TEST(ye(2, 1) == (x.value()(2, 1) - fresh.running_mean()(1)) /
                             std::sqrt(fresh.running_var()(1) + 1e-5),
             tt::tolerance(1e-12));
  BOOST_CHECK_THROW(bn1(leaf(uniform({6, 4}))), ad::Error);
  BOOST_CHECK_THROW(bn2(leaf(uniform({6, 2}))), ad::Error);
}

BOOST_AUTO_TEST_CASE(embedding) {
  nn::Generator rng(3);
  nn::Embedding<double> layer(5, 3, rng);
  V ids(Array<double>{{1, 4}, {0, 1}});
  V y = layer(ids);
  BOOST_TEST(y.shape() == Shape({2, 2, 3}));
  BOOST_TEST(y.value()(0, 1, 2) == layer.weight().value()(4, 2));
  BOOST_TEST(passed(nn::gradcheck_module(layer, ids)));
  BOOST_CHECK_THROW(layer(V(Array<double>{5.0})), ad::Error);
  BOOST_CHECK_THROW(layer(V(Array<double>{1.5})), ad::Error);
}

BOOST_AUTO_TEST_CASE(activations) {
  V x = leaf(ad::test::away_from_zero({3, 4}, 0.1, 2.0));
  nn::ReLU<double> relu;
  nn::LeakyReLU<double> leaky(0.2);
  nn::Tanh<double> tanh;
  nn::Sigmoid<double> sigmoid;
  nn::GELU<double> gelu;
  nn::Softmax<double> softmax;
  for (nn::Module<double>* m :
       std::vector<nn::Module<double>*>{&relu, &leaky, &tanh, &sigmoid, &gelu, &softmax})
    BOOST_TEST(passed(nn::gradcheck_module(*m, x, ad::test::second_order())));
  // GELU(1) = Φ(1) ≈ 0.8413447
  BOOST_TEST(gelu(V(Array<double>{1.0})).value()(0) == 0.8413447460685429, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(sequential_model) {
  nn::Generator rng(4);
  nn::Sequential<double> model(
      std::make_shared<nn::Conv2d<double>>(1, 2, 3, rng, 1, 1),
      std::make_shared<nn::ReLU<double>>(), std::make_shared<nn::AvgPool2d<double>>(2),
      std::make_shared<nn::Flatten<double>>(), std::make_shared<nn::Linear<double>>(8, 3, rng));
  V x = leaf(uniform({2, 1, 4, 4}));
  BOOST_TEST(passed(nn::gradcheck_module(model, x)));
}

namespace {
/// A module whose output is undefined (a bug in a user's module).
struct Undefined : nn::Module<double> {
  V forward(const V&) override { return V(); }
};
}  // namespace

BOOST_AUTO_TEST_CASE(sequential_hands_each_output_on_as_it_is) {
  nn::Generator rng(5);
  V x = leaf(uniform({2, 3}));
  // An undefined output reaches the next module (which refuses it, naming it), never x again.
  nn::Sequential<double> broken(std::make_shared<Undefined>(),
                                std::make_shared<nn::Linear<double>>(3, 3, rng));
  BOOST_CHECK_THROW(broken.forward(x), ad::Error);
  nn::Sequential<double> last(std::make_shared<nn::ReLU<double>>(), std::make_shared<Undefined>());
  BOOST_TEST(!last.forward(x).defined());
  nn::Sequential<double> empty;
  BOOST_TEST(empty.forward(x).impl_ptr() == x.impl_ptr());
}

BOOST_AUTO_TEST_SUITE_END()
