// c10d process groups (see distributed.h). Only this translation unit
// includes the c10d headers. ProcessGroupGloo.hpp sits behind USE_C10D_GLOO
// and includes <gloo/...>: Debian's LibTorch 1.13 links the system libgloo
// (libgloo-dev has the headers of that same version); PyTorch 2.x wheels carry
// Gloo inside libtorch_cpu and ship no Gloo headers, so the build takes the
// declarations from libgloo-dev. That is sound here because this file touches
// Gloo only through shared_ptr handles made and destroyed inside LibTorch
// (createDefaultDevice, the ProcessGroupGloo constructor and destructor): no
// Gloo class layout or inline Gloo code of the headers is compiled in.
#include "distributed.h"

#include <map>

#include "args.h"
#include "shared_memory.h"
#include "tensor.h"

#ifdef USAM_WITH_GLOO
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
// NCCL (CUDA builds on a wheel that has nvidia-nccl's headers): collectives on
// CUDA tensors. Compiled here; it runs only where there are GPUs.
#ifdef USAM_WITH_NCCL
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace usam {

std::string DistributedBackends() {
  std::string b;
#ifdef USAM_WITH_GLOO
  b += "gloo";
#endif
#ifdef USAM_WITH_NCCL
  b += b.empty() ? "nccl" : ",nccl";
#endif
  return b;
}

struct ProcessGroupWrap::Impl {
  int rank = 0;
  int worldSize = 1;
  std::string backend;
  // ranks that met through a store file share a machine: their allreduces of
  // CPU tensors go through shared memory (the rest through Gloo)
  std::unique_ptr<SharedMemoryAllreduce> shm;
  std::string transport;
#ifdef USAM_WITH_GLOO
  c10::intrusive_ptr<c10d::Store> store;
#if TORCH_VERSION_MAJOR >= 2
  c10::intrusive_ptr<c10d::Backend> group;  // Gloo or NCCL
#else
  c10::intrusive_ptr<c10d::ProcessGroup> group;
#endif
#endif
};

Napi::Function ProcessGroupWrap::Define(Napi::Env env) {
  return DefineClass(env, "ProcessGroup",
                     {
                         InstanceMethod("allreduce", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Allreduce>),
                         InstanceMethod("broadcast", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Broadcast>),
                         InstanceMethod("barrier", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Barrier>),
                         InstanceMethod("dispose", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Dispose>),
                         InstanceAccessor("rank", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Rank>, nullptr),
                         InstanceAccessor("worldSize", &ProcessGroupWrap::Guard<&ProcessGroupWrap::WorldSize>, nullptr),
                         InstanceAccessor("backend", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Backend>, nullptr),
                         InstanceAccessor("transport", &ProcessGroupWrap::Guard<&ProcessGroupWrap::Transport>, nullptr),
                     });
}

// new ProcessGroup({rank, worldSize, host, port, timeoutMs, server, prefix?,
//                   storeFile?, glooHost?, glooInterface?, fingerprint?}):
// with storeFile, the ranks meet through a FileStore (a file in a folder only
// they can reach: no listening socket at all); else rank 0 (server: true)
// hosts the TCPStore (c10d binds it to every interface) unless an agent's
// store is used (torchrun's TORCHELASTIC_USE_AGENT_STORE), then every rank is
// a client under a prefix. Gloo's pairs listen on glooHost's address, or on
// glooInterface's (GLOO_SOCKET_IFNAME), or on the address this machine's
// hostname resolves to. With a fingerprint ("name=value;..." pairs), the ranks
// check each other's before Gloo connects (CheckFingerprints): a rank of
// another run refuses itself, naming the fields that differ.
// Returns once all worldSize ranks have met, or fails after timeoutMs.
#ifdef USAM_WITH_GLOO
namespace {

std::map<std::string, std::string> FingerprintFields(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(';', start), s.size());
    const std::string item = s.substr(start, end - start);
    const size_t eq = item.find('=');
    if (!item.empty()) out[eq == std::string::npos ? item : item.substr(0, eq)] = eq == std::string::npos ? "" : item.substr(eq + 1);
    start = end + 1;
  }
  return out;
}

