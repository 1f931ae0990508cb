// matmul (2-D, batched, transposed) and linear (with and without an activation): gradchecks,
// values against a plain loop and against the separate ops, errors.
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "autodiff/kernels/gemm.hpp"
#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

/// Reference product of the last two axes, with a 2-D operand shared across the batch.
Array<double> reference(const Array<double>& a, const Array<double>& b, bool ta, bool tb) {
  auto mat = [](const Array<double>& m, std::size_t batch, bool t, std::size_t i, std::size_t j) {
    std::size_t r = t ? j : i, c = t ? i : j;
    return m.dimension() == 3 ? m(batch, r, c) : m(r, c);
  };
  const auto& sa = a.shape();
  const auto& sb = b.shape();
  std::size_t n = ta ? sa.back() : sa[sa.size() - 2], k = ta ? sa[sa.size() - 2] : sa.back();
  std::size_t m = tb ? sb[sb.size() - 2] : sb.back();
  std::size_t batch = a.dimension() == 3 ? sa[0] : (b.dimension() == 3 ? sb[0] : 0);
  Array<double> out = xt::zeros<double>(batch ? Shape{batch, n, m} : Shape{n, m});
  for (std::size_t z = 0; z < std::max<std::size_t>(batch, 1); ++z)
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < m; ++j) {
        double s = 0;
        for (std::size_t p = 0; p < k; ++p) s += mat(a, z, ta, i, p) * mat(b, z, tb, p, j);
        (batch ? out(z, i, j) : out(i, j)) = s;
      }
  return out;
}

struct Case {
  Shape a, b;
  bool ta, tb;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(linalg)

BOOST_AUTO_TEST_CASE(matmul_all_layouts) {
  const std::vector<Case> cases = {
      {{2, 3}, {3, 4}, false, false},       {{3, 2}, {3, 4}, true, false},
      {{2, 3}, {4, 3}, false, true},        {{3, 2}, {4, 3}, true, true},
      {{5, 2, 3}, {5, 3, 4}, false, false}, {{5, 2, 3}, {3, 4}, false, false},
      {{2, 3}, {5, 3, 4}, false, false},    {{5, 3, 2}, {4, 3}, true, true},
      {{5, 3, 2}, {3, 4}, true, false},     {{2, 3}, {5, 4, 3}, false, true}};
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("a " << ad::shape_str(c.a) << (c.ta ? "ᵀ" : "") << " b "
                            << ad::shape_str(c.b) << (c.tb ? "ᵀ" : "")) {
      V a = leaf(uniform(c.a, -1, 1, 1));
      V b = leaf(uniform(c.b, -1, 1, 2));
      Array<double> got = ad::matmul(a, b, c.ta, c.tb).value();
      Array<double> want = reference(a.value(), b.value(), c.ta, c.tb);
      BOOST_TEST(got.shape() == want.shape(), tt::per_element());
      BOOST_TEST(ad::test::all_close(got, want));
      auto f = [&c](const auto& a, const auto& b) { return ad::matmul(a, b, c.ta, c.tb); };
      BOOST_TEST(passed(ad::gradcheck(f, {a, b}, ad::test::second_order())));
    }
  }
}

