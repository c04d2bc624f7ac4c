#include "fs/namespace.h"

#include <cerrno>

namespace chainswap {

std::vector<std::shared_ptr<FileNode>> Namespace::Load(const std::vector<ChainInfo>& chains,
                                                       const std::vector<FileInfo>& files) {
  WriterLock lk(&mu_);
  std::vector<std::shared_ptr<FileNode>> orphans;
  for (const ChainInfo& c : chains) {
    chain_by_name_[c.name] = c.dedup_id;
    chains_[c.dedup_id].info = c;
  }
  for (FileInfo f : files) {
    ChainNode* chain = ChainLocked(f.dedup_id);
    const bool orphan = f.unlinked || !chain;
    f.unlinked = orphan;
    auto node = std::make_shared<FileNode>(f);
    files_[f.file_id] = node;
    if (orphan) orphans.push_back(node);
    else chain->files[f.name] = node;
  }
  return orphans;
}

Namespace::ChainNode* Namespace::ChainLocked(int64_t dedup_id) {
  auto it = chains_.find(dedup_id);
  return it == chains_.end() ? nullptr : &it->second;
}

const Namespace::ChainNode* Namespace::ChainLocked(int64_t dedup_id) const {
  auto it = chains_.find(dedup_id);
  return it == chains_.end() ? nullptr : &it->second;
}

std::optional<ChainInfo> Namespace::Chain(int64_t dedup_id) const {
  ReaderLock lk(&mu_);
  const ChainNode* c = ChainLocked(dedup_id);
  if (!c) return std::nullopt;
  return c->info;
}

std::optional<ChainInfo> Namespace::ChainNamed(const std::string& name) const {
  ReaderLock lk(&mu_);
  auto it = chain_by_name_.find(name);
  if (it == chain_by_name_.end()) return std::nullopt;
  return ChainLocked(it->second)->info;
}

std::shared_ptr<FileNode> Namespace::File(int64_t file_id) const {
  ReaderLock lk(&mu_);
  auto it = files_.find(file_id);
  return it == files_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<FileNode>> Namespace::FileIn(int64_t dedup_id, const std::string& name) const {
  ReaderLock lk(&mu_);
  const ChainNode* c = ChainLocked(dedup_id);
  if (!c) return Status::Error(ENOENT, "no chain with dedup ID " + std::to_string(dedup_id));
  auto it = c->files.find(name);
  if (it == c->files.end()) return Status::Error(ENOENT, "no swap file '" + name + "'");
  return it->second;
}

bool Namespace::ChainHasFiles(int64_t dedup_id) const {
  ReaderLock lk(&mu_);
  const ChainNode* c = ChainLocked(dedup_id);
  return c && !c->files.empty();
}

std::vector<DirEntry> Namespace::RootEntries() const {
  ReaderLock lk(&mu_);
  std::vector<DirEntry> out;
  out.reserve(chain_by_name_.size() + 2);
  out.push_back({".", kRootIno, S_IFDIR});
  out.push_back({"..", kRootIno, S_IFDIR});
  for (auto& [name, id] : chain_by_name_) out.push_back({name, ChainIno(id), S_IFDIR});
  return out;
}

Result<std::vector<DirEntry>> Namespace::ChainEntries(int64_t dedup_id) const {
  ReaderLock lk(&mu_);
  const ChainNode* c = ChainLocked(dedup_id);
  if (!c) return Status::Error(ENOENT, "no chain with dedup ID " + std::to_string(dedup_id));
  std::vector<DirEntry> out;
  out.reserve(c->files.size() + 2);
  out.push_back({".", ChainIno(dedup_id), S_IFDIR});
  out.push_back({"..", kRootIno, S_IFDIR});
  for (auto& [name, node] : c->files) out.push_back({name, FileIno(node->file_id), S_IFREG});
  return out;
}

size_t Namespace::chain_count() const {
  ReaderLock lk(&mu_);
  return chains_.size();
}

size_t Namespace::file_count() const {
  ReaderLock lk(&mu_);
  return files_.size();
}

void Namespace::AddChain(const ChainInfo& c) {
  WriterLock lk(&mu_);
  chains_[c.dedup_id].info = c;
  chain_by_name_[c.name] = c.dedup_id;
}

void Namespace::UpdateChain(const ChainInfo& c) {
  WriterLock lk(&mu_);
  if (ChainNode* node = ChainLocked(c.dedup_id)) node->info = c;
}

void Namespace::RenameChain(const std::string& old_name, const ChainInfo& c) {
  WriterLock lk(&mu_);
  ChainNode* node = ChainLocked(c.dedup_id);
  if (!node) return;
  node->info = c;
  chain_by_name_.erase(old_name);
  chain_by_name_[c.name] = c.dedup_id;
}

void Namespace::RemoveChain(int64_t dedup_id) {
  WriterLock lk(&mu_);
  ChainNode* node = ChainLocked(dedup_id);
  if (!node) return;
  chain_by_name_.erase(node->info.name);
  chains_.erase(dedup_id);
}

void Namespace::AddFile(const std::shared_ptr<FileNode>& f) {
  const FileInfo info = f->Info();
  WriterLock lk(&mu_);
  ChainNode* c = ChainLocked(f->dedup_id);
  if (!c) return;
  c->files[info.name] = f;
  files_[f->file_id] = f;
  c->info.mtime_ns = c->info.ctime_ns = info.mtime_ns;
}

void Namespace::DetachLocked(ChainNode& chain, const std::shared_ptr<FileNode>& f, int64_t now_ns) {
  MutexLock fl(&f->mu);
  chain.files.erase(f->info.name);
  f->info.unlinked = true;
  f->info.ctime_ns = chain.info.mtime_ns = chain.info.ctime_ns = now_ns;
}

void Namespace::Detach(const std::shared_ptr<FileNode>& f, int64_t now_ns) {
  WriterLock lk(&mu_);
  if (ChainNode* c = ChainLocked(f->dedup_id)) DetachLocked(*c, f, now_ns);
}

void Namespace::RenameFile(const std::shared_ptr<FileNode>& f, const std::string& new_name,
                           const std::shared_ptr<FileNode>& replaced, int64_t now_ns) {
  WriterLock lk(&mu_);
  ChainNode* c = ChainLocked(f->dedup_id);
  if (!c) return;
  if (replaced) DetachLocked(*c, replaced, now_ns);
  MutexLock fl(&f->mu);
  c->files.erase(f->info.name);
  f->info.name = new_name;
  f->info.ctime_ns = now_ns;
  c->files[new_name] = f;
}

Result<std::shared_ptr<FileNode>> Namespace::Open(int64_t file_id) {
  ReaderLock lk(&mu_);
  auto it = files_.find(file_id);
  if (it == files_.end()) return Status::Error(ENOENT, "no swap file " + std::to_string(file_id));
  FileNode& f = *it->second;
  MutexLock fl(&f.mu);
  if (f.reclaiming) return Status::Error(ENOENT, "swap file " + std::to_string(file_id) + " is being reclaimed");
  ++f.open_count;
  return it->second;
}

std::shared_ptr<FileNode> Namespace::Release(int64_t file_id) {
  std::shared_ptr<FileNode> f = File(file_id);
  if (!f) return nullptr;
  MutexLock fl(&f->mu);
  if (f->open_count > 0) --f->open_count;
  return f;
}

bool Namespace::StartReclaim(const std::shared_ptr<FileNode>& f) {
  MutexLock fl(&f->mu);
  if (!f->info.unlinked || f->open_count > 0 || f->reclaiming) return false;
  f->reclaiming = true;
  return true;
}

void Namespace::Forget(int64_t file_id) {
  WriterLock lk(&mu_);
  files_.erase(file_id);
}

}  // namespace chainswap