// Rank 0 posts its fingerprint first; every other rank reads it before
// posting its own, so a process of another run is refused (by itself, with a
// clear error) before it has written anything the run reads; rank 0 then
// reads every rank's. A rank that never posts (refused, or gone) leaves rank
// 0 waiting at most `timeout`: launchers (usam train --nproc, torchrun) stop
// the others when one fails.
void CheckFingerprints(c10d::Store& store, int rank, int worldSize, const std::string& mine, std::chrono::milliseconds timeout) {
  const std::string key = "usam/fingerprint/";
  const auto own = FingerprintFields(mine);
  auto check = [&](int r) {
    std::vector<uint8_t> value;
    try {
      store.wait({key + std::to_string(r)}, timeout);
      value = store.get(key + std::to_string(r));
    } catch (const std::exception& e) {
      Fail("process group: rank " + std::to_string(rank) + " did not hear from rank " + std::to_string(r) + " within " + std::to_string(timeout.count()) + " ms (" +
           CleanTorchMessage(e.what()) + "). Check that it runs and that every rank was given the same MASTER_ADDR/MASTER_PORT (or store file) and WORLD_SIZE; " +
           "a rank of another run (another run token, config or world size) stops at once with an error saying so: look at its output");
    }
    const auto theirs = FingerprintFields(std::string(value.begin(), value.end()));
    std::string differ;
    for (const auto& [name, v] : own) {
      auto it = theirs.find(name);
      if (it == theirs.end() || it->second != v) differ += (differ.empty() ? "" : ", ") + name;
    }
    for (const auto& [name, v] : theirs)
      if (!own.count(name)) differ += (differ.empty() ? "" : ", ") + name;
    if (!differ.empty())
      Fail("process group: rank " + std::to_string(rank) + " and rank " + std::to_string(r) + " belong to different runs: the " + differ +
           (differ.find(',') == std::string::npos ? " differs" : " differ") +
           ". Every rank of a run needs the same run token (USAM_RUN_TOKEN), config and world size; refused before any tensor was exchanged");
  };
  if (rank != 0) check(0);
  store.set(key + std::to_string(rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  if (rank == 0)
    for (int r = 1; r < worldSize; r++) check(r);
}

// The ranks of a store-file group agree on a shared-memory segment for their
// allreduces: rank 0 creates it and posts its name, every rank posts whether
// it could map it, and the segment is used only when all could (ranks on
// different machines, a full /dev/shm or USAM_SHARED_MEMORY=0 on any rank:
// Gloo alone, everywhere). Rank 0 then removes the name: nothing stays in
// /dev/shm, even if a rank is killed later. `transport` says which, and why not.
void SetUpSharedMemory(ProcessGroupWrap::Impl& g, std::chrono::milliseconds timeout) {
  const char* flag = std::getenv("USAM_SHARED_MEMORY");
  const bool wanted = !(flag && std::string(flag) == "0");
  std::string why = wanted ? "" : "USAM_SHARED_MEMORY=0";
  std::unique_ptr<SharedMemoryAllreduce> shm;
  const std::string key = "usam/shared-memory/";
  auto text = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  try {
    if (g.rank == 0) {
      if (wanted) shm = SharedMemoryAllreduce::Create(g.worldSize, timeout, why);
      g.store->set(key + "name", bytes(shm ? shm->Name() : ""));
    } else {
      g.store->wait({key + "name"}, timeout);
      const std::string name = text(g.store->get(key + "name"));
      if (name.empty() && why.empty()) why = "rank 0 has none";
      if (wanted && !name.empty()) shm = SharedMemoryAllreduce::Attach(name, g.rank, g.worldSize, timeout, why);
    }
    g.store->set(key + "ok/" + std::to_string(g.rank), bytes(shm ? "1" : "0"));
    bool all = true;
    for (int r = 0; r < g.worldSize; r++) {
      g.store->wait({key + "ok/" + std::to_string(r)}, timeout);
      if (text(g.store->get(key + "ok/" + std::to_string(r))) != "1") {
        all = false;
        if (why.empty()) why = "rank " + std::to_string(r) + " could not map it";
      }
    }
    if (g.rank == 0 && shm) shm->Unlink();
    if (all) g.shm = std::move(shm);
  } catch (const std::exception& e) {
    Fail("process group: rank " + std::to_string(g.rank) + " could not agree on shared memory with its peers within " + std::to_string(timeout.count()) +
         " ms (" + CleanTorchMessage(e.what()) + "); a peer stopped while the group was starting");
  }
  g.transport = g.shm ? "shared memory" : "gloo (no shared memory: " + why + ")";
}

}  // namespace
#endif

ProcessGroupWrap::ProcessGroupWrap(const Napi::CallbackInfo& info) : GuardedWrap<ProcessGroupWrap>(info) {
  guarded(info.Env(), [&] {
    Napi::Object o = ObjectArg(info, 0, "options");
    auto impl = std::make_unique<Impl>();
    impl->worldSize = static_cast<int>(IntField(o, "worldSize", "options", 1));
    impl->rank = static_cast<int>(IntField(o, "rank", "options", 0));
    if (impl->rank >= impl->worldSize)
      Fail("options.rank must be below options.worldSize (ranks are 0 .. worldSize − 1), got rank " + std::to_string(impl->rank) +
           " of " + std::to_string(impl->worldSize));
    const std::string host = StringField(o, "host", "options");
    const int64_t port = IntField(o, "port", "options", 1);
    if (port > 65535) Fail("options.port must be a TCP port (1 .. 65535), got " + std::to_string(port));
    const auto timeout = std::chrono::milliseconds(IntField(o, "timeoutMs", "options", 1));
    const bool server = BoolField(o, "server", "options", impl->rank == 0);
    const std::string prefix = HasField(o, "prefix") ? StringField(o, "prefix", "options") : "";
    const std::string backend = HasField(o, "backend") ? StringField(o, "backend", "options") : "gloo";
    if (backend != "gloo" && backend != "nccl") Fail("options.backend must be 'gloo' (CPU tensors) or 'nccl' (CUDA tensors), got '" + backend + "'");
#ifndef USAM_WITH_NCCL
    if (backend == "nccl")
      Fail("this build has no NCCL backend: build the CUDA flavour against a PyTorch 2.x CUDA wheel with its nvidia-nccl package, or use 'gloo'");
#endif
    const std::string storeFile = HasField(o, "storeFile") ? StringField(o, "storeFile", "options") : "";
    const std::string glooHost = HasField(o, "glooHost") ? StringField(o, "glooHost", "options") : "";
    const std::string glooInterface = HasField(o, "glooInterface") ? StringField(o, "glooInterface", "options") : "";
    const std::string fingerprint = HasField(o, "fingerprint") ? StringField(o, "fingerprint", "options") : "";
#ifdef USAM_WITH_GLOO
    if (!storeFile.empty()) {
      try {
        impl->store = c10::make_intrusive<c10d::FileStore>(storeFile, impl->worldSize);
        impl->store->setTimeout(timeout);
      } catch (const std::exception& e) {
        Fail("process group: rank " + std::to_string(impl->rank) + " could not open the store file " + storeFile + " (" + CleanTorchMessage(e.what()) + ")");
      }
    } else {
      c10d::TCPStoreOptions so;
      so.port = static_cast<std::uint16_t>(port);
      so.isServer = server;
      so.numWorkers = impl->worldSize;
      so.waitWorkers = true;  // every rank counts itself in, and returns when all have (as PyTorch does)
      so.timeout = timeout;
      try {
        impl->store = c10::make_intrusive<c10d::TCPStore>(host, so);
      } catch (const std::exception& e) {
        Fail("process group: rank " + std::to_string(impl->rank) + " could not meet the others at " + host + ":" + std::to_string(port) +
             " within " + std::to_string(timeout.count()) + " ms (" + CleanTorchMessage(e.what()) + "). Check MASTER_ADDR/MASTER_PORT, that rank 0 runs, " +
             "and that every rank was given the same WORLD_SIZE");
      }
    }
    if (!prefix.empty()) impl->store = c10::make_intrusive<c10d::PrefixStore>(prefix, impl->store);
    if (!fingerprint.empty()) CheckFingerprints(*impl->store, impl->rank, impl->worldSize, fingerprint, timeout);
#ifdef USAM_WITH_NCCL
    if (backend == "nccl") {
      // a collective that cannot finish fails after the timeout instead of hanging
      setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = timeout;
      try {
        impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, impl->rank, impl->worldSize, nccl);
      } catch (const std::exception& e) {
        Fail("process group: rank " + std::to_string(impl->rank) + " could not start NCCL (" + CleanTorchMessage(e.what()) + ")");
      }
      impl->backend = "nccl";
      impl->transport = "nccl";
      impl_ = std::move(impl);
      return;
    }
#endif
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    try {
      if (!glooHost.empty())
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(glooHost));
      else if (!glooInterface.empty())
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(glooInterface));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    } catch (const std::exception& e) {
      Fail("process group: Gloo could not bind to " + (glooHost.empty() ? (glooInterface.empty() ? std::string("this machine's address") : "interface " + glooInterface + " (GLOO_SOCKET_IFNAME)") : glooHost) +
           " (" + CleanTorchMessage(e.what()) + ")");
    }
    try {
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, impl->rank, impl->worldSize, options);
    } catch (const std::exception& e) {
      Fail("process group: rank " + std::to_string(impl->rank) + " of " + std::to_string(impl->worldSize) + " could not connect to its peers within " +
           std::to_string(timeout.count()) + " ms (" + CleanTorchMessage(e.what()) + "). Check that all " + std::to_string(impl->worldSize) +
           " ranks were started with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE, and that each has its own RANK");
    }
    impl->backend = "gloo";
    impl->transport = "gloo";
    if (!storeFile.empty() && impl->worldSize > 1) SetUpSharedMemory(*impl, timeout);
