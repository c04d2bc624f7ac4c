// The in-memory half of the chain hash index's log (catalog/hash_log.h):
// netting per pair, candidates from both generations, freezing, chunked
// merging in key order, transactions that roll back, and the reload of a
// log whose merge was interrupted (last change per pair wins). A model (a
// std::set standing for hash_index plus the log rows) checks that merging
// what the log hands out, at any point, gives the index the changes imply.
#include "catalog/hash_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

namespace chainswap {
namespace {

std::vector<int64_t> Cands(const HashLog& log, int64_t key) {
  std::vector<int64_t> v;
  log.Candidates(key, &v);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// hash_index and hash_log as the catalog keeps them, driven like the
// catalog drives them.
struct Model {
  std::set<std::pair<int64_t, int64_t>> index;                  // hash_index
  std::vector<std::tuple<int64_t, int64_t, int64_t, bool>> rows;  // hash_log: seq, key, pblock, add
  HashLog log;
  explicit Model(size_t max) : log(max) {}

  void Change(int64_t key, int64_t pblock, bool add) {
    const int64_t seq = add ? log.Add(key, pblock) : log.Remove(key, pblock);
    rows.emplace_back(seq, key, pblock, add);
  }
  // One merge step as Catalog::MergeHashLogLocked does it.
  void Merge(size_t max) {
    if (!log.frozen_open()) return;
    auto chunk = log.NextChunk(max);
    // Key order within the chunk.
    for (size_t i = 1; i < chunk.size(); ++i)
      ASSERT_TRUE(std::make_pair(chunk[i - 1].key, chunk[i - 1].pblock()) <
                  std::make_pair(chunk[i].key, chunk[i].pblock()));
    for (const auto& c : chunk) {
      if (c.add()) index.insert({c.key, c.pblock()});
      else index.erase({c.key, c.pblock()});
    }
    const bool last = log.IsLastChunk(max);
    const int64_t end = log.FrozenEnd();
    log.ChunkMerged(chunk.size());
    if (last) std::erase_if(rows, [&](const auto& r) { return std::get<0>(r) < end; });
  }
  // What the index is once every logged change is applied (last per pair wins).
  std::set<std::pair<int64_t, int64_t>> Effective() const {
    auto e = index;
    for (const auto& [seq, key, pb, add] : rows) {
      if (add) e.insert({key, pb});
      else e.erase({key, pb});
    }
    return e;
  }
};

TEST(HashLogTest, AddThenRemoveCancelAndCandidatesSeeAdds) {
  HashLog log(1024);
  log.Begin();
  log.Add(7, 100);
  log.Add(7, 101);
  log.Add(8, 102);
  EXPECT_EQ(Cands(log, 7), (std::vector<int64_t>{100, 101}));
  log.Remove(7, 100);
  EXPECT_EQ(Cands(log, 7), (std::vector<int64_t>{101}));
  EXPECT_EQ(log.active_entries(), 2u) << "add and remove of (7, 100) cancel";
  EXPECT_EQ(log.log_rows(), 4u) << "but both rows are in the log";
  log.Remove(9, 5);  // a block of hash_index
  EXPECT_TRUE(Cands(log, 9).empty()) << "removes are no candidates";
  log.Commit();
}

// A packed block (negative pblock) stored and freed before a merge never
// reaches hash_index; one freed and stored again under the same key is
// back (the sign of a pblock is not the kind of a change).
TEST(HashLogTest, AddThenRemoveCancelForNegativePblocksToo) {
  HashLog log(64);
  log.Begin();
  log.Add(7, -42);
  log.Remove(7, -42);
  log.Commit();
  EXPECT_TRUE(Cands(log, 7).empty());
  log.MaybeFreeze(/*force=*/true);
  EXPECT_EQ(log.NextChunk(100).size(), 0u) << "the pair cancelled: nothing to merge";
  HashLog log2(64);
  log2.Begin();
  log2.Remove(9, -5);
  log2.Add(9, -5);
  log2.Commit();
  log2.MaybeFreeze(/*force=*/true);
  EXPECT_EQ(log2.NextChunk(100).size(), 0u) << "remove then add of an indexed pair: the index keeps it";
}

TEST(HashLogTest, AbortUndoesTheTransaction) {
  HashLog log(1024);
  log.Begin();
  log.Add(1, 10);
  log.Commit();
  log.Begin();
  const int64_t seq = log.Add(2, 20);
  log.Remove(1, 10);
  log.Add(3, 30);
  log.Abort();
  EXPECT_EQ(Cands(log, 1), (std::vector<int64_t>{10}));
  EXPECT_TRUE(Cands(log, 2).empty());
  EXPECT_TRUE(Cands(log, 3).empty());
  EXPECT_EQ(log.log_rows(), 1u);
  log.Begin();
  EXPECT_EQ(log.Add(4, 40), seq) << "sequence numbers of a rolled-back transaction are handed out again";
  log.Commit();
}

TEST(HashLogTest, FreezeMergesInKeyOrderAndTruncatesWithTheLastChunk) {
  Model m(16);
  m.log.Begin();
  for (int i = 0; i < 20; ++i) m.Change(100 - i, i, true);
  m.log.Commit();
  m.log.MaybeFreeze();
  ASSERT_TRUE(m.log.frozen_open());
  EXPECT_EQ(m.log.frozen_entries(), 20u);
  EXPECT_EQ(m.log.active_entries(), 0u);
  EXPECT_EQ(Cands(m.log, 95), (std::vector<int64_t>{5})) << "frozen adds are candidates";
  m.Merge(8);
  m.Merge(8);
  EXPECT_TRUE(m.log.frozen_open());
  EXPECT_EQ(m.rows.size(), 20u);
  m.Merge(8);
  EXPECT_FALSE(m.log.frozen_open());
  EXPECT_TRUE(m.rows.empty());
  EXPECT_EQ(m.log.log_rows(), 0u);
  EXPECT_EQ(m.index.size(), 20u);
}

TEST(HashLogTest, ChurnOnlyGenerationStillDropsItsRows) {
  Model m(4);
  m.log.Begin();
  for (int i = 0; i < 5; ++i) {
    m.Change(1, i, true);
    m.Change(1, i, false);
  }
  m.log.Commit();
  EXPECT_EQ(m.log.active_entries(), 0u);
  m.log.MaybeFreeze();  // 10 rows >= 2 * 4
  ASSERT_TRUE(m.log.frozen_open());
  EXPECT_EQ(m.log.frozen_entries(), 0u);
  m.Merge(64);
  EXPECT_FALSE(m.log.frozen_open());
  EXPECT_TRUE(m.rows.empty());
}

TEST(HashLogTest, ReloadAfterAnInterruptedMergeGivesTheSameIndex) {
  Model m(8);
  m.log.Begin();
  for (int i = 0; i < 12; ++i) m.Change(i % 5, i, true);
  m.log.Commit();
  m.log.MaybeFreeze();
  m.Merge(5);  // part of the frozen generation is in the index
  m.log.Begin();
  m.Change(0, 0, false);   // remove of a merged add
  m.Change(4, 9, false);   // remove of an unmerged frozen add
  m.Change(0, 0, true);    // and back
  m.Change(3, 50, true);
  m.log.Commit();
  const auto want = m.Effective();
  // "Crash": a new HashLog loads every row in order.
  Model r(8);
  r.index = m.index;
  r.rows = m.rows;
  for (const auto& [seq, key, pb, add] : m.rows) r.log.LoadRow(seq, key, pb, add);
  r.log.Loaded();
  ASSERT_TRUE(r.log.frozen_open());
  while (r.log.frozen_open()) r.Merge(3);
  EXPECT_EQ(r.index, want);
  EXPECT_TRUE(r.rows.empty());
}

// pblocks of both signs: raw blocks (slots) and packed ones (negative,
// catalog/stored_block.h), whose changes the log encodes the same way.
TEST(HashLogTest, RandomChangesMergedAtAnyPaceGiveTheImpliedIndex) {
  std::mt19937_64 rng(5);
  Model m(64);
  std::map<int64_t, int64_t> live;  // pblock -> key, as the PAT would have it
  int64_t next_pblock = 0;
  for (int round = 0; round < 3000; ++round) {
    m.log.MaybeFreeze();
    m.log.Begin();
    const size_t rows_before = m.rows.size();
    const auto live_before = live;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      if (live.empty() || rng() % 3 != 0) {
        // Reuse a freed pblock now and then, with an old key sometimes.
        const int64_t id = rng() % 4 == 0 && next_pblock > 0 ? static_cast<int64_t>(rng() % next_pblock) : next_pblock++;
        const int64_t pb = id % 2 ? -1 - id : id;
        if (live.count(pb)) continue;
        const int64_t key = static_cast<int64_t>(rng() % 40);
        live[pb] = key;
        m.Change(key, pb, true);
      } else {
        auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
        m.Change(it->second, it->first, false);
        live.erase(it);
      }
    }
    if (rng() % 5 == 0) {
      // A rolled-back transaction: its rows and changes are gone.
      m.log.Abort();
      m.rows.resize(rows_before);
      live = live_before;
      continue;
    }
    m.log.Commit();
    m.Merge(1 + rng() % 40);
    std::set<std::pair<int64_t, int64_t>> want;
    for (auto [pb, key] : live) want.insert({key, pb});
    ASSERT_EQ(m.Effective(), want) << "round " << round;
    // Every live block is a candidate under its key (from the log or the index).
    for (auto [pb, key] : live) {
      auto c = Cands(m.log, key);
      const bool in_index = m.index.count({key, pb}) > 0;
      ASSERT_TRUE(in_index || std::binary_search(c.begin(), c.end(), pb)) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace chainswap
