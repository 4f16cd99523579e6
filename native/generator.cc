#include "generator.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <pthread.h>
#include <sched.h>

#include "args.h"
#include "tensor.h"

#ifdef USAM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace usam {

at::Generator MakeGenerator(uint64_t seed, const c10::Device& device) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
#ifdef USAM_WITH_CUDA
  auto gen = at::cuda::detail::createCUDAGenerator(device.index());
  gen.set_current_seed(seed);
  return gen;
#else
  Fail("no CUDA generator in the CPU flavour");
#endif
}

namespace {

// One long-lived thread runs every background fill, in submission order.
// With std::async every draw started a thread of its own, and each new
// thread that enters one of ATen's OpenMP regions (the sphere's norm) builds
// an OpenMP thread team for itself; one thread pays both once. The object is
// never destroyed: the thread waits for work until the process ends.
class FillThread {
 public:
  static FillThread& Get() {
    static FillThread* instance = new FillThread();
    return *instance;
  }

  std::future<void> Submit(std::function<void()> work) {
    std::packaged_task<void()> task(std::move(work));
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      SteerAwayFrom(sched_getcpu());
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    return done;
  }

 private:
  FillThread() {
    std::thread thread([this] { Run(); });
    thread_ = thread.native_handle();
    thread.detach();
  }

  // Keeps the fill off the CPU its caller runs on (the caller's other allowed
  // CPUs; nothing where it has only one). Woken after an idle spell, Linux put
  // the fill thread on the waker's CPU, the other one idle, 26 times in 30 on
  // the 2-vCPU development VM (a C++ loop: 60 ms idle, wake, 1.2 ms fill
  // against a 2.4 ms pass): it preempted the caller for the whole fill, and
  // notify_one took 1,236 µs instead of 13 µs (medians), the cost that
  // docs/benchmarks.md found after idle gaps. A syscall only when the
  // caller's CPU changes; mutex_ held.
  void SteerAwayFrom(int cpu) {
    if (cpu < 0 || cpu == steeredFrom_) return;
    steeredFrom_ = cpu;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;  // the calling thread's CPUs (taskset)
    if (cpu < CPU_SETSIZE) CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) == 0) return;  // the caller has one CPU: nowhere else to go
    (void)pthread_setaffinity_np(thread_, sizeof(allowed), &allowed);  // refused (a cpuset): the scheduler's choice, as before
  }

  void Run() {
    pthread_setname_np(pthread_self(), "usam-fill");  // for top, perf and the tests
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();  // an exception is stored in the future, rethrown by Settle()
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  pthread_t thread_{};
  int steeredFrom_ = -1;  // the CPU the fill thread was last kept off
};

}  // namespace

Napi::Function GeneratorWrap::Define(Napi::Env env) {
  return DefineClass(env, "Generator",
                     {
                         InstanceMethod("gaussian", &GeneratorWrap::Guard<&GeneratorWrap::Gaussian>),
                         InstanceMethod("rademacher", &GeneratorWrap::Guard<&GeneratorWrap::Rademacher>),
                         InstanceMethod("sphere", &GeneratorWrap::Guard<&GeneratorWrap::Sphere>),
                         InstanceMethod("uniform", &GeneratorWrap::Guard<&GeneratorWrap::Uniform>),
                         InstanceMethod("fillAsync", &GeneratorWrap::Guard<&GeneratorWrap::FillAsync>),
                         InstanceMethod("wait", &GeneratorWrap::Guard<&GeneratorWrap::Wait>),
                         InstanceMethod("randperm", &GeneratorWrap::Guard<&GeneratorWrap::Randperm>),
                         InstanceMethod("getState", &GeneratorWrap::Guard<&GeneratorWrap::GetState>),
                         InstanceMethod("setState", &GeneratorWrap::Guard<&GeneratorWrap::SetState>),
                         InstanceMethod("mark", &GeneratorWrap::Guard<&GeneratorWrap::Mark>),
                         InstanceMethod("rewind", &GeneratorWrap::Guard<&GeneratorWrap::Rewind>),
                         InstanceAccessor("device", &GeneratorWrap::Guard<&GeneratorWrap::Device>, nullptr),
                     });
}

GeneratorWrap::GeneratorWrap(const Napi::CallbackInfo& info) : GuardedWrap<GeneratorWrap>(info) {
  guarded(info.Env(), [&] {
    double seed = NumberArg(info, 0, "seed");
    if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740991.0)
      Fail("argument 'seed' must be a non-negative integer (at most 2^53 - 1)");
    device_ = ParseDevice(info.Length() > 1 && !info[1].IsUndefined() ? StringArg(info, 1, "device") : "cpu",
                          "argument 'device'");
    gen_ = MakeGenerator(static_cast<uint64_t>(seed), device_);
  });
}

at::Tensor& GeneratorWrap::Target(const Napi::CallbackInfo& info) {
  auto& t = TensorWrap::Arg(info, 0, "out");
  if (!at::isFloatingType(t.scalar_type())) Fail("argument 'out' must be a float32 or float64 tensor");
  if (t.device() != device_)
    Fail("argument 'out' is on " + DeviceName(t.device()) + " but this generator draws on " + DeviceName(device_) +
         "; create the generator with that device");
  return t;
}