#else
    (void)host;
    (void)timeout;
    (void)server;
    (void)storeFile;
    (void)glooHost;
    (void)glooInterface;
    (void)fingerprint;
    Fail("this build of universal-sam has no c10d Gloo backend (it was compiled without Gloo's headers): install Debian's libgloo-dev "
         "(apt-get install libgloo-dev) and rebuild with `npm run build:native`; see README, Data-parallel training");
#endif
    impl_ = std::move(impl);
  });
}

ProcessGroupWrap::~ProcessGroupWrap() = default;

ProcessGroupWrap::Impl& ProcessGroupWrap::Live(const char* what) {
  if (!impl_) Fail(std::string("process group: ") + what + " after dispose()");
  return *impl_;
}

namespace {

at::Tensor& CollectiveTensor(const Napi::CallbackInfo& info, const char* what, const std::string& backend) {
  at::Tensor& t = TensorWrap::Arg(info, 0, "tensor");
  if (!t.is_contiguous()) Fail(std::string(what) + ": the tensor must be contiguous (a flat buffer or a narrow of one)");
  if (backend == "gloo" && t.device().type() != c10::kCPU)
    Fail(std::string(what) + ": Gloo runs on CPU tensors; this one is on " + DeviceName(t.device()) + " (NCCL takes CUDA tensors)");
  if (backend == "nccl" && t.device().type() != c10::kCUDA) Fail(std::string(what) + ": NCCL runs on CUDA tensors; this one is on " + DeviceName(t.device()));
  return t;
}

#ifdef USAM_WITH_GLOO
// Waits for a collective; a timeout or a dead peer becomes an error naming the
// collective and the rank.
void Finish(const c10::intrusive_ptr<c10d::Work>& work, const ProcessGroupWrap::Impl& g, const char* what) {
  try {
    work->wait();
#ifdef USAM_WITH_NCCL
    if (g.backend == "nccl") work->synchronize();
#endif
  } catch (const std::exception& e) {
    Fail(std::string("process group: ") + what + " failed on rank " + std::to_string(g.rank) + " of " + std::to_string(g.worldSize) +
         " (a peer stopped, or did not reach the same collective within the timeout): " + CleanTorchMessage(e.what()));
  }
}
#endif

}  // namespace

