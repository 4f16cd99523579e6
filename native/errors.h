// The one guard between C++ and JavaScript. Every native entry point runs
// inside `guarded`, which turns any C++ exception into a JS error carrying
// only the message (no C++ backtrace). A C++ exception must never reach Node
// (it would abort the process).
#pragma once
#include "addon.h"
#include "core.h"
#include "pch.h"

namespace usam {

// A JS error of the library's own class for native failures (NativeError in
// lib/errors.ts, handed over once by setErrorClass when the addon is loaded),
// so a caller catches the addon's errors as it catches the TypeScript layer's;
// a plain Error before that.
inline Napi::Error JsError(Napi::Env env, const std::string& message) {
  auto& cls = Data(env).errorClass;
  if (cls.IsEmpty()) return Napi::Error::New(env, message);
  return Napi::Error(env, cls.New({Napi::String::New(env, message)}));
}

template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (node-addon-api rethrows it to JS)
  } catch (const c10::Error& e) {
    throw JsError(env, CleanTorchMessage(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw JsError(env, e.what());
  } catch (...) {
    throw JsError(env, "universal-sam: unknown native error");
  }
}

// ObjectWrap base whose methods are registered through Guard<&T::Method>.
template <typename T>
class GuardedWrap : public Napi::ObjectWrap<T> {
 public:
  using Napi::ObjectWrap<T>::ObjectWrap;
  using Method = Napi::Value (T::*)(const Napi::CallbackInfo&);
  template <Method M>
  Napi::Value Guard(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] { return (static_cast<T*>(this)->*M)(info); });
  }
};

using Function = Napi::Value (*)(const Napi::CallbackInfo&);
template <Function F>
Napi::Value GuardFn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] { return F(info); });
}

}  // namespace usam