namespace {
void Fill(at::Generator& gen, GeneratorWrap::Kind kind, at::Tensor& t, double lo, double hi) {
  at::NoGradGuard ng;
  switch (kind) {
    case GeneratorWrap::Kind::Gaussian:
      t.normal_(0.0, 1.0, gen);
      break;
    case GeneratorWrap::Kind::Rademacher:
      t.bernoulli_(0.5, gen).mul_(2.0).sub_(1.0);
      break;
    case GeneratorWrap::Kind::Sphere:
      // uniform on the unit sphere of R^P: a gaussian over all P coordinates,
      // normalised (the gaussian is rotation invariant)
      t.normal_(0.0, 1.0, gen);
      t.div_(t.norm());
      break;
    case GeneratorWrap::Kind::Uniform:
      t.uniform_(lo, hi, gen);
      break;
  }
}
}  // namespace

void GeneratorWrap::Settle() {
  if (pending_.valid()) pending_.get();  // rethrows a failure of the background fill
}

void GeneratorWrap::Finalize(Napi::Env) {
  if (pending_.valid()) pending_.wait();
}

Napi::Value GeneratorWrap::Gaussian(const Napi::CallbackInfo& info) {
  Settle();
  Fill(gen_, Kind::Gaussian, Target(info), 0, 0);
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Rademacher(const Napi::CallbackInfo& info) {
  Settle();
  Fill(gen_, Kind::Rademacher, Target(info), 0, 0);
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Sphere(const Napi::CallbackInfo& info) {
  Settle();
  Fill(gen_, Kind::Sphere, Target(info), 0, 0);
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Uniform(const Napi::CallbackInfo& info) {
  auto& t = Target(info);
  double lo = NumberArg(info, 1, "low"), hi = NumberArg(info, 2, "high");
  if (!(lo < hi)) Fail("uniform(out, low, high) needs low < high");
  Settle();
  Fill(gen_, Kind::Uniform, t, lo, hi);
  return info.Env().Undefined();
}

// fillAsync(out, kind, low?, high?): draws into `out` on a background thread
// (overlapping a forward-backward pass on the other core); `out` must not be
// read until wait(). Used to prefetch the next direction u ~ mu.
Napi::Value GeneratorWrap::FillAsync(const Napi::CallbackInfo& info) {
  at::Tensor t = Target(info);
  std::string name = StringArg(info, 1, "kind");
  Kind kind;
  if (name == "gaussian") kind = Kind::Gaussian;
  else if (name == "rademacher") kind = Kind::Rademacher;
  else if (name == "sphere") kind = Kind::Sphere;
  else if (name == "uniform") kind = Kind::Uniform;
  else Fail("argument 'kind' must be 'gaussian', 'rademacher', 'sphere' or 'uniform', got '" + name + "'");
  double lo = 0, hi = 0;
  if (kind == Kind::Uniform) {
    lo = NumberArg(info, 2, "low");
    hi = NumberArg(info, 3, "high");
    if (!(lo < hi)) Fail("fillAsync(out, 'uniform', low, high) needs low < high");
  }
  Settle();
  pending_ = FillThread::Get().Submit([this, kind, t, lo, hi]() mutable { Fill(gen_, kind, t, lo, hi); });
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Wait(const Napi::CallbackInfo& info) {
  Settle();
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Randperm(const Napi::CallbackInfo& info) {
  double n = NumberArg(info, 0, "n");
  if (n < 0 || n != std::floor(n) || n > 2147483647.0) Fail("argument 'n' must be an integer in [0, 2^31)");
  if (!device_.is_cpu()) Fail("randperm draws on a CPU generator; create one with device 'cpu'");
  Settle();
  auto perm = at::randperm(static_cast<int64_t>(n), gen_, at::TensorOptions().dtype(at::kInt));
  auto out = Napi::Int32Array::New(info.Env(), static_cast<size_t>(n));
  if (n > 0) std::memcpy(out.Data(), perm.data_ptr<int32_t>(), static_cast<size_t>(n) * sizeof(int32_t));
  return out;
}

Napi::Value GeneratorState(Napi::Env env, at::Generator& gen) {
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  auto out = Napi::Uint8Array::New(env, static_cast<size_t>(state.numel()));
  std::memcpy(out.Data(), state.data_ptr(), static_cast<size_t>(state.numel()));
  return out;
}

void SetGeneratorState(at::Generator& gen, const Napi::Value& value) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    Fail("argument 'state' must be a Uint8Array from getState()/getRngState()");
  auto bytes = value.As<Napi::Uint8Array>();
  auto state = at::empty({static_cast<int64_t>(bytes.ElementLength())}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(state.data_ptr(), bytes.Data(), bytes.ElementLength());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

Napi::Value GeneratorWrap::GetState(const Napi::CallbackInfo& info) {
  Settle();
  return GeneratorState(info.Env(), gen_);
}

Napi::Value GeneratorWrap::SetState(const Napi::CallbackInfo& info) {
  Settle();
  SetGeneratorState(gen_, info[0]);
  return info.Env().Undefined();
}

// mark() keeps a copy of the generator (a clone: the engine's state, no
// serialised tensor and no JavaScript array), rewind() returns to it: an
// optimizer step marks before its draws and rewinds when it fails, where
// getState() cost a Uint8Array of the state per step.
Napi::Value GeneratorWrap::Mark(const Napi::CallbackInfo& info) {
  Settle();
  std::lock_guard<std::mutex> lock(gen_.mutex());
  marked_ = gen_.clone();
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Rewind(const Napi::CallbackInfo& info) {
  Settle();
  if (!marked_.defined()) Fail("rewind() needs a mark() first: there is no marked state to return to");
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(marked_.mutex());
    state = marked_.get_state();
  }
  std::lock_guard<std::mutex> lock(gen_.mutex());
  gen_.set_state(state);
  return info.Env().Undefined();
}

Napi::Value GeneratorWrap::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(device_));
}

}  // namespace usam
