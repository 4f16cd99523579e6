// The addon's base below the JavaScript edge: LibTorch and the usage error.
// The maths (tangent.h, layer.h, network.h and their units) includes this
// and nothing of Node-API: JavaScript values become plain structs (spec.h)
// and tensors once, in the marshalling units (model.cc, spec.cc, args.cc),
// and the operations never see V8. (The precompiled header pch.h also holds
// napi.h for the marshalling units; the maths neither includes nor uses it.)
#pragma once
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace usam {

// A usage error detected by our own checks; the message is shown as is
// (errors.h's `guarded` turns it into a JS Error at the edge).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void Fail(const std::string& message);
// A LibTorch message without the "Exception raised from ..." tail.
std::string CleanTorchMessage(const std::string& what);

// Records a write that bypassed LibTorch's dispatcher (raw pointers, or a
// kernel's own side effect such as batch_norm's running statistics) in the
// tensor's version counter, which its views share: HVP caches (PrimalCache)
// read the counters to see that the parameters or buffers changed.
inline void NoteWrite(const at::Tensor& t) { t.unsafeGetTensorImpl()->bump_version(); }

// The names errors use for dtypes and devices (args.cc).
std::string DTypeName(at::ScalarType t);
std::string DeviceName(const c10::Device& d);

// A generator of `device`'s kind seeded with `seed` (generator.cc).
at::Generator MakeGenerator(uint64_t seed, const c10::Device& device);

}  // namespace usam
