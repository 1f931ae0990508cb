// The tape: Variables, backward(), grad(), modes, and how failures leave it.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using V = ad::Variable<double>;
using ad::test::leaf;

BOOST_AUTO_TEST_SUITE(variable)

BOOST_AUTO_TEST_CASE(worked_example_sum_of_squares) {
  // f(x0, x1) = x0² + x1² has gradient (2 x0, 2 x1) = (6, 8) at (3, 4).
  auto f = [](const auto& x) { return ad::sum(x * x); };
  V x = ad::test::leaf(Array<double>{3.0, 4.0});
  f(x).backward();
  BOOST_TEST(x.grad().value()(0) == 6.0, tt::tolerance(1e-12));
  BOOST_TEST(x.grad().value()(1) == 8.0, tt::tolerance(1e-12));
  Array<double> numeric = ad::numerical_gradient(f, x);
  BOOST_TEST(numeric(0) == 6.0, tt::tolerance(1e-8));
  BOOST_TEST(numeric(1) == 8.0, tt::tolerance(1e-8));
  BOOST_TEST(x.value()(0) == 3.0);  // restored exactly after probing
  BOOST_TEST(x.value()(1) == 4.0);
}

BOOST_AUTO_TEST_CASE(float_and_double) {
  ad::Variable<float> x(Array<float>{1.0f, 2.0f}, true);
  auto y = ad::sum(ad::exp(x) * 2.0f);
  y.backward();
  BOOST_TEST(x.grad().value()(1) == 2.0f * std::exp(2.0f), tt::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(leaf_from_array_moves_without_copy) {
  Array<double> a = ad::test::uniform({100});
  const double* data = a.data();
  V x(std::move(a), true);
  BOOST_TEST(x.value().data() == data);
}

BOOST_AUTO_TEST_CASE(gradients_accumulate_until_zero_grad) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  ad::sum(x * 3.0).backward();
  ad::sum(x * 3.0).backward();
  BOOST_TEST(x.grad().value()(0) == 6.0, tt::tolerance(1e-12));
  x.zero_grad();
  BOOST_TEST(!x.has_grad());
  ad::sum(x * 3.0).backward();
  BOOST_TEST(x.grad().value()(0) == 3.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(shared_subexpressions_add_up) {
  // y = a*a + a: dy/da = 2a + 1; the two uses of a and of the product both reach a.
  V a = ad::test::leaf(Array<double>(2.0));
  V p = a * a;
  V y = p + p + a;
  y.backward();
  BOOST_TEST(a.grad().item() == 9.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(non_scalar_root_needs_a_seed) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  V y = x * 2.0;
  BOOST_CHECK_EXCEPTION(y.backward(), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()).find("explicit seed") != std::string::npos;
  });
  y.backward(V(Array<double>{1.0, 10.0}));
  BOOST_TEST(x.grad().value()(1) == 20.0, tt::tolerance(1e-12));
  BOOST_CHECK_THROW((x * 2.0).backward(V(Array<double>{1.0, 2.0, 3.0})), ad::Error);
}

BOOST_AUTO_TEST_CASE(second_backward_needs_retain_graph) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  V y = ad::sum(ad::exp(x));
  y.backward();
  BOOST_CHECK_EXCEPTION(y.backward(), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("freed") != std::string::npos && m.find("retain_graph") != std::string::npos;
  });
  // With retain_graph the graph survives and gradients add up.
  x.zero_grad();
  V z = ad::sum(ad::exp(x));
  z.backward(ad::BackwardOptions{true, false});
  z.backward();
  BOOST_TEST(x.grad().value()(0) == 2 * std::exp(1.0), tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(backward_without_grad_is_an_error) {
  V x(Array<double>{1.0});
  BOOST_CHECK_THROW(ad::sum(x * 2.0).backward(), ad::Error);
}

BOOST_AUTO_TEST_CASE(million_op_chain_without_recursion) {
  // A chain this long overflows the stack if backward or the graph's destruction recurses.
  const int n = 1000000;
  V x = ad::test::leaf(Array<double>(1.0));
  V y = x;
  for (int i = 0; i < n; ++i) y = y * 1.0000001;
  y.backward();
  BOOST_TEST(x.grad().item() == std::pow(1.0000001, n), tt::tolerance(1e-9));
  // And a chain that is dropped without backward is torn down without recursion too.
  V z = x;
  for (int i = 0; i < n; ++i) z = z + 1.0;
  z = V();
}

BOOST_AUTO_TEST_CASE(grad_leaves_dot_grad_alone) {
  V a = ad::test::leaf(Array<double>{1.0, 2.0});
  V b = ad::test::leaf(Array<double>{3.0, 4.0});
  V unused = ad::test::leaf(Array<double>{5.0});
  V y = ad::sum(a * b);
  auto g = ad::grad(y, {a, b, unused});
  BOOST_TEST(g[0].value()(1) == 4.0);
  BOOST_TEST(g[1].value()(0) == 1.0);
  BOOST_TEST(g[2].value()(0) == 0.0);  // not used: zeros of its shape
  BOOST_TEST(!a.has_grad());
  BOOST_TEST(!b.has_grad());
}

BOOST_AUTO_TEST_CASE(grad_of_intermediate) {
  V a = ad::test::leaf(Array<double>{1.0, 2.0});
  V h = a * 3.0;
  V y = ad::sum(h * h);
  auto g = ad::grad(y, {h});
  BOOST_TEST(g[0].value()(1) == 12.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(retain_grad_keeps_a_non_leaf_gradient) {
  V a = ad::test::leaf(Array<double>{1.0, 2.0});
  V h = a * 3.0;
  h.retain_grad();
  ad::sum(h * h).backward();
  BOOST_TEST(h.grad().value()(1) == 12.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(rules_overwrite_only_gradients_nobody_else_holds) {
  // Elementwise rules write their result over the incoming gradient when it is theirs alone; a
  // gradient someone else sees (a retained one, a seed, one shared by two inputs) stays intact.
  V x = ad::test::leaf(Array<double>{-1.0, 2.0, 3.0});
  V y = ad::relu(x) * 3.0;
  y.retain_grad();
  V t = ad::tanh(y);
  t.retain_grad();
  V seed(Array<double>{1.0, 1.0, 1.0});
  ad::relu(t).backward(seed);
  BOOST_TEST(seed.value() == Array<double>({1.0, 1.0, 1.0}));
  BOOST_TEST(t.grad().value() == Array<double>({0.0, 1.0, 1.0}));
  Array<double> dy = 1.0 - xt::square(t.value());
  dy(0) = 0.0;  // relu(t) cut it
  BOOST_TEST(ad::test::all_close(y.grad().value(), dy));
  Array<double> dx = 3.0 * dy;
  dx(0) = 0.0;
  BOOST_TEST(ad::test::all_close(x.grad().value(), dx));
  // x used twice: add's rule hands the same gradient to both uses.
  V z = ad::test::leaf(Array<double>{0.5, -0.5});
  ad::sum(ad::sigmoid(z) + ad::tanh(z)).backward();
  Array<double> s = 1.0 / (1.0 + xt::exp(-z.value())), th = xt::tanh(z.value());
  BOOST_TEST(ad::test::all_close(z.grad().value(), Array<double>(s * (1.0 - s) + 1.0 - th * th)));
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  {
    ad::NoGradGuard guard;
    V y = ad::exp(x) * 2.0;
    BOOST_TEST(!y.requires_grad());
    BOOST_TEST(y.is_leaf());
    BOOST_TEST(!ad::is_grad_enabled());
  }
  BOOST_TEST(ad::is_grad_enabled());
  BOOST_TEST(ad::exp(x).requires_grad());
}

BOOST_AUTO_TEST_CASE(second_derivative_with_create_graph) {
  // d/dx x³ = 3x², d²/dx² = 6x.
  V x = ad::test::leaf(Array<double>(2.0));
  V y = x * x * x;
  V dy = ad::grad(y, {x}, ad::BackwardOptions{true, true})[0];
  BOOST_TEST(dy.item() == 12.0, tt::tolerance(1e-12));
  BOOST_TEST(dy.requires_grad());
  V d2y = ad::grad(dy, {x})[0];
  BOOST_TEST(d2y.item() == 12.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(backward_create_graph_then_differentiate_grad) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  ad::sum(ad::exp(x) * x).backward(ad::BackwardOptions{false, true});
  V g = x.grad();  // (1 + x) e^x, recorded
  x.zero_grad();
  ad::sum(g).backward();  // d/dx (1 + x) e^x = (2 + x) e^x
  BOOST_TEST(x.grad().value()(1) == 4 * std::exp(2.0), tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(hessian_and_hvp) {
  // f(x) = x0² x1 + x1³: H = [[2 x1, 2 x0], [2 x0, 6 x1]].
  auto f = [](const V& x) {
    V x0 = ad::slice(x, 0, 0, 1), x1 = ad::slice(x, 0, 1, 2);
    return ad::sum(x0 * x0 * x1 + x1 * x1 * x1);
  };
  Array<double> x{1.5, -2.0};
  Array<double> h = ad::hessian(f, x);
  BOOST_TEST(h(0, 0) == -4.0, tt::tolerance(1e-12));
  BOOST_TEST(h(0, 1) == 3.0, tt::tolerance(1e-12));
  BOOST_TEST(h(1, 0) == 3.0, tt::tolerance(1e-12));
  BOOST_TEST(h(1, 1) == -12.0, tt::tolerance(1e-12));
  Array<double> hv = ad::hvp(f, x, Array<double>{1.0, 1.0});
  BOOST_TEST(hv(0) == -1.0, tt::tolerance(1e-12));
  BOOST_TEST(hv(1) == -9.0, tt::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(scalars_mix_with_variables) {
  V x = ad::test::leaf(Array<double>{1.0, 2.0});
  V y = 2.0 * x + 1;
  y = 3 - y / 2.0f;
  y -= 1;
  BOOST_TEST(y.value()(1) == 3 - 5 / 2.0 - 1, tt::tolerance(1e-12));
  ad::sum(y).backward();
  BOOST_TEST(x.grad().value()(0) == -1.0, tt::tolerance(1e-12));
  V z = 1.0 / x;
  BOOST_TEST(z.value()(1) == 0.5);
  V w = -x;
  BOOST_TEST(w.value()(0) == -1.0);
}

BOOST_AUTO_TEST_CASE(leaf_only_mutation) {
  V x = ad::test::leaf(Array<double>{1.0});
  V y = x * 2.0;
  BOOST_CHECK_THROW(y.mutable_value(), ad::Error);
  BOOST_CHECK_THROW(y.set_requires_grad(false), ad::Error);
  x.mutable_value()(0) = 5.0;
  BOOST_TEST(x.value()(0) == 5.0);
  V d = y.detach();
  BOOST_TEST(d.is_leaf());
  BOOST_TEST(!d.requires_grad());
  BOOST_CHECK_THROW(V().value(), ad::Error);
  BOOST_CHECK_THROW(V(Array<double>{1.0, 2.0}).item(), ad::Error);
}

BOOST_AUTO_TEST_CASE(backward_through_a_changed_input_throws) {
  // y = Σ x² recorded at x = (1, 2); then x(0) = 100. Its rule would read the new value and give
  // 200 instead of 2: backward refuses, naming the op.
  V x = leaf(Array<double>{1.0, 2.0});
  V y = ad::sum(x * x);
  const auto before = x.version();
  x.mutable_value()(0) = 100;
  BOOST_TEST(x.version() == before + 1);
  BOOST_CHECK_EXCEPTION(y.backward(), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("'mul'") != std::string::npos && m.find("modified") != std::string::npos;
  });
  // A fresh forward pass works.
  ad::sum(x * x).backward();
  BOOST_TEST(x.grad().value()(0) == 200.0);
  // So does a graph whose inputs were probed and restored by numerical_gradient.
  V z = ad::sum(ad::tanh(x));
  ad::numerical_gradient([&] { return ad::sum(ad::tanh(x)); }, x);
  BOOST_CHECK_NO_THROW(z.backward());
}

BOOST_AUTO_TEST_CASE(an_optimizer_style_update_between_two_backwards_is_caught) {
  V w = leaf(Array<double>{0.5, -0.5});
  V loss = ad::sum(ad::exp(w));
  loss.backward(ad::BackwardOptions{true, false});
  for (auto& v : w.mutable_value()) v -= 0.1;  // a step, then a stale second backward
  BOOST_CHECK_THROW(loss.backward(), ad::Error);
}

BOOST_AUTO_TEST_CASE(post_accumulate_hooks_run_once_the_gradient_is_final) {
  // y = Σ tanh(w2 · tanh(w1 · x)) with w1 also used a second time: its hook runs once per pass,
  // with both contributions in, and w2's hook runs while the pass has not reached w1 yet.
  V x = leaf(Array<double>{0.3, -0.2});
  V w1 = leaf(Array<double>{0.5, 0.7}), w2 = leaf(Array<double>{-0.4, 0.9});
  std::vector<std::string> order;
  Array<double> w1_grad_seen, w1_partial;
  const auto id1 = w1.register_post_accumulate_hook([&](V& w) {
    order.push_back("w1");
    w1_grad_seen = w.grad().value();
  });
  w2.register_post_accumulate_hook([&](V&) {
    order.push_back("w2");
    w1_partial = w1.grad().value();  // only the + w1·0.5 term has reached w1 by now
  });
  auto f = [&] {
    V inner = ad::tanh(w2 * ad::tanh(w1 * x));  // recorded first: processed last
    V outer = w1 * 0.5;
    return ad::sum(inner + outer);
  };
  f().backward();
  BOOST_TEST(order == (std::vector<std::string>{"w2", "w1"}));
  BOOST_TEST(w1_partial == (Array<double>{0.5, 0.5}));
  BOOST_TEST(w1_grad_seen == w1.grad().value());  // final: both uses in
  BOOST_TEST(w1_grad_seen != w1_partial);
  // A hook may change the gradient it sees (here: halve it).
  const Array<double> full = w1.grad().value();
  w1.zero_grad();
  w2.zero_grad();
  w1.remove_post_accumulate_hook(id1);
  w1.register_post_accumulate_hook([](V& w) {
    V g = w.grad();
    for (auto& v : g.mutable_value()) v *= 0.5;
  });
  f().backward();
  const Array<double> halved = w1.grad().value();
  w1.zero_grad();
  BOOST_TEST(order.size() == 3u);  // w2 again; w1's first hook is gone
  // grad() touches no .grad and runs no hook.
  ad::grad(f(), {w1, w2});
  BOOST_TEST(order.size() == 3u);
  BOOST_TEST(!w1.has_grad());
  f().backward();
  for (std::size_t i = 0; i < 2; ++i) {
    BOOST_TEST(halved(i) == w1.grad().value()(i));
    BOOST_TEST(halved(i) == 0.5 * full(i));
  }
}

BOOST_AUTO_TEST_CASE(gradient_hooks_read_and_replace_the_gradient) {
  // z = Σ 3·y with y = x², and x used once more: z' = 6x·... with a hook doubling y's gradient.
  V x = leaf(Array<double>{0.5, -1.5});
  std::vector<Array<double>> seen_y, seen_x;
  auto f = [&](bool hooked) {
    V y = x * x;
    if (hooked)
      y.register_hook([&](const V& g) {
        seen_y.push_back(g.value());
        return g * 2.0;
      });
    return ad::sum(y * 3.0 + x);
  };
  const auto id = x.register_hook([&](const V& g) {
    seen_x.push_back(g.value());
    return V();  // read only
  });
  f(true).backward();
  // y's hook saw 3, passed on 6: x.grad = 6·2x + 1; x's hook ran once, on the whole sum.
  BOOST_TEST(seen_y.size() == 1u);
  BOOST_TEST(seen_y[0] == (Array<double>{3.0, 3.0}));
  BOOST_TEST(x.grad().value() == (Array<double>{7.0, -17.0}));
  BOOST_TEST(seen_x.size() == 1u);
  BOOST_TEST(seen_x[0] == x.grad().value());
  // grad() sees the same replaced gradients, and leaves .grad alone.
  x.zero_grad();
  BOOST_TEST(ad::grad(f(true), {x})[0].value() == (Array<double>{7.0, -17.0}));
  BOOST_TEST(!x.has_grad());
  BOOST_TEST(seen_x.size() == 2u);
  x.remove_hook(id);
  f(false).backward();
  BOOST_TEST(x.grad().value() == (Array<double>{4.0, -8.0}));
  BOOST_TEST(seen_x.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_leaf_hook_replaces_what_goes_into_grad) {
  // Per-tensor gradient clipping: the leaf's hook rescales the pass's gradient to norm at most 1,
  // and a post-accumulate hook then sees the clipped .grad.
  V w = leaf(Array<double>{3.0, 4.0});
  w.register_hook([](const V& g) {
    const double n = std::sqrt(xt::sum(g.value() * g.value())());
    return n > 1 ? g / n : V();
  });
  Array<double> after;
  w.register_post_accumulate_hook([&](V& p) { after = p.grad().value(); });
  ad::sum(w * w + w).backward();  // gradient 2w + 1 = (7, 9), norm √130
  const double n = std::sqrt(130.0);
  BOOST_TEST(w.grad().value()(0) == 7 / n, tt::tolerance(1e-12));
  BOOST_TEST(w.grad().value()(1) == 9 / n, tt::tolerance(1e-12));
  BOOST_TEST(after == w.grad().value());
  // A hook's gradient of the wrong shape is refused, naming the shapes.
  V v = leaf(Array<double>{1.0, 2.0});
  v.register_hook([](const V& g) { return ad::sum(g); });
  BOOST_CHECK_EXCEPTION(ad::sum(v * v).backward(), ad::Error, [](const ad::Error& e) {
    return std::string(e.what()) ==
           "backward: a hook of a Variable of shape (2) (leaf) returned a gradient of shape ()";
  });
  BOOST_CHECK_THROW(V(Array<double>{1.0}).register_hook([](const V& g) { return g; }), ad::Error);
}

BOOST_AUTO_TEST_CASE(gradient_hooks_keep_second_order_working) {
  // f(x) = Σ sin(x)·x with a hook scaling the gradient at sin(x) by x (a Variable op): the first
  // derivative becomes x·cos(x)·x + sin(x), recorded through the hook, and its own derivative
  // must follow: 2x·cos(x) − x²·sin(x) + cos(x), as the central difference of it says.
  auto first = [](const V& x, bool keep_hook) {
    V s = ad::sin(x);
    const auto id = s.register_hook([x](const V& g) { return g * x; });
    V g = ad::grad(ad::sum(s * x), {x}, ad::BackwardOptions{true, true})[0];
    if (!keep_hook) s.remove_hook(id);
    return g;
  };
  const Array<double> x0{0.3, -1.2, 2.0};
  V x = leaf(x0);
  V g = first(x, false);
  const Array<double> second = ad::grad(ad::sum(g), {x})[0].value();
  auto hooked_gradient = [&first](const V& at) {
    ad::GradModeGuard on(true);  // (numerical_gradient probes without recording)
    return V(first(leaf(at.value()), false).value());
  };
  const Array<double> numeric =
      ad::numerical_gradient([&](const V& at) { return ad::sum(hooked_gradient(at)); }, x);
  for (std::size_t i = 0; i < 3; ++i) {
    const double v = x0(i);
    BOOST_TEST(g.value()(i) == v * v * std::cos(v) + std::sin(v), tt::tolerance(1e-12));
    BOOST_TEST(second(i) == 2 * v * std::cos(v) - v * v * std::sin(v) + std::cos(v),
               tt::tolerance(1e-12));
    BOOST_TEST(second(i) == numeric(i), tt::tolerance(1e-7));
  }
  // A hook still registered fires in the second pass too (as in PyTorch): the gradient reaching
  // sin(x) there (1 from the + sin(x) term) is scaled by x as well.
  V x2 = leaf(x0);
  const Array<double> both = ad::grad(ad::sum(first(x2, true)), {x2})[0].value();
  for (std::size_t i = 0; i < 3; ++i) {
    const double v = x0(i);
    BOOST_TEST(both(i) == 2 * v * std::cos(v) - v * v * std::sin(v) + v * std::cos(v),
               tt::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(anomaly_mode_names_the_op) {
  V x = ad::test::leaf(Array<double>{1.0, 0.0});
  {
    ad::AnomalyGuard anomaly;
    BOOST_CHECK_EXCEPTION(ad::log(x), ad::Error, [](const ad::Error& e) {
      std::string m = e.what();
      return m.find("log forward") != std::string::npos && m.find("Inf") != std::string::npos &&
             m.find("(2)") != std::string::npos;
    });
    // sqrt(0) is fine forward, but its derivative 1/(2 sqrt(0)) is infinite.
    V y = ad::sum(ad::sqrt(x));
    BOOST_CHECK_EXCEPTION(y.backward(), ad::Error, [](const ad::Error& e) {
      return std::string(e.what()).find("sqrt backward") != std::string::npos;
    });
  }
  // Outside the guard, nothing is checked.
  BOOST_CHECK_NO_THROW(ad::log(x));
}

BOOST_AUTO_TEST_CASE(library_usable_after_errors) {
  V a = ad::test::leaf(ad::test::uniform({2, 3}));
  V b = ad::test::leaf(ad::test::uniform({4, 2}));
  BOOST_CHECK_THROW(ad::matmul(a, b), ad::Error);
  BOOST_CHECK_THROW(a + b, ad::Error);
  BOOST_CHECK_THROW(ad::reshape(a, {4, 2}), ad::Error);
  V y = ad::sum(ad::matmul(b, a));
  y.backward();
  BOOST_TEST(a.grad().shape() == ad::Shape({2, 3}));
  BOOST_TEST(b.grad().shape() == ad::Shape({4, 2}));
}

BOOST_AUTO_TEST_CASE(wrong_gradient_shape_from_a_rule_is_caught) {
  // A custom op that forgets to sum its broadcast gradient back to its input's shape.
  auto bad = [](const V& a, const V& b) {
    return ad::make_op<double>("bad_add", Array<double>(a.value() + b.value()), {a, b},
                               [](const ad::BackwardContext<double>& c) -> ad::Grads<double> {
                                 return {c.grad, c.grad};
                               });
  };
  V a = ad::test::leaf(ad::test::uniform({2, 3}));
  V b = ad::test::leaf(ad::test::uniform({3}));
  BOOST_CHECK_EXCEPTION(ad::sum(bad(a, b)).backward(), ad::Error, [](const ad::Error& e) {
    std::string m = e.what();
    return m.find("bad_add backward") != std::string::npos &&
           m.find("(2,3)") != std::string::npos && m.find("(3)") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(printing) {
  std::ostringstream os;
  os << ad::exp(ad::test::leaf(Array<double>{0.0}));
  BOOST_TEST(os.str().find("op exp") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
