// reshape, flatten, permute, slicing, indexing, concatenation, broadcasting.
#include <boost/test/unit_test.hpp>

#include <xtensor/xview.hpp>

#include "helpers.hpp"

namespace tt = boost::test_tools;
using ad::Array;
using ad::Shape;
using ad::test::leaf;
using ad::test::uniform;
using ad::testing::passed;
using V = ad::Variable<double>;

namespace {

bool message_has(const ad::Error& e, std::initializer_list<const char*> parts) {
  std::string m = e.what();
  for (const char* p : parts)
    if (m.find(p) == std::string::npos) return false;
  return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(shape)

BOOST_AUTO_TEST_CASE(same_shape_compares_rank_and_extents) {
  BOOST_TEST(ad::same_shape(Shape{}, Shape{}));
  BOOST_TEST(ad::same_shape(Shape{3, 4}, Shape{3, 4}));
  BOOST_TEST(ad::same_shape(Shape{2, 3, 4, 5, 6}, Shape{2, 3, 4, 5, 6}));  // beyond the inline 4
  BOOST_TEST(!ad::same_shape(Shape{3, 4}, Shape{4, 3}));
  BOOST_TEST(!ad::same_shape(Shape{3, 4}, Shape{3, 4, 1}));
  BOOST_TEST(!ad::same_shape(Shape{}, Shape{1}));
  BOOST_TEST(!ad::same_shape(Shape{2, 3, 4, 5, 6}, Shape{2, 3, 4, 5, 7}));
}

BOOST_AUTO_TEST_CASE(reshape_and_flatten) {
  V a = leaf(uniform({2, 3, 4}));
  auto f = [](const auto& a) { return ad::reshape(a, {4, 6}) * 2.0; };
  BOOST_TEST(passed(ad::gradcheck(f, {a}, ad::test::second_order())));
  BOOST_TEST(ad::flatten(a).shape() == Shape({24}));
  BOOST_TEST(ad::flatten(a, 1).shape() == Shape({2, 12}));
  BOOST_TEST(ad::flatten(a, 0, 1).shape() == Shape({6, 4}));
  BOOST_TEST(ad::flatten(V(Array<double>(3.0))).shape() == Shape({1}));
  BOOST_TEST(ad::reshape(a, {24}).value()(5) == a.value()(0, 1, 1));
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::flatten(a, 1); }, {a})));
  BOOST_TEST(passed(ad::gradcheck(
      [](const auto& s) {
        return ad::reshape(s, {1, 1});
      },
      {leaf(Array<double>(2.0))})));
  BOOST_CHECK_EXCEPTION(ad::reshape(a, {5, 5}), ad::Error, [](const ad::Error& e) {
    return message_has(e, {"reshape", "(2,3,4)", "(5,5)"});
  });
}

BOOST_AUTO_TEST_CASE(permute_and_transpose) {
  V a = leaf(uniform({2, 3, 4}));
  auto f = [](const auto& a) { return ad::permute(a, {2, 0, 1}); };
  BOOST_TEST(passed(ad::gradcheck(f, {a}, ad::test::second_order())));
  V p = ad::permute(a, {2, 0, 1});
  BOOST_TEST(p.shape() == Shape({4, 2, 3}));
  BOOST_TEST(p.value()(3, 1, 2) == a.value()(1, 2, 3));
  V t = ad::transpose(a);
  BOOST_TEST(t.value()(1, 3, 2) == a.value()(1, 2, 3));
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::transpose(a, 0, 2); }, {a})));
  BOOST_CHECK_THROW(ad::permute(a, {0, 0, 1}), ad::Error);
  BOOST_CHECK_THROW(ad::transpose(a, 0, 3), ad::Error);
  BOOST_CHECK_THROW(ad::transpose(leaf(uniform({3}))), ad::Error);
}

