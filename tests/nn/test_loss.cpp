// Losses: values by hand, gradchecks in double, and refusal of silent broadcasting.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "nn/loss.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
namespace nn = ad::nn;
using V = ad::Variable<double>;

BOOST_AUTO_TEST_SUITE(loss)

BOOST_AUTO_TEST_CASE(mse_reductions_and_the_classic_half_sum) {
  V p(Array<double>{1.0, 2.0, 4.0});
  V y(Array<double>{0.0, 2.0, 1.0});
  BOOST_TEST(nn::mse_loss(p, y, nn::Reduction::sum).item() == 10.0);
  BOOST_TEST(nn::mse_loss(p, y).item() == 10.0 / 3, tt::tolerance(1e-12));
  BOOST_TEST(nn::mse_loss(p, y, nn::Reduction::half_sum).item() == 5.0);  // E = ½Σ(y − ŷ)²
  BOOST_TEST(nn::mse_loss(p, y, nn::Reduction::none).value() == (Array<double>{1.0, 0.0, 9.0}));
  for (auto r : {nn::Reduction::mean, nn::Reduction::sum, nn::Reduction::half_sum}) {
    auto f = [r](const auto& p, const auto& y) { return nn::mse_loss(p, y, r); };
    BOOST_TEST(
        passed(ad::gradcheck(f, {leaf(uniform({4, 2}, -1, 1, 1)), leaf(uniform({4, 2}, -1, 1, 2))},
                             ad::test::second_order())));
  }
}

BOOST_AUTO_TEST_CASE(no_silent_broadcasting) {
  V p(Array<double>(xt::zeros<double>({4, 1})));
  V y(Array<double>(xt::zeros<double>({4})));
  BOOST_CHECK_EXCEPTION(nn::mse_loss(p, y), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("mse_loss") == 0 && m.find("(4,1)") != std::string::npos &&
           m.find("(4)") != std::string::npos;
  });
  BOOST_CHECK_THROW(nn::binary_cross_entropy_with_logits(p, y), ad::Error);
  BOOST_CHECK_THROW(nn::probability_cross_entropy(p, y), ad::Error);
}

BOOST_AUTO_TEST_CASE(cross_entropy_on_logits) {
  V z = leaf(uniform({4, 5}, -2, 2));
  std::vector<std::size_t> labels{1, 4, 0, 1};
  // Value: mean of lse(z_i) − z_i[label].
  double want = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    double s = 0;
    for (std::size_t j = 0; j < 5; ++j) s += std::exp(z.value()(i, j));
    want += (std::log(s) - z.value()(i, labels[i])) / 4;
  }
  BOOST_TEST(nn::cross_entropy(z, labels).item() == want, tt::tolerance(1e-12));
  // Labels as values (what a DataLoader gives), (N) or (N, 1).
  BOOST_TEST(nn::cross_entropy(z, V(Array<double>{1, 4, 0, 1})).item() == want,
             tt::tolerance(1e-12));
  Array<double> column{1, 4, 0, 1};
  column.reshape({4, 1});
  BOOST_TEST(nn::cross_entropy(z, V(column)).item() == want, tt::tolerance(1e-12));
  nn::CrossEntropyOptions<double> smooth;
  smooth.label_smoothing = 0.2;
  nn::CrossEntropyOptions<double> weighted;
  weighted.class_weights = {1.0, 2.0, 0.5, 1.0, 3.0};
  nn::CrossEntropyOptions<double> summed;
  summed.reduction = nn::Reduction::sum;
  for (const auto& o : {nn::CrossEntropyOptions<double>{}, smooth, weighted, summed}) {
    auto f = [&](const auto& z) {
      using T = typename std::decay_t<decltype(z)>::value_type;
      nn::CrossEntropyOptions<T> ot{o.reduction, o.label_smoothing, o.class_weights};
      return nn::cross_entropy(z, labels, ot);
    };
    BOOST_TEST(passed(ad::gradcheck(f, {z}, ad::test::second_order())));
  }
  // Class weights with mean: Σ w·loss / Σ w.
  Array<double> per = nn::cross_entropy(z, labels, {nn::Reduction::none, 0.0, {}}).value();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    num += weighted.class_weights[labels[i]] * per(i);
    den += weighted.class_weights[labels[i]];
  }
  BOOST_TEST(nn::cross_entropy(z, labels, weighted).item() == num / den, tt::tolerance(1e-12));
  BOOST_CHECK_EXCEPTION(
      nn::cross_entropy(z, V(Array<double>{1, 5, 0, 1})), ad::Error, [](const ad::Error& e) {
        return std::string(e.what()).find("label 5 at row 1") != std::string::npos;
      });
  BOOST_CHECK_THROW(nn::cross_entropy(z, V(Array<double>{1, 0.5, 0, 1})), ad::Error);
  BOOST_CHECK_THROW(nn::cross_entropy(z, std::vector<std::size_t>{1, 2}), ad::Error);
}

