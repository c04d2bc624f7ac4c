#include "catalog/rados_store.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include <spdlog/spdlog.h>

// ThreadSanitizer builds (CHAINSWAP_SANITIZE=thread): librados and
// libceph-common are not instrumented. TSan sees their mutexes (intercepted)
// but not their atomics, and their memory accesses through intercepted calls
// (memcpy, free, ...) and through the inline std::string code they run from
// this binary (constexpr in C++20, so instrumented copies live here and take
// their calls): it reports races between librados's own threads. So a race
// with a frame of either library on a stack is not reported. The cost: a race
// inside a callback that librados runs (an aio completion callback) is not
// reported either; such callbacks should only hand over to our own threads.
// ("called_from_lib:" would also hide the libraries' mutexes, and then
// reused stack memory shows up as races in our own code.) Here, in the one
// object file that calls librados, so that every binary that links it
// (chainswap, the tests, later the daemon) gets them; the TSan runtime
// looks the function up by name.
#if defined(__SANITIZE_THREAD__)
#define CHAINSWAP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAINSWAP_TSAN 1
#endif
#endif
#ifdef CHAINSWAP_TSAN
extern "C" const char* __tsan_default_suppressions() {
  return "race:librados.so\n"
         "race:libceph-common.so\n";
}
#endif

