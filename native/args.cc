#include "args.h"

#include <cstdio>
#include <sstream>

#include "errors.h"

namespace usam {

[[noreturn]] void Fail(const std::string& message) { throw UsageError(message); }

std::string CleanTorchMessage(const std::string& what) {
  // LibTorch 1.13 appends "Exception raised from ..." lines even to the
  // message without backtrace; users need the first part only.
  std::string msg = what;
  auto cut = msg.find("\nException raised from");
  if (cut != std::string::npos) msg.resize(cut);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return "LibTorch: " + msg;
}

static std::string Describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "the number " + v.ToString().Utf8Value();
    case napi_string: return "the string '" + v.As<Napi::String>().Utf8Value() + "'";
    case napi_object: return v.IsArray() ? "an array" : "an object";
    case napi_function: return "a function";
    case napi_bigint: return "a bigint";
    default: return "a value of another type";
  }
}

static double AsNumber(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) Fail(what + " must be a number, got " + Describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) Fail(what + " must be a finite number, got " + Describe(v));
  return d;
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return AsNumber(info[i], std::string("argument '") + name + "'");
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) Fail(std::string("argument '") + name + "' must be a boolean, got " + Describe(info[i]));
  return info[i].As<Napi::Boolean>().Value();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) Fail(std::string("argument '") + name + "' must be a string, got " + Describe(info[i]));
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsObject() || info[i].IsArray())
    Fail(std::string("argument '") + name + "' must be an object, got " + Describe(info[i]));
  return info[i].As<Napi::Object>();
}

static std::vector<int64_t> AsIntList(const Napi::Value& v, const std::string& what, int64_t min) {
  if (!v.IsArray()) Fail(what + " must be an array of integers, got " + Describe(v));
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    double d = AsNumber(arr.Get(k), what + "[" + std::to_string(k) + "]");
    if (d != std::floor(d) || d < static_cast<double>(min) || d > 9.0e15)
      Fail(what + "[" + std::to_string(k) + "] must be an integer >= " + std::to_string(min) + ", got " +
           Describe(arr.Get(k)));
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

std::vector<int64_t> ShapeArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return AsIntList(info[i], std::string("argument '") + name + "'", 0);
}

bool HasField(const Napi::Object& o, const char* key) {
  return o.Has(key) && !o.Get(key).IsUndefined();
}

static std::string FieldName(const std::string& where, const char* key) {
  return where.empty() ? std::string(key) : where + "." + key;
}

double NumberField(const Napi::Object& o, const char* key, const std::string& where) {
  if (!HasField(o, key)) Fail(FieldName(where, key) + " is required (a number)");
  return AsNumber(o.Get(key), FieldName(where, key));
}

double NumberField(const Napi::Object& o, const char* key, const std::string& where, double fallback) {
  return HasField(o, key) ? NumberField(o, key, where) : fallback;
}

int64_t IntField(const Napi::Object& o, const char* key, const std::string& where, int64_t min) {
  double d = NumberField(o, key, where);
  if (d != std::floor(d) || d < static_cast<double>(min) || d > 9.0e15)
    Fail(FieldName(where, key) + " must be an integer >= " + std::to_string(min) + ", got " + Describe(o.Get(key)));
  return static_cast<int64_t>(d);
}

int64_t IntField(const Napi::Object& o, const char* key, const std::string& where, int64_t min, int64_t fallback) {
  return HasField(o, key) ? IntField(o, key, where, min) : fallback;
}

bool BoolField(const Napi::Object& o, const char* key, const std::string& where, bool fallback) {
  if (!HasField(o, key)) return fallback;
  auto v = o.Get(key);
  if (!v.IsBoolean()) Fail(FieldName(where, key) + " must be a boolean, got " + Describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string StringField(const Napi::Object& o, const char* key, const std::string& where) {
  if (!HasField(o, key)) Fail(FieldName(where, key) + " is required (a string)");
  auto v = o.Get(key);
  if (!v.IsString()) Fail(FieldName(where, key) + " must be a string, got " + Describe(v));
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> IntListField(const Napi::Object& o, const char* key, const std::string& where,
                                  size_t length, int64_t min) {
  if (!HasField(o, key)) Fail(FieldName(where, key) + " is required (an array of " + std::to_string(length) + " integers)");
  auto list = AsIntList(o.Get(key), FieldName(where, key), min);
  if (length != 0 && list.size() != length)
    Fail(FieldName(where, key) + " must have " + std::to_string(length) + " entries, got " + std::to_string(list.size()));
  return list;
}

at::ScalarType ParseDType(const std::string& s, const std::string& where) {
  if (s == "float32") return at::kFloat;
  if (s == "float64") return at::kDouble;
  if (s == "int64") return at::kLong;
  Fail(where + " must be 'float32', 'float64' or 'int64', got '" + s + "'");
}

std::string DTypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    default: return c10::toString(t);
  }
}

c10::Device ParseDevice(const std::string& s, const std::string& where) {
  if (s == "cpu") return c10::Device(c10::kCPU);
  if (s.rfind("cuda", 0) == 0) {
    int64_t index = 0;
    if (s.size() > 4) {
      if (s[4] != ':' || s.size() == 5 || s.find_first_not_of("0123456789", 5) != std::string::npos)
        Fail(where + " must be 'cpu', 'cuda' or 'cuda:N', got '" + s + "'");
      index = std::stoll(s.substr(5));
    }
#ifdef USAM_WITH_CUDA
    if (!at::hasCUDA()) Fail(where + " is '" + s + "' but no CUDA device is available; use 'cpu'");
    int64_t count = static_cast<int64_t>(at::getNumGPUs());
    if (index >= count)
      Fail(where + " is '" + s + "' but only " + std::to_string(count) + " CUDA device(s) exist (cuda:0..cuda:" +
           std::to_string(count - 1) + ")");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
#else
    Fail(where + " is '" + s + "' but this build of universal-sam is the CPU flavour; use 'cpu' or install the CUDA flavour");
#endif
  }
  Fail(where + " must be 'cpu', 'cuda' or 'cuda:N', got '" + s + "'");
}

std::string DeviceName(const c10::Device& d) {
  if (d.is_cpu()) return "cpu";
  return "cuda:" + std::to_string(d.has_index() ? d.index() : 0);
}

}  // namespace usam
