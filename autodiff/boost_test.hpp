// Boost.Test support: BOOST_TEST(ad::testing::passed(report)) fails a test case with the whole
// gradcheck report printed. Only test programs include this header.
#pragma once

#include <boost/test/unit_test.hpp>

#include "autodiff/gradcheck.hpp"

namespace ad::testing {

/// Converts a gradcheck report into a Boost.Test predicate that prints the report on failure.
inline boost::test_tools::predicate_result passed(const GradcheckReport& report) {
  boost::test_tools::predicate_result result(report.passed);
  if (!report.passed) result.message() << "\n" << report;
  return result;
}

}  // namespace ad::testing