BOOST_AUTO_TEST_CASE(slice_along_an_axis) {
  V a = leaf(uniform({4, 6}));
  V s = ad::slice(a, 1, 1, 5, 2);  // columns 1 and 3
  BOOST_TEST(s.shape() == Shape({4, 2}));
  BOOST_TEST(s.value()(2, 1) == a.value()(2, 3));
  BOOST_TEST(ad::slice(a, 0, 2, 100).shape() == Shape({2, 6}));  // stop clipped
  BOOST_TEST(ad::slice(a, -1, 6, 6).shape() == Shape({4, 0}));   // empty
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::slice(a, 1, 1, 5, 2); }, {a},
                                  ad::test::second_order())));
  BOOST_TEST(passed(ad::gradcheck([](const auto& a) { return ad::slice(a, 0, 1, 3); }, {a})));
  BOOST_CHECK_EXCEPTION(ad::slice(a, 1, 7, 9), ad::Error, [](const ad::Error& e) {
    return message_has(e, {"slice", "start 7", "(4,6)"});
  });
  BOOST_CHECK_THROW(ad::slice(a, 2, 0, 1), ad::Error);
  BOOST_CHECK_THROW(ad::slice(a, 0, 0, 1, 0), ad::Error);
}

BOOST_AUTO_TEST_CASE(slice_gradients_are_added_at_their_part) {
  // The first-order gradient of a slice is added in place at its part (no whole zero tensor per
  // slice); every way a gradient is collected must see the same numbers as the dense sum.
  const Array<double> a = uniform({3, 5, 4}, -1, 1, 7);
  auto loss = [](const V& x) {
    V total = ad::sum(ad::square(x)) * 0.5;  // a dense contribution besides the slices
    for (std::size_t t = 0; t < 5; ++t)
      total = total + ad::sum(ad::slice(x, 1, t, t + 1) * double(t + 1));
    return total + ad::sum(ad::slice(x, 2, 1, 4, 2));  // a strided slice along another axis
  };
  Array<double> want = a;  // d/dx: x + (t + 1) at position t + 1 at columns 1 and 3
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t t = 0; t < 5; ++t)
      for (std::size_t k = 0; k < 4; ++k) want(i, t, k) += double(t + 1) + (k % 2 ? 1.0 : 0.0);
  // Into a leaf's .grad, twice (accumulating).
  V x = leaf(a);
  loss(x).backward();
  BOOST_TEST(x.grad().value() == want, tt::tolerance(1e-14) << tt::per_element());
  loss(x).backward();
  BOOST_TEST(x.grad().value() == Array<double>(2.0 * want), tt::tolerance(1e-14)
                                                                << tt::per_element());
  // Through grad(), and through an intermediate (the pending gradient of a node).
  V y = leaf(a);
  BOOST_TEST(ad::grad(loss(y * 1.0), {y})[0].value() == want, tt::tolerance(1e-14)
                                                                  << tt::per_element());
  // Only slices reaching a leaf (no dense part), one of them alone.
  V z = leaf(a);
  ad::sum(ad::slice(z, 0, 1, 2)).backward();
  Array<double> one = xt::zeros<double>({3, 5, 4});
  xt::view(one, 1) = 1.0;
  BOOST_TEST(z.grad().value() == one, tt::per_element());
  // A hook sees the whole gradient, of the Variable's shape.
  V h = leaf(a);
  Shape seen;
  h.register_hook([&](const V& g) {
    seen = g.shape();
    return V();
  });
  ad::sum(ad::slice(h, 1, 2, 3)).backward();
  BOOST_TEST(seen == Shape({3, 5, 4}));
  // Second order records unslice as before.
  BOOST_TEST(passed(ad::gradcheck([&](const std::vector<V>& in) { return loss(in[0]); }, {leaf(a)},
                                  ad::test::second_order())));
}

BOOST_AUTO_TEST_CASE(unslice_is_the_adjoint) {
  V a = leaf(uniform({2, 3}));
  auto f = [](const auto& a) { return ad::unslice(a, {2, 7}, 1, 1, 2); };
  BOOST_TEST(passed(ad::gradcheck(f, {a}, ad::test::second_order())));
  V u = ad::unslice(a, {2, 7}, 1, 1, 2);
  BOOST_TEST(u.value()(1, 5) == a.value()(1, 2));
  BOOST_TEST(u.value()(1, 4) == 0.0);
  BOOST_CHECK_THROW(ad::unslice(a, {2, 4}, 1, 1, 2), ad::Error);
}

