// Dataset and DataLoader: batching, shuffling per epoch, drop_last, uint8 storage.
#include <boost/test/unit_test.hpp>

#include <set>

#include "helpers.hpp"
#include "nn/data.hpp"

using ad::Array;
using ad::Shape;
namespace nn = ad::nn;

namespace {

/// 10 samples of shape (2), input i = (i, 10 + i), target i.
std::shared_ptr<const nn::Dataset<float>> ten() {
  xt::xarray<float> x = xt::zeros<float>({10, 2});
  xt::xarray<float> y = xt::zeros<float>({10});
  for (std::size_t i = 0; i < 10; ++i) {
    x(i, 0) = float(i);
    x(i, 1) = float(10 + i);
    y(i) = float(i);
  }
  return std::make_shared<nn::Dataset<float>>(x, y);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(data)

BOOST_AUTO_TEST_CASE(batches_in_order_with_a_last_partial_one) {
  nn::LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  nn::DataLoader<float> loader(ten(), o);
  BOOST_TEST(loader.batches() == 3u);
  std::vector<std::size_t> sizes;
  float next = 0;
  for (const auto& b : loader.epoch(0)) {
    sizes.push_back(b.inputs.shape()[0]);
    for (std::size_t i = 0; i < b.inputs.shape()[0]; ++i) {
      BOOST_TEST(b.inputs.value()(i, 0) == next);
      BOOST_TEST(b.inputs.value()(i, 1) == next + 10);
      BOOST_TEST(b.targets.value()(i) == next);
      ++next;
    }
  }
  BOOST_TEST(sizes == (std::vector<std::size_t>{4, 4, 2}));
  o.drop_last = true;
  nn::DataLoader<float> dropping(ten(), o);
  BOOST_TEST(dropping.batches() == 2u);
}

BOOST_AUTO_TEST_CASE(a_batch_larger_than_the_data_is_one_partial_batch) {
  // Up to SIZE_MAX: the count of batches must not wrap around.
  for (const std::size_t size : {std::size_t{11}, std::size_t{1} << 40, SIZE_MAX - 4, SIZE_MAX}) {
    nn::LoaderOptions o;
    o.batch_size = size;
    o.shuffle = false;
    nn::DataLoader<float> loader(ten(), o);
    BOOST_TEST(loader.batches() == 1u, "batch size " << size);
    std::size_t seen = 0;
    for (const auto& b : loader.epoch(0)) seen += b.inputs.shape()[0];
    BOOST_TEST(seen == 10u);
    o.drop_last = true;
    BOOST_TEST(nn::DataLoader<float>(ten(), o).batches() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(seeded_shuffle_per_epoch) {
  nn::LoaderOptions o;
  o.batch_size = 3;
  o.seed = 42;
  nn::DataLoader<float> loader(ten(), o);
  auto e0 = loader.order(0), e1 = loader.order(1);
  BOOST_TEST(e0 != e1);                                        // a new order every epoch
  BOOST_TEST(e0 == nn::DataLoader<float>(ten(), o).order(0));  // the same for the same seed
  std::set<std::size_t> all(e0.begin(), e0.end());
  BOOST_TEST(all.size() == 10u);  // a permutation
  std::multiset<float> seen;
  for (const auto& b : loader.epoch(1))
    for (std::size_t i = 0; i < b.targets.size(); ++i) seen.insert(b.targets.value()(i));
  BOOST_TEST(seen.size() == 10u);
  BOOST_TEST(std::set<float>(seen.begin(), seen.end()).size() == 10u);
  o.seed = 43;
  BOOST_TEST(nn::DataLoader<float>(ten(), o).order(0) != e0);
}

BOOST_AUTO_TEST_CASE(uint8_storage_is_scaled_per_batch) {
  xt::xarray<std::uint8_t> images = xt::zeros<std::uint8_t>({3, 2, 2});
  images(1, 0, 1) = 255;
  images(2, 1, 1) = 51;
  auto data =
      std::make_shared<nn::Dataset<std::uint8_t>>(images, xt::xarray<float>{0, 1, 2}, 1.0 / 255);
  nn::LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = false;
  nn::DataLoader<float> loader(data, o);
  auto b = *loader.epoch(0).begin();
  BOOST_TEST(b.inputs.shape() == Shape({3, 2, 2}));
  BOOST_TEST(b.inputs.value()(1, 0, 1) == 1.0f);
  BOOST_TEST(b.inputs.value()(2, 1, 1) == 0.2f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(data->slice(1, 3).size() == 2u);
  BOOST_TEST(data->slice(1, 3).inputs()(0, 0, 1) == 255);
}

BOOST_AUTO_TEST_CASE(bad_input) {
  BOOST_CHECK_THROW(nn::Dataset<float>(xt::zeros<float>({3, 2}), xt::zeros<float>({4})), ad::Error);
  nn::LoaderOptions o;
  o.batch_size = 0;
  BOOST_CHECK_THROW(nn::DataLoader<float>(ten(), o), ad::Error);
  BOOST_CHECK_THROW(ten()->slice(5, 11), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
