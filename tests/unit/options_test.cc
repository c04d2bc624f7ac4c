// The daemon's mount options (fs/options.h).
#include "fs/options.h"

#include "catalog/catalog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace chainswap {
namespace {

bool HasError(const ParseResult& r, const std::string& needle) {
  return std::any_of(r.errors.begin(), r.errors.end(),
                     [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

std::string AllErrors(const ParseResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

TEST(ParseSizeTest, PlainAndSuffixes) {
  struct Case {
    const char* text;
    uint64_t want;
  } cases[] = {
      {"0", 0},
      {"4096", 4096},
      {"4096B", 4096},
      {"1K", 1024},
      {"1k", 1024},
      {"2KiB", 2048},
      {"64M", 64ull << 20},
      {"64m", 64ull << 20},
      {"3MiB", 3ull << 20},
      {"1G", 1ull << 30},
      {"10g", 10ull << 30},
      {"1GiB", 1ull << 30},
      {"2T", 2ull << 40},
      {"2t", 2ull << 40},
      {"1TiB", 1ull << 40},
      {"18446744073709551615", UINT64_MAX},
      {"16777215T", 16777215ull << 40},
  };
  for (const Case& c : cases) {
    uint64_t v = 12345;
    EXPECT_TRUE(ParseSize(c.text, &v)) << c.text;
    EXPECT_EQ(v, c.want) << c.text;
  }
}

TEST(ParseSizeTest, RejectsJunkAndOverflow) {
  for (const char* text : {"", "G", "-1", "-1G", " 1G", "1.5G", "1X", "1GB", "1 G", "1Gx", "abc",
                           "0x10", "18446744073709551616", "99999999999999999999999",
                           "16777216T", "17179869184G", "18014398509481984K"}) {
    uint64_t v = 777;
    EXPECT_FALSE(ParseSize(text, &v)) << "'" << text << "'";
    EXPECT_EQ(v, 777u) << "'" << text << "' changed the output on failure";
  }
}

TEST(ParseMountArgsTest, Minimal) {
  ParseResult r = ParseMountArgs({"/var/lib/chainswap", "/mnt/swap"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_EQ(r.config.backing, "/var/lib/chainswap");
  EXPECT_EQ(r.config.mountpoint, "/mnt/swap");
  EXPECT_FALSE(r.config.foreground);
  EXPECT_FALSE(r.config.debug);
  EXPECT_FALSE(r.config.single_thread);
  EXPECT_TRUE(r.config.dedup_verify);
  EXPECT_EQ(r.config.capacity_bytes, 0u);
  EXPECT_EQ(r.config.log_level, "info");
  EXPECT_EQ(r.config.threads, 8u);
  EXPECT_TRUE(r.config.fuse_options.empty());
}

TEST(ParseMountArgsTest, FstabStyleOptions) {
  // What mount.fuse3 hands over for an /etc/fstab line.
  ParseResult r = ParseMountArgs(
      {"/var/lib/chainswap", "/mnt/swap", "-o",
       "rw,nofail,_netdev,allow_other,capacity=1G,no_dedup_verify,log_level=debug"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_EQ(r.config.backing, "/var/lib/chainswap");
  EXPECT_EQ(r.config.mountpoint, "/mnt/swap");
  EXPECT_EQ(r.config.capacity_bytes, 1ull << 30);
  EXPECT_FALSE(r.config.dedup_verify);
  EXPECT_EQ(r.config.log_level, "debug");
  // Ignorable mount(8) options are dropped; chainswap's own are consumed;
  // the rest goes to libfuse.
  EXPECT_EQ(r.config.fuse_options, (std::vector<std::string>{"rw", "allow_other"}));
}

TEST(ParseMountArgsTest, AllIgnorableOptionsAreDropped) {
  ParseResult r = ParseMountArgs(
      {"b", "m", "-o", "defaults,auto,noauto,nofail,_netdev,user,users,nouser,x-systemd.automount,"
                      "x-systemd.requires=foo.service,comment=hello"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_TRUE(r.config.fuse_options.empty())
      << "passed through: " << (r.config.fuse_options.empty() ? "" : r.config.fuse_options[0]);
}

TEST(ParseMountArgsTest, FlagsAndJoinedOptionList) {
  ParseResult r = ParseMountArgs({"-f", "-s", "b", "-oallow_other,threads=16", "m", "-o", "ro"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_TRUE(r.config.foreground);
  EXPECT_TRUE(r.config.single_thread);
  EXPECT_EQ(r.config.threads, 16u);
  EXPECT_EQ(r.config.backing, "b");
  EXPECT_EQ(r.config.mountpoint, "m");
  EXPECT_EQ(r.config.fuse_options, (std::vector<std::string>{"allow_other", "ro"}));
}

TEST(ParseMountArgsTest, DebugImpliesForeground) {
  ParseResult r = ParseMountArgs({"-d", "b", "m"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_TRUE(r.config.debug);
  EXPECT_TRUE(r.config.foreground);
}

TEST(ParseMountArgsTest, DedupVerifySpellings) {
  EXPECT_FALSE(ParseMountArgs({"b", "m", "-o", "dedup_verify=0"}).config.dedup_verify);
  EXPECT_FALSE(ParseMountArgs({"b", "m", "-o", "dedup_verify=off"}).config.dedup_verify);
  EXPECT_TRUE(ParseMountArgs({"b", "m", "-o", "no_dedup_verify,dedup_verify"}).config.dedup_verify);
}

TEST(ParseMountArgsTest, ErrorsAreCollectedTogether) {
  ParseResult r = ParseMountArgs({"onlyone", "-o", "capacity=lots,log_level=loud,threads=0"});
  EXPECT_EQ(r.errors.size(), 4u) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "capacity=lots")) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "log_level=loud")) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "threads=0")) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "BACKING and MOUNTPOINT")) << AllErrors(r);
  // Nothing invalid leaked into the config.
  EXPECT_EQ(r.config.log_level, "info");
  EXPECT_EQ(r.config.threads, 8u);
}

TEST(ParseMountArgsTest, MissingPositionals) {
  ParseResult none = ParseMountArgs({});
  ASSERT_EQ(none.errors.size(), 1u) << AllErrors(none);
  EXPECT_TRUE(HasError(none, "got 0"));
  ParseResult three = ParseMountArgs({"a", "b", "c"});
  ASSERT_EQ(three.errors.size(), 1u) << AllErrors(three);
  EXPECT_TRUE(HasError(three, "got 3"));
}

TEST(ParseMountArgsTest, BadCapacities) {
  for (const char* cap : {"capacity=", "capacity=1X", "capacity=-5G", "capacity=100",
                          "capacity=99999999999999999999T"}) {
    ParseResult r = ParseMountArgs({"b", "m", "-o", cap});
    EXPECT_EQ(r.errors.size(), 1u) << cap << ": " << AllErrors(r);
  }
  // capacity=0 means unlimited; the smallest limit is one block.
  ParseResult zero = ParseMountArgs({"b", "m", "-o", "capacity=0"});
  EXPECT_TRUE(zero.errors.empty()) << AllErrors(zero);
  EXPECT_EQ(zero.config.capacity_bytes, 0u);
  ParseResult four_k = ParseMountArgs({"b", "m", "-o", "capacity=4K"});
  EXPECT_TRUE(four_k.errors.empty()) << AllErrors(four_k);
  EXPECT_EQ(four_k.config.capacity_bytes, 4096u);
}

TEST(ParseMountArgsTest, CatalogMemoryOptions) {
  ParseResult def = ParseMountArgs({"b", "m"});
  EXPECT_EQ(def.config.catalog_cache_bytes, 16ull << 20);
  EXPECT_EQ(def.config.catalog_mmap_bytes, 0u);
  ParseResult set = ParseMountArgs({"b", "m", "-o", "catalog_cache=8M,catalog_mmap=2G"});
  EXPECT_TRUE(set.errors.empty()) << AllErrors(set);
  EXPECT_EQ(set.config.catalog_cache_bytes, 8ull << 20);
  EXPECT_EQ(set.config.catalog_mmap_bytes, 2ull << 30);
  for (const char* bad : {"catalog_cache=512K", "catalog_cache=", "catalog_cache=big", "catalog_mmap=-1"}) {
    ParseResult r = ParseMountArgs({"b", "m", "-o", bad});
    ASSERT_EQ(r.errors.size(), 1u) << bad << ": " << AllErrors(r);
    EXPECT_NE(r.errors[0].find(std::string(bad).substr(0, std::string(bad).find('=') + 1)), std::string::npos)
        << r.errors[0];
  }
}

TEST(ParseMountArgsTest, HashTableLimitInEntriesOrBytes) {
  EXPECT_EQ(ParseMountArgs({"b", "m"}).config.hash_table_limit_entries, 0u);
  ParseResult n = ParseMountArgs({"b", "m", "-o", "hash_table_limit=1000000"});
  EXPECT_TRUE(n.errors.empty()) << AllErrors(n);
  EXPECT_EQ(n.config.hash_table_limit_entries, 1000000u);
  ParseResult size = ParseMountArgs({"b", "m", "-o", "hash_table_limit=64M"});
  EXPECT_TRUE(size.errors.empty()) << AllErrors(size);
  EXPECT_EQ(size.config.hash_table_limit_entries, (64ull << 20) / kHashEntryBytes);
  EXPECT_EQ(ParseMountArgs({"b", "m", "-o", "hash_table_limit=0"}).config.hash_table_limit_entries, 0u);
  for (const char* bad : {"hash_table_limit=", "hash_table_limit=lots", "hash_table_limit=-5", "hash_table_limit=10B",
                          "hash_table_limit=3X"}) {
    ParseResult r = ParseMountArgs({"b", "m", "-o", bad});
    ASSERT_EQ(r.errors.size(), 1u) << bad << ": " << AllErrors(r);
    EXPECT_NE(r.errors[0].find("hash_table_limit="), std::string::npos) << r.errors[0];
  }
}

TEST(ParseMountArgsTest, BadThreads) {
  for (const char* t : {"threads=0", "threads=257", "threads=abc", "threads=-1"}) {
    ParseResult r = ParseMountArgs({"b", "m", "-o", t});
    EXPECT_EQ(r.errors.size(), 1u) << t << ": " << AllErrors(r);
  }
  ParseResult ok = ParseMountArgs({"b", "m", "-o", "threads=256"});
  EXPECT_TRUE(ok.errors.empty()) << AllErrors(ok);
  EXPECT_EQ(ok.config.threads, 256u);
}

// "Every field validated" (fs/options.h): a number with trailing junk is an error.
TEST(ParseMountArgsTest, ThreadsRejectsTrailingJunk) {
  ParseResult r = ParseMountArgs({"b", "m", "-o", "threads=4x"});
  EXPECT_EQ(r.errors.size(), 1u) << "threads=4x accepted as " << r.config.threads;
}

TEST(ParseMountArgsTest, LogLevels) {
  for (const char* lv : {"trace", "debug", "info", "warn", "error", "off"}) {
    ParseResult r = ParseMountArgs({"b", "m", "-o", std::string("log_level=") + lv});
    EXPECT_TRUE(r.errors.empty()) << lv << ": " << AllErrors(r);
    EXPECT_EQ(r.config.log_level, lv);
  }
}

TEST(ParseMountArgsTest, UnknownDashArgumentAndDanglingO) {
  ParseResult r = ParseMountArgs({"b", "m", "--bogus"});
  EXPECT_TRUE(HasError(r, "--bogus")) << AllErrors(r);
  ParseResult dangling = ParseMountArgs({"b", "m", "-o"});
  EXPECT_TRUE(HasError(dangling, "-o")) << AllErrors(dangling);
}

TEST(ParseMountArgsTest, HelpAndVersionNeedNoPositionals) {
  ParseResult h = ParseMountArgs({"-h"});
  EXPECT_TRUE(h.config.show_help);
  EXPECT_TRUE(h.errors.empty()) << AllErrors(h);
  ParseResult v = ParseMountArgs({"--version"});
  EXPECT_TRUE(v.config.show_version);
  EXPECT_TRUE(v.errors.empty()) << AllErrors(v);
}

TEST(ParseMountArgsTest, MetricsFileAndInterval) {
  ParseResult r = ParseMountArgs({"b", "m"});
  EXPECT_TRUE(r.config.metrics_file.empty());
  EXPECT_EQ(r.config.metrics_interval_s, 15u);
  r = ParseMountArgs({"b", "m", "-o", "metrics_file=/var/lib/node_exporter/chainswap.prom,metrics_interval=60"});
  EXPECT_TRUE(r.errors.empty()) << AllErrors(r);
  EXPECT_EQ(r.config.metrics_file, "/var/lib/node_exporter/chainswap.prom");
  EXPECT_EQ(r.config.metrics_interval_s, 60u);
  EXPECT_TRUE(r.config.fuse_options.empty());
  EXPECT_EQ(ParseMountArgs({"b", "m", "-o", "metrics_file=/x.prom,metrics_interval=3600"}).config.metrics_interval_s,
            3600u);
  // Every problem at once; nothing invalid leaks into the config.
  r = ParseMountArgs({"b", "m", "-o", "metrics_file=relative.prom,metrics_interval=0"});
  EXPECT_EQ(r.errors.size(), 3u) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "metrics_file=relative.prom")) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "metrics_interval=0")) << AllErrors(r);
  EXPECT_TRUE(HasError(r, "needs metrics_file")) << AllErrors(r);
  EXPECT_TRUE(r.config.metrics_file.empty());
  EXPECT_EQ(r.config.metrics_interval_s, 15u);
  for (const char* bad : {"metrics_interval=3601", "metrics_interval=-1", "metrics_interval=1m",
                          "metrics_interval=", "metrics_interval=1.5"}) {
    r = ParseMountArgs({"b", "m", "-o", std::string("metrics_file=/x.prom,") + bad});
    EXPECT_TRUE(HasError(r, "metrics_interval=")) << bad << ": " << AllErrors(r);
  }
  EXPECT_TRUE(HasError(ParseMountArgs({"b", "m", "-o", "metrics_file=/var/lib/"}), "metrics_file=/var/lib/"));
}

TEST(MountUsageTest, MentionsProgramAndOptions) {
  std::string u = MountUsage("chainswapfs");
  EXPECT_NE(u.find("chainswapfs BACKING MOUNTPOINT"), std::string::npos);
  for (const char* opt : {"dedup_verify", "no_dedup_verify", "capacity=", "log_level=", "threads=",
                          "allow_other"})
    EXPECT_NE(u.find(opt), std::string::npos) << opt;
}

}  // namespace
}  // namespace chainswap
