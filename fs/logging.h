// Logging set-up shared by the daemon and the CLI.
#pragma once

#include <string>

namespace chainswap {

// Installs the default spdlog logger: stderr when `to_stderr`, syslog
// (ident "chainswapfs") otherwise, at `level` (trace..off).
void SetUpLogging(bool to_stderr, const std::string& level);

}  // namespace chainswap