BOOST_AUTO_TEST_CASE(nll_matches_cross_entropy) {
  V z = leaf(uniform({3, 4}, -2, 2));
  std::vector<std::size_t> labels{3, 0, 2};
  BOOST_TEST(nn::nll_loss(ad::log_softmax(z), labels).item() == nn::cross_entropy(z, labels).item(),
             tt::tolerance(1e-12));
  auto f = [&](const auto& lp) { return nn::nll_loss(lp, labels); };
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(uniform({3, 4}, -3, -0.1))})));
}

BOOST_AUTO_TEST_CASE(classic_probability_cross_entropy) {
  // E = −Σ y·log(ŷ + δ), δ = 1e-7
  V probs(Array<double>{{0.7, 0.2, 0.1}, {0.1, 0.1, 0.8}});
  V onehot(Array<double>{{1, 0, 0}, {0, 0, 1}});
  const double want = -(std::log(0.7 + 1e-7) + std::log(0.8 + 1e-7));
  BOOST_TEST(nn::probability_cross_entropy(probs, onehot, nn::Reduction::sum).item() == want,
             tt::tolerance(1e-12));
  BOOST_TEST(nn::probability_cross_entropy(probs, onehot).item() == want / 2, tt::tolerance(1e-12));
  BOOST_TEST(
      nn::probability_cross_entropy(probs, std::vector<std::size_t>{0, 2}, nn::Reduction::sum)
              .item() == want,
      tt::tolerance(1e-12));
  // A zero probability stays finite thanks to δ.
  V zero(Array<double>{{1.0, 0.0}});
  BOOST_TEST(
      std::isfinite(nn::probability_cross_entropy(zero, V(Array<double>{{0.0, 1.0}})).item()));
  auto f = [](const auto& p, const auto& y) { return nn::probability_cross_entropy(p, y); };
  BOOST_TEST(
      passed(ad::gradcheck(f, {leaf(uniform({3, 4}, 0.1, 1.0)), leaf(uniform({3, 4}, 0, 1, 3))},
                           ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(binary_cross_entropy_with_logits) {
  V z = leaf(uniform({5}, -3, 3));
  V y(Array<double>{0, 1, 1, 0, 0.3});
  double want = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    const double s = 1 / (1 + std::exp(-z.value()(i)));
    want -= (y.value()(i) * std::log(s) + (1 - y.value()(i)) * std::log(1 - s)) / 5;
  }
  BOOST_TEST(nn::binary_cross_entropy_with_logits(z, y).item() == want, tt::tolerance(1e-12));
  V huge(Array<double>{1000.0, -1000.0});
  BOOST_TEST(nn::binary_cross_entropy_with_logits(huge, V(Array<double>{1.0, 0.0})).item() == 0.0);
  auto f = [&](const auto& z) {
    using T = typename std::decay_t<decltype(z)>::value_type;
    return nn::binary_cross_entropy_with_logits(z, ad::Variable<T>(Array<T>(y.value())));
  };
  BOOST_TEST(passed(ad::gradcheck(f, {z}, ad::test::second_order())));
}

BOOST_AUTO_TEST_SUITE_END()
