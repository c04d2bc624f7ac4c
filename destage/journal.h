// Journal segment files (SPEC §5): one file per bucket in BACKING/journal/,
// named bucket-<20-digit id>.log, appended to in sequence order and deleted
// when the bucket retires. The in-memory bucket bookkeeping lives in the
// Engine; this class only does the file I/O.
//
// Payloads are not kept in the daemon's heap: readers of a staged block and
// the write destager read them back from the file with ReadAt (pread), so
// they live in the page cache, which the kernel can reclaim, and reading
// them never takes a page fault on the daemon's side (replay's Scan maps
// the file; it runs once, at mount).
//
// Thread-safety: Segment appends must be serialized by the caller (the
// Engine's append lock); Sync and Remove may run concurrently with appends to
// other segments. ReadAt and Map may run concurrently with anything (they
// read bytes an append completed before; an unlinked segment stays readable
// while a shared_ptr to it lives).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <sys/uio.h>

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

  // Appends header + payload at the end (one pwritev); returns the offset
  // of the record (its payload follows the header).
  Result<uint64_t> Append(const uint8_t* header, const uint8_t* payload, size_t payload_len);
  // Appends `parts` (the headers and payloads of one op's records, in
  // order) at the end, in as few pwritev calls as IOV_MAX allows; returns
  // the offset of the first byte. On failure the file is cut back to where
  // it ended, so no partial record stays behind.
  Result<uint64_t> Append(std::span<const iovec> parts);
  // Reads `len` bytes at `offset` (within records already appended).
  Status ReadAt(uint64_t offset, size_t len, uint8_t* out) const;
  // fdatasync; the first successful one also fsyncs the directory, so that
  // the segment's name is as durable as its records. Thread-safe.
  Status Sync();
  // Calls `visit` with every intact record of every complete op in order
  // (payload_offset set, data null) and a view of its payload that is valid
  // during the call only; stops at a torn tail, which is cut off (when
  // `cut_torn`) so that later appends never follow garbage. An op whose
  // last record is missing or torn is part of the tail: none of its records
  // are visited. *torn tells whether a tail was found.
  // EUCLEAN when intact records follow a bad one. The file is read through
  // a mapping (page cache), not copied into the heap. A visitor's error
  // stops the scan and is returned.
  using Visitor = std::function<Status(Record&& r, std::span<const uint8_t> payload)>;
  Status Scan(const Visitor& visit, bool* torn, bool cut_torn = true);
  // Scan that collects the records with their payloads in memory (tools,
  // tests).
  Status ReadAll(std::vector<Record>* out, bool* torn, bool cut_torn = true);

  // Deletes the file.
  Status Remove();

  uint64_t id() const { return id_; }
  uint64_t bytes() const { return end_; }
  const std::string& path() const { return path_; }

 private:
  // A read-only mapping of a prefix of the segment; unmapped on destruction.
  // Its pages are file-backed and kept out of the daemon's memory lock.
  class Mapping {
   public:
    Mapping() = default;
    Mapping(Mapping&& o) noexcept : data_(o.data_), len_(o.len_) { o.data_ = nullptr, o.len_ = 0; }
    Mapping& operator=(Mapping&& o) noexcept;
    ~Mapping();
    const uint8_t* data() const { return data_; }
    size_t size() const { return len_; }

   private:
    friend class Segment;
    Mapping(const uint8_t* d, size_t n) : data_(d), len_(n) {}
    const uint8_t* data_ = nullptr;
    size_t len_ = 0;
  };
  // Maps the first `len` bytes (records appended already), for Scan.
  Result<Mapping> Map(uint64_t len) const;
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
