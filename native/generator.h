// Seedable random generators for directions u ~ mu (gaussian, rademacher,
// sphere, cube), shuffling and dropout. One generator per device: CUDA
// tensors are filled by a CUDA generator, in place, without host copies.
#pragma once
#include "errors.h"

namespace usam {

at::Generator MakeGenerator(uint64_t seed, const c10::Device& device);
// A generator's full state as bytes, and back (for checkpoints).
Napi::Value GeneratorState(Napi::Env env, at::Generator& gen);
void SetGeneratorState(at::Generator& gen, const Napi::Value& state);

class GeneratorWrap : public GuardedWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Gaussian(const Napi::CallbackInfo& info);
  Napi::Value Rademacher(const Napi::CallbackInfo& info);
  Napi::Value Sphere(const Napi::CallbackInfo& info);
  Napi::Value Uniform(const Napi::CallbackInfo& info);
  Napi::Value Randperm(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);

  at::Tensor& Target(const Napi::CallbackInfo& info);

  at::Generator gen_;
  c10::Device device_{c10::kCPU};
};

}  // namespace usam
