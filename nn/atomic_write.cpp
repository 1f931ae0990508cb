#include "nn/atomic_write.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "autodiff/error.hpp"

namespace ad::nn {

namespace fs = std::filesystem;

namespace {

const char* const tmp_marker = ".tmp-";

fs::path folder_of(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

/// A temporary name beside `path`: <path>.tmp-<pid>-<n>, unique within this process too.
std::string temporary_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + tmp_marker + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

/// fsync of a file or folder; throws naming `what`.
void sync(const fs::path& p, bool folder, const std::string& what) {
  const int fd = ::open(p.c_str(), folder ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail(what, ": cannot open '", p.string(), "' to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail(what, ": cannot sync '", p.string(), "' to the disk: ", std::strerror(err));
}

/// Removes temporaries of `path` whose writer is gone (killed mid-save): <name>.tmp-<pid>...
/// with no process <pid>. Those of live processes (another writer of the same path) stay.
void remove_stale_temporaries(const fs::path& path) {
  const std::string prefix = path.filename().string() + tmp_marker;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_of(path), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    std::size_t digits = 0;
    while (prefix.size() + digits < name.size() &&
           std::isdigit(static_cast<unsigned char>(name[prefix.size() + digits])))
      ++digits;
    if (digits == 0 || digits > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name.substr(prefix.size(), digits)));
    if (pid == ::getpid()) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write,
                      const std::string& what) {
  const std::string tmp = temporary_for(path);
  try {
    write(tmp);
    sync(tmp, false, what);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail(what, ": cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  sync(folder_of(path), true, what);
  remove_stale_temporaries(path);
}

void check_writable(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(what, ": '", path, "' is a directory; give a file name");
  const fs::path folder = folder_of(path);
  if (!fs::is_directory(folder, ec))
    fail(what, ": cannot write '", path, "': the folder '", folder.string(), "' does not exist");
  const std::string probe = temporary_for(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    fail(what, ": cannot write '", path, "': cannot create a file in '", folder.string(),
         "': ", std::strerror(errno));
  ::close(fd);
  std::remove(probe.c_str());
}

}  // namespace ad::nn
