#include "fs/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

namespace chainswap {

void SetUpLogging(bool to_stderr, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (to_stderr) {
    logger = spdlog::stderr_color_mt("chainswap");
  } else {
    logger = spdlog::syslog_logger_mt("chainswap", "chainswapfs", LOG_PID, LOG_DAEMON);
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace chainswap