// allreduce(tensor, op = 'sum' | 'avg' | 'max' | 'min'), in place. Gloo has
// no AVG in several versions: 'avg' sums, then divides by the world size.
Napi::Value ProcessGroupWrap::Allreduce(const Napi::CallbackInfo& info) {
  Impl& g = Live("allreduce()");
  at::Tensor& t = CollectiveTensor(info, "allreduce", g.backend);
  const std::string op = info.Length() > 1 && !info[1].IsUndefined() ? StringArg(info, 1, "op") : "sum";
#ifdef USAM_WITH_GLOO
  c10d::AllreduceOptions o;
  SharedMemoryAllreduce::Op shmOp = SharedMemoryAllreduce::Op::Sum;
  if (op == "sum" || op == "avg") o.reduceOp = c10d::ReduceOp::SUM;
  else if (op == "max") o.reduceOp = c10d::ReduceOp::MAX, shmOp = SharedMemoryAllreduce::Op::Max;
  else if (op == "min") o.reduceOp = c10d::ReduceOp::MIN, shmOp = SharedMemoryAllreduce::Op::Min;
  else Fail("allreduce: op must be 'sum', 'avg', 'max' or 'min', got '" + op + "'");
  if (g.shm && t.device().type() == c10::kCPU) {
    try {
      g.shm->Allreduce(t, shmOp);
    } catch (const std::exception& e) {
      Fail("process group: allreduce failed on rank " + std::to_string(g.rank) + " of " + std::to_string(g.worldSize) +
           " (a peer stopped, or did not reach the same collective within the timeout): " + CleanTorchMessage(e.what()));
    }
  } else {
    std::vector<at::Tensor> tensors{t};
    Finish(g.group->allreduce(tensors, o), g, "allreduce");
  }
  if (op == "avg") t.div_(g.worldSize);
  NoteWrite(t);
#else
  (void)g;
  (void)t;
#endif
  return info.Env().Undefined();
}

