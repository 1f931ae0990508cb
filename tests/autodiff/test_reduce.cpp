// Reductions and the softmax family.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include <xtensor/xview.hpp>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

BOOST_AUTO_TEST_SUITE(reduce)

BOOST_AUTO_TEST_CASE(sum_and_mean_over_axes) {
  V a = leaf(uniform({2, 3, 4}));
  for (bool keep : {false, true}) {
    for (std::vector<long> axes : std::vector<std::vector<long>>{{0}, {1}, {-1}, {0, 2}, {}}) {
      BOOST_TEST_CONTEXT("axes size " << axes.size() << " keepdims " << keep) {
        auto s = [&](const auto& a) { return ad::sum(a, axes, keep); };
        auto m = [&](const auto& a) { return ad::mean(a, axes, keep); };
        BOOST_TEST(passed(ad::gradcheck(s, {a}, ad::test::second_order())));
        BOOST_TEST(passed(ad::gradcheck(m, {a})));
      }
    }
  }
  BOOST_TEST(ad::sum(a, {1}).shape() == Shape({2, 4}));
  BOOST_TEST(ad::sum(a, {1}, true).shape() == Shape({2, 1, 4}));
  BOOST_TEST(ad::sum(a).shape() == Shape{});
  BOOST_TEST(ad::sum(a).item() == xt::sum(a.value())(), tt::tolerance(1e-12));
  BOOST_TEST(ad::mean(a).item() == xt::mean(a.value())(), tt::tolerance(1e-12));
  BOOST_TEST(ad::mean(a, {0, 2}).value()(1) == xt::mean(xt::view(a.value(), xt::all(), 1))(),
             tt::tolerance(1e-12));
  BOOST_TEST(
      passed(ad::gradcheck([](const auto& a) { return ad::sum(a); }, {leaf(Array<double>(1.5))})));
  BOOST_CHECK_EXCEPTION(ad::sum(a, {3}), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("sum: axis 3") == 0 && m.find("(2,3,4)") != std::string::npos;
  });
  BOOST_CHECK_THROW(ad::sum(a, {1, 1}), ad::Error);
}

BOOST_AUTO_TEST_CASE(float_sums_are_pairwise) {
  // 10⁶ floats of [0, 1): the sum against the double sum, within a few units of float's rounding
  // of the result (in order, the error grows with the count: about 1e-4 relative here).
  Array<float> a = ad::test::uniform<float>({1000000}, 0, 1, 5);
  double exact = 0;
  for (float v : a) exact += v;
  auto within = [&](double got, double want, double ulps) {
    return std::abs(got - want) <= ulps * std::numeric_limits<float>::epsilon() * std::abs(want);
  };
  const double total = ad::sum(ad::Variable<float>(a)).item();
  BOOST_TEST(within(total, exact, 8), total << " against " << exact);
  // The same numbers as (1000, 1000) summed over each axis, and over both.
  ad::Variable<float> m(Array<float>(xt::reshape_view(a, {1000, 1000})));
  for (long axis : {0L, 1L}) {
    const Array<float> s = ad::sum(m, {axis}).value();
    for (std::size_t i = 0; i < 1000; i += 97) {
      double want = 0;
      for (std::size_t j = 0; j < 1000; ++j) want += axis == 0 ? m.value()(j, i) : m.value()(i, j);
      BOOST_TEST(within(s(i), want, 4), "axis " << axis << " entry " << i);
    }
  }
  // The gradient summed back over a broadcast axis: 990 copies of 0.19499 (193.0411 in order,
  // 65 units off; 193.0396 exact).
  ad::Variable<float> x(Array<float>({1}, 1.0f), true);
  ad::Variable<float> g(Array<float>({990, 1}, 0.19499f));
  (x * ad::Variable<float>(Array<float>({990, 1}, 1.0f))).backward(g);
  const double want = 990 * double(0.19499f);
  BOOST_TEST(within(x.grad().value()(0), want, 2), x.grad().value()(0) << " against " << want);
  // A middle axis reduced (runs along the last axis added in turn along the middle one).
  Array<float> b = ad::test::uniform<float>({3, 4000, 5}, 0, 1, 6);
  const Array<float> mid = ad::sum(ad::Variable<float>(b), {1}).value();
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t k = 0; k < 5; ++k) {
      double want = 0;
      for (std::size_t j = 0; j < 4000; ++j) want += b(i, j, k);
      BOOST_TEST(within(mid(i, k), want, 4), i << "," << k);
    }
}

