// conv2d and its two adjoints, max and average pooling: values against loops, gradchecks.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

/// Direct-loop convolution, the reference.
Array<double> reference_conv(const Array<double>& x, const Array<double>& w, std::size_t s,
                             std::size_t p) {
  const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const std::size_t o = w.shape()[0], k = w.shape()[2];
  const std::size_t ho = (h + 2 * p - k) / s + 1, wo = (wd + 2 * p - k) / s + 1;
  Array<double> y = xt::zeros<double>({n, o, ho, wo});
  for (std::size_t b = 0; b < n; ++b)
    for (std::size_t f = 0; f < o; ++f)
      for (std::size_t i = 0; i < ho; ++i)
        for (std::size_t j = 0; j < wo; ++j)
          for (std::size_t ch = 0; ch < c; ++ch)
            for (std::size_t di = 0; di < k; ++di)
              for (std::size_t dj = 0; dj < k; ++dj) {
                long r = long(i * s + di) - long(p), q = long(j * s + dj) - long(p);
                if (r >= 0 && r < long(h) && q >= 0 && q < long(wd))
                  y(b, f, i, j) += x(b, ch, r, q) * w(f, ch, di, dj);
              }
  return y;
}

struct ConvCase {
  Shape x, w;
  std::size_t stride, pad;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(conv)

BOOST_AUTO_TEST_CASE(conv2d_values_and_gradients) {
  const std::vector<ConvCase> cases = {{{2, 1, 5, 5}, {3, 1, 3, 3}, 1, 0},
                                       {{2, 2, 6, 5}, {3, 2, 3, 3}, 2, 1},
                                       {{1, 3, 4, 4}, {2, 3, 1, 1}, 1, 0},
                                       {{1, 2, 5, 5}, {2, 2, 2, 2}, 2, 1},
                                       // "same" convolutions, which take a faster path
                                       {{2, 3, 5, 6}, {4, 3, 3, 3}, 1, 1},
                                       {{1, 2, 6, 6}, {2, 2, 5, 5}, 1, 2}};
  for (const auto& cs : cases) {
    BOOST_TEST_CONTEXT("x " << ad::shape_str(cs.x) << " w " << ad::shape_str(cs.w) << " stride "
                            << cs.stride << " pad " << cs.pad) {
      V x = leaf(uniform(cs.x, -1, 1, 1));
      V w = leaf(uniform(cs.w, -1, 1, 2));
      Array<double> want = reference_conv(x.value(), w.value(), cs.stride, cs.pad);
      Array<double> got = ad::conv2d(x, w, cs.stride, cs.pad).value();
      BOOST_TEST(got.shape() == want.shape(), tt::per_element());
      BOOST_TEST(ad::test::all_close(got, want));
      auto f = [&cs](const auto& x, const auto& w) { return ad::conv2d(x, w, cs.stride, cs.pad); };
      BOOST_TEST(passed(ad::gradcheck(f, {x, w}, ad::test::second_order())));
    }
  }
}

BOOST_AUTO_TEST_CASE(conv2d_adjoints_are_differentiable) {
  // Second order through the two adjoint ops themselves.
  V g = leaf(uniform({2, 3, 3, 3}, -1, 1, 3));
  V w = leaf(uniform({3, 2, 3, 3}, -1, 1, 4));
  V x = leaf(uniform({2, 2, 6, 5}, -1, 1, 5));
  auto in = [](const auto& g, const auto& w) {
    return ad::conv2d_input_grad(g, w, {2, 2, 6, 5}, 2, 1);
  };
  auto wg = [](const auto& x, const auto& g) {
    return ad::conv2d_weight_grad(x, g, {3, 2, 3, 3}, 2, 1);
  };
  BOOST_TEST(passed(ad::gradcheck(in, {g, w}, ad::test::second_order())));
  BOOST_TEST(passed(ad::gradcheck(wg, {x, g}, ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(conv2d_with_fused_bias) {
  V x = leaf(uniform({2, 2, 5, 5}, -1, 1, 6));
  V w = leaf(uniform({4, 2, 3, 3}, -1, 1, 7));
  V b = leaf(uniform({4}, -1, 1, 8));
  auto f = [](const auto& x, const auto& w, const auto& b) { return ad::conv2d(x, w, b, 2, 1); };
  BOOST_TEST(passed(ad::gradcheck(f, {x, w, b}, ad::test::second_order())));
  // The same as adding the bias by broadcasting.
  Array<double> fused = ad::conv2d(x, w, b, 1, 1).value();
  Array<double> composite = (ad::conv2d(x, w, 1, 1) + ad::reshape(b, {4, 1, 1})).value();
  BOOST_TEST(ad::test::all_close(fused, composite));
  BOOST_CHECK_THROW(ad::conv2d(x, w, leaf(uniform({3})), 1, 1), ad::Error);
  // The weight gradient from the kept patch matrix equals the recomputed one.
  ad::sum(ad::square(ad::conv2d(x, w, b, 1, 1))).backward();
  Array<double> kept = w.grad().value();
  auto again = ad::grad(ad::sum(ad::square(ad::conv2d(x, w, b, 1, 1))), {w},
                        ad::BackwardOptions{true, true})[0];
  BOOST_TEST(ad::test::all_close(kept, again.value()));
}

BOOST_AUTO_TEST_CASE(conv2d_empty_batch_and_no_output_channels) {
  // Nothing to multiply: the output is empty and the gradients are zeros of the right shapes.
  V x0 = leaf(uniform({0, 2, 4, 4})), w = leaf(uniform({3, 2, 3, 3})), b = leaf(uniform({3}));
  V y = ad::conv2d(x0, w, b, 1, 1);
  BOOST_TEST(y.shape() == Shape({0, 3, 4, 4}));
  ad::sum(y).backward();
  BOOST_TEST(w.grad().value() == xt::zeros<double>({3, 2, 3, 3}));
  BOOST_TEST(b.grad().value() == xt::zeros<double>({3}));
  V x = leaf(uniform({2, 2, 4, 4}));
  ad::sum(ad::conv2d(x, leaf(uniform({0, 2, 3, 3})), 1, 1)).backward();
  BOOST_TEST(x.grad().value() == xt::zeros<double>({2, 2, 4, 4}));
}

BOOST_AUTO_TEST_CASE(conv2d_errors) {
  V x = leaf(uniform({2, 3, 5, 5}));
  BOOST_CHECK_EXCEPTION(ad::conv2d(x, leaf(uniform({4, 2, 3, 3}))), ad::Error,
                        [](const ad::Error& e) {
                          std::string m = e.what();
                          return m.find("conv2d") == 0 && m.find("3 channels") != std::string::npos;
                        });
  BOOST_CHECK_THROW(ad::conv2d(leaf(uniform({3, 5, 5})), leaf(uniform({4, 3, 3, 3}))), ad::Error);
  BOOST_CHECK_THROW(ad::conv2d(x, leaf(uniform({4, 3, 7, 7}))), ad::Error);
  BOOST_CHECK_THROW(ad::conv2d(x, leaf(uniform({4, 3, 3, 0}))), ad::Error);
  BOOST_CHECK_THROW(ad::conv2d(x, leaf(uniform({4, 3, 3, 3})), 0), ad::Error);
}

BOOST_AUTO_TEST_CASE(conv2d_any_kernel_stride_padding_dilation_and_groups) {
  // (x, w, options): non-square kernels, strides and paddings per axis, dilations, groups.
  struct Case {
    Shape x, w;
    ad::ConvOptions o;
  };
  auto opts = [](std::size_t sh, std::size_t sw, std::size_t ph, std::size_t pw, std::size_t dh,
                 std::size_t dw, std::size_t groups) {
    ad::ConvOptions o;
    o.stride_h = sh, o.stride_w = sw, o.padding_h = ph, o.padding_w = pw, o.dilation_h = dh,
    o.dilation_w = dw, o.groups = groups;
    return o;
  };
  const Case cases[] = {{{2, 2, 5, 7}, {3, 2, 1, 3}, opts(1, 1, 0, 1, 1, 1, 1)},
                        {{1, 3, 8, 6}, {2, 3, 3, 2}, opts(2, 1, 1, 0, 2, 1, 1)},
                        {{2, 4, 6, 6}, {6, 2, 3, 3}, opts(1, 2, 1, 1, 1, 2, 2)},
                        {{1, 6, 5, 5}, {6, 1, 3, 3}, opts(1, 1, 2, 2, 2, 2, 6)},   // depthwise
                        {{2, 1, 1, 9}, {2, 1, 1, 4}, opts(1, 2, 0, 1, 1, 2, 1)}};  // 1-D along W
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("x " << ad::shape_str(c.x) << ", w " << ad::shape_str(c.w) << ", groups "
                            << c.o.groups << ", dilation " << c.o.dilation_h << "×"
                            << c.o.dilation_w) {
      V x = leaf(uniform(c.x, -1, 1, 3)), w = leaf(uniform(c.w, -1, 1, 4)),
        b = leaf(uniform({c.w[0]}, -1, 1, 5));
      const Array<double> y = ad::conv2d(x, w, b, c.o).value();
      // The definition, loop by loop.
      const std::size_t n = c.x[0], ch = c.x[1], h = c.x[2], wd = c.x[3], o = c.w[0], kh = c.w[2],
                        kw = c.w[3], cg = ch / c.o.groups, og = o / c.o.groups;
      const std::size_t ho =
          (h + 2 * c.o.padding_h - c.o.dilation_h * (kh - 1) - 1) / c.o.stride_h + 1;
      const std::size_t wo =
          (wd + 2 * c.o.padding_w - c.o.dilation_w * (kw - 1) - 1) / c.o.stride_w + 1;
      BOOST_REQUIRE(y.shape() == Shape({n, o, ho, wo}));
      for (std::size_t s = 0; s < n; ++s)
        for (std::size_t f = 0; f < o; ++f)
          for (std::size_t i = 0; i < ho; ++i)
            for (std::size_t j = 0; j < wo; ++j) {
              double want = b.value()(f);
              const std::size_t group = f / og;
              for (std::size_t k = 0; k < cg; ++k)
                for (std::size_t a = 0; a < kh; ++a)
                  for (std::size_t e = 0; e < kw; ++e) {
                    const long r =
                        long(i * c.o.stride_h + a * c.o.dilation_h) - long(c.o.padding_h);
                    const long q =
                        long(j * c.o.stride_w + e * c.o.dilation_w) - long(c.o.padding_w);
                    if (r >= 0 && r < long(h) && q >= 0 && q < long(wd))
                      want += x.value()(s, group * cg + k, r, q) * w.value()(f, k, a, e);
                  }
              BOOST_TEST(y(s, f, i, j) == want, tt::tolerance(1e-12));
            }
      auto f = [&](const std::vector<V>& in) { return ad::conv2d(in[0], in[1], in[2], c.o); };
      BOOST_TEST(passed(ad::gradcheck(f, {x, w, b}, ad::test::second_order())));
    }
  }
  V x = leaf(uniform({1, 4, 5, 5}));
  auto says = [](const char* text) {
    return [text](const ad::Error& e) {
      return std::string(e.what()).find(text) != std::string::npos;
    };
  };
  BOOST_CHECK_EXCEPTION(ad::conv2d(x, leaf(uniform({6, 2, 3, 3})), V(), opts(1, 1, 0, 0, 1, 1, 3)),
                        ad::Error, says("3 groups do not divide the 4 input channels"));
  BOOST_CHECK_EXCEPTION(ad::conv2d(x, leaf(uniform({6, 4, 3, 3})), V(), opts(1, 1, 0, 0, 1, 1, 2)),
                        ad::Error, says("expects 8 (2 groups)"));
  BOOST_CHECK_EXCEPTION(ad::conv2d(x, leaf(uniform({2, 4, 3, 3})), V(), opts(1, 1, 0, 0, 3, 1, 1)),
                        ad::Error, says("kernel 3 dilated by 3 is larger than the input"));
  BOOST_CHECK_THROW(ad::conv2d(x, leaf(uniform({2, 4, 3, 3})), V(), opts(1, 0, 0, 0, 1, 1, 1)),
                    ad::Error);
}

BOOST_AUTO_TEST_CASE(max_pool_values_and_gradients) {
  // Distinct values (a shuffled ramp) keep the windows away from ties.
  Array<double> a = xt::arange<double>(2 * 2 * 6 * 6);
  std::shuffle(a.begin(), a.end(), std::mt19937(3));
  a.reshape({2, 2, 6, 6});
  V x = leaf(a / 72.0);
  V y = ad::max_pool2d(x, 2, 2);
  BOOST_TEST(y.shape() == Shape({2, 2, 3, 3}));
  BOOST_TEST(y.value()(1, 1, 2, 0) == std::max({x.value()(1, 1, 4, 0), x.value()(1, 1, 4, 1),
                                                x.value()(1, 1, 5, 0), x.value()(1, 1, 5, 1)}));
  for (auto [k, s, p] : std::vector<std::array<std::size_t, 3>>{{2, 2, 0}, {3, 2, 1}, {3, 1, 0}}) {
    auto f = [k = k, s = s, p = p](const auto& x) { return ad::max_pool2d(x, k, s, p); };
    BOOST_TEST(passed(ad::gradcheck(f, {x}, ad::test::second_order())));
  }
  BOOST_CHECK_THROW(ad::max_pool2d(x, 2, 2, 2), ad::Error);
  // Windows of -infinity and NaN: the maximum is -infinity, a NaN propagates.
  Array<double> special = xt::zeros<double>({1, 1, 2, 4});
  special(0, 0, 0, 0) = special(0, 0, 0, 1) = special(0, 0, 1, 0) = special(0, 0, 1, 1) =
      -std::numeric_limits<double>::infinity();
  special(0, 0, 1, 3) = std::numeric_limits<double>::quiet_NaN();
  Array<double> pooled = ad::max_pool2d(V(special), 2, 2).value();
  BOOST_TEST(pooled(0, 0, 0, 0) == -std::numeric_limits<double>::infinity());
  BOOST_TEST(std::isnan(pooled(0, 0, 0, 1)));
}

BOOST_AUTO_TEST_CASE(max_pool_ties_nan_and_odd_sizes) {
  // Against a plain loop over the windows, for the 2×2 path (odd sizes leave a row and a column
  // out; in float, rows of 2, 7 and 18 windows: eight at a time in AVX2 registers, and the rest)
  // and the general one: the values, and the gradient of the sum going to the first maximum in
  // reading order, or to the last NaN (as in PyTorch). Values from a few levels, so that ties are
  // common; NaNs in some windows, two in one of them.
  auto check = [](auto zero, std::size_t w, std::size_t k, std::size_t s, std::size_t p) {
    using T = decltype(zero);
    const std::size_t h = 7;
    Array<T> a = xt::floor(xt::cast<T>(uniform({2, 3, h, w}, 0.0, 3.0, 4)));
    for (std::size_t at = 5; at < a.size(); at += 37)
      a.data()[at] = std::numeric_limits<T>::quiet_NaN();
    ad::Variable<T> x(a, true);
    ad::Variable<T> y = ad::max_pool2d(x, k, s, p);
    ad::sum(y).backward();
    Array<T> want_grad = xt::zeros<T>(a.shape());
    const long ho = static_cast<long>(y.shape()[2]), wo = static_cast<long>(y.shape()[3]);
    const long hl = static_cast<long>(h), wl = static_cast<long>(w);
    for (std::size_t n = 0; n < 2; ++n)
      for (std::size_t c = 0; c < 3; ++c)
        for (long oh = 0; oh < ho; ++oh)
          for (long ow = 0; ow < wo; ++ow) {
            T best = -std::numeric_limits<T>::infinity();
            long bi = -1, bj = -1;
            for (long i = oh * long(s) - long(p); i < oh * long(s) - long(p) + long(k); ++i)
              for (long j = ow * long(s) - long(p); j < ow * long(s) - long(p) + long(k); ++j)
                if (i >= 0 && i < hl && j >= 0 && j < wl &&
                    (a(n, c, i, j) > best || std::isnan(a(n, c, i, j))))
                  best = a(n, c, i, j), bi = i, bj = j;
            const T got = y.value()(n, c, oh, ow);
            BOOST_TEST((got == best || (std::isnan(got) && std::isnan(best))),
                       "window (" << n << ", " << c << ", " << oh << ", " << ow << ") of width "
                                  << w << ": " << got << " for " << best);
            want_grad(n, c, bi, bj) += 1;
          }
    BOOST_TEST(x.grad().value() == want_grad);
  };
  for (std::size_t w : {5, 15, 37}) {
    check(0.0, w, 2, 2, 0);
    check(0.0f, w, 2, 2, 0);
  }
  check(0.0, 5, 3, 2, 1);
  check(0.0f, 15, 3, 2, 1);
  // A NaN anywhere in a window makes its maximum NaN, before or after larger values.
  for (std::size_t at = 0; at < 4; ++at) {
    Array<double> window = {{{{1, 5}, {3, 4}}}};
    window.data()[at] = std::numeric_limits<double>::quiet_NaN();
    BOOST_TEST(std::isnan(ad::max_pool2d(V(window), 2, 2).value()(0, 0, 0, 0)));
  }
}

BOOST_AUTO_TEST_CASE(avg_pool_values_and_gradients) {
  V x = leaf(uniform({2, 2, 5, 5}));
  V y = ad::avg_pool2d(x, 2, 2);
  BOOST_TEST(y.shape() == Shape({2, 2, 2, 2}));
  BOOST_TEST(y.value()(0, 1, 1, 0) == (x.value()(0, 1, 2, 0) + x.value()(0, 1, 2, 1) +
                                       x.value()(0, 1, 3, 0) + x.value()(0, 1, 3, 1)) /
                                          4,
             tt::tolerance(1e-12));
  for (auto [k, s, p] : std::vector<std::array<std::size_t, 3>>{{2, 2, 0}, {3, 2, 1}, {3, 1, 0}}) {
    auto f = [k = k, s = s, p = p](const auto& x) { return ad::avg_pool2d(x, k, s, p); };
    BOOST_TEST(passed(ad::gradcheck(f, {x}, ad::test::second_order())));
  }
  auto adj = [](const auto& g) { return ad::avg_pool2d_grad(g, {2, 2, 5, 5}, 3, 2, 1); };
  BOOST_TEST(passed(ad::gradcheck(adj, {leaf(uniform({2, 2, 3, 3}))}, ad::test::second_order())));
}

BOOST_AUTO_TEST_SUITE_END()
