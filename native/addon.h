// Per-environment state of the addon (one per Node thread that loads it).
#pragma once
#include "pch.h"

namespace usam {

class TensorWrap;

// A tensor made while a scope was open: a weak reference to its JS object,
// and a handle to its native wrapper that the wrapper's finalizer clears. The
// collector may take the JS object before the scope ends while Node runs the
// finalizer only later (when the event loop turns): through the handle the
// scope still frees the tensor at its end.
struct ScopedTensor {
  Napi::ObjectReference ref;
  std::shared_ptr<TensorWrap*> wrap;
};

struct AddonData {
  Napi::FunctionReference tensor;
  Napi::FunctionReference model;
  Napi::FunctionReference generator;
  Napi::FunctionReference hvpCache;
  // the class native errors are made of (errors.h JsError); empty until setErrorClass
  Napi::FunctionReference errorClass;
  // Open scope() calls, innermost last: the tensors made while each was open
  // (tensor.cc BeginScope/EndScope).
  std::vector<std::vector<ScopedTensor>> scopes;
  // > 0 while the library makes tensors its objects own (a model's
  // parameters, an optimizer's buffers): those belong to no scope.
  int persistentDepth = 0;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace usam
