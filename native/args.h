// Reading JavaScript arguments and option objects with errors that name the
// argument or field and say what was expected.
#pragma once
#include "core.h"
#include "pch.h"

namespace usam {

// Positional arguments. `name` is what the error message calls the argument.
double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<int64_t> ShapeArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// Fields of an option object; `where` prefixes the field in messages
// (e.g. "layers[2]" gives "layers[2].out must be a positive integer").
bool HasField(const Napi::Object& o, const char* key);
double NumberField(const Napi::Object& o, const char* key, const std::string& where);
double NumberField(const Napi::Object& o, const char* key, const std::string& where, double fallback);
int64_t IntField(const Napi::Object& o, const char* key, const std::string& where, int64_t min);
int64_t IntField(const Napi::Object& o, const char* key, const std::string& where, int64_t min, int64_t fallback);
bool BoolField(const Napi::Object& o, const char* key, const std::string& where, bool fallback);
std::string StringField(const Napi::Object& o, const char* key, const std::string& where);
std::vector<int64_t> IntListField(const Napi::Object& o, const char* key, const std::string& where,
                                  size_t length, int64_t min);

// (Fail, DTypeName and DeviceName, which the maths uses too: core.h.)
at::ScalarType ParseDType(const std::string& s, const std::string& where);
c10::Device ParseDevice(const std::string& s, const std::string& where);

}  // namespace usam
