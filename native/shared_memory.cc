// Allreduce through shared memory between the ranks of one machine (see
// shared_memory.h for why and the protocol).
#include "shared_memory.h"

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#ifdef __linux__
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#endif

namespace usam {

namespace {
constexpr uint64_t kMagic = 0x75736d2d73686d31ULL;  // "usm-shm1"
// One slot per rank: a collective larger than this goes in chunks. 4 MiB
// holds the gradients of the library's MLP and CNN in one chunk.
constexpr size_t kSlotBytes = size_t(4) << 20;
constexpr size_t kLine = 64;
constexpr size_t kPage = 4096;
constexpr auto kCheckEvery = std::chrono::milliseconds(10);

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// a ≥ b for sequence numbers that may wrap around
bool Reached(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}
}  // namespace

struct SharedMemoryAllreduce::Header {
  uint64_t magic;
  uint64_t worldSize;
  uint64_t slotBytes;
  // bumped by every publication; waiters sleep on it (a futex word)
  alignas(kLine) std::atomic<uint32_t> bell;
};

struct alignas(kLine) SharedMemoryAllreduce::RankState {
  std::atomic<uint32_t> arrived;  // the last chunk this rank has copied into its slot
  std::atomic<uint32_t> left;     // the last chunk whose slots this rank has finished reading
  std::atomic<int32_t> pid;
  std::atomic<int32_t> dtype;     // what the rank's current collective holds, checked against the others'
  std::atomic<int64_t> numel;
  std::atomic<int32_t> op;
};

static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<int64_t>::is_always_lock_free,
              "shared-memory collectives need address-free atomics");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "the futex word is the atomic's storage");

// The segment: the header, one line of state per rank, then (page-aligned) one slot per rank.
size_t SharedMemoryAllreduce::SlotsOffset(int worldSize) { return RoundUp(RoundUp(sizeof(Header), kLine) + worldSize * sizeof(RankState), kPage); }
size_t SharedMemoryAllreduce::SegmentBytes(int worldSize) { return SlotsOffset(worldSize) + worldSize * kSlotBytes; }

SharedMemoryAllreduce::RankState& SharedMemoryAllreduce::State(int r) const {
  return reinterpret_cast<RankState*>(static_cast<uint8_t*>(base_) + RoundUp(sizeof(Header), kLine))[r];
}

uint8_t* SharedMemoryAllreduce::Slot(int r) const { return static_cast<uint8_t*>(base_) + SlotsOffset(worldSize_) + r * kSlotBytes; }

SharedMemoryAllreduce::SharedMemoryAllreduce(std::string name, int rank, int worldSize, std::chrono::milliseconds timeout)
    : name_(std::move(name)), rank_(rank), worldSize_(worldSize), timeout_(timeout), bytes_(SegmentBytes(worldSize)) {}

#ifdef __linux__

bool SharedMemoryAllreduce::Map(int fd, std::string& why) {
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    why = std::string("mmap failed: ") + std::strerror(errno);
    return false;
  }
  base_ = p;
  return true;
}

std::unique_ptr<SharedMemoryAllreduce> SharedMemoryAllreduce::Create(int worldSize, std::chrono::milliseconds timeout, std::string& why) {
  std::random_device rd;
  char name[48];
  std::snprintf(name, sizeof name, "/usam-%08x%08x%08x", rd(), rd(), rd());
  std::unique_ptr<SharedMemoryAllreduce> s(new SharedMemoryAllreduce(name, 0, worldSize, timeout));
  const int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    why = "shm_open(" + s->name_ + ") failed: " + std::strerror(errno);
    return nullptr;
  }
  s->ownsName_ = true;  // from here on, a failure removes the name (the destructor)
  // the pages reserved now: a /dev/shm without room is refused here, not a SIGBUS mid-step
  const int err = posix_fallocate(fd, 0, static_cast<off_t>(s->bytes_));
  if (err != 0) {
    close(fd);
    why = "reserving " + std::to_string(s->bytes_ >> 20) + " MiB in /dev/shm failed: " + std::strerror(err);
    return nullptr;
  }
  if (!s->Map(fd, why)) return nullptr;
  auto* h = static_cast<Header*>(s->base_);
  h->magic = kMagic;
  h->worldSize = static_cast<uint64_t>(worldSize);
  h->slotBytes = kSlotBytes;
  s->State(0).pid.store(getpid());
  return s;
}

