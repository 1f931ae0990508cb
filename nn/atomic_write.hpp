// Files written so that a crash or a kill never leaves a torn one: checkpoints, metrics.
#pragma once

#include <functional>
#include <string>

namespace ad::nn {

/// Writes `path` atomically: `write` fills a temporary file in the same folder (its name is
/// passed in), which is then flushed to the disk (fsync), renamed over `path`, and the folder
/// synced. After a crash `path` holds the old file or the new one, whole; on failure the old one
/// is untouched and the temporary removed. Temporaries of the same path left by writers that
/// were killed (whose process is gone) are removed too. Errors throw ad::Error naming `what`
/// and the path.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write,
                      const std::string& what);

/// Throws ad::Error naming `what` unless `path` can be written: not a folder, in a folder that
/// exists and where a file can be created (tried with a temporary that is removed at once).
void check_writable(const std::string& path, const std::string& what);

}  // namespace ad::nn
