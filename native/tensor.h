// Tensor handles: a LibTorch tensor owned by a JS object, with explicit
// dispose() and a finalizer; its memory is reported to V8 so that the GC
// sees the pressure of native buffers.
#pragma once
#include "errors.h"

namespace usam {

class TensorWrap : public GuardedWrap<TensorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Wraps `t`. `reportMemory` is false for aliases of memory that another
  // handle already reports (e.g. the model's flat parameter buffer).
  static Napi::Object New(Napi::Env env, at::Tensor t, bool reportMemory = true);
  // Tensors handed to JavaScript and not yet disposed or collected, and the
  // bytes they span (views count their own extent): what a leak test counts.
  static int64_t LiveCount();
  static int64_t LiveBytes();
  // The tensor behind argument i, or a clear error naming `name`.
  static at::Tensor& Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
  static at::Tensor& From(const Napi::Value& v, const std::string& name);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;
  void Finalize(Napi::Env env) override;

 private:
  static Napi::Value FromArray(const Napi::CallbackInfo& info);
  // Tensor.beginScope(), Tensor.endScope(keep: Tensor[]): every tensor made in
  // between and still alive is disposed at the end, except those in `keep`
  // (handed to the enclosing scope, when there is one).
  static Napi::Value BeginScope(const Napi::CallbackInfo& info);
  static Napi::Value EndScope(const Napi::CallbackInfo& info);
  // Tensor.persistent(on): tensors made while on belong to no scope.
  static Napi::Value Persistent(const Napi::CallbackInfo& info);
  static Napi::Value Zeros(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Numel(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Item(const Napi::CallbackInfo& info);
  Napi::Value Narrow(const Napi::CallbackInfo& info);
  // t.view(shape): the same elements under another shape, sharing memory
  // (writes go through); a contiguous tensor only.
  Napi::Value View(const Napi::CallbackInfo& info);
  // t.copyFrom(typedArray): the values written into this tensor in place
  // (same element count, converted to its dtype and device). A loop that
  // refills one batch tensor instead of making a new one per step keeps the
  // C heap from fragmenting (docs/benchmarks.md, memory over long runs).
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);

  at::Tensor& Live();
  void Release(Napi::Env env);

 public:
  // A running async call holds its argument tensors: they cannot be disposed
  // (or swept by a scope) until it settles.
  void Pin() { ++pins_; }
  void Unpin() { --pins_; }
  bool Pinned() const { return pins_ > 0; }

 private:
  int pins_ = 0;

  at::Tensor tensor_;
  bool disposed_ = false;
  int64_t reportedBytes_ = 0;
  // this wrapper while it exists, null after: the handle a scope holds (made only inside one)
  std::shared_ptr<TensorWrap*> handle_;
};

// Shorthand for checks between tensor arguments.
void CheckSameLayout(const at::Tensor& a, const char* nameA, const at::Tensor& b, const char* nameB);
void CheckFlat(const at::Tensor& t, const char* name, int64_t numel, at::ScalarType dtype, const c10::Device& device);

}  // namespace usam
