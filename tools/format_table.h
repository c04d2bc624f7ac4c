// Human-readable output helpers for the CLI: byte sizes and aligned tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chainswap {

// 1536 -> "1.5 KiB"; exact bytes below 1 KiB.
std::string HumanBytes(uint64_t bytes);

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns padded to their widest cell; the first two columns (ID and
  // name) left-aligned, the others (figures) right-aligned.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace chainswap
