// The command line of the example programs: --help, and exit statuses 2 for bad options and 1
// for a failure, with the message on stderr after the program's name.
#pragma once

#include <boost/program_options.hpp>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

namespace examples {

/// A number as --help shows its default (0.005, not 0.0050000000000000001).
inline std::string text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

/// Parses `text` as a T in [lo, hi], strictly: the whole text must be a number of T's kind (a
/// count refuses "-5", which a plain unsigned parse would turn into 2^64 − 5; a real refuses
/// "nan" and "1e400"). Throws a message naming the option otherwise.
template <class T>
T parse_number(const std::string& text, T lo, T hi, const std::string& name) {
  auto refuse = [&](const std::string& what) -> T {
    std::ostringstream os;
    os << "--" << name << " must be " << what << " from " << lo << " to " << hi << ", not '" << text
       << "'";
    throw boost::program_options::error(os.str());
  };
  const char* what = std::is_integral_v<T> ? "a whole number" : "a number";
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return refuse(what);
  char* end = nullptr;
  errno = 0;
  T value{};
  if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
    if (text[0] == '-') return refuse(what);
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (errno == ERANGE || v > std::numeric_limits<T>::max()) return refuse(what);
    value = static_cast<T>(v);
  } else if constexpr (std::is_integral_v<T>) {
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (errno == ERANGE || v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
      return refuse(what);
    value = static_cast<T>(v);
  } else {
    const double v = std::strtod(text.c_str(), &end);
    if (!std::isfinite(v)) return refuse(what);
    value = static_cast<T>(v);
  }
  if (*end != '\0' || !(value >= lo && value <= hi)) return refuse(what);
  return value;
}

/// An option holding a number in [lo, hi], checked when it is parsed (see parse_number); its
/// default is the target's value, shown in --help.
template <class T>
boost::program_options::typed_value<std::string>* number(T* target, T lo, T hi,
                                                         const std::string& name) {
  return boost::program_options::value<std::string>()
      ->default_value(text(static_cast<double>(*target)))
      ->notifier([=](const std::string& s) { *target = parse_number(s, lo, hi, name); });
}

/// The same without a default: the target keeps its value unless the option is given.
template <class T>
boost::program_options::typed_value<std::string>* optional_number(T* target, T lo, T hi,
                                                                  const std::string& name) {
  return boost::program_options::value<std::string>()->notifier(
      [=](const std::string& s) { *target = parse_number(s, lo, hi, name); });
}

/// Whether mpirun started this process as one of several (Open MPI's or PMI's environment).
inline bool under_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(name);
    if (v && std::atoi(v) > 1) return true;
  }
  return false;
}

/// Parses the options of `desc` (which lists "help,h"), prints the help when asked, else calls
/// `run` and returns its status.
inline int run_program(const char* name, int argc, char** argv,
                       const boost::program_options::options_description& desc,
                       const std::function<int()>& run) {
  namespace po = boost::program_options;
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace examples