std::unique_ptr<SharedMemoryAllreduce> SharedMemoryAllreduce::Attach(const std::string& name, int rank, int worldSize,
                                                                     std::chrono::milliseconds timeout, std::string& why) {
  std::unique_ptr<SharedMemoryAllreduce> s(new SharedMemoryAllreduce(name, rank, worldSize, timeout));
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    why = "shm_open(" + name + ") failed: " + std::strerror(errno) + " (the ranks are not on one machine?)";
    return nullptr;
  }
  struct stat st{};
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != s->bytes_) {
    close(fd);
    why = "the segment " + name + " has another size than " + std::to_string(worldSize) + " ranks need";
    return nullptr;
  }
  if (!s->Map(fd, why)) return nullptr;
  auto* h = static_cast<Header*>(s->base_);
  if (h->magic != kMagic || h->worldSize != static_cast<uint64_t>(worldSize) || h->slotBytes != kSlotBytes) {
    why = "the segment " + name + " is not this run's";
    return nullptr;
  }
  s->State(rank).pid.store(getpid());
  return s;
}

SharedMemoryAllreduce::~SharedMemoryAllreduce() {
  if (base_) munmap(base_, bytes_);
  Unlink();
}

void SharedMemoryAllreduce::Unlink() {
  if (ownsName_) shm_unlink(name_.c_str());
  ownsName_ = false;
}

void SharedMemoryAllreduce::Publish() {
  auto* h = static_cast<Header*>(base_);
  h->bell.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&h->bell), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

namespace {
// Whether process `pid` has stopped (gone, or a zombie its parent has not reaped yet).
bool Stopped(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all;
  std::getline(stat, all);
  const size_t close = all.rfind(')');
  return close != std::string::npos && close + 2 < all.size() && (all[close + 2] == 'Z' || all[close + 2] == 'X');
}
}  // namespace

template <typename Ready>
void SharedMemoryAllreduce::WaitFor(Ready ready, const char* what, std::chrono::steady_clock::time_point deadline) {
  // the other rank is usually a few microseconds away: spin first (about 20 µs)
  for (int i = 0; i < 512; i++) {
    if (ready()) return;
    CpuRelax();
  }
  auto* h = static_cast<Header*>(base_);
  auto next = std::chrono::steady_clock::now() + kCheckEvery;
  const timespec slice{0, std::chrono::duration_cast<std::chrono::nanoseconds>(kCheckEvery).count()};
  for (;;) {
    const uint32_t bell = h->bell.load(std::memory_order_acquire);
    if (ready()) return;
    // sleeps unless the bell rang since it was read (no lost wake-up)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&h->bell), FUTEX_WAIT, bell, &slice, nullptr, 0);
    if (ready()) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next) continue;
    next = now + kCheckEvery;
    for (int r = 0; r < worldSize_; r++) {
      const pid_t pid = State(r).pid.load();
      if (r != rank_ && Stopped(pid))
        throw std::runtime_error("rank " + std::to_string(r) + " (process " + std::to_string(pid) + ") stopped while rank " +
                                 std::to_string(rank_) + " waited for it to " + what);
    }
    if (now >= deadline)
      throw std::runtime_error("no answer within " + std::to_string(timeout_.count()) + " ms while waiting for every rank to " + what +
                               " (shared-memory transport)");
  }
}

