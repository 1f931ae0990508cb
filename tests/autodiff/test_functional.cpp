// jvp, vjp, jacobian and hessian: against the central difference and against each other, on
// functions that run through most ops (their recorded backward rules carry the jvp).
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using V = ad::Variable<double>;

namespace {

/// The Jacobian of f at x by the central difference, of shape f(x).shape + x.shape.
template <class F>
Array<double> numeric_jacobian(F f, const Array<double>& x, double h = 1e-6) {
  Array<double> y = f(V(x)).value();
  Shape shape(y.shape().begin(), y.shape().end());
  shape.insert(shape.end(), x.shape().begin(), x.shape().end());
  Array<double> jac = Array<double>::from_shape(shape);
  const std::size_t n = x.size();
  for (std::size_t j = 0; j < n; ++j) {
    Array<double> up = x, down = x;
    up.data()[j] += h;
    down.data()[j] -= h;
    Array<double> a = f(V(up)).value(), b = f(V(down)).value();
    for (std::size_t i = 0; i < y.size(); ++i)
      jac.data()[i * n + j] = (a.data()[i] - b.data()[i]) / (2 * h);
  }
  return jac;
}

/// J·v for J of shape y.shape + x.shape read as (m, n).
Array<double> times(const Array<double>& jac, const Array<double>& v, const Shape& y_shape) {
  const std::size_t n = v.size(), m = jac.size() / std::max<std::size_t>(n, 1);
  Array<double> out = xt::zeros<double>(y_shape);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) out.data()[i] += jac.data()[i * n + j] * v.data()[j];
  return out;
}

/// uᵀ·J, of x's shape.
Array<double> times_left(const Array<double>& u, const Array<double>& jac, const Shape& x_shape) {
  const std::size_t m = u.size(), n = jac.size() / std::max<std::size_t>(m, 1);
  Array<double> out = xt::zeros<double>(x_shape);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) out.data()[j] += u.data()[i] * jac.data()[i * n + j];
  return out;
}

/// A (2, 3, 4, 4) image batch through conv, pooling, a linear layer and the softmax family: (2, 5).
V image_net(const V& x) {
  const V w(ad::test::uniform({3, 3, 3, 3}, -0.5, 0.5, 7));
  const V b(ad::test::uniform({3}, -0.5, 0.5, 8));
  const V wl(ad::test::uniform({5, 12}, -0.5, 0.5, 9));
  V h = ad::tanh(ad::conv2d(x, w, b, 1, 1));                // (2, 3, 4, 4)
  V p = ad::avg_pool2d(h, 2, 2) + ad::max_pool2d(h, 2, 2);  // (2, 3, 2, 2)
  V f = ad::flatten(p, 1);                                  // (2, 12)
  V z = ad::linear(f, wl);                                  // (2, 5)
  return ad::log_softmax(z, 1) + ad::softmax(z, 0) * ad::sigmoid(z);
}

/// A (3, 4) matrix through products, reductions, shape ops and the second round of ops: (7).
V matrix_net(const V& x) {
  const V m(ad::test::uniform({4, 4}, -1, 1, 11));
  V a = ad::matmul(x, m);                                                          // (3, 4)
  V s = ad::sum(ad::exp(a / 4.0), {1});                                            // (3)
  V c = ad::cumsum(ad::permute(a, {1, 0}), 1);                                     // (4, 3)
  V r = ad::mean(ad::silu(c) * ad::cos(c) + ad::elu(c), {0});                      // (3)
  V n = ad::reshape(ad::norm(x, 2.0, {1}, true) + ad::var(x, {1}, 1, true), {3});  // (3)
  V g = ad::gather(ad::mish(x), 1, ad::test::index_of({2, 0, 3}, {3, 1}));         // (3, 1)
  V q = ad::concatenate(std::vector<V>{s * r, ad::max(x, {0}), n - ad::reshape(g, {3})});
  return ad::index_select(q, 0, {0, 2, 4, 5, 6, 8, 9});  // (7)
}

}  // namespace

BOOST_AUTO_TEST_SUITE(functional)