BOOST_AUTO_TEST_CASE(max_and_min_away_from_ties) {
  V a = leaf(uniform({3, 4}, -1, 1, 5));
  for (bool keep : {false, true}) {
    auto mx = [keep](const auto& a) { return ad::max(a, {1}, keep); };
    auto mn = [keep](const auto& a) { return ad::min(a, {0}, keep); };
    BOOST_TEST(passed(ad::gradcheck(mx, {a}, ad::test::second_order())));
    BOOST_TEST(passed(ad::gradcheck(mn, {a}, ad::test::second_order())));
  }
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::max(a); }, {a})));
  BOOST_TEST(ad::max(a).item() == xt::amax(a.value())());
  BOOST_TEST(ad::min(a, {1}).value()(2) == xt::amin(xt::view(a.value(), 2))());
}

BOOST_AUTO_TEST_CASE(tied_maxima_share_the_gradient) {
  V a = leaf(Array<double>{1.0, 3.0, 3.0, 2.0});
  ad::max(a).backward();
  BOOST_TEST(a.grad().value() == (Array<double>{0.0, 0.5, 0.5, 0.0}));
  BOOST_CHECK_THROW(ad::max(V(Array<double>(xt::zeros<double>({0})))), ad::Error);
}

BOOST_AUTO_TEST_CASE(variance_and_standard_deviation) {
  V a = leaf(uniform({3, 4}));
  for (double correction : {0.0, 1.0})
    for (std::vector<long> axes : std::vector<std::vector<long>>{{}, {0}, {-1}}) {
      auto v = [&](const auto& x) { return ad::var(x, axes, correction, true); };
      auto s = [&](const auto& x) { return ad::std(x, axes, correction); };
      BOOST_TEST(passed(ad::gradcheck(v, {a}, ad::test::second_order())));
      BOOST_TEST(passed(ad::gradcheck(s, {a}, ad::test::second_order())));
    }
  // (1, 2, 3, 4): mean 2.5, Σ (x − 2.5)² = 5; unbiased 5/3, population 5/4.
  V x(Array<double>{1.0, 2.0, 3.0, 4.0});
  BOOST_TEST(ad::var(x).item() == 5.0 / 3, tt::tolerance(1e-15));
  BOOST_TEST(ad::var(x, {}, 0.0).item() == 1.25, tt::tolerance(1e-15));
  BOOST_TEST(ad::std(x, {}, 0.0).item() == std::sqrt(1.25), tt::tolerance(1e-15));
  BOOST_TEST(std::isnan(ad::var(V(Array<double>{2.0})).item()));  // 0 / (1 − 1), as NumPy
  // Where std is 0 its gradient is NaN (0/0), as in PyTorch.
  V same = leaf(Array<double>{2.0, 2.0, 2.0});
  ad::std(same).backward();
  for (double g : same.grad().value()) BOOST_TEST(std::isnan(g));
}

BOOST_AUTO_TEST_CASE(norms) {
  V a = leaf(ad::test::away_from_zero({3, 4}));
  for (double p : {1.0, 2.0, 3.0, HUGE_VAL})
    for (std::vector<long> axes : std::vector<std::vector<long>>{{}, {1}}) {
      auto n = [&](const auto& x) { return ad::norm(x, p, axes); };
      BOOST_TEST(passed(ad::gradcheck(n, {a}, ad::test::second_order())), "p = " << p);
    }
  V x(Array<double>{3.0, -4.0});
  BOOST_TEST(ad::norm(x).item() == 5.0);
  BOOST_TEST(ad::norm(x, 1.0).item() == 7.0);
  BOOST_TEST(ad::norm(x, HUGE_VAL).item() == 4.0);
  // The norm of a zero row has gradient 0 there (not NaN, as in PyTorch) for every p; the other
  // row's is sign(x)·|x|^(p−1)/|x|_p^(p−1) (x/|x| for p = 2).
  for (double p : {0.5, 1.5, 2.0, 3.0, HUGE_VAL}) {
    V z = leaf(Array<double>{{0.0, 0.0}, {3.0, -4.0}});
    ad::sum(ad::norm(z, p, {1})).backward();
    const double n = std::isinf(p) ? 4.0 : std::pow(std::pow(3.0, p) + std::pow(4.0, p), 1 / p);
    const Array<double> want =
        std::isinf(p)
            ? Array<double>{{0.0, 0.0}, {0.0, -1.0}}
            : Array<double>{{0.0, 0.0}, {std::pow(3.0 / n, p - 1), -std::pow(4.0 / n, p - 1)}};
    BOOST_TEST(ad::test::all_close(z.grad().value(), want, 1e-14, 0), "p = " << p);
  }
  BOOST_CHECK_THROW(ad::norm(x, 0.0), ad::Error);
  BOOST_CHECK_THROW(ad::norm(x, -1.0), ad::Error);
}

