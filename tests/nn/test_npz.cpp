// Hostile .npz files: malformed .npy headers, sizes that lie, shapes whose size overflows, and
// temporaries left by killed saves. Each gives ad::Error naming the file and the entry, before
// anything large is allocated.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "helpers.hpp"
#include "nn/nn.hpp"
#include "nn/npz.hpp"

namespace fs = std::filesystem;
using ad::Array;
namespace nn = ad::nn;
namespace npz = ad::nn::npz;

namespace {

std::string temp_path(const std::string& name) {
  return std::string(AD_BINARY_DIR) + "/tests/" + name;
}

bool says(const ad::Error& e, std::initializer_list<std::string> parts) {
  std::string m = e.what();
  for (const auto& p : parts)
    if (m.find(p) == std::string::npos) return false;
  return true;
}

/// The bytes of a .npy file of version 1.0 with the given header dictionary (padded as NumPy
/// pads it) and data.
std::string npy(const std::string& dict, const std::string& data) {
  std::string header = dict;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

/// A zip archive (stored, with right CRCs: written by Python's zipfile) holding one member
/// `name` with `bytes`.
std::string archive(const std::string& file, const std::string& name, const std::string& bytes) {
  const std::string path = temp_path(file), member = temp_path(file + ".member");
  std::ofstream(member, std::ios::binary) << bytes;
  const std::string cmd = "/usr/bin/python3 -c \"import zipfile; zipfile.ZipFile('" + path +
                          "', 'w').write('" + member + "', '" + name + "')\"";
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  std::remove(member.c_str());
  return path;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(npz_files)

BOOST_AUTO_TEST_CASE(malformed_headers_name_the_entry_and_the_file) {
  // Each of these once read past the header string or leaked std::out_of_range ("stoull",
  // "basic_string::compare") instead of ad::Error.
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape'", "':' expected"},
      {"{'shape': (2,), 'fortran_order': False, 'descr'", "':' expected"},
      {"{'descr': '<f4', 'shape': (2,), 'fortran_order'", "':' expected"},
      {"{'descr': '<f4', 'shape': (2,), 'fortran_order':", "True or False expected"},
      {"{'descr': '<f4', 'shape': (2,), 'fortran_order': True, }", "Fortran order"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
       "dimension too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,", "a dimension expected"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", "',' or '}' expected"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unknown key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,), }", "twice"},
      {"{'descr': '<f4', 'fortran_order': False}", "no 'shape'"},
      {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype"},
      {"", "'{' expected"},
  };
  for (const auto& [dict, why] : headers) {
    BOOST_TEST_CONTEXT("header " << dict) {
      const std::string path = archive("npz_header.npz", "w.npy", npy(dict, std::string(8, '\0')));
      BOOST_CHECK_EXCEPTION(npz::load(path), ad::Error, [&](const ad::Error& e) {
        return says(e, {"npz_header.npz", "entry 'w'", why});
      });
      std::remove(path.c_str());
    }
  }
}

BOOST_AUTO_TEST_CASE(a_shape_whose_size_overflows_is_refused) {
  // 2^32 · 2^32 elements overflow to 0 bytes: once accepted with no data, then written past.
  const std::string path = archive(
      "npz_overflow.npz", "w.npy",
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", ""));
  BOOST_CHECK_EXCEPTION(npz::load(path), ad::Error, [](const ad::Error& e) {
    return says(e, {"npz_overflow.npz", "entry 'w'", "more bytes than can be counted"});
  });
  // Empty, but with extents whose product overflows xtensor's signed strides.
  const std::string empty = archive(
      "npz_empty.npz", "w.npy",
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }", ""));
  BOOST_CHECK_EXCEPTION(npz::load(empty), ad::Error, [](const ad::Error& e) {
    return says(e, {"npz_empty.npz", "more bytes than can be counted"});
  });
  std::remove(empty.c_str());
  // An entry made in memory with a shape that does not match its bytes is refused too.
  npz::Entry e{"<f4", {4294967296, 4294967296}, {}};
  BOOST_CHECK_THROW(npz::to_array<Array<float>>(e, "w", "memory"), ad::Error);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(a_size_claimed_by_the_directory_is_checked_before_allocating) {
  // A 4 KB archive whose zip directory claims a 3 GiB entry: refused at once, without
  // allocating (it once allocated 3.1 GB for 16 s before failing).
  const std::string data(4000, '\0');
  const std::string path =
      archive("npz_claim.npz", "w.npy",
              npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", data));
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // The uncompressed size: at offset 22 of the local header, 24 of the central directory record.
  auto patch = [&](const std::string& signature, std::size_t offset) {
    const std::size_t at = bytes.find(signature);
    BOOST_REQUIRE(at != std::string::npos);
    const char huge[4] = {'\x00', '\x00', '\x00', '\xC0'};  // 0xC0000000 = 3 GiB
    bytes.replace(at + offset, 4, huge, 4);
  };
  patch(std::string("PK\x03\x04", 4), 22);
  patch(std::string("PK\x01\x02", 4), 24);
  std::ofstream(path, std::ios::binary) << bytes;
  const auto start = std::chrono::steady_clock::now();
  BOOST_CHECK_EXCEPTION(npz::load(path), ad::Error, [](const ad::Error& e) {
    return says(e, {"npz_claim.npz", "entry 'w'"});
  });
  BOOST_TEST(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 1.0);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(a_header_that_disagrees_with_the_entry_size_is_refused) {
  const std::string path = archive(
      "npz_short.npz", "w.npy",
      npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", std::string(40, '\0')));
  BOOST_CHECK_EXCEPTION(npz::load(path), ad::Error, [](const ad::Error& e) {
    return says(e, {"npz_short.npz", "entry 'w'", "needs 96 bytes", "has 40"});
  });
  std::remove(path.c_str());
  BOOST_CHECK_EXCEPTION(npz::load(std::string(AD_BINARY_DIR)), ad::Error,
                        [](const ad::Error& e) { return says(e, {"is a directory"}); });
}

BOOST_AUTO_TEST_CASE(an_entry_name_twice_is_named_as_such) {
  // Python's zipfile writes a second member of the same name (with a warning); libzip then
  // refuses the archive with "File already exists".
  const std::string path = temp_path("twice.npz"), member = temp_path("twice.member");
  std::ofstream(member, std::ios::binary)
      << npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0'));
  const std::string cmd = "/usr/bin/python3 -W ignore -c \"import zipfile; z = zipfile.ZipFile('" +
                          path + "', 'w'); z.write('" + member + "', 'w.npy'); z.write('" + member +
                          "', 'w.npy'); z.close()\"";
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  BOOST_CHECK_EXCEPTION(ad::nn::npz::load(path), ad::Error, [&](const ad::Error& e) {
    const std::string m = e.what();
    return m.find(path) != std::string::npos &&
           m.find("two of its entries have the same name") != std::string::npos;
  });
  std::remove(member.c_str());
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(stale_temporaries_are_removed_by_the_next_save) {
  const std::string dir = temp_path("npz_stale");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = dir + "/model.npz";
  // Temporaries of killed saves (pids that no longer run) and one of a live writer (our parent).
  for (const std::string pid : {"999999991", "999999992"})
    std::ofstream(path + ".tmp-" + pid + "-0") << "torn";
  const std::string live = path + ".tmp-" + std::to_string(::getppid()) + "-0";
  std::ofstream(live) << "in progress";
  std::ofstream(dir + "/other.npz.tmp-999999993-0") << "another target's";
  npz::save(path, {{"w", npz::from_array(Array<float>{1.0f, 2.0f})}});
  std::set<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir)) left.insert(entry.path().filename());
  BOOST_TEST(left.count("model.npz") == 1u);
  BOOST_TEST(left.count("model.npz.tmp-999999991-0") == 0u);
  BOOST_TEST(left.count("model.npz.tmp-999999992-0") == 0u);
  BOOST_TEST(left.count(fs::path(live).filename().string()) == 1u);
  BOOST_TEST(left.count("other.npz.tmp-999999993-0") == 1u);
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
