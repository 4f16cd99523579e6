// The JavaScript spec read into plain structs (spec.h), once, before any
// layer is built. Every check a layer's constructor used to make on its JS
// object is made here, in the same order and with the same message, so the
// first error a bad spec meets is unchanged.
#include "spec_js.h"

#include "args.h"

namespace usam {

namespace {

using Pair = std::vector<int64_t>;

std::vector<LayerSpec> ParseList(const Napi::Value& v, const std::string& where);

void ParseLinear(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  s.in = IntField(o, "inFeatures", where, 1), s.out = IntField(o, "outFeatures", where, 1);
  s.bias = BoolField(o, "bias", where, true);
}

void ParseConv2d(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  s.in = IntField(o, "inChannels", where, 1), s.out = IntField(o, "outChannels", where, 1);
  s.kernelSize = IntListField(o, "kernelSize", where, 2, 1);
  s.stride = HasField(o, "stride") ? IntListField(o, "stride", where, 2, 1) : Pair{1, 1};
  s.padding = HasField(o, "padding") ? IntListField(o, "padding", where, 2, 0) : Pair{0, 0};
  s.dilation = HasField(o, "dilation") ? IntListField(o, "dilation", where, 2, 1) : Pair{1, 1};
  s.groups = HasField(o, "groups") ? IntField(o, "groups", where, 1) : 1;
  if (s.in % s.groups != 0 || s.out % s.groups != 0) Fail(where + ".groups must divide both inChannels and outChannels");
  s.bias = BoolField(o, "bias", where, true);
}

void ParseBatchNorm(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  s.numFeatures = IntField(o, "numFeatures", where, 1);
  s.eps = NumberField(o, "eps", where, 1e-5);
  s.momentum = NumberField(o, "momentum", where, 0.1);
  if (s.eps <= 0) Fail(where + ".eps must be > 0");
  if (s.momentum < 0 || s.momentum > 1) Fail(where + ".momentum must be in [0, 1]");
  s.affine = BoolField(o, "affine", where, true);
}

void ParseLayerNorm(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  s.normalizedShape = IntListField(o, "normalizedShape", where, 0, 1);
  s.eps = NumberField(o, "eps", where, 1e-5);
  if (!(s.eps > 0)) Fail(where + ".eps must be > 0");
  s.affine = BoolField(o, "elementwiseAffine", where, true);
}

void ParseEmbedding(const Napi::Object& o, LayerSpec& s) {
  s.numEmbeddings = IntField(o, "numEmbeddings", s.where, 1);
  s.embeddingDim = IntField(o, "embeddingDim", s.where, 1);
}

void ParseActivation(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  if (s.kind == LayerKind::Softplus) {
    s.beta = NumberField(o, "beta", where, 1.0);
    s.threshold = NumberField(o, "threshold", where, 20.0);
    if (s.beta <= 0) Fail(where + ".beta must be > 0");
  }
  if (s.kind == LayerKind::LeakyRelu) s.negativeSlope = NumberField(o, "negativeSlope", where, 0.01);
}

void ParsePool2d(const Napi::Object& o, LayerSpec& s) {
  const std::string& where = s.where;
  s.kernelSize = IntListField(o, "kernelSize", where, 2, 1);
  s.stride = HasField(o, "stride") ? IntListField(o, "stride", where, 2, 1) : s.kernelSize;
  s.padding = HasField(o, "padding") ? IntListField(o, "padding", where, 2, 0) : Pair{0, 0};
  for (int i = 0; i < 2; ++i)
    if (s.padding[i] * 2 > s.kernelSize[i]) Fail(where + ".padding must be at most half of kernelSize");
}

void ParseDropout(const Napi::Object& o, LayerSpec& s) {
  s.p = NumberField(o, "p", s.where, 0.5);
  if (s.p < 0 || s.p >= 1) Fail(s.where + ".p must be in [0, 1)");
}

void ParseResidual(const Napi::Object& o, LayerSpec& s) {
  if (!HasField(o, "body")) Fail(s.where + ".body is required (an array of layers)");
  s.body = ParseList(o.Get("body"), s.where + ".body");
  if (HasField(o, "shortcut")) s.shortcut = ParseList(o.Get("shortcut"), s.where + ".shortcut");
}

LayerSpec ParseLayer(const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsArray()) Fail(where + " must be a layer object with a 'type' field");
  auto o = v.As<Napi::Object>();
  LayerSpec s;
  s.where = where;
  std::string type = StringField(o, "type", where);
  // the kinds with no fields of their own, and the activations (ParseActivation reads theirs)
  static const std::vector<std::pair<const char*, LayerKind>> plain{
      {"relu", LayerKind::Relu},         {"tanh", LayerKind::Tanh},       {"softplus", LayerKind::Softplus},
      {"silu", LayerKind::Silu},         {"sigmoid", LayerKind::Sigmoid}, {"leakyrelu", LayerKind::LeakyRelu},
      {"identity", LayerKind::Identity}, {"flatten", LayerKind::Flatten},
  };
  for (const auto& [name, kind] : plain)
    if (type == name) {
      s.kind = kind;
      ParseActivation(o, s);
      return s;
    }
  if (type == "linear") {
    s.kind = LayerKind::Linear;
    ParseLinear(o, s);
  } else if (type == "conv2d") {
    s.kind = LayerKind::Conv2d;
    ParseConv2d(o, s);
  } else if (type == "batchnorm1d" || type == "batchnorm2d") {
    s.kind = type == "batchnorm1d" ? LayerKind::BatchNorm1d : LayerKind::BatchNorm2d;
    ParseBatchNorm(o, s);
  } else if (type == "layernorm") {
    s.kind = LayerKind::LayerNorm;
    ParseLayerNorm(o, s);
  } else if (type == "embedding") {
    s.kind = LayerKind::Embedding;
    ParseEmbedding(o, s);
  } else if (type == "gelu") {
    std::string approx = HasField(o, "approximate") ? StringField(o, "approximate", where) : "none";
    if (approx != "none" && approx != "tanh") Fail(where + ".approximate must be 'none' or 'tanh'");
    s.kind = approx == "tanh" ? LayerKind::GeluTanh : LayerKind::Gelu;
  } else if (type == "maxpool2d" || type == "avgpool2d") {
    s.kind = type == "maxpool2d" ? LayerKind::MaxPool2d : LayerKind::AvgPool2d;
    ParsePool2d(o, s);
  } else if (type == "adaptiveavgpool2d") {
    s.kind = LayerKind::AdaptiveAvgPool2d;
    s.outputSize = IntListField(o, "outputSize", where, 2, 1);
  } else if (type == "dropout" || type == "dropout2d") {
    s.kind = type == "dropout" ? LayerKind::Dropout : LayerKind::Dropout2d;
    ParseDropout(o, s);
  } else if (type == "residual") {
    s.kind = LayerKind::Residual;
    ParseResidual(o, s);
  } else {
    Fail(where + ".type '" + type +
         "' is not a layer; use one of linear, conv2d, embedding, batchnorm1d, batchnorm2d, layernorm, relu, gelu, tanh, softplus, silu, "
         "sigmoid, leakyrelu, identity, maxpool2d, avgpool2d, adaptiveavgpool2d, flatten, dropout, dropout2d, residual");
  }
  return s;
}

std::vector<LayerSpec> ParseList(const Napi::Value& v, const std::string& where) {
  if (!v.IsArray()) Fail(where + " must be an array of layers");
  auto arr = v.As<Napi::Array>();
  std::vector<LayerSpec> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(ParseLayer(arr.Get(i), where + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace

LossSpec ParseLossSpec(const Napi::Value& loss, const std::string& where) {
  if (!loss.IsObject()) Fail(where + " must be an object like {type: 'cross-entropy'}");
  auto lo = loss.As<Napi::Object>();
  LossSpec s;
  std::string kind = StringField(lo, "type", where);
  if (kind == "cross-entropy") {
    s.kind = LossKind::CrossEntropy;
    s.labelSmoothing = NumberField(lo, "labelSmoothing", where, 0.0);
    if (s.labelSmoothing < 0 || s.labelSmoothing > 1) Fail(where + ".labelSmoothing must be in [0, 1]");
  } else if (kind == "mse") {
    s.kind = LossKind::Mse;
  } else if (kind == "nll") {
    s.kind = LossKind::Nll;
  } else if (kind == "bce-with-logits") {
    s.kind = LossKind::BceWithLogits;
  } else if (kind == "huber") {
    s.kind = LossKind::Huber;
    s.delta = NumberField(lo, "delta", where, 1.0);
    if (!(s.delta > 0) || !std::isfinite(s.delta)) Fail(where + ".delta must be a finite number > 0");
  } else {
    Fail(where + ".type '" + kind + "' is unknown; use 'cross-entropy', 'mse', 'nll', 'bce-with-logits' or 'huber'");
  }
  return s;
}

NetworkSpec ParseNetworkSpec(const Napi::Object& spec) {
  NetworkSpec s;
  s.input = IntListField(spec, "input", "spec", 0, 1);
  if (s.input.empty()) Fail("spec.input must list the input shape without the batch dimension, e.g. [784]");
  if (!HasField(spec, "layers")) Fail("spec.layers is required (an array of layers)");
  s.layers = ParseList(spec.Get("layers"), "spec.layers");
  if (HasField(spec, "loss")) s.loss = ParseLossSpec(spec.Get("loss"), "spec.loss");
  return s;
}

}  // namespace usam
