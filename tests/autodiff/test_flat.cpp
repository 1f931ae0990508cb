// Flat parameter and gradient buffers: each parameter's value and .grad a view of one buffer.
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

using ad::Array;
using V = ad::Variable<float>;

BOOST_AUTO_TEST_SUITE(flat)

BOOST_AUTO_TEST_CASE(values_and_gradients_are_views_of_two_buffers) {
  V w(ad::test::uniform<float>({3, 4}), true), b(ad::test::uniform<float>({4}, -1, 1, 2), true);
  const Array<float> w0 = w.value(), b0 = b.value();
  ad::FlatParameters<float> flat({w, b});
  BOOST_TEST(flat.size() == 16u);
  BOOST_TEST(w.value().data() == flat.values());
  BOOST_TEST(b.value().data() == flat.values() + 12);
  BOOST_TEST(w.value() == w0);  // the same numbers, moved
  BOOST_TEST(b.value() == b0);
  BOOST_TEST(w.grad().value().data() == flat.grads());
  // Backward adds into the gradient buffer; zero_grad zeroes it in place.
  V x(ad::test::uniform<float>({2, 3}, -1, 1, 3));
  ad::sum(ad::matmul(x, w) + b).backward();
  BOOST_TEST(flat.attached());
  BOOST_TEST(flat.grads()[12] == 2.0f);  // d/db = the 2 rows
  BOOST_TEST(b.grad().value()(0) == 2.0f);
  b.zero_grad();
  BOOST_TEST(flat.grads()[12] == 0.0f);
  BOOST_TEST(b.has_grad());
  // A value replaced by a new array is no longer a view; attach() copies it back in.
  w.mutable_value() = Array<float>(xt::ones<float>({3, 4}));
  BOOST_TEST(!flat.attached());
  flat.attach();
  BOOST_TEST(flat.attached());
  BOOST_TEST(flat.values()[5] == 1.0f);
}

BOOST_AUTO_TEST_CASE(the_buffers_outlive_the_flat_object_while_views_remain) {
  V w(ad::test::uniform<float>({100, 100}), true);
  {
    ad::FlatParameters<float> flat({w});
    (void)flat;
  }
  // The arena stays while w's value and gradient are views of it (ASan would see a use after
  // free otherwise); replacing them releases it.
  float sum = 0;
  for (float v : w.value()) sum += v;
  BOOST_TEST(std::isfinite(sum));
  w.mutable_value() = Array<float>(xt::zeros<float>({100, 100}));
  w.zero_grad();
  BOOST_TEST(w.value()(99, 99) == 0.0f);
}

BOOST_AUTO_TEST_CASE(refuses_what_cannot_be_flattened) {
  V w(Array<float>{1.0f}, true), c(Array<float>{2.0f});
  BOOST_CHECK_THROW(ad::FlatParameters<float>({w, w}), ad::Error);
  BOOST_CHECK_THROW(ad::FlatParameters<float>({c}), ad::Error);
}

BOOST_AUTO_TEST_SUITE_END()
