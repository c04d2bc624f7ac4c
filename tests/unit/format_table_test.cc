// Human-readable CLI output helpers (tools/format_table.h).
#include "tools/format_table.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace chainswap {
namespace {

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(HumanBytesTest, ExactBelowOneKiB) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1), "1 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
}

TEST(HumanBytesTest, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(HumanBytes(1024), "1.0 KiB");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(4096), "4.0 KiB");
  EXPECT_EQ(HumanBytes(1ull << 20), "1.0 MiB");
  EXPECT_EQ(HumanBytes(5ull << 30), "5.0 GiB");
  EXPECT_EQ(HumanBytes((3ull << 40) + (1ull << 39)), "3.5 TiB");
  EXPECT_EQ(HumanBytes(1ull << 50), "1.0 PiB");
  // The largest unit absorbs everything above it.
  EXPECT_EQ(HumanBytes(1ull << 60), "1024.0 PiB");
  EXPECT_EQ(HumanBytes(UINT64_MAX), "16384.0 PiB");
}

TEST(TableTest, ColumnsArePaddedToTheWidestCell) {
  Table t({"id", "chain", "stored"});
  t.Add({"1", "vdi-pool", "1.5 GiB"});
  t.Add({"12", "ci", "0 B"});
  std::vector<std::string> lines = Lines(t.Render());
  ASSERT_EQ(lines.size(), 3u);
  // Every line has the same width: widths 2, 8, 7 plus two 2-space gaps.
  for (const auto& l : lines) EXPECT_EQ(l.size(), 2u + 2 + 8 + 2 + 7) << "'" << l << "'";
  // The text column (second) is left-aligned, numbers right-aligned.
  EXPECT_EQ(lines[1].substr(4, 8), "vdi-pool");
  EXPECT_EQ(lines[2].substr(4, 8), "ci      ");
  EXPECT_EQ(lines[0].substr(14), " stored");
  EXPECT_EQ(lines[1].substr(14), "1.5 GiB");
  EXPECT_EQ(lines[2].substr(14), "    0 B");
}

TEST(TableTest, FirstColumnIsLeftAligned) {
  // format_table.h: "the first column left-aligned, the others right-aligned
  // except text columns (second)".
  Table t({"dedup_id", "chain", "files"});
  t.Add({"7", "pool", "3"});
  std::vector<std::string> lines = Lines(t.Render());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "dedup_id  chain  files");
  EXPECT_EQ(lines[1], "7         pool       3");
}

TEST(TableTest, HeaderOnly) {
  Table t({"a", "b"});
  EXPECT_EQ(t.Render(), "a  b\n");
}

TEST(TableTest, ShortRowsDoNotCrash) {
  Table t({"a", "b", "c"});
  t.Add({"1"});
  std::vector<std::string> lines = Lines(t.Render());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "1");
}

}  // namespace
}  // namespace chainswap
