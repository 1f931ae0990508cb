// Augmentation: random crops are shifts within the padding with a zero border, flips mirror,
// and a loader's transform depends only on (seed, epoch, sample), not on batches or shards.
#include <boost/test/unit_test.hpp>

#include <map>

#include <xtensor/xview.hpp>

#include "helpers.hpp"
#include "nn/nn.hpp"

using ad::Array;
using ad::Shape;
namespace nn = ad::nn;

namespace {

/// Images (n, 2, 5, 6) whose pixels are all different and nonzero.
std::shared_ptr<nn::Dataset<float>> images(std::size_t n) {
  Array<float> x = Array<float>::from_shape({n, 2, 5, 6});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 1.0f + float(i);
  Array<float> y = xt::zeros<float>({n});
  return std::make_shared<nn::Dataset<float>>(x, y);
}

/// The shift (dy, dx) that turns `in` into `out` (both (2, 5, 6)), zero border; none: (99, 99).
std::pair<int, int> shift_of(const float* in, const float* out) {
  for (int dy = -3; dy <= 3; ++dy)
    for (int dx = -3; dx <= 3; ++dx) {
      bool same = true;
      for (int c = 0; c < 2 && same; ++c)
        for (int i = 0; i < 5 && same; ++i)
          for (int j = 0; j < 6 && same; ++j) {
            const int si = i + dy, sj = j + dx;
            const float want =
                si >= 0 && si < 5 && sj >= 0 && sj < 6 ? in[(c * 5 + si) * 6 + sj] : 0.0f;
            same = out[(c * 5 + i) * 6 + j] == want;
          }
      if (same) return {dy, dx};
    }
  return {99, 99};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(augment)

BOOST_AUTO_TEST_CASE(random_crop_shifts_within_the_padding) {
  auto data = images(300);
  nn::LoaderOptions lo;
  lo.batch_size = 300;
  lo.shuffle = false;
  nn::DataLoader<float> loader(data, lo);
  loader.set_transform(nn::augment::random_crop<float>(2));
  auto batch = loader.batch(loader.order(0), 0);
  std::map<std::pair<int, int>, int> seen;
  for (std::size_t b = 0; b < 300; ++b) {
    const auto s = shift_of(data->inputs().data() + b * 60, batch.inputs.value().data() + b * 60);
    BOOST_TEST(std::abs(s.first) <= 2);
    BOOST_TEST(std::abs(s.second) <= 2);
    ++seen[s];
  }
  BOOST_TEST(seen.size() == 25u);  // every shift of [−2, 2]² occurs (300 draws of 25)
  // Both channels move alike (shift_of checks them together), and the targets are untouched.
  BOOST_TEST(batch.targets.value() == Array<float>(xt::zeros<float>({300})));
}

BOOST_AUTO_TEST_CASE(horizontal_flip_mirrors_about_half) {
  auto data = images(400);
  nn::LoaderOptions lo;
  lo.batch_size = 400;
  lo.shuffle = false;
  nn::DataLoader<float> loader(data, lo);
  loader.set_transform(nn::augment::horizontal_flip<float>());
  const Array<float> out = loader.batch(loader.order(0), 0).inputs.value();
  std::size_t flipped = 0;
  for (std::size_t b = 0; b < 400; ++b) {
    bool same = true, mirrored = true;
    for (std::size_t r = 0; r < 10; ++r)
      for (std::size_t j = 0; j < 6; ++j) {
        const float o = out.data()[b * 60 + r * 6 + j];
        same = same && o == data->inputs().data()[b * 60 + r * 6 + j];
        mirrored = mirrored && o == data->inputs().data()[b * 60 + r * 6 + 5 - j];
      }
    BOOST_TEST((same != mirrored));
    flipped += mirrored;
  }
  BOOST_TEST(flipped > 150u);  // Binomial(400, 0.5): 200 ± 20 is one deviation
  BOOST_TEST(flipped < 250u);
  // p = 1 always mirrors, p = 0 never.
  loader.set_transform(nn::augment::horizontal_flip<float>(1.0));
  BOOST_TEST(loader.batch(loader.order(0), 0).inputs.value()(0, 0, 0, 0) == 6.0f);
  loader.set_transform(nn::augment::horizontal_flip<float>(0.0));
  BOOST_TEST(loader.batch(loader.order(0), 0).inputs.value() == data->inputs());
}

BOOST_AUTO_TEST_CASE(a_sample_is_changed_the_same_way_whatever_the_batch_or_shard) {
  auto data = images(30);
  auto transform = nn::augment::compose<float>(
      {nn::augment::random_crop<float>(3), nn::augment::horizontal_flip<float>()});
  auto inputs_by_sample = [&](std::size_t batch, std::size_t shard, std::size_t shards,
                              std::size_t epoch) {
    nn::LoaderOptions lo;
    lo.batch_size = batch, lo.seed = 5, lo.shard = shard, lo.shards = shards;
    nn::DataLoader<float> loader(data, lo);
    loader.set_transform(transform);
    std::map<std::size_t, Array<float>> out;
    for (const auto& b : loader.epoch(epoch))
      for (std::size_t i = 0; i < b.samples.size(); ++i)
        out[b.samples[i]] = xt::view(b.inputs.value(), i);
    return out;
  };
  const auto whole = inputs_by_sample(30, 0, 1, 2);
  const auto small = inputs_by_sample(4, 0, 1, 2);
  auto sharded = inputs_by_sample(7, 0, 2, 2);
  for (auto& [k, v] : inputs_by_sample(7, 1, 2, 2)) sharded[k] = v;
  BOOST_REQUIRE(whole.size() == 30u);
  for (const auto& [k, v] : whole) {
    BOOST_TEST(small.at(k) == v);
    BOOST_TEST(sharded.at(k) == v);
  }
  // Another epoch draws again.
  const auto next = inputs_by_sample(30, 0, 1, 3);
  std::size_t differ = 0;
  for (const auto& [k, v] : whole) differ += next.at(k) != v;
  BOOST_TEST(differ > 15u);
}

BOOST_AUTO_TEST_CASE(bad_use_is_refused) {
  Array<float> flat = xt::ones<float>({4, 784});
  nn::DataLoader<float> loader(
      std::make_shared<nn::Dataset<float>>(flat, Array<float>(xt::zeros<float>({4}))),
      nn::LoaderOptions{});
  loader.set_transform(nn::augment::random_crop<float>(2));
  BOOST_CHECK_EXCEPTION(loader.batch(loader.order(0), 0), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("random_crop: a sample of shape (784) is not an image") !=
           std::string::npos;
  });
  BOOST_CHECK_THROW(nn::augment::horizontal_flip<float>(1.5), ad::Error);
  BOOST_CHECK_THROW(nn::augment::compose<float>({nullptr}), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