BOOST_AUTO_TEST_CASE(matmul_float) {
  ad::Variable<float> a(uniform<float>({4, 5}), true), b(uniform<float>({5, 3}, -1, 1, 2), true);
  Array<double> want = reference(Array<double>(a.value()), Array<double>(b.value()), false, false);
  Array<float> got = ad::matmul(a, b).value();
  for (std::size_t i = 0; i < got.size(); ++i)
    BOOST_TEST(got.data()[i] == want.data()[i], tt::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(matmul_errors_name_the_shapes) {
  V a = leaf(uniform({3, 4})), b = leaf(uniform({5, 2}));
  BOOST_CHECK_EXCEPTION(ad::matmul(a, b), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("matmul: inner dimensions differ") == 0 && m.find("(3,4)") != std::string::npos &&
           m.find("(5,2)") != std::string::npos;
  });
  BOOST_CHECK_THROW(ad::matmul(leaf(uniform({3})), b), ad::Error);
  BOOST_CHECK_THROW(ad::matmul(leaf(uniform({2, 3, 4})), leaf(uniform({3, 4, 2}))), ad::Error);
}

BOOST_AUTO_TEST_CASE(matmul_empty) {
  V a(Array<double>(xt::zeros<double>({2, 0}))), b(Array<double>(xt::zeros<double>({0, 3})));
  BOOST_TEST(ad::matmul(a, b).value() == Array<double>(xt::zeros<double>({2, 3})));
}

BOOST_AUTO_TEST_CASE(linear_layer) {
  V x = leaf(uniform({4, 3}, -1, 1, 1));
  V w = leaf(uniform({2, 3}, -1, 1, 2));
  V b = leaf(uniform({2}, -1, 1, 3));
  auto f = [](const auto& x, const auto& w, const auto& b) { return ad::linear(x, w, b); };
  BOOST_TEST(passed(ad::gradcheck(f, {x, w, b}, ad::test::second_order())));
  Array<double> want = reference(x.value(), w.value(), false, true) + b.value();
  BOOST_TEST(ad::test::all_close(ad::linear(x, w, b).value(), want));
  // Without bias, on a batch of sequences (3-D), and on one sample (1-D).
  auto nb = [](const auto& x, const auto& w) { return ad::linear(x, w); };
  BOOST_TEST(passed(ad::gradcheck(nb, {x, w}, ad::test::second_order())));
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(uniform({2, 4, 3})), w, b})));
  BOOST_TEST(passed(ad::gradcheck(f, {leaf(uniform({3})), w, b})));
  BOOST_CHECK_THROW(ad::linear(leaf(uniform({4, 2})), w, b), ad::Error);
  BOOST_CHECK_THROW(ad::linear(x, w, leaf(uniform({3}))), ad::Error);
}

