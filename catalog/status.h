// Errors as values at module boundaries.
//
// A Status is either OK or carries an errno-style code plus a message for the
// operator. The code is the errno the FUSE edge will eventually answer with, so
// modules choose it precisely (ENOSPC for a full store, ENOENT for a miss,
// EIO only for real I/O or corruption). Result<T> is a value or a Status.
//
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace chainswap {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(int code, std::string message) {
    return Status(code == 0 ? EIO : code, std::move(message));
  }
  // Builds an error from the current errno: "context: strerror(errno)".
  static Status FromErrno(const std::string& context);
  static Status FromErrno(int err, const std::string& context);

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}
  int code_ = 0;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}   // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: ok()
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  // OK when ok(), the error otherwise.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace chainswap

// Returns early from the enclosing function with the Status if it is an error.
#define CS_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::chainswap::Status cs_status_ = (expr);     \
    if (!cs_status_.ok()) return cs_status_;     \
  } while (0)
