// Seedable random generators for directions u ~ mu (gaussian, rademacher,
// sphere, cube), shuffling and dropout. One generator per device: CUDA
// tensors are filled by a CUDA generator, in place, without host copies.
#pragma once
#include <future>

#include "errors.h"

namespace usam {

// MakeGenerator(seed, device): core.h.
// A generator's full state as bytes, and back (for checkpoints).
Napi::Value GeneratorState(Napi::Env env, at::Generator& gen);
void SetGeneratorState(at::Generator& gen, const Napi::Value& state);

class GeneratorWrap : public GuardedWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

  enum class Kind { Gaussian, Rademacher, Sphere, Uniform };

 private:
  Napi::Value Gaussian(const Napi::CallbackInfo& info);
  Napi::Value Rademacher(const Napi::CallbackInfo& info);
  Napi::Value Sphere(const Napi::CallbackInfo& info);
  Napi::Value Uniform(const Napi::CallbackInfo& info);
  Napi::Value FillAsync(const Napi::CallbackInfo& info);
  Napi::Value Wait(const Napi::CallbackInfo& info);
  Napi::Value Randperm(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value Mark(const Napi::CallbackInfo& info);
  Napi::Value Rewind(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);

  at::Tensor& Target(const Napi::CallbackInfo& info);
  // Waits for a background fill; every use of the generator does this first,
  // so draws happen in call order whether or not they ran in the background.
  void Settle();

  at::Generator gen_;
  at::Generator marked_;  // mark()'s copy of gen_, for rewind()
  std::future<void> pending_;
  c10::Device device_{c10::kCPU};
};

}  // namespace usam
