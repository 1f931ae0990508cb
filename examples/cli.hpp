// The command line of the example programs: --help, and exit statuses 2 for bad options and 1
// for a failure, with the message on stderr after the program's name.
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <iostream>
#include <sstream>
#include <string>

namespace examples {

/// A number as --help shows its default (0.005, not 0.0050000000000000001).
inline std::string text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
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