BOOST_AUTO_TEST_CASE(index_select_and_index_add) {
  V table = leaf(uniform({5, 3}));
  std::vector<std::size_t> idx{4, 0, 4, 2};
  V rows = ad::index_select(table, 0, idx);
  BOOST_TEST(rows.shape() == Shape({4, 3}));
  BOOST_TEST(rows.value()(2, 1) == table.value()(4, 1));
  auto f = [&idx](const auto& t) { return ad::index_select(t, 0, idx); };
  BOOST_TEST(passed(ad::gradcheck(f, {table}, ad::test::second_order())));
  // Repeated index 4: its gradient adds up.
  ad::sum(ad::index_select(table, 0, idx)).backward();
  BOOST_TEST(table.grad().value()(4, 0) == 2.0);
  BOOST_TEST(table.grad().value()(1, 0) == 0.0);
  auto cols = [](const auto& t) { return ad::index_select(t, 1, {2, 2, 0}); };
  BOOST_TEST(passed(ad::gradcheck(cols, {table})));
  auto add = [&idx](const auto& r) { return ad::index_add(r, {5, 3}, 0, idx); };
  BOOST_TEST(passed(ad::gradcheck(add, {leaf(uniform({4, 3}))}, ad::test::second_order())));
  BOOST_CHECK_EXCEPTION(ad::index_select(table, 0, {1, 5}), ad::Error, [](const ad::Error& e) {
    return message_has(e, {"index_select", "index 5", "(5,3)"});
  });
}

BOOST_AUTO_TEST_CASE(gather_and_scatter_add) {
  V logits = leaf(uniform({4, 5}));
  ad::Index labels = ad::test::index_of({3, 0, 4, 3}, {4, 1});
  V picked = ad::gather(logits, 1, labels);
  BOOST_TEST(picked.shape() == Shape({4, 1}));
  BOOST_TEST(picked.value()(2, 0) == logits.value()(2, 4));
  auto f = [&labels](const auto& l) { return ad::gather(l, 1, labels); };
  BOOST_TEST(passed(ad::gradcheck(f, {logits}, ad::test::second_order())));
  ad::Index along0 = ad::test::index_of({1, 0, 3, 3, 2, 0, 0, 0, 1, 1}, {2, 5});
  auto g0 = [&along0](const auto& l) { return ad::gather(l, 0, along0); };
  BOOST_TEST(passed(ad::gradcheck(g0, {logits})));
  auto s = [&labels](const auto& v) { return ad::scatter_add(v, {4, 5}, 1, labels); };
  BOOST_TEST(passed(ad::gradcheck(s, {leaf(uniform({4, 1}))}, ad::test::second_order())));
  ad::Index bad = ad::test::index_of({3, 0, 5, 3}, {4, 1});
  BOOST_CHECK_EXCEPTION(ad::gather(logits, 1, bad), ad::Error, [](const ad::Error& e) {
    return message_has(e, {"gather", "index 5", "(4,5)"});
  });
  BOOST_CHECK_THROW(ad::gather(logits, 1, ad::test::index_of({1, 2}, {2, 1})), ad::Error);
}

