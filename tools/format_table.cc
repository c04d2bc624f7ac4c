#include "tools/format_table.h"

#include <algorithm>
#include <cstdio>

namespace chainswap {

std::string HumanBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1023.95 && u < 5) {  // 1048575 B is "1.0 MiB", not "1024.0 KiB"
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string Table::Render() const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size(); ++i) {
      std::string cell = r[i];
      std::string pad(width[i] - cell.size(), ' ');
      out += (i <= 1) ? cell + pad : pad + cell;
      out += (i + 1 < r.size()) ? "  " : "";
    }
    out += '\n';
  }
  return out;
}

}  // namespace chainswap
