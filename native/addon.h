// Per-environment state of the addon (one per Node thread that loads it).
#pragma once
#include "pch.h"

namespace usam {

struct AddonData {
  Napi::FunctionReference tensor;
  Napi::FunctionReference model;
  Napi::FunctionReference generator;
  Napi::FunctionReference hvpCache;
  // the class native errors are made of (errors.h JsError); empty until setErrorClass
  Napi::FunctionReference errorClass;
  // Open scope() calls, innermost last: weak references to the tensors made
  // while each was open (tensor.cc BeginScope/EndScope).
  std::vector<std::vector<Napi::ObjectReference>> scopes;
  // > 0 while the library makes tensors its objects own (a model's
  // parameters, an optimizer's buffers): those belong to no scope.
  int persistentDepth = 0;
};

inline AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace usam