// broadcast(tensor, root = 0): every rank gets root's values, in place.
Napi::Value ProcessGroupWrap::Broadcast(const Napi::CallbackInfo& info) {
  Impl& g = Live("broadcast()");
  at::Tensor& t = CollectiveTensor(info, "broadcast", g.backend);
  const int64_t root = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<int64_t>(NumberArg(info, 1, "root")) : 0;
  if (root < 0 || root >= g.worldSize) Fail("broadcast: root must be a rank (0 .. " + std::to_string(g.worldSize - 1) + "), got " + std::to_string(root));
#ifdef USAM_WITH_GLOO
  c10d::BroadcastOptions o;
  o.rootRank = root;
  std::vector<at::Tensor> tensors{t};
  Finish(g.group->broadcast(tensors, o), g, "broadcast");
  NoteWrite(t);
#else
  (void)t;
#endif
  return info.Env().Undefined();
}

Napi::Value ProcessGroupWrap::Barrier(const Napi::CallbackInfo& info) {
  Impl& g = Live("barrier()");
#ifdef USAM_WITH_GLOO
  Finish(g.group->barrier(), g, "barrier");
#else
  (void)g;
#endif
  return info.Env().Undefined();
}

Napi::Value ProcessGroupWrap::Dispose(const Napi::CallbackInfo& info) {
  impl_.reset();
  return info.Env().Undefined();
}

Napi::Value ProcessGroupWrap::Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Live("rank").rank); }
Napi::Value ProcessGroupWrap::WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Live("worldSize").worldSize); }
Napi::Value ProcessGroupWrap::Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), Live("backend").backend); }
Napi::Value ProcessGroupWrap::Transport(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), Live("transport").transport); }

}  // namespace usam
