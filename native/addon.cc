// Registers the native surface; lib/native/binding.ts describes it in types.
#include "addon.h"
#include "tangent.h"
#include "distributed.h"

#include "fused.h"
#include "generator.h"
#include "model.h"
#include "optim.h"
#include "tensor.h"
#include "linalg.h"
#include "vecops.h"

#include "build_info.h"

#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifndef USAM_VERSION
#define USAM_VERSION "0.0.0"
#endif
#ifndef USAM_FLAVOUR
#define USAM_FLAVOUR "cpu"
#endif

namespace usam {

// Keeps freed tensor memory in the process for reuse. By default glibc
// returns freed memory above a dynamic threshold to the kernel, so every
// pass over a large batch page-faults its activations back in: on the
// benchmark CNN that was 15% of a gradient and 25% of an HVP. With blocks up
// to 32 MiB served from the heap and up to 1 GiB of free heap kept, the
// memory of one step is reused by the next (what a caching allocator does).
// Skipped when the user tunes malloc (GLIBC_TUNABLES, MALLOC_*_) or sets
// USAM_MALLOC_TUNING=0.
static bool TuneMalloc() {
#if defined(__GLIBC__)
  static bool tuned = [] {
    const char* optOut = std::getenv("USAM_MALLOC_TUNING");
    if (optOut && std::string(optOut) == "0") return false;
    if (std::getenv("GLIBC_TUNABLES") || std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_"))
      return false;
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  }();
  return tuned;
#else
  return false;
#endif
}

// What this binary was built against, as text in the file itself: the loader
// reads it before loading (an addon linked against another LibTorch than the
// one in the process would crash instead of throwing). `used` keeps it in a
// stripped prebuild.
extern "C" __attribute__((used, visibility("default"))) const char usam_build_info[] =
    USAM_BUILD_INFO_MARKER USAM_BUILD_INFO_JSON USAM_BUILD_INFO_MARKER;

// The LibTorch file this process really loaded (not the one we were built
// against, though the loader makes them the same).
static std::string LoadedLibrary(const void* symbol) {
  Dl_info info{};
  if (dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

// PyTorch's default: one intra-op thread per core this process may use.
// LibTorch 1.13 as Debian builds it starts with one. OMP_NUM_THREADS or
// MKL_NUM_THREADS, when set, are LibTorch's to honour; setThreads() and
// `--threads` override either way. Once per process: worker threads share it.
static int DefaultThreads() {
  static int threads = [] {
    if (std::getenv("OMP_NUM_THREADS") || std::getenv("MKL_NUM_THREADS")) return 0;
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = static_cast<int>(std::thread::hardware_concurrency());
    if (n < 1) return 0;
    at::set_num_threads(n);
    return n;
  }();
  return threads;
}

// OpenBLAS's own thread count, where the process has OpenBLAS (Debian's
// LibTorch 1.13 gives it its float64 products, TorchScript models' float32
// ones and the twice-differentiated passes'). at::set_num_threads does not
// reach it there: at setThreads(1), with neither OPENBLAS_NUM_THREADS nor
// OMP_NUM_THREADS set, a loop of such products used 10.4 s of CPU in 6.9 s
// (2026-12-08). Returns its count now, or 0 without OpenBLAS.
static int BlasThreads(int set) {
  using Setter = void (*)(int);
  using Getter = int (*)();
  static const Setter setter = reinterpret_cast<Setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  static const Getter getter = reinterpret_cast<Getter>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (setter == nullptr || getter == nullptr) return 0;
  if (set > 0) setter(set);
  return getter();
}

static Napi::Value Versions(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("addon", USAM_VERSION);
  o.Set("flavour", USAM_FLAVOUR);
  o.Set("torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH));
  o.Set("cudaAvailable", at::hasCUDA());
  o.Set("cudaDeviceCount", static_cast<double>(at::hasCUDA() ? at::getNumGPUs() : 0));
  o.Set("threads", static_cast<double>(at::get_num_threads()));
  o.Set("blasThreads", static_cast<double>(BlasThreads(0)));
  o.Set("mallocTuned", TuneMalloc());
  o.Set("defaultThreads", static_cast<double>(DefaultThreads()));
  o.Set("distributed", DistributedBackends());
  o.Set("build", USAM_BUILD_INFO_JSON);
  o.Set("torchLibrary", LoadedLibrary(reinterpret_cast<const void*>(&at::get_num_threads)));
  o.Set("sgemm", DnnlSgemmNow() ? "onednn" : "libtorch");
  o.Set("fusedSums", FusedSumsPath());
  return o;
}

// memory(): live JavaScript-held tensors and the C heap (glibc's mallinfo2:
// bytes in use, bytes free but kept, bytes in mmapped chunks), for leak tests
// and the soak benchmark: growth of `inUse` is memory kept, growth of `free`
// is the allocator holding on to what was given back.
static Napi::Value Memory(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("liveTensors", static_cast<double>(TensorWrap::LiveCount()));
  o.Set("liveTensorBytes", static_cast<double>(TensorWrap::LiveBytes()));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  o.Set("mallocInUse", static_cast<double>(m.uordblks + m.hblkhd));
  o.Set("mallocFree", static_cast<double>(m.fordblks));
  o.Set("mallocMmapped", static_cast<double>(m.hblkhd));
#endif
  return o;
}

// trimMemory(): gives the whole free pages glibc keeps back to the system
// (malloc_trim: the heap's top, and free pages inside it by madvise); true
// when some were released. The trainer calls it at the end of each epoch; a
// long custom loop may too. (The pages stay counted as free heap in memory():
// the resident size is what drops.)
static Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// allocationCounter(on): LibTorch's CPU allocations counted while on (a
// profiling aid: bench:profile's allocations a step). The first `true`
// wraps LibTorch's CPU allocator in one that counts each allocation and its
// bytes and forwards it; the matching `false` puts the original back (calls
// nest). Freed memory goes through each block's own deleter, so blocks
// allocated while counting are freed correctly after it stops. Returns the
// totals since the process started counting for the first time.
class CountingAllocator : public at::Allocator {
 public:
  at::Allocator* inner = nullptr;
  mutable std::atomic<uint64_t> count{0}, bytes{0};
  // LibTorch 1.x declares allocate const, 2.3 and later not: one of these
  // two overrides it, the other is an overload
  at::DataPtr allocate(size_t n) const { return Counted(n); }
  at::DataPtr allocate(size_t n) { return Counted(n); }
  at::DeleterFnPtr raw_deleter() const override { return inner->raw_deleter(); }
  // pure virtual from LibTorch 2.3 on (a plain member before)
  void copy_data(void* dest, const void* src, std::size_t n) const { std::memcpy(dest, src, n); }

 private:
  at::DataPtr Counted(size_t n) const {
    count.fetch_add(1, std::memory_order_relaxed);
    bytes.fetch_add(n, std::memory_order_relaxed);
    return inner->allocate(n);
  }
};

static Napi::Value AllocationCounter(const Napi::CallbackInfo& info) {
  static CountingAllocator counting;
  static int depth = 0;
  auto env = info.Env();
  if (!info[0].IsBoolean()) throw JsError(env, "argument 'on' must be a boolean");
  if (info[0].As<Napi::Boolean>().Value()) {
    if (depth++ == 0) {
      counting.inner = c10::GetCPUAllocator();
      c10::SetCPUAllocator(&counting, 0);
    }
  } else if (depth > 0 && --depth == 0) {
    c10::SetCPUAllocator(counting.inner, 0);
  }
  auto o = Napi::Object::New(env);
  o.Set("count", static_cast<double>(counting.count.load()));
  o.Set("bytes", static_cast<double>(counting.bytes.load()));
  return o;
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    throw JsError(env, "argument 'threads' must be an integer >= 1");
  const int n = info[0].As<Napi::Number>().Int32Value();
  at::set_num_threads(n);
  BlasThreads(n);
  return env.Undefined();
}

// lib/native/load.ts hands over NativeError once, right after loading.
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsFunction()) throw JsError(env, "setErrorClass: argument 'errorClass' must be a constructor");
  Data(env).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  TuneMalloc();
  DefaultThreads();
  auto* data = new AddonData();
  env.SetInstanceData(data);
  auto tensor = TensorWrap::Define(env);
  auto model = ModelWrap::Define(env);
  auto generator = GeneratorWrap::Define(env);
  auto hvpCache = HvpCacheWrap::Define(env);
  auto processGroup = ProcessGroupWrap::Define(env);
  data->hvpCache = Napi::Persistent(hvpCache);
  data->tensor = Napi::Persistent(tensor);
  data->model = Napi::Persistent(model);
  data->generator = Napi::Persistent(generator);
  exports.Set("Tensor", tensor);
  exports.Set("Model", model);
  exports.Set("Generator", generator);
  exports.Set("HvpCache", hvpCache);
  exports.Set("ProcessGroup", processGroup);
  exports.Set("ops", DefineVecOps(env));
  exports.Set("optim", DefineOptim(env));
  exports.Set("linalg", DefineLinalg(env));
  exports.Set("versions", Napi::Function::New(env, &GuardFn<&Versions>, "versions"));
  exports.Set("memory", Napi::Function::New(env, &GuardFn<&Memory>, "memory"));
  exports.Set("trimMemory", Napi::Function::New(env, &GuardFn<&TrimMemory>, "trimMemory"));
  exports.Set("setThreads", Napi::Function::New(env, &GuardFn<&SetThreads>, "setThreads"));
  exports.Set("allocationCounter", Napi::Function::New(env, &GuardFn<&AllocationCounter>, "allocationCounter"));
  exports.Set("setErrorClass", Napi::Function::New(env, &GuardFn<&SetErrorClass>, "setErrorClass"));
  return exports;
}

}  // namespace usam

static Napi::Object InitUniversalSam(Napi::Env env, Napi::Object exports) { return usam::Init(env, exports); }

NODE_API_MODULE(usam, InitUniversalSam)