namespace chainswap {

namespace {

constexpr const char* kChainPrefix = "chain.";
constexpr const char* kBlockPrefix = "blk.";
constexpr const char* kChainRecordMagic = "chainswap-chain 1";
constexpr uint64_t kHeadSnap = 0xfffffffffffffffeULL;  // CEPH_NOSNAP: the object's head
constexpr uint64_t kCasFlagVerify = 1;                 // cls_cas FLAG_VERIFY

Status RadosError(int r, const std::string& what) {
  return Status::FromErrno(r < 0 ? -r : EIO, what);
}

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

bool Unhex(std::string_view hex, uint8_t* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

// Ceph's wire encoding, little-endian (include/encoding.h), for the `cas`
// class calls: no client headers for object classes are packaged, so the
// three structures they take are encoded here by hand.
class Encoder {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Le(v); }
  void U64(uint64_t v) { Le(v); }
  void String(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Bytes(std::span<const uint8_t> b) {
    U32(static_cast<uint32_t>(b.size()));
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  // ENCODE_START(v, compat): u8 v, u8 compat, u32 length of what follows
  // (patched by End).
  size_t Start(uint8_t v, uint8_t compat) {
    U8(v);
    U8(compat);
    const size_t at = out_.size();
    U32(0);
    return at;
  }
  void End(size_t at) {
    const auto len = static_cast<uint32_t>(out_.size() - at - 4);
    for (size_t i = 0; i < 4; ++i) out_[at + i] = static_cast<char>(len >> (8 * i));
  }
  std::string Take() { return std::move(out_); }

 private:
  template <typename T>
  void Le(T v) {
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  std::string out_;
};

// hobject_t (common/hobject.h, ENCODE_START(4, 3)) naming a reference's
// holder: an object name that is never created, in the block's pool.
void EncodeHolder(Encoder& e, const RadosRef& ref, int64_t pool) {
  const size_t at = e.Start(4, 3);
  e.String("");  // key
  e.String("ref." + ref.host + "." + std::to_string(ref.local));
  e.U64(kHeadSnap);
  e.U32(0);  // hash: fixed, compared as part of the holder's identity
  e.U8(0);   // max
  e.String("");  // namespace
  e.U64(static_cast<uint64_t>(pool));
  e.End(at);
}

std::string CreateOrRefInput(const RadosRef& ref, int64_t pool, std::span<const uint8_t> data, bool verify) {
  Encoder e;
  const size_t at = e.Start(1, 1);
  EncodeHolder(e, ref, pool);
  e.U64(verify ? kCasFlagVerify : 0);
  e.Bytes(data);
  e.End(at);
  return e.Take();
}

std::string HolderInput(const RadosRef& ref, int64_t pool) {
  Encoder e;
  const size_t at = e.Start(1, 1);
  EncodeHolder(e, ref, pool);
  e.End(at);
  return e.Take();
}

// RAII for a write operation.
struct WriteOp {
  WriteOp() : op(rados_create_write_op()) {}
  ~WriteOp() { rados_release_write_op(op); }
  WriteOp(const WriteOp&) = delete;
  WriteOp& operator=(const WriteOp&) = delete;
  rados_write_op_t op;
};

std::string ChainObjectName(const std::string& name) { return kChainPrefix + name; }

std::string EncodeChainRecord(const RadosChainRecord& r) {
  return std::string(kChainRecordMagic) + "\nid " + r.id + "\nseed " + Hex(r.seed.data(), r.seed.size()) + "\n";
}

Result<RadosChainRecord> ParseChainRecord(const std::string& object, const std::string& text) {
  RadosChainRecord r;
  const std::string magic = std::string(kChainRecordMagic) + "\nid ";
  const auto bad = [&] { return Status::Error(EIO, "RADOS chain record " + object + " does not parse"); };
  if (text.compare(0, magic.size(), magic) != 0) return bad();
  size_t pos = magic.size();
  const size_t id_end = text.find('\n', pos);
  if (id_end == std::string::npos) return bad();
  r.id = text.substr(pos, id_end - pos);
  uint8_t id_bytes[16];
  if (!Unhex(r.id, id_bytes, sizeof id_bytes)) return bad();
  pos = id_end + 1;
  if (text.compare(pos, 5, "seed ") != 0) return bad();
  pos += 5;
  const size_t seed_end = text.find('\n', pos);
  if (seed_end == std::string::npos) return bad();
  if (!Unhex(std::string_view(text).substr(pos, seed_end - pos), r.seed.data(), r.seed.size())) return bad();
  return r;
}

}  // namespace

Result<std::string> ParseRadosStoreSpec(const std::string& spec) {
  static constexpr std::string_view kPrefix = "rados:";
  if (spec.compare(0, kPrefix.size(), kPrefix) != 0 || spec.size() == kPrefix.size())
    return Status::Error(EINVAL, "store '" + spec + "': expected rados:POOL");
  return spec.substr(kPrefix.size());
}

RadosStore::RadosStore(RadosTarget t, rados_t cluster, rados_ioctx_t io)
    : target_(std::move(t)), cluster_(cluster), io_(io), pool_id_(rados_ioctx_get_id(io)) {}

RadosStore::~RadosStore() {
  rados_ioctx_destroy(io_);
  rados_shutdown(cluster_);
}

Result<std::unique_ptr<RadosStore>> RadosStore::Connect(const RadosTarget& target) {
  const std::string user = "client." + target.client_id;
  const std::string where =
      "Ceph cluster (conf " + (target.conf_path.empty() ? std::string("default") : target.conf_path) + ", user " +
      user + ")";
  rados_t cluster = nullptr;
  int r = rados_create2(&cluster, "ceph", user.c_str(), 0);
  if (r < 0) return RadosError(r, "init librados for " + where);
  // Shut down on every early return.
  std::unique_ptr<void, void (*)(void*)> guard(cluster, [](void* c) { rados_shutdown(static_cast<rados_t>(c)); });
  r = rados_conf_read_file(cluster, target.conf_path.empty() ? nullptr : target.conf_path.c_str());
  if (r < 0) return RadosError(r, "read " + where);
  if (target.timeout_seconds > 0) {
    const std::string t = std::to_string(target.timeout_seconds);
    for (const char* opt : {"client_mount_timeout", "rados_osd_op_timeout", "rados_mon_op_timeout"}) {
      r = rados_conf_set(cluster, opt, t.c_str());
      if (r < 0) return RadosError(r, std::string("set ") + opt);
    }
    // The client asks the monitors for a new OSD map only every `objecter
    // timeout` (10 s by default) while an OSD does not answer: at or above
    // the operation timeout, a client never sees a restarted OSD, and every
    // retry times out again (docs/RADOS.md, "Faults").
    // It checks for such operations every `objecter tick interval` (5 s).
    const std::string objecter = std::to_string(std::clamp(target.timeout_seconds / 3, 1, 10));
    for (const char* opt : {"objecter_timeout", "objecter_tick_interval"}) {
      r = rados_conf_set(cluster, opt, objecter.c_str());
      if (r < 0) return RadosError(r, std::string("set ") + opt);
    }
  }
  r = rados_connect(cluster);
  if (r < 0) return RadosError(r, "connect to " + where);
  rados_ioctx_t io = nullptr;
  r = rados_ioctx_create(cluster, target.pool.c_str(), &io);
  if (r < 0) return RadosError(r, "open pool '" + target.pool + "' of " + where);
  guard.release();
  spdlog::info("rados: connected to pool '{}' of {}", target.pool, where);
  return std::unique_ptr<RadosStore>(new RadosStore(target, cluster, io));
}

Result<RadosChainRecord> RadosStore::JoinChain(const std::string& name, const HashSeed& proposed) {
  RadosChainRecord mine;
  const HashSeed id_bytes = NewHashSeed();
  mine.id = Hex(id_bytes.data(), 16);
  mine.seed = proposed;
  const std::string object = ChainObjectName(name);
  const std::string record = EncodeChainRecord(mine);
  WriteOp op;
  rados_write_op_create(op.op, LIBRADOS_CREATE_EXCLUSIVE, nullptr);
  rados_write_op_write_full(op.op, record.data(), record.size());
  const int r = rados_write_op_operate(op.op, io_, object.c_str(), nullptr, 0);
  if (r == 0) {
    spdlog::info("rados: created chain '{}' (id {})", name, mine.id);
    return mine;
  }
  if (r != -EEXIST) return RadosError(r, "create RADOS chain record " + object);
  return ReadChain(name);
}

Result<RadosChainRecord> RadosStore::ReadChain(const std::string& name) {
  const std::string object = ChainObjectName(name);
  std::string text(4096, '\0');
  const int r = rados_read(io_, object.c_str(), text.data(), text.size(), 0);
  if (r < 0) return RadosError(r, "read RADOS chain record " + object);
  text.resize(static_cast<size_t>(r));
  return ParseChainRecord(object, text);
}

std::string RadosStore::BlockObjectName(const std::string& chain_id, const BlockHash& h) {
  return kBlockPrefix + chain_id + "." + Hex(h.bytes.data(), h.bytes.size());
}

Status RadosStore::Read(const std::string& object, std::span<uint8_t> out) {
  const int r = rados_read(io_, object.c_str(), reinterpret_cast<char*>(out.data()), out.size(), 0);
  if (r < 0) return RadosError(r, "read RADOS object " + object);
  if (static_cast<size_t>(r) != out.size())
    return Status::Error(EIO, "RADOS object " + object + " holds " + std::to_string(r) + " bytes, expected " +
                                  std::to_string(out.size()));
  return Status::Ok();
}

Result<uint64_t> RadosStore::Stat(const std::string& object) {
  uint64_t size = 0;
  time_t mtime = 0;
  const int r = rados_stat(io_, object.c_str(), &size, &mtime);
  if (r < 0) return RadosError(r, "stat RADOS object " + object);
  return size;
}

namespace {

// Reads Ceph's little-endian encoding; every read fails once past the end.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) { return Le(v); }
  bool U32(uint32_t* v) { return Le(v); }
  bool U64(uint64_t* v) { return Le(v); }
  bool String(std::string* s) {
    uint32_t n = 0;
    if (!U32(&n) || n > in_.size() - pos_) return false;
    s->assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  // DECODE_START: the struct's version, and its end as a position.
  bool Start(uint8_t* v, size_t* end) {
    uint8_t compat = 0;
    uint32_t len = 0;
    if (!U8(v) || !U8(&compat) || !U32(&len) || len > in_.size() - pos_) return false;
    *end = pos_ + len;
    return true;
  }
  void Seek(size_t pos) { pos_ = pos; }

 private:
  template <typename T>
  bool Le(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    T out = 0;
    for (size_t i = 0; i < sizeof(T); ++i) out |= static_cast<T>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    *v = out;
    pos_ += sizeof(T);
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

// A holder's hobject_t name, "ref.HOST.N", back to a RadosRef.
bool ParseHolder(const std::string& oid, RadosRef* ref) {
  if (!oid.starts_with("ref.")) return false;
  const size_t dot = oid.rfind('.');
  if (dot <= 4) return false;
  ref->host = oid.substr(4, dot - 4);
  try {
    size_t used = 0;
    ref->local = std::stoll(oid.substr(dot + 1), &used);
    return used == oid.size() - dot - 1;
  } catch (const std::exception&) {
    return false;
  }
}

constexpr uint8_t kCasRefsByObject = 1;  // chunk_refs_t::TYPE_BY_OBJECT

}  // namespace

Result<std::vector<RadosRef>> RadosStore::Holders(const std::string& object) {
  std::string buf(4096, '\0');
  int r;
  while ((r = rados_getxattr(io_, object.c_str(), "chunk_refs", buf.data(), buf.size())) == -ERANGE &&
         buf.size() < (64u << 20)) {
    buf.resize(buf.size() * 4);
  }
  if (r < 0) return RadosError(r, "read the references of RADOS object " + object);
  buf.resize(static_cast<size_t>(r));
  const auto bad = [&](const char* why) {
    return Status::Error(EPROTO, "RADOS object " + object + ": cas references: " + why);
  };
  // chunk_refs_t: ENCODE_START(1, 1) { u8 type; ENCODE_START(1, 1) {
  // u32 n; n x hobject_t } } for the one-entry-per-holder type.
  Decoder d(buf);
  uint8_t v = 0, type = 0;
  size_t end = 0, inner_end = 0;
  uint32_t n = 0;
  if (!d.Start(&v, &end) || !d.U8(&type)) return bad("truncated");
  if (type != kCasRefsByObject) return bad(("kept as type " + std::to_string(type) + ", not one entry per holder").c_str());
  if (!d.Start(&v, &inner_end) || !d.U32(&n)) return bad("truncated");
  std::vector<RadosRef> out;
  for (uint32_t i = 0; i < n; ++i) {
    size_t h_end = 0;
    std::string key, oid;
    if (!d.Start(&v, &h_end) || !d.String(&key) || !d.String(&oid)) return bad("truncated holder");
    d.Seek(h_end);  // snap, hash, max, namespace, pool: not needed
    RadosRef ref;
    if (!ParseHolder(oid, &ref)) return bad(("a holder not named by chainswap: " + oid).c_str());
    out.push_back(std::move(ref));
  }
  return out;
}

Result<std::vector<std::string>> RadosStore::List(const std::string& prefix) {
  std::vector<std::string> out;
  rados_list_ctx_t ctx = nullptr;
  int r = rados_nobjects_list_open(io_, &ctx);
  if (r < 0) return RadosError(r, "list RADOS pool '" + target_.pool + "'");
  for (;;) {
    const char* oid = nullptr;
    r = rados_nobjects_list_next(ctx, &oid, nullptr, nullptr);
    if (r == -ENOENT) break;
    if (r < 0) {
      rados_nobjects_list_close(ctx);
      return RadosError(r, "list RADOS pool '" + target_.pool + "'");
    }
    if (std::string_view(oid).starts_with(prefix)) out.emplace_back(oid);
  }
  rados_nobjects_list_close(ctx);
  return out;
}

// ---------------------------------------------------------------------------

struct RadosBatch::Op {
  ~Op() {
    if (write != nullptr) rados_release_write_op(write);
  }
  enum Kind { kWrite, kRead } kind = kWrite;
  std::string object;
  const char* what = "";  // for the error message
  rados_completion_t completion = nullptr;
  rados_write_op_t write = nullptr;
  std::span<uint8_t> out;
  int rc = 0;
  bool done = false;
};

RadosBatch::RadosBatch(RadosStore& store, size_t window) : store_(store), window_(window == 0 ? 1 : window) {}

RadosBatch::~RadosBatch() { (void)Wait(); }

size_t RadosBatch::Submit(std::unique_ptr<Op> op) {
  while (in_flight_.size() >= window_) {
    Reap(*ops_[in_flight_.front()]);
    in_flight_.pop_front();
  }
  int r = rados_aio_create_completion2(nullptr, nullptr, &op->completion);
  if (r == 0) {
    if (op->kind == Op::kRead) {
      r = rados_aio_read(store_.io_, op->object.c_str(), op->completion, reinterpret_cast<char*>(op->out.data()),
                         op->out.size(), 0);
    } else {
      r = rados_aio_write_op_operate(op->write, store_.io_, op->completion, op->object.c_str(), nullptr, 0);
    }
  }
  const size_t index = ops_.size();
  if (r < 0) {
    if (op->completion != nullptr) rados_aio_release(op->completion);
    op->completion = nullptr;
    op->rc = r;
    op->done = true;
    ops_.push_back(std::move(op));
    return index;
  }
  ops_.push_back(std::move(op));
  in_flight_.push_back(index);
  return index;
}

void RadosBatch::Reap(Op& op) {
  if (op.done) return;
  rados_aio_wait_for_complete(op.completion);
  op.rc = rados_aio_get_return_value(op.completion);
  rados_aio_release(op.completion);
  op.completion = nullptr;
  op.done = true;
  // A read returns the bytes it read: a shorter object is damage, never
  // partial bytes.
  if (op.kind == Op::kRead && op.rc >= 0 && static_cast<size_t>(op.rc) != op.out.size()) op.rc = -EIO;
}

size_t RadosBatch::Exec(const std::string& object, const char* what, const char* method, const std::string& input) {
  auto op = std::make_unique<Op>();
  op->object = object;
  op->what = what;
  op->write = rados_create_write_op();
  // librados copies the input into the operation.
  rados_write_op_exec(op->write, "cas", method, input.data(), input.size(), nullptr);
  return Submit(std::move(op));
}

size_t RadosBatch::CreateOrRef(const std::string& object, const RadosRef& ref, std::span<const uint8_t> data,
                               bool verify) {
  return Exec(object, "create or reference", "chunk_create_or_get_ref",
              CreateOrRefInput(ref, store_.pool_id_, data, verify));
}

size_t RadosBatch::Ref(const std::string& object, const RadosRef& ref) {
  return Exec(object, "reference", "chunk_get_ref", HolderInput(ref, store_.pool_id_));
}

size_t RadosBatch::Unref(const std::string& object, const RadosRef& ref) {
  return Exec(object, "drop reference to", "chunk_put_ref", HolderInput(ref, store_.pool_id_));
}

size_t RadosBatch::Read(const std::string& object, std::span<uint8_t> out) {
  auto op = std::make_unique<Op>();
  op->kind = Op::kRead;
  op->object = object;
  op->what = "read";
  op->out = out;
  return Submit(std::move(op));
}

std::vector<Status> RadosBatch::Wait() {
  std::vector<Status> out;
  out.reserve(ops_.size());
  for (auto& op : ops_) {
    Reap(*op);
    if (op->rc >= 0) {
      out.push_back(Status::Ok());
    } else if (op->rc == -EIO && op->kind == Op::kRead) {
      out.push_back(Status::Error(EIO, "RADOS object " + op->object + " is shorter than " +
                                           std::to_string(op->out.size()) + " bytes"));
    } else {
      out.push_back(RadosError(op->rc, std::string(op->what) + " RADOS object " + op->object));
    }
  }
  ops_.clear();
  in_flight_.clear();
  return out;
}

}  // namespace chainswap