BOOST_AUTO_TEST_CASE(jacobian_both_ways_against_the_central_difference) {
  struct Fn {
    const char* name;
    std::function<V(const V&)> f;
    Array<double> x;
  };
  const std::vector<Fn> fns = {
      {"image_net", image_net, ad::test::uniform({2, 3, 4, 4}, -1, 1, 3)},
      {"matrix_net", matrix_net, ad::test::uniform({3, 4}, -1, 1, 4)},
      {"scalar in",
       [](const V& x) {
         return ad::stack(std::vector<V>{ad::sin(x), x * x * x});
       },
       Array<double>(0.7)},
  };
  for (const auto& [name, f, x] : fns) {
    BOOST_TEST_CONTEXT(name) {
      const Array<double> num = numeric_jacobian(f, x);
      const Array<double> rev = ad::jacobian(f, x, ad::JacobianMode::reverse);
      const Array<double> fwd = ad::jacobian(f, x, ad::JacobianMode::forward);
      const Array<double> aut = ad::jacobian(f, x);
      BOOST_TEST(ad::test::all_close(rev, num, 1e-5, 1e-7));
      BOOST_TEST(ad::test::all_close(fwd, num, 1e-5, 1e-7));
      BOOST_TEST(ad::test::all_close(fwd, rev, 1e-10, 1e-12));
      BOOST_TEST(ad::test::all_close(aut, rev, 1e-10, 1e-12));
    }
  }
}

BOOST_AUTO_TEST_CASE(jvp_and_vjp_agree_with_the_jacobian) {
  const Array<double> x = ad::test::uniform({3, 4}, -1, 1, 5);
  const Array<double> v = ad::test::uniform({3, 4}, -1, 1, 6);
  const Array<double> u = ad::test::uniform({7}, -1, 1, 7);
  const Array<double> jac = ad::jacobian(matrix_net, x, ad::JacobianMode::reverse);
  const Array<double> num = numeric_jacobian(matrix_net, x);

  const ad::JvpResult<double> j = ad::jvp(matrix_net, x, v);
  BOOST_TEST(ad::test::all_close(j.value, matrix_net(V(x)).value(), 0, 0));
  BOOST_TEST(ad::test::all_close(j.tangent, times(jac, v, {7}), 1e-10, 1e-12));
  BOOST_TEST(ad::test::all_close(j.tangent, times(num, v, {7}), 1e-5, 1e-7));

  const ad::VjpResult<double> r = ad::vjp(matrix_net, x, u);
  BOOST_REQUIRE_EQUAL(r.grads.size(), 1u);
  BOOST_TEST(ad::test::all_close(r.grads[0], times_left(u, jac, {3, 4}), 1e-10, 1e-12));
  BOOST_TEST(ad::test::all_close(r.grads[0], times_left(u, num, {3, 4}), 1e-5, 1e-7));
  // ⟨u, J·v⟩ = ⟨uᵀ·J, v⟩
  const double left = xt::sum(u * j.tangent)(), right = xt::sum(r.grads[0] * v)();
  BOOST_TEST(left == right, tt::tolerance(1e-10));
}

BOOST_AUTO_TEST_CASE(jvp_of_several_inputs_sums_their_directions) {
  auto f = [](const std::vector<V>& in) { return ad::tanh(ad::matmul(in[0], in[1])) * in[2]; };
  const std::vector<Array<double>> xs = {ad::test::uniform({2, 3}, -1, 1, 1),
                                         ad::test::uniform({3, 4}, -1, 1, 2),
                                         ad::test::uniform({4}, -1, 1, 3)};
  const std::vector<Array<double>> vs = {ad::test::uniform({2, 3}, -1, 1, 4),
                                         ad::test::uniform({3, 4}, -1, 1, 5),
                                         ad::test::uniform({4}, -1, 1, 6)};
  const ad::JvpResult<double> j = ad::jvp(f, xs, vs);
  Array<double> expected = xt::zeros<double>({2, 4});
  for (std::size_t k = 0; k < 3; ++k) {
    auto only_k = [&](const V& xk) {
      std::vector<V> in;
      for (std::size_t i = 0; i < 3; ++i) in.push_back(i == k ? xk : V(xs[i]));
      return f(in);
    };
    expected += times(numeric_jacobian(only_k, xs[k]), vs[k], {2, 4});
  }
  BOOST_TEST(ad::test::all_close(j.tangent, expected, 1e-6, 1e-8));
  // vjp of the same function: ⟨u, J·v⟩ = Σ_k ⟨u·J_k, v_k⟩.
  const Array<double> u = ad::test::uniform({2, 4}, -1, 1, 7);
  const ad::VjpResult<double> r = ad::vjp(f, xs, u);
  double right = 0;
  for (std::size_t k = 0; k < 3; ++k) right += xt::sum(r.grads[k] * vs[k])();
  BOOST_TEST(xt::sum(u * j.tangent)() == right, tt::tolerance(1e-10));
}

