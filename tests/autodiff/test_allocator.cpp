// The block caches under the arrays and the tape's records: a block freed is handed out again
// (large ones by exact size, small ones by size class, except under a sanitizer), the counts of
// memory_stats() stay exact, and the caches can be emptied.
#include <boost/test/unit_test.hpp>

#include <cstdlib>

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

// Whether this build caches small blocks (not under AddressSanitizer or ThreadSanitizer).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool small_cached = false;
#else
constexpr bool small_cached = true;
#endif

BOOST_AUTO_TEST_CASE(small_blocks_by_size_class) {
  ad::memory::release_cached_memory();
  const auto before = ad::memory::memory_stats().in_use;
  const float* first;
  {
    Array<float> a = Array<float>::from_shape({40});  // 160 bytes: the class of 129–192
    first = a.data();
    BOOST_TEST(ad::memory::memory_stats().in_use == before + 160);
  }
  BOOST_TEST(ad::memory::memory_stats().in_use == before);
  if (small_cached) {  // kept by the cache (also after release_cached_memory), not the system's
    void* other = std::malloc(192);
    BOOST_TEST(other != static_cast<const void*>(first));
    std::free(other);
  }
  Array<float> b = Array<float>::from_shape({45});  // 180 bytes, the same class
  BOOST_TEST((b.data() == first) == small_cached);
  BOOST_TEST(ad::memory::memory_stats().in_use == before + 180);
  b.fill(3.0f);
  BOOST_TEST(b(44) == 3.0f);
  ad::memory::release_cached_memory();
  // A Variable's record comes from the cache of small blocks but is not an array: only its
  // value counts in memory_stats().
  for (int i = 0; i < 3; ++i) {
    ad::Variable<float> v(Array<float>::from_shape({3}), true);
    BOOST_TEST(ad::memory::memory_stats().in_use == before + 180 + 12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
