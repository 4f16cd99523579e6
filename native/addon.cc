// Registers the native surface; lib/native/binding.ts describes it in types.
#include "addon.h"

#include "generator.h"
#include "model.h"
#include "optim.h"
#include "tensor.h"
#include "vecops.h"

#ifndef USAM_VERSION
#define USAM_VERSION "0.0.0"
#endif
#ifndef USAM_FLAVOUR
#define USAM_FLAVOUR "cpu"
#endif

namespace usam {

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
  return o;
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1)
    throw Napi::Error::New(env, "argument 'threads' must be an integer >= 1");
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  auto tensor = TensorWrap::Define(env);
  auto model = ModelWrap::Define(env);
  auto generator = GeneratorWrap::Define(env);
  data->tensor = Napi::Persistent(tensor);
  data->model = Napi::Persistent(model);
  data->generator = Napi::Persistent(generator);
  exports.Set("Tensor", tensor);
  exports.Set("Model", model);
  exports.Set("Generator", generator);
  exports.Set("ops", DefineVecOps(env));
  exports.Set("optim", DefineOptim(env));
  exports.Set("versions", Napi::Function::New(env, &GuardFn<&Versions>, "versions"));
  exports.Set("setThreads", Napi::Function::New(env, &GuardFn<&SetThreads>, "setThreads"));
  return exports;
}

}  // namespace usam

static Napi::Object InitUniversalSam(Napi::Env env, Napi::Object exports) { return usam::Init(env, exports); }

NODE_API_MODULE(usam, InitUniversalSam)
