// Initialisers: bounds and spreads, and reproducibility from the seed.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "nn/init.hpp"

namespace tt = boost::test_tools;
using ad::Array;
namespace nn = ad::nn;

namespace {
double spread(const Array<double>& a) {
  const double m = xt::mean(a)();
  return std::sqrt(double(xt::mean(xt::square(a - m))()));
}
}  // namespace

BOOST_AUTO_TEST_SUITE(init)

BOOST_AUTO_TEST_CASE(fans) {
  BOOST_TEST(nn::init::fans({256, 784}).first == 784u);
  BOOST_TEST(nn::init::fans({256, 784}).second == 256u);
  BOOST_TEST(nn::init::fans({16, 3, 5, 5}).first == 75u);
  BOOST_TEST(nn::init::fans({16, 3, 5, 5}).second == 400u);
  BOOST_CHECK_THROW(nn::init::fans({5}), ad::Error);
}

BOOST_AUTO_TEST_CASE(xavier_and_kaiming) {
  nn::Generator rng(1);
  Array<double> w = xt::zeros<double>({200, 300});
  nn::init::xavier_uniform(w, rng);
  const double xb = std::sqrt(6.0 / 500);
  BOOST_TEST(xt::amax(xt::abs(w))() <= xb);
  BOOST_TEST(spread(w) == xb / std::sqrt(3.0), tt::tolerance(0.02));
  nn::init::xavier_normal(w, rng);
  BOOST_TEST(spread(w) == std::sqrt(2.0 / 500), tt::tolerance(0.02));
  nn::init::kaiming_uniform(w, rng);
  BOOST_TEST(xt::amax(xt::abs(w))() <= std::sqrt(6.0 / 300));
  nn::init::kaiming_normal(w, rng, 0.0, nn::init::FanMode::fan_out);
  BOOST_TEST(spread(w) == std::sqrt(2.0 / 200), tt::tolerance(0.02));
  nn::init::constant(w, 0.5);
  BOOST_TEST(xt::amin(w)() == 0.5);
  nn::init::zeros(w);
  BOOST_TEST(xt::amax(xt::abs(w))() == 0.0);
}

BOOST_AUTO_TEST_CASE(same_seed_same_weights) {
  Array<float> a = xt::zeros<float>({10, 10}), b = a;
  nn::Generator r1(7), r2(7);
  nn::init::kaiming_normal(a, r1);
  nn::init::kaiming_normal(b, r2);
  BOOST_TEST(a == b);
}

BOOST_AUTO_TEST_SUITE_END()
