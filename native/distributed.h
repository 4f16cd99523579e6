// Process groups on LibTorch's c10d (the engine of PyTorch's DDP and
// torchrun): a TCPStore rendezvous and Gloo collectives on flat CPU buffers;
// allreduces between ranks of one machine through shared memory (shared_memory.h).
// Every collective has a timeout; a peer that dies or never comes gives a JS
// error, never a hang.
#pragma once
#include "errors.h"

namespace usam {

// "gloo" when this build has c10d's Gloo backend, "" when it has none.
std::string DistributedBackends();

class ProcessGroupWrap : public GuardedWrap<ProcessGroupWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ProcessGroupWrap(const Napi::CallbackInfo& info);
  ~ProcessGroupWrap() override;

  struct Impl;

 private:
  Napi::Value Allreduce(const Napi::CallbackInfo& info);
  Napi::Value Broadcast(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Rank(const Napi::CallbackInfo& info);
  Napi::Value WorldSize(const Napi::CallbackInfo& info);
  Napi::Value Backend(const Napi::CallbackInfo& info);
  Napi::Value Transport(const Napi::CallbackInfo& info);
  Impl& Live(const char* what);

  std::unique_ptr<Impl> impl_;
};

}  // namespace usam
