#include "catalog/status.h"

#include <cstring>

namespace chainswap {

Status Status::FromErrno(const std::string& context) { return FromErrno(errno, context); }

Status Status::FromErrno(int err, const std::string& context) {
  return Status::Error(err, context + ": " + std::strerror(err));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_ + " (" + strerrorname_np(code_) + ")";
}

}  // namespace chainswap