BOOST_AUTO_TEST_CASE(concatenate_and_stack) {
  V a = leaf(uniform({2, 3}, -1, 1, 1));
  V b = leaf(uniform({2, 1}, -1, 1, 2));
  V c = leaf(uniform({2, 2}, -1, 1, 3));
  V cat = ad::concatenate(std::vector<V>{a, b, c}, 1);
  BOOST_TEST(cat.shape() == Shape({2, 6}));
  BOOST_TEST(cat.value()(1, 3) == b.value()(1, 0));
  BOOST_TEST(cat.value()(1, 5) == c.value()(1, 1));
  auto f = [](const auto& a, const auto& b, const auto& c) {
    using Var = std::decay_t<decltype(a)>;
    return ad::concatenate(std::vector<Var>{a, b, c}, -1);
  };
  BOOST_TEST(passed(ad::gradcheck(f, {a, b, c}, ad::test::second_order())));
  V d = leaf(uniform({2, 3}, -1, 1, 4));
  auto st = [](const auto& a, const auto& d) {
    using Var = std::decay_t<decltype(a)>;
    return ad::stack(std::vector<Var>{a, d, a}, 1);
  };
  BOOST_TEST(ad::stack(std::vector<V>{a, d}, 0).shape() == Shape({2, 2, 3}));
  BOOST_TEST(ad::stack(std::vector<V>{a, d}, 2).shape() == Shape({2, 3, 2}));
  BOOST_TEST(passed(ad::gradcheck(st, {a, d}, ad::test::second_order())));
  BOOST_CHECK_THROW(ad::concatenate(std::vector<V>{a, b}, 0), ad::Error);
  BOOST_CHECK_THROW(ad::stack(std::vector<V>{a, b}), ad::Error);
  BOOST_CHECK_THROW(ad::concatenate(std::vector<V>{}), ad::Error);
}

BOOST_AUTO_TEST_CASE(broadcast_to_and_sum_to) {
  V a = leaf(uniform({3, 1}));
  auto f = [](const auto& a) { return ad::broadcast_to(a, {2, 3, 4}); };
  BOOST_TEST(passed(ad::gradcheck(f, {a}, ad::test::second_order())));
  auto g = [](const auto& a) { return ad::sum_to(a, {3, 1}); };
  BOOST_TEST(passed(ad::gradcheck(g, {leaf(uniform({2, 3, 4}))}, ad::test::second_order())));
  BOOST_TEST(ad::sum_to(V(Array<double>(xt::ones<double>({2, 3}))), {3}).value() ==
             (Array<double>{2, 2, 2}));
  BOOST_CHECK_THROW(ad::broadcast_to(a, {2, 4}), ad::Error);
  BOOST_CHECK_THROW(ad::sum_to(a, {2}), ad::Error);
}

BOOST_AUTO_TEST_CASE(embedding_and_full) {
  V table = leaf(uniform({5, 3}));
  const V ids(Array<double>{{4, 0}, {4, 2}});  // whole numbers, (2, 2)
  V rows = ad::embedding(table, ids);
  BOOST_TEST(rows.shape() == Shape({2, 2, 3}));
  for (std::size_t j = 0; j < 3; ++j) {
    BOOST_TEST(rows.value()(0, 0, j) == table.value()(4, j));
    BOOST_TEST(rows.value()(1, 1, j) == table.value()(2, j));
  }
  auto f = [&ids](const auto& t) { return ad::embedding(t, ids); };
  BOOST_TEST(passed(ad::gradcheck(f, {table}, ad::test::second_order())));
  // No gradient reaches the ids.
  V id_leaf = leaf(ids.value());
  ad::sum(ad::embedding(table, id_leaf)).backward();
  BOOST_TEST(!id_leaf.has_grad());
  BOOST_TEST(table.grad().value()(4, 1) == 2.0);
  BOOST_CHECK_EXCEPTION(ad::embedding(table, V(Array<double>{1.5})), ad::Error,
                        [](const ad::Error& e) {
                          return message_has(e, {"embedding", "1.5"});
                        });
  BOOST_CHECK_EXCEPTION(ad::embedding(table, V(Array<double>{5})), ad::Error,
                        [](const ad::Error& e) {
                          return message_has(e, {"embedding", "5", "5 rows"});
                        });
  BOOST_CHECK_THROW(ad::embedding(V(Array<double>{1, 2}), ids), ad::Error);
  const V nan(Array<double>{std::nan("")});
  BOOST_CHECK_THROW(ad::embedding(table, nan), ad::Error);
  // full: a constant of the shape.
  V c = ad::full<double>(Shape{2, 3}, 1.5);
  BOOST_TEST(c.shape() == Shape({2, 3}));
  BOOST_TEST(!c.requires_grad());
  BOOST_TEST(c.value() == (Array<double>(xt::ones<double>({2, 3}) * 1.5)));
  BOOST_TEST(std::isnan(ad::full<double>(Shape{}, std::nan("")).item()));
}

BOOST_AUTO_TEST_SUITE_END()
