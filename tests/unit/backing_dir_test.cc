// The backing directory: format, open, lock (catalog/backing_dir.h).
#include "catalog/backing_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace chainswap {
namespace {

using test::TempDir;

class BackingDirTest : public ::testing::Test {
 protected:
  TempDir tmp_;
};

TEST_F(BackingDirTest, PathsLayout) {
  BackingPaths p("/var/lib/chainswap");
  EXPECT_EQ(p.root, "/var/lib/chainswap");
  EXPECT_EQ(p.catalog, "/var/lib/chainswap/catalog.db");
  EXPECT_EQ(p.store, "/var/lib/chainswap/store.dat");
  EXPECT_EQ(p.journal, "/var/lib/chainswap/journal");
}

TEST_F(BackingDirTest, FormatCreatesLayout) {
  std::string root = tmp_.Sub("new");
  CS_ASSERT_OK(BackingDir::Format(root));
  struct stat st;
  ASSERT_EQ(::stat(root.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  BackingPaths p(root);
  ASSERT_EQ(::stat(p.catalog.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(p.store.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 0);
  ASSERT_EQ(::stat(p.journal.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // The lock is an flock on the directory: no lock file is created.
  EXPECT_NE(::stat((p.root + "/lock").c_str(), &st), 0);
}

TEST_F(BackingDirTest, FormatIntoExistingEmptyDirectory) {
  CS_ASSERT_OK(BackingDir::Format(tmp_.path()));
  auto b = BackingDir::Open(tmp_.path(), LockMode::kNone, CatalogOptions{});
  EXPECT_TRUE(b.ok()) << b.status().ToString();
}

TEST_F(BackingDirTest, FormatOnExistingBackingDirIsEexist) {
  std::string root = tmp_.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  CS_EXPECT_ERRNO(BackingDir::Format(root), EEXIST);
  // Also when only the store is left behind.
  std::filesystem::remove(root + "/catalog.db");
  CS_EXPECT_ERRNO(BackingDir::Format(root), EEXIST);
}

TEST_F(BackingDirTest, FormatOnAFileIsEnotdir) {
  std::string path = tmp_.Sub("file");
  std::ofstream(path) << "x";
  CS_EXPECT_ERRNO(BackingDir::Format(path), ENOTDIR);
}

TEST_F(BackingDirTest, OpenNonBackingDirIsEnoent) {
  auto b = BackingDir::Open(tmp_.path(), LockMode::kNone, CatalogOptions{});
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), ENOENT) << b.status().ToString();
  auto missing = BackingDir::Open(tmp_.Sub("nowhere"), LockMode::kNone, CatalogOptions{});
  EXPECT_EQ(missing.status().code(), ENOENT) << missing.status().ToString();
}

TEST_F(BackingDirTest, ExclusiveOpenTwiceIsEbusy) {
  std::string root = tmp_.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  EXPECT_FALSE(BackingDir::IsLocked(root));
  auto first = BackingDir::Open(root, LockMode::kExclusive, CatalogOptions{});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(BackingDir::IsLocked(root));

  auto second = BackingDir::Open(root, LockMode::kExclusive, CatalogOptions{});
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), EBUSY) << second.status().ToString();

  // The first holder is unaffected by the refused second open.
  auto c = (*first)->catalog().CreateChain("pool", 0755, 0, 0, 1);
  EXPECT_TRUE(c.ok()) << c.status().ToString();

  // Closing releases the lock.
  first->reset();
  EXPECT_FALSE(BackingDir::IsLocked(root));
  auto third = BackingDir::Open(root, LockMode::kExclusive, CatalogOptions{});
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  auto chains = (*third)->catalog().ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_EQ(chains->size(), 1u);
}

TEST_F(BackingDirTest, OpenCorruptCatalogIsEuclean) {
  std::string root = tmp_.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  {
    std::ofstream out(root + "/catalog.db", std::ios::binary | std::ios::trunc);
    std::string junk(4096, 'Z');
    out << junk;
  }
  auto b = BackingDir::Open(root, LockMode::kExclusive, CatalogOptions{});
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), EUCLEAN) << b.status().ToString();
  // A failed open does not keep the lock.
  EXPECT_FALSE(BackingDir::IsLocked(root));
}

TEST_F(BackingDirTest, OpenWithoutStoreFails) {
  std::string root = tmp_.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  std::filesystem::remove(root + "/store.dat");
  auto b = BackingDir::Open(root, LockMode::kNone, CatalogOptions{});
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), ENOENT) << b.status().ToString();
}

TEST_F(BackingDirTest, CapacityOptionReachesCatalog) {
  std::string root = tmp_.Sub("b");
  CS_ASSERT_OK(BackingDir::Format(root));
  CatalogOptions opts;
  opts.capacity_slots = 1234;
  auto b = BackingDir::Open(root, LockMode::kNone, opts);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->catalog().Usage().capacity_slots, 1234u);
  EXPECT_EQ((*b)->paths().root, root);
}

}  // namespace
}  // namespace chainswap
