// The block cache under the arrays: a large block freed is handed out again, small ones are not
// kept, and the cache can be emptied.
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"

using ad::Array;

BOOST_AUTO_TEST_SUITE(allocator)

BOOST_AUTO_TEST_CASE(large_blocks_are_reused) {
  ad::memory::release_cached_memory();
  const std::size_t n = ad::memory::cached_block_min / sizeof(float) + 1000;
  const float* first;
  {
    Array<float> a = Array<float>::from_shape({n});
    first = a.data();
  }
  Array<float> b = Array<float>::from_shape({n});  // the same size: the cached block
  BOOST_TEST(b.data() == first);
  b.fill(1.0f);
  BOOST_TEST(b(n - 1) == 1.0f);
}

BOOST_AUTO_TEST_CASE(release_and_small_blocks) {
  {
    Array<double> big = Array<double>::from_shape({ad::memory::cached_block_min});
    big.fill(2.0);
  }
  ad::memory::release_cached_memory();  // frees the cached block; nothing left to reuse
  Array<double> small = ad::test::uniform({10});
  Array<double> copy = small;
  BOOST_TEST(copy == small);
}

BOOST_AUTO_TEST_SUITE_END()