namespace {

template <class T>
Array<T> converted(const Array<double>& a) {
  Array<T> out = Array<T>::from_shape(a.shape());
  std::copy(a.begin(), a.end(), out.begin());
  return out;
}

template <class T>
bool same_bits(const Array<T>& a, const Array<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(linear_with_an_activation_is_the_two_ops_to_the_bit) {
  // act(x·wᵀ + b) in one op against linear then relu, tanh or sigmoid: the same values and the
  // same gradients of x, w and b, bit for bit, in float and double, for 2-D and 3-D x, with a
  // pre-activation exactly 0 (ReLU's kink), one NaN and large ones (saturated tanh and sigmoid).
  using Act = ad::Activation;
  auto check = [](auto zero, Act act, const Shape& xs) {
    using T = decltype(zero);
    using VT = ad::Variable<T>;
    Array<T> xa = converted<T>(uniform(xs, -1, 1, 11));
    const std::size_t in = xs.back();
    Array<T> wa = converted<T>(uniform({5, in}, -1, 1, 12));
    Array<T> ba = converted<T>(uniform({5}, -1, 1, 13));
    ba(0) = 0;
    std::fill_n(xa.data(), in, T(0));  // the first row's first pre-activation is exactly 0
    xa.data()[in + 1] = T(NAN);        // the second row's all NaN
    xa.data()[2 * in] = T(40);         // the third's large
    VT x1(xa, true), w1(wa, true), b1(ba, true), x2(xa, true), w2(wa, true), b2(ba, true);
    const VT fused = ad::linear(x1, w1, b1, act);
    const VT pre = ad::linear(x2, w2, b2);
    const VT two = act == Act::relu   ? ad::relu(pre)
                   : act == Act::tanh ? ad::tanh(pre)
                                      : ad::sigmoid(pre);
    BOOST_TEST(same_bits(fused.value(), two.value()));
    const VT seed(converted<T>(uniform(fused.shape(), -1, 1, 14)));
    fused.backward(seed);
    two.backward(seed);
    BOOST_TEST(same_bits(x1.grad().value(), x2.grad().value()));
    BOOST_TEST(same_bits(w1.grad().value(), w2.grad().value()));
    BOOST_TEST(same_bits(b1.grad().value(), b2.grad().value()));
  };
  for (Act act : {Act::relu, Act::tanh, Act::sigmoid})
    for (const Shape& xs : {Shape{7, 3}, Shape{2, 4, 9}}) {
      check(0.0f, act, xs);
      check(0.0, act, xs);
    }
  V x = leaf(uniform({4, 3}, -1, 1, 1));
  V w = leaf(uniform({2, 3}, -1, 1, 2));
  V b = leaf(uniform({2}, -1, 1, 3));
  for (Act act : {Act::relu, Act::tanh, Act::sigmoid}) {
    auto f = [act](const auto& x, const auto& w, const auto& b) {
      return ad::linear(x, w, b, act);
    };
    BOOST_TEST(passed(ad::gradcheck(f, {x, w, b}, ad::test::second_order())));
  }
  BOOST_TEST(std::string(ad::linear(x, w, b, Act::tanh).op_name()) == "linear_tanh");
  BOOST_CHECK_THROW(ad::linear(leaf(uniform({4, 2})), w, b, Act::relu), ad::Error);
  BOOST_CHECK_EXCEPTION(ad::linear(x, w, b, static_cast<Act>(9)), ad::Error,
                        [](const ad::Error& e) {
                          return std::string(e.what()).find("linear: unknown activation 9") == 0;
                        });
}

BOOST_AUTO_TEST_CASE(gemm_kernel_matches_a_plain_loop) {
  // The products below a few thousand multiply-adds run in the library's own loops (blocks of 4
  // rows by two registers of columns, then one, then the last columns one by one; Bᵀ transposed
  // in 8 × 8 blocks first; a C narrower than a register made transposed when A is; one column as
  // dot products), the others in the BLAS: every transpose, alpha (1 or not) and beta, padded
  // leading dimensions, sizes on both sides of each block edge and of the switch, in float and
  // double, against a plain triple loop in double.
  auto check = [](auto zero) {
    using T = decltype(zero);
    for (std::size_t m : {1, 3, 4, 5, 9, 16, 40})
      for (std::size_t n : {1, 2, 7, 8, 9, 16, 17, 40})
        for (std::size_t k : {1, 3, 8, 16, 17, 40})
          for (int t = 0; t < 8; ++t)
            for (double beta : {0.0, 1.0, -0.5}) {
              const bool ta = t & 1, tb = t & 2;
              const double alpha = t & 4 ? 1.0 : 0.75;
              const std::size_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
              const Array<double> a = uniform({ta ? k : m, lda}, -1, 1, 7);
              const Array<double> b = uniform({tb ? n : k, ldb}, -1, 1, 8);
              const Array<double> c = uniform({m, ldc}, -1, 1, 9);
              std::vector<T> ta_(a.begin(), a.end()), tb_(b.begin(), b.end()),
                  tc(c.begin(), c.end());
              if (beta == 0.0) std::fill(tc.begin(), tc.end(), T(NAN));  // must not be read
              ad::kernels::gemm(ta, tb, m, n, k, T(alpha), ta_.data(), lda, tb_.data(), ldb,
                                T(beta), tc.data(), ldc);
              double worst = 0;
              for (std::size_t i = 0; i < m; ++i)
                for (std::size_t j = 0; j < n; ++j) {
                  double want = 0;
                  for (std::size_t p = 0; p < k; ++p)
                    want += (ta ? a(p, i) : a(i, p)) * (tb ? b(j, p) : b(p, j));
                  want = alpha * want + (beta == 0.0 ? 0.0 : beta * c(i, j));
                  worst = std::max(worst, std::abs(double(tc[i * ldc + j]) - want));
                }
              const double bound = std::is_same_v<T, float> ? 1e-5 * k : 1e-13 * k;
              BOOST_TEST(worst <= bound, m << "x" << n << "x" << k << " ta " << ta << " tb " << tb
                                           << " alpha " << alpha << " beta " << beta << ": off by "
                                           << worst);
            }
  };
  check(0.0f);
  check(0.0);
}

BOOST_AUTO_TEST_SUITE_END()
