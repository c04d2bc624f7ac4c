#include "fs/migration.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace chainswap {

namespace {

constexpr const char* kFormat = "chainswap-manifest 1";

std::string HashHex(const BlockHash& h) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : h.bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

bool ParseHashHex(const std::string& s, BlockHash* h) {
  if (s.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    auto digit = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    const int hi = digit(s[2 * i]), lo = digit(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    h->bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace

Status WriteManifest(const std::string& path, const Manifest& m) {
  if (path.empty() || path[0] != '/') return Status::Error(EINVAL, "manifest path '" + path + "' is not absolute");
  nlohmann::json j;
  j["format"] = kFormat;
  j["pool"] = m.file.pool;
  j["chain"] = m.file.chain_name;
  j["chain_id"] = m.file.chain_id;
  j["size"] = m.size;
  j["mode"] = m.mode;
  nlohmann::json blocks = nlohmann::json::array();
  for (const ExportedBlock& b : m.file.blocks) blocks.push_back({b.lba, HashHex(b.hash)});
  j["blocks"] = std::move(blocks);
  const std::string text = j.dump() + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create manifest " + path);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Status::FromErrno("write manifest " + path);
      ::close(fd);
      ::unlink(path.c_str());
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Status st = Status::FromErrno("fsync manifest " + path);
    ::close(fd);
    return st;
  }
  if (::close(fd) != 0) return Status::FromErrno("close manifest " + path);
  return Status::Ok();
}

Result<Manifest> ReadManifest(const std::string& path) {
  if (path.empty() || path[0] != '/') return Status::Error(EINVAL, "manifest path '" + path + "' is not absolute");
  std::ifstream in(path);
  if (!in) return Status::FromErrno("open manifest " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return Status::Error(EINVAL, path + " is not a chainswap manifest: " + e.what());
  }
  Manifest m;
  try {
    if (j.value("format", std::string()) != kFormat)
      return Status::Error(EINVAL, path + " is not a chainswap manifest (format is not '" + std::string(kFormat) + "')");
    m.file.pool = j.at("pool").get<std::string>();
    m.file.chain_name = j.at("chain").get<std::string>();
    m.file.chain_id = j.at("chain_id").get<std::string>();
    m.size = j.at("size").get<uint64_t>();
    m.mode = j.at("mode").get<uint32_t>();
    uint64_t prev = 0;
    for (const auto& e : j.at("blocks")) {
      ExportedBlock b;
      b.lba = e.at(0).get<uint64_t>();
      if (!ParseHashHex(e.at(1).get<std::string>(), &b.hash))
        return Status::Error(EINVAL, path + ": a block hash is not 32 hex digits");
      if (!m.file.blocks.empty() && b.lba <= prev) return Status::Error(EINVAL, path + ": blocks are not by LBA");
      if (b.lba >= (m.size + kBlockSize - 1) / kBlockSize)
        return Status::Error(EINVAL, path + ": block " + std::to_string(b.lba) + " lies beyond the size");
      prev = b.lba;
      m.file.blocks.push_back(b);
    }
  } catch (const std::exception& e) {
    return Status::Error(EINVAL, path + " is not a chainswap manifest: " + e.what());
  }
  return m;
}

}  // namespace chainswap
