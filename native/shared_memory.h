// Allreduce between the ranks of one machine through a shared-memory segment.
//
// Why: Gloo's allreduce between two processes on this 2-core VM costs
// 0.9–2.2 ms for a handful of values and 2.8 ms for the CNN's 1.7 MB
// gradient (loopback TCP, and three thread hand-offs a message); a SAM step
// has four of them, 12–15 ms of an 87 ms step. Ranks that met through a
// store file (usam train --nproc) share a machine unless the file is on a
// network folder; for them the ranks' buffers go through memory they all map.
//
// The protocol, per chunk (a collective is cut into slot-sized chunks):
// every rank waits until all ranks have finished reading the previous chunk,
// copies its chunk into its own slot, publishes the chunk's sequence number,
// waits until every rank has published it, then computes the reduction of all
// slots in rank order (slot 0 + slot 1 + …, the same operations on every
// rank: every rank ends with bit-identical values) and publishes that it has
// read them. Waiting spins briefly, then sleeps on a futex; every 10 ms it
// checks the deadline and whether a peer's process still exists, so a peer
// that dies or never arrives is an error, never a hang. Nothing here knows
// Node-API or c10d: distributed.cc does the rendezvous (the segment's name
// travels through the run's store).
#pragma once
#include "pch.h"

#include <chrono>

namespace usam {

class SharedMemoryAllreduce {
 public:
  enum class Op { Sum, Max, Min };

  // Rank 0: creates a new segment for worldSize ranks (a random name, mode
  // 0600, its pages reserved so that a full /dev/shm is an error here and
  // never a SIGBUS later); returns null with `why` set when it cannot.
  static std::unique_ptr<SharedMemoryAllreduce> Create(int worldSize, std::chrono::milliseconds timeout, std::string& why);
  // Another rank: maps the segment rank 0 created; null with `why` when it
  // cannot (e.g. the ranks are on different machines).
  static std::unique_ptr<SharedMemoryAllreduce> Attach(const std::string& name, int rank, int worldSize,
                                                       std::chrono::milliseconds timeout, std::string& why);
  ~SharedMemoryAllreduce();
  SharedMemoryAllreduce(const SharedMemoryAllreduce&) = delete;
  SharedMemoryAllreduce& operator=(const SharedMemoryAllreduce&) = delete;

  const std::string& Name() const { return name_; }
  // Removes the segment's name once every rank has mapped it (rank 0): the
  // memory lives on while mapped, and nothing is left in /dev/shm after.
  void Unlink();
  // In place: every rank ends with the reduction of all ranks' `t` (a
  // contiguous CPU tensor of the same dtype and size on every rank).
  void Allreduce(at::Tensor& t, Op op);

 private:
  SharedMemoryAllreduce(std::string name, int rank, int worldSize, std::chrono::milliseconds timeout);
  struct Header;
  struct RankState;
  static size_t SlotsOffset(int worldSize);
  static size_t SegmentBytes(int worldSize);
  bool Map(int fd, std::string& why);
  RankState& State(int r) const;
  uint8_t* Slot(int r) const;
  // Blocks until ready() holds; throws on the deadline or a dead peer
  template <typename Ready>
  void WaitFor(Ready ready, const char* what, std::chrono::steady_clock::time_point deadline);
  void Publish();

  std::string name_;
  int rank_ = 0;
  int worldSize_ = 1;
  std::chrono::milliseconds timeout_{0};
  size_t bytes_ = 0;
  void* base_ = nullptr;
  uint32_t seq_ = 0;  // chunks this rank has completed
  bool ownsName_ = false;  // rank 0, from creating the segment until Unlink()
};

}  // namespace usam