BOOST_AUTO_TEST_CASE(cumulative_sums) {
  V a = leaf(uniform({3, 4}));
  for (long axis : {0L, 1L, -1L})
    for (bool reverse : {false, true}) {
      auto c = [&](const auto& x) { return ad::cumsum(x, axis, reverse); };
      BOOST_TEST(passed(ad::gradcheck(c, {a}, ad::test::second_order())));
    }
  V x(Array<double>{1.0, 2.0, 3.0});
  BOOST_TEST(ad::cumsum(x, 0).value() == (Array<double>{1.0, 3.0, 6.0}));
  BOOST_TEST(ad::cumsum(x, 0, true).value() == (Array<double>{6.0, 5.0, 3.0}));
  BOOST_CHECK_THROW(ad::cumsum(x, 1), ad::Error);
}

BOOST_AUTO_TEST_CASE(argmax_and_argmin) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  V x(Array<double>{{1.0, 5.0, 5.0, -2.0}, {nan, 0.0, nan, 7.0}});
  BOOST_TEST(ad::argmax(x, 1).values() == (Array<std::size_t>{1, 0}));  // first tie; first NaN
  BOOST_TEST(ad::argmin(x, 1).values() == (Array<std::size_t>{3, 0}));
  BOOST_TEST(ad::argmax(x, 0, true).values() == (Array<std::size_t>{{1, 0, 1, 1}}));
  // The values at the maxima, differentiably.
  V y = leaf(Array<double>{{1.0, 5.0, 2.0}, {4.0, 0.0, 3.0}});
  ad::sum(ad::gather(y, 1, ad::argmax(y, 1, true))).backward();
  BOOST_TEST(y.grad().value() == (Array<double>{{0.0, 1.0, 0.0}, {1.0, 0.0, 0.0}}));
  BOOST_CHECK_THROW(ad::argmax(V(Array<double>::from_shape({2, 0})), 1), ad::Error);
  BOOST_CHECK_THROW(ad::argmin(x, 2), ad::Error);
}

BOOST_AUTO_TEST_CASE(log_sum_exp_is_stable) {
  V a = leaf(uniform({3, 4}, -2, 2));
  for (std::vector<long> axes : std::vector<std::vector<long>>{{1}, {0}, {}}) {
    auto f = [&axes](const auto& a) { return ad::log_sum_exp(a, axes); };
    BOOST_TEST(passed(ad::gradcheck(f, {a}, ad::test::second_order())));
  }
  V big(Array<double>{1000.0, 1000.0});
  BOOST_TEST(ad::log_sum_exp(big).item() == 1000.0 + std::log(2.0), tt::tolerance(1e-14));
  V small(Array<double>{-1000.0, -1000.0});
  BOOST_TEST(ad::log_sum_exp(small).item() == -1000.0 + std::log(2.0), tt::tolerance(1e-14));
  BOOST_TEST(ad::log_sum_exp(a, {1}, true).shape() == Shape({3, 1}));
}