BOOST_AUTO_TEST_CASE(hessian_of_a_matrix_input) {
  // f(X) = Σ tanh(X·M)² + Σ X³: its Hessian has shape (2, 3, 2, 3).
  auto f = [](const V& x) {
    const V m(ad::test::uniform({3, 3}, -1, 1, 21));
    V t = ad::tanh(ad::matmul(x, m));
    return ad::sum(t * t) + ad::sum(x * x * x);
  };
  const Array<double> x = ad::test::uniform({2, 3}, -1, 1, 22);
  const Array<double> h = ad::hessian(f, x);
  BOOST_TEST(ad::shape_str(Shape(h.shape().begin(), h.shape().end())) == "(2,3,2,3)");
  // Against the central difference of the gradient, and the Jacobian of the gradient.
  auto gradient = [&f](const V& x) {
    V leaf(x.value(), true);
    return V(ad::grad(f(leaf), {leaf})[0].value());
  };
  BOOST_TEST(ad::test::all_close(h, numeric_jacobian(gradient, x), 1e-5, 1e-7));
  auto recorded_gradient = [&f](const V& x) {
    return ad::grad(f(x), {x}, ad::BackwardOptions{true, true})[0];
  };
  BOOST_TEST(ad::test::all_close(h, ad::jacobian(recorded_gradient, x), 1e-12, 1e-12));
  for (std::size_t i = 0; i < 6; ++i)  // symmetric
    for (std::size_t j = 0; j < 6; ++j)
      BOOST_TEST(h.data()[i * 6 + j] == h.data()[j * 6 + i], tt::tolerance(1e-12));
  // hvp is one row of it
  const Array<double> v = ad::test::uniform({2, 3}, -1, 1, 23);
  BOOST_TEST(ad::test::all_close(ad::hvp(f, x, v), times(h, v, {2, 3}), 1e-12, 1e-12));
}

BOOST_AUTO_TEST_CASE(constant_functions_and_bad_shapes) {
  const Array<double> x = ad::test::uniform({2, 2});
  auto constant = [](const V&) { return V(Array<double>{1.0, 2.0, 3.0}); };
  for (auto mode : {ad::JacobianMode::reverse, ad::JacobianMode::forward}) {
    const Array<double> jac = ad::jacobian(constant, x, mode);
    BOOST_TEST(ad::shape_str(Shape(jac.shape().begin(), jac.shape().end())) == "(3,2,2)");
    BOOST_TEST(xt::amax(xt::abs(jac))() == 0.0);
  }
  BOOST_TEST(xt::amax(xt::abs(ad::jvp(constant, x, x).tangent))() == 0.0);
  BOOST_TEST(xt::amax(xt::abs(ad::hessian([](const V& v) { return ad::sum(v); }, x)))() == 0.0);
  auto square = [](const V& v) { return v * v; };
  BOOST_CHECK_EXCEPTION(ad::jvp(square, x, Array<double>{1.0}), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()) == "jvp: tangent 0 has shape (1), input 0 has shape (2,2)";
  });
  BOOST_CHECK_EXCEPTION(ad::vjp(square, x, Array<double>{1.0}), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("vjp: the cotangent has shape (1)") == 0;
  });
  BOOST_CHECK_THROW(ad::hessian(square, x), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
