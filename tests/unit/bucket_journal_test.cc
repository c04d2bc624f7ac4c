// BucketJournal's retirement of a bucket whose ops the destagers skipped
// because newer ops superseded them (destage/bucket_journal.h,
// PrepareRetire): the newer ops are synced first only when an fsync covered
// part of the bucket (or the bucket came back from a previous daemon, whose
// fsyncs are unknown); otherwise nothing is synced, and every later Sync
// covers every bucket.
#include "destage/bucket_journal.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "test_util.h"

namespace chainswap {
namespace {

class BucketJournalTest : public test::BackingFixture {
 protected:
  void SetUp() override {
    test::BackingFixture::SetUp();
    dedup_id_ = NewChain("pool");
    file_id_ = NewFile(dedup_id_, "f");
    OpenJournal();
  }
  void TearDown() override {
    journal_.reset();
    index_.reset();
    test::BackingFixture::TearDown();
  }
  void OpenJournal() {
    journal_.reset();
    index_ = std::make_unique<StagingIndex>();
    JournalOptions o;
    o.dir = backing_->paths().journal;
    journal_ = std::make_unique<BucketJournal>(cat(), *index_, o);
    std::map<int64_t, ReplayedMeta> meta;
    auto first = journal_->Open(&meta);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
  }
  // A punch of one LBA: a record without payload.
  void AppendPunch(uint64_t lba) {
    Record r;
    r.kind = RecordKind::kDelete;
    r.file_id = file_id_;
    r.dedup_id = dedup_id_;
    r.lba = lba;
    r.count = 1;
    r.file_size = 1 << 20;
    CS_ASSERT_OK(journal_->Append(std::move(r), /*space_exempt=*/true));
  }
  // The oldest bucket, sealed (the next append opens a new one).
  std::shared_ptr<const Bucket> SealOldest() {
    journal_->Seal();
    return journal_->RetirementCandidate(UINT64_MAX);
  }
  uint64_t Syncs() { return journal_->Figures().segment_syncs; }
  uint64_t Unsynced() { return journal_->PendingSync().bytes; }

  int64_t dedup_id_ = 0, file_id_ = 0;
  std::unique_ptr<StagingIndex> index_;
  std::unique_ptr<BucketJournal> journal_;
};

TEST_F(BucketJournalTest, ABucketNoFsyncCoveredRetiresWithoutSyncingAndTheNextSyncCoversEveryBucket) {
  AppendPunch(0);
  auto first = SealOldest();
  ASSERT_TRUE(first);
  AppendPunch(0);  // supersedes the first bucket's op, in the next bucket
  CS_ASSERT_OK(journal_->PrepareRetire(first));
  EXPECT_EQ(Syncs(), 0u) << "nothing an fsync promised was at stake, yet the journal was synced";
  journal_->Retire(first);
  EXPECT_GT(Unsynced(), 0u);
  CS_ASSERT_OK(journal_->Sync());
  EXPECT_EQ(Unsynced(), 0u) << "a Sync after an unsynced retirement left the newer op unsynced";
}

TEST_F(BucketJournalTest, ABucketAnFsyncCoveredSyncsTheNewerOpsBeforeItRetires) {
  AppendPunch(0);
  CS_ASSERT_OK(journal_->Sync());  // an fsync covers the first op
  const uint64_t after_fsync = Syncs();
  ASSERT_GT(after_fsync, 0u);
  auto first = SealOldest();
  ASSERT_TRUE(first);
  AppendPunch(0);  // supersedes it, unsynced
  ASSERT_GT(Unsynced(), 0u);
  CS_ASSERT_OK(journal_->PrepareRetire(first));
  EXPECT_GT(Syncs(), after_fsync);
  EXPECT_EQ(Unsynced(), 0u) << "the op superseding an fsynced op was not durable before its bucket retired";
  journal_->Retire(first);
}

TEST_F(BucketJournalTest, AReplayedBucketSyncsTheNewerOpsBeforeItRetires) {
  // The previous daemon may have promised these ops durable: its fsyncs are
  // not known after a restart.
  AppendPunch(0);
  journal_->Seal();
  AppendPunch(1);
  OpenJournal();  // a restart: both buckets come back from their segments
  auto first = journal_->RetirementCandidate(UINT64_MAX);
  ASSERT_TRUE(first);
  ASSERT_GT(Unsynced(), 0u);
  CS_ASSERT_OK(journal_->PrepareRetire(first));
  EXPECT_GT(Syncs(), 0u);
  journal_->Retire(first);
  EXPECT_EQ(Unsynced(), 0u) << "the op after a replayed bucket was not durable before it retired";
}

}  // namespace
}  // namespace chainswap