BOOST_AUTO_TEST_CASE(softmax_and_log_softmax) {
  V a = leaf(uniform({3, 4}, -2, 2));
  for (long axis : {0L, 1L, -1L}) {
    auto ls = [axis](const auto& a) { return ad::log_softmax(a, axis); };
    auto sm = [axis](const auto& a) { return ad::softmax(a, axis); };
    BOOST_TEST(passed(ad::gradcheck(ls, {a}, ad::test::second_order())));
    BOOST_TEST(passed(ad::gradcheck(sm, {a}, ad::test::second_order())));
  }
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::log_softmax(a, 1); },
                                  {leaf(uniform({2, 3, 4}))})));
  Array<double> p = ad::softmax(a).value();
  for (std::size_t i = 0; i < 3; ++i)
    BOOST_TEST(xt::sum(xt::view(p, i))() == 1.0, tt::tolerance(1e-12));
  V big(Array<double>{{1000.0, 0.0}});
  BOOST_TEST(ad::log_softmax(big).value()(0, 1) == -1000.0, tt::tolerance(1e-12));
  BOOST_TEST(ad::softmax(big).value()(0, 0) == 1.0);
  BOOST_CHECK_THROW(ad::log_softmax(a, 2), ad::Error);
}

BOOST_AUTO_TEST_CASE(cross_entropy_by_composition) {
  // -mean(log_softmax(logits)[label]): the classic loss, built from primitives.
  V logits = leaf(uniform({4, 5}, -2, 2));
  ad::Index labels = ad::test::index_of({1, 4, 0, 1}, {4, 1});
  auto f = [&labels](const auto& z) {
    return -ad::mean(ad::gather(ad::log_softmax(z), 1, labels));
  };
  BOOST_TEST(passed(ad::gradcheck(f, {logits}, ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(fused_squared_distance) {
  V a = leaf(uniform({3, 4}, -1, 1, 1)), b = leaf(uniform({3, 4}, -1, 1, 2));
  auto f = [](const auto& a, const auto& b) { return ad::squared_distance(a, b); };
  BOOST_TEST(passed(ad::gradcheck(f, {a, b}, ad::test::second_order())));
  BOOST_TEST(ad::squared_distance(a, b).item() == xt::sum(xt::square(a.value() - b.value()))(),
             tt::tolerance(1e-12));
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(Array<double>(0.5)), leaf(Array<double>(-1.0))})));
  BOOST_CHECK_THROW(ad::squared_distance(a, leaf(uniform({4}))), ad::Error);
  // scaled (mse_loss's mean): the value and both orders of derivatives carry the scale
  auto scaled = [](const auto& a, const auto& b) { return ad::squared_distance(a, b, -0.3); };
  BOOST_TEST(passed(ad::gradcheck(scaled, {a, b}, ad::test::second_order())));
  BOOST_TEST(ad::squared_distance(a, b, -0.3).item() == -0.3 * ad::squared_distance(a, b).item(),
             tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(fused_softmax_cross_entropy) {
  V logits = leaf(uniform({4, 5}, -2, 2));
  std::vector<std::size_t> labels{1, 4, 0, 1};
  for (double eps : {0.0, 0.1}) {
    auto f = [&labels, eps](const auto& z) { return ad::softmax_cross_entropy(z, labels, eps); };
    BOOST_TEST(passed(ad::gradcheck(f, {logits}, ad::test::second_order())));
  }
  // Equal to the composite -log_softmax[label] without smoothing.
  Array<double> fused = ad::softmax_cross_entropy(logits, labels).value();
  Array<double> logp = ad::log_softmax(logits).value();
  for (std::size_t i = 0; i < 4; ++i)
    BOOST_TEST(fused(i) == -logp(i, labels[i]), tt::tolerance(1e-12));
  // Stable for huge logits.
  V big(Array<double>{{1000.0, -1000.0}});
  BOOST_TEST(ad::softmax_cross_entropy(big, {1}).item() == 2000.0, tt::tolerance(1e-12));
  BOOST_CHECK_EXCEPTION(ad::softmax_cross_entropy(logits, {1, 5, 0, 1}), ad::Error,
                        [](const ad::Error& e) {
                          std::string m = e.what();
                          return m.find("label 5 at row 1") != std::string::npos;
                        });
  BOOST_CHECK_THROW(ad::softmax_cross_entropy(logits, {1, 2}), ad::Error);
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_in_blocks_of_rows) {
  // The kernel takes rows of up to 128 classes a register's width at a time (4 doubles or 8
  // floats with AVX, a row a lane), the last block partial, and longer rows one at a time: at row
  // counts around those widths every row's loss is the composite's and the gradient passes
  // gradcheck.
  for (std::size_t n : {1, 3, 4, 5, 8, 9, 17})
    for (std::size_t k : {1, 3, 10, 129}) {
      BOOST_TEST_CONTEXT(n << " rows of " << k) {
        V z = leaf(uniform({n, k}, -3, 3, 10 * n + k));
        std::vector<std::size_t> labels(n);
        for (std::size_t i = 0; i < n; ++i) labels[i] = (7 * i + 1) % k;
        Array<double> fused = ad::softmax_cross_entropy(z, labels, 0.1).value();
        Array<double> logp = ad::log_softmax(z).value();
        for (std::size_t i = 0; i < n; ++i) {
          double want = 0;
          for (std::size_t j = 0; j < k; ++j)
            want -= ((j == labels[i] ? 0.9 : 0.0) + 0.1 / k) * logp(i, j);
          BOOST_TEST(fused(i) == want, tt::tolerance(1e-12));
        }
        auto f = [&labels](const auto& z) { return ad::softmax_cross_entropy(z, labels, 0.1); };
        BOOST_TEST(passed(ad::gradcheck(f, {z})));
      }
    }
  // A NaN in one row (of a full block, or a long row) makes that row's loss and gradient NaN,
  // and no other's.
  for (std::size_t k : {4, 130}) {
    Array<double> a = uniform({9, k}, -2, 2, 3);
    a(2, 1) = std::numeric_limits<double>::quiet_NaN();
    V z = leaf(a);
    V loss = ad::softmax_cross_entropy(z, {0, 1, 2, 3, 0, 1, 2, 3, 0});
    ad::sum(loss).backward();
    for (std::size_t i = 0; i < 9; ++i) {
      BOOST_TEST(std::isnan(loss.value()(i)) == (i == 2), k << " classes, row " << i);
      for (std::size_t j = 0; j < k; ++j)
        BOOST_TEST(std::isnan(z.grad().value()(i, j)) == (i == 2),
                   k << " classes, row " << i << " column " << j);
    }
  }
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_rows_that_would_overflow) {
  // A logit of 1000 (exp overflows) and logits of -inf (exp is 0), in a short row (a block's lane)
  // and in long ones (lanes of a row, the values past the last whole batch), the large value
  // among the lanes and in the tail: the loss is log Σ exp minus the label's logit all the same.
  const double inf = std::numeric_limits<double>::infinity();
  for (std::size_t k : {5, 130, 131, 203})
    for (std::size_t at : {std::size_t(0), k - 1}) {
      Array<double> a = xt::zeros<double>({std::size_t(2), k});
      a(0, at) = 1000;
      a(1, at) = 2;
      for (std::size_t j = 1; j + 1 < k; j += 2) a(1, j) = -inf;
      const std::size_t label = at == 0 ? 1 : 0;
      V loss = ad::softmax_cross_entropy(leaf(a), {label, at});
      std::size_t finite = 0;
      for (std::size_t j = 0; j < k; ++j) finite += std::isfinite(a(1, j)) && j != at;
      BOOST_TEST(loss.value()(0) == 1000.0 - a(0, label), tt::tolerance(1e-14));
      BOOST_TEST(loss.value()(1) == std::log(std::exp(2.0) + double(finite)) - 2.0,
                 tt::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_same_bits_on_one_and_two_threads) {
  // 1,000 rows of 10 are split between two threads: each row's arithmetic is its own lane's,
  // whichever block and thread it falls in, so the loss and the gradient are the same bits.
  using F = ad::Variable<float>;
  std::vector<std::size_t> labels(1000);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = i % 10;
  auto run = [&labels](int threads) {
    ad::set_num_threads(threads);
    F z(uniform<float>({1000, 10}, -4, 4, 5), true);
    F loss = ad::softmax_cross_entropy(z, labels, 0.05);
    ad::sum(loss * loss).backward();
    ad::set_num_threads(1);
    return std::pair<Array<float>, Array<float>>{loss.value(), z.grad().value()};
  };
  const auto one = run(1), two = run(2);
  BOOST_TEST(one.first == two.first);
  BOOST_TEST(one.second == two.second);
}

BOOST_AUTO_TEST_SUITE_END()
