// `chainswap estimate` (issue 14): what chainswap would store for a chain
// made of the given swap or memory images, before adopting it.
//
// The images are read once, in kBlockSize blocks (a last partial block is
// zero-padded, as a write into the mount would be). All-zero blocks are
// counted and never stored (block.h). Every other block is hashed (XXH3-128)
// and counted in a table of distinct blocks; the first time a block is seen
// it is compressed with the content store's rule (catalog/compression.h), so
// the estimate is exactly what a mount stores: distinct non-zero blocks of
// 4 KiB with compress=off, their sectors with compress=lz4.
//
// The report is a histogram in the form of OpenZFS's `zdb -S`: rows by
// reference count (1, 2, 4, ...: row b holds blocks referenced b to 2b-1
// times), each with the allocated (distinct) and the referenced (logical)
// blocks and their logical, compressed and allocated sizes.
//
// Memory stays bounded for images larger than RAM: the table of distinct
// blocks never grows past its share of `memory_bytes`; when it is full its
// entries are written, sorted, as a run to an unlinked temporary file, and
// the runs are merged at the end. The result does not depend on whether (or
// how often) the table spilled.
//
// Thread-safety: Estimate() runs its own worker threads and returns when
// they are done; it may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "catalog/status.h"

namespace chainswap {

struct EstimateOptions {
  std::vector<std::string> images;     // files or block devices: one chain
  // Bound on the estimate's resident memory: the process itself (8 MiB are
  // set aside for it), a 256 KiB read buffer per thread, 8 MiB of merge
  // buffers, and the table of distinct blocks in what is left (at least
  // 1 MiB; 24 bytes per distinct block at up to 85 % load).
  uint64_t memory_bytes = 256ull << 20;
  unsigned threads = 0;                // workers; 0 = one per CPU
  std::string tmpdir;                  // spill runs; empty = $TMPDIR or /tmp
  bool progress = false;               // a progress line on stderr, redrawn in place
  // Test hook: the table's share of memory_bytes, in bytes, instead of what
  // memory_bytes leaves after buffers (0 = derived). Small values force
  // spills on small inputs.
  uint64_t table_bytes_for_testing = 0;
};

// One row of the histogram: blocks referenced [min_refs, 2 * min_refs) times.
struct RefcountRow {
  uint64_t min_refs = 0;
  // Allocated: each distinct block once.
  uint64_t blocks = 0, lsize = 0, psize = 0, dsize = 0;
  // Referenced: each block as often as the images hold it.
  uint64_t ref_blocks = 0, ref_lsize = 0, ref_psize = 0, ref_dsize = 0;
};

struct EstimateReport {
  uint64_t images = 0;
  uint64_t image_bytes = 0;     // sum of the images' sizes
  uint64_t blocks = 0;          // logical blocks (sizes rounded up to kBlockSize)
  uint64_t zero_blocks = 0;     // never stored
  uint64_t nonzero_blocks = 0;  // referenced blocks
  uint64_t distinct_blocks = 0; // allocated blocks
  uint64_t raw_blocks = 0;      // distinct blocks that do not compress into 3584 bytes
  uint64_t stored_bytes_off = 0;  // content store bytes with compress=off: distinct x 4 KiB
  uint64_t stored_bytes_lz4 = 0;  // with compress=lz4: sectors x 512
  uint64_t lz4_bytes = 0;         // LZ4 output of the distinct blocks before sector rounding (raw ones: 4 KiB)
  // The exact compressed ideal: per distinct block its LZ4 size rounded up
  // to 512 B, or 4 KiB above 3584 B (no header: the floor a store could
  // reach; stored_bytes_lz4 is what chainswap's stored form takes).
  uint64_t ideal_bytes_lz4 = 0;
  uint64_t spill_runs = 0;        // table spills to the temporary file
  uint64_t table_bytes = 0;       // the table's memory bound
  double seconds = 0;
  std::vector<RefcountRow> rows;  // by min_refs ascending, empty rows omitted

  double dedup_ratio() const;     // non-zero bytes / stored_bytes_off
  double compress_ratio() const;  // stored_bytes_off / stored_bytes_lz4
  double total_ratio() const;     // non-zero bytes / stored_bytes_lz4
};

// Reads the images and builds the report. Errors (an image that cannot be
// opened or read, a temporary file that cannot be written) are returned as
// a Status naming the file; nothing is printed.
Result<EstimateReport> Estimate(const EstimateOptions& options);

// The report as the CLI prints it: the zdb -S style table and the totals.
std::string RenderEstimate(const EstimateReport& report);
// The report as JSON text (every figure exact, in bytes and blocks).
std::string EstimateJson(const EstimateReport& report);

}  // namespace chainswap
