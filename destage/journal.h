// Journal segment files (SPEC §5): one file per bucket in BACKING/journal/,
// named bucket-<20-digit id>.log, appended to in sequence order and deleted
// when the bucket retires. The in-memory bucket bookkeeping lives in the
// Engine; this class only does the file I/O.
//
// Thread-safety: Segment appends must be serialized by the caller (the
// Engine's append lock); Sync and Remove may run concurrently with appends to
// other segments.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "catalog/status.h"
#include "destage/journal_format.h"

namespace chainswap {

class Segment {
 public:
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Creates bucket `id` in `dir` (0600). Its name becomes durable with its
  // first Sync (a directory fsync here would stall the appender).
  static Result<std::shared_ptr<Segment>> Create(const std::string& dir, uint64_t id);
  // Opens an existing bucket for replay and further truncation (or only for
  // reading, as fsck does).
  static Result<std::shared_ptr<Segment>> OpenExisting(const std::string& dir, uint64_t id,
                                                       bool read_only = false);

  // Appends header + payload at the end (one pwritev).
  Status Append(const uint8_t* header, const uint8_t* payload, size_t payload_len);
  // fdatasync; the first successful one also fsyncs the directory, so that
  // the segment's name is as durable as its records. Thread-safe.
  Status Sync();
  // Reads every intact record; stops at a torn tail, which is cut off (when
  // `cut_torn`) so that later appends never follow garbage. *torn tells
  // whether one was found. EUCLEAN when intact records follow a bad one.
  Status ReadAll(std::vector<Record>* out, bool* torn, bool cut_torn = true);
  // Deletes the file.
  Status Remove();

  uint64_t id() const { return id_; }
  uint64_t bytes() const { return end_; }
  const std::string& path() const { return path_; }

 private:
  Segment(int fd, uint64_t id, std::string dir, std::string path, uint64_t end, bool name_durable)
      : fd_(fd), id_(id), dir_(std::move(dir)), path_(std::move(path)), end_(end), name_durable_(name_durable) {}
  int fd_;
  const uint64_t id_;
  const std::string dir_;
  const std::string path_;
  uint64_t end_;  // append offset; serialized by the caller
  std::atomic<bool> name_durable_;  // the directory was fsynced since Create
};

// Bucket IDs of the segment files in `dir`, ascending. Files that do not look
// like segments are ignored (and logged).
Result<std::vector<uint64_t>> ListSegments(const std::string& dir);

}  // namespace chainswap
