// The content store: slot I/O, punching, sizes (catalog/content_store.h).
#include "catalog/content_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <vector>

#include "catalog/block.h"
#include "test_util.h"

namespace chainswap {
namespace {

using test::Block;
using test::PatternBlock;
using test::TempDir;

class ContentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tmp_.Sub("store.dat");
    CS_ASSERT_OK(ContentStore::Create(path_));
    auto s = ContentStore::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  TempDir tmp_;
  std::string path_;
  std::unique_ptr<ContentStore> store_;
};

TEST_F(ContentStoreTest, CreateMakesEmptyPrivateFile) {
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto len = store_->LengthSlots();
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 0u);
  EXPECT_EQ(store_->path(), path_);
}

TEST_F(ContentStoreTest, CreateOnExistingIsEexist) {
  CS_EXPECT_ERRNO(ContentStore::Create(path_), EEXIST);
}

TEST_F(ContentStoreTest, OpenMissingIsEnoent) {
  auto s = ContentStore::Open(tmp_.Sub("nope.dat"));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ENOENT);
}

TEST_F(ContentStoreTest, WriteThenReadSlots) {
  Block a = PatternBlock(1), b = PatternBlock(2), c = PatternBlock(3);
  CS_ASSERT_OK(store_->WriteSlots(0, 1, a.data()));
  std::vector<uint8_t> two(2 * kBlockSize);
  std::memcpy(two.data(), b.data(), kBlockSize);
  std::memcpy(two.data() + kBlockSize, c.data(), kBlockSize);
  CS_ASSERT_OK(store_->WriteSlots(5, 2, two.data()));

  Block out;
  CS_ASSERT_OK(store_->ReadSlots(0, 1, out.data()));
  EXPECT_TRUE(out == a);
  CS_ASSERT_OK(store_->ReadSlots(6, 1, out.data()));
  EXPECT_TRUE(out == c);
  std::vector<uint8_t> got(2 * kBlockSize);
  CS_ASSERT_OK(store_->ReadSlots(5, 2, got.data()));
  EXPECT_EQ(got, two);
  // Slots between written ones read as zeros (sparse file).
  CS_ASSERT_OK(store_->ReadSlots(3, 1, out.data()));
  EXPECT_TRUE(IsZeroBlock(out.data()));

  auto len = store_->LengthSlots();
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 7u);
}

TEST_F(ContentStoreTest, ReadBeyondEofIsAnErrorNeverZeros) {
  // Every referenced slot was written, so a read past the end means a
  // truncated or replaced store: EIO, not silently zeroed data.
  Block a = PatternBlock(9);
  CS_ASSERT_OK(store_->WriteSlots(0, 1, a.data()));
  std::vector<uint8_t> buf(3 * kBlockSize, 0xAB);
  // Starts inside the file and runs past its end.
  Status st = store_->ReadSlots(0, 3, buf.data());
  EXPECT_EQ(st.code(), EIO) << st.ToString();
  // Entirely past the end.
  st = store_->ReadSlots(100, 3, buf.data());
  EXPECT_EQ(st.code(), EIO) << st.ToString();
  // Within the file still works.
  CS_ASSERT_OK(store_->ReadSlots(0, 1, buf.data()));
  EXPECT_EQ(std::memcmp(buf.data(), a.data(), kBlockSize), 0);
}

TEST_F(ContentStoreTest, PunchSlotFreesSpaceAndReadsZeros) {
  constexpr uint32_t kSlots = 64;
  std::vector<uint8_t> data(kSlots * kBlockSize);
  for (uint32_t i = 0; i < kSlots; ++i)
    std::memcpy(data.data() + i * kBlockSize, PatternBlock(i).data(), kBlockSize);
  CS_ASSERT_OK(store_->WriteSlots(0, kSlots, data.data()));
  CS_ASSERT_OK(store_->Sync());
  auto before = store_->AllocatedBytes();
  ASSERT_TRUE(before.ok());
  EXPECT_GE(*before, uint64_t{kSlots} * kBlockSize);

  // The first half, slot by slot (a contiguous range, so the backing
  // filesystem needs no extra extent blocks to describe what is left).
  for (uint32_t i = 0; i < kSlots / 2; ++i) CS_ASSERT_OK(store_->PunchSlot(i));
  auto after = store_->AllocatedBytes();
  ASSERT_TRUE(after.ok());
  EXPECT_LE(*after, *before - uint64_t{kSlots / 2} * kBlockSize)
      << "punching " << kSlots / 2 << " slots gave back too little";
  // Punching scattered slots gives space back as well.
  for (uint32_t i = kSlots / 2; i < kSlots; i += 4) CS_ASSERT_OK(store_->PunchSlot(i));
  auto scattered = store_->AllocatedBytes();
  ASSERT_TRUE(scattered.ok());
  EXPECT_LT(*scattered, *after);

  // Punched slots read as zeros; the others are intact; the length is kept.
  Block out;
  for (uint32_t i = 0; i < kSlots; ++i) {
    CS_ASSERT_OK(store_->ReadSlots(i, 1, out.data()));
    bool punched = i < kSlots / 2 || i % 4 == 0;
    if (punched) EXPECT_TRUE(IsZeroBlock(out.data())) << "slot " << i;
    else EXPECT_TRUE(out == PatternBlock(i)) << "slot " << i;
  }
  auto len = store_->LengthSlots();
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, kSlots);
}

TEST_F(ContentStoreTest, TruncateToSlots) {
  std::vector<uint8_t> data(4 * kBlockSize, 0x11);
  CS_ASSERT_OK(store_->WriteSlots(0, 4, data.data()));
  CS_ASSERT_OK(store_->TruncateToSlots(2));
  auto len = store_->LengthSlots();
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 2u);
  Block out;
  EXPECT_EQ(store_->ReadSlots(3, 1, out.data()).code(), EIO);
  CS_ASSERT_OK(store_->ReadSlots(1, 1, out.data()));
  EXPECT_EQ(out.data()[0], 0x11);
}

TEST_F(ContentStoreTest, DataSurvivesReopen) {
  Block a = PatternBlock(42);
  CS_ASSERT_OK(store_->WriteSlots(3, 1, a.data()));
  CS_ASSERT_OK(store_->Sync());
  store_.reset();
  auto s = ContentStore::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(s.ok());
  Block out;
  CS_ASSERT_OK((*s)->ReadSlots(3, 1, out.data()));
  EXPECT_TRUE(out == a);
  // A read-only store refuses writes.
  EXPECT_FALSE((*s)->WriteSlots(0, 1, a.data()).ok());
}

}  // namespace
}  // namespace chainswap