void SharedMemoryAllreduce::Allreduce(at::Tensor& t, Op op) {
  if (!t.is_contiguous() || t.device().type() != c10::kCPU) throw std::runtime_error("shared-memory allreduce takes contiguous CPU tensors");
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const int64_t n = t.numel();
  const size_t itemBytes = t.element_size();
  const int64_t perChunk = static_cast<int64_t>(kSlotBytes / itemBytes);
  const int64_t chunks = std::max<int64_t>(1, (n + perChunk - 1) / perChunk);
  auto* data = static_cast<uint8_t*>(t.data_ptr());
  RankState& mine = State(rank_);
  for (int64_t c = 0; c < chunks; c++) {
    const uint32_t s = seq_ + 1;
    const int64_t offset = c * perChunk, m = std::min(perChunk, n - offset);
    // the slots may be rewritten once every rank has read the last chunk's
    WaitFor([&] {
      for (int r = 0; r < worldSize_; r++)
        if (!Reached(State(r).left.load(std::memory_order_acquire), s - 1)) return false;
      return true;
    }, "finish the previous collective", deadline);
    std::memcpy(Slot(rank_), data + offset * itemBytes, m * itemBytes);
    mine.dtype.store(static_cast<int32_t>(t.scalar_type()), std::memory_order_relaxed);
    mine.numel.store(n, std::memory_order_relaxed);
    mine.op.store(static_cast<int32_t>(op), std::memory_order_relaxed);
    mine.arrived.store(s, std::memory_order_release);
    Publish();
    WaitFor([&] {
      for (int r = 0; r < worldSize_; r++)
        if (!Reached(State(r).arrived.load(std::memory_order_acquire), s)) return false;
      return true;
    }, "reach the same allreduce", deadline);
    for (int r = 0; r < worldSize_; r++) {
      const RankState& o = State(r);
      if (o.numel.load(std::memory_order_relaxed) != n || o.dtype.load(std::memory_order_relaxed) != static_cast<int32_t>(t.scalar_type()) ||
          o.op.load(std::memory_order_relaxed) != static_cast<int32_t>(op))
        throw std::runtime_error("rank " + std::to_string(r) + " called allreduce with another tensor or op (" + std::to_string(o.numel.load()) +
                                 " values) than rank " + std::to_string(rank_) + " (" + std::to_string(n) + " values of " +
                                 std::string(c10::toString(t.scalar_type())) + "): every rank must make the same collective calls");
    }
    // slot 0 ∘ slot 1 ∘ … in rank order on every rank: bit-identical results
    auto slot = [&](int r) { return at::from_blob(Slot(r), {m}, t.options()); };
    at::Tensor out = at::from_blob(data + offset * itemBytes, {m}, t.options());
    if (op == Op::Sum) {
      at::add_out(out, slot(0), slot(1));
      for (int r = 2; r < worldSize_; r++) out.add_(slot(r));
    } else {
      auto pick = [&](const at::Tensor& a, const at::Tensor& b) { return op == Op::Max ? at::maximum_out(out, a, b) : at::minimum_out(out, a, b); };
      pick(slot(0), slot(1));
      for (int r = 2; r < worldSize_; r++) pick(out, slot(r));
    }
    mine.left.store(s, std::memory_order_release);
    Publish();
    seq_ = s;
  }
}

#else  // not Linux: the ranks use Gloo alone

std::unique_ptr<SharedMemoryAllreduce> SharedMemoryAllreduce::Create(int, std::chrono::milliseconds, std::string& why) {
  why = "shared-memory collectives are built on Linux only";
  return nullptr;
}
std::unique_ptr<SharedMemoryAllreduce> SharedMemoryAllreduce::Attach(const std::string&, int, int, std::chrono::milliseconds, std::string& why) {
  why = "shared-memory collectives are built on Linux only";
  return nullptr;
}
SharedMemoryAllreduce::~SharedMemoryAllreduce() = default;
void SharedMemoryAllreduce::Unlink() {}
void SharedMemoryAllreduce::Allreduce(at::Tensor&, Op) { throw std::runtime_error("shared-memory collectives are built on Linux only"); }

#endif

}  // namespace usam
