// A network's description as plain C++ structs: what spec.cc reads from the
// JavaScript spec (layers, input shape, loss), checked there with messages
// that name the field, and what Network and the layers are built from. No
// Node-API here, in the manner of sharp's baton: JS values become these
// structs once, at the edge.
#pragma once
#include "core.h"

namespace usam {

// One value per JS `type`; gelu's `approximate: 'tanh'` is GeluTanh.
enum class LayerKind {
  Linear, Conv2d, BatchNorm1d, BatchNorm2d, LayerNorm, Embedding,
  Relu, Gelu, GeluTanh, Tanh, Softplus, Silu, Sigmoid, LeakyRelu,
  Identity, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Dropout2d, Residual,
};

// One layer of the spec, every field already checked and defaulted as
// PyTorch does; a layer kind reads only its own fields.
struct LayerSpec {
  LayerKind kind = LayerKind::Identity;
  std::string where;  // the layer's place in the spec ("spec.layers[2]"), for errors

  // linear: in/outFeatures; conv2d: in/outChannels
  int64_t in = 0, out = 0;
  bool bias = true;
  // conv2d, pooling; [h, w] each
  std::vector<int64_t> kernelSize, stride, padding, dilation;
  int64_t groups = 1;
  // batchnorm1d/2d, layernorm
  int64_t numFeatures = 0;
  std::vector<int64_t> normalizedShape;
  double eps = 1e-5, momentum = 0.1;
  bool affine = true;  // batchnorm's affine, layernorm's elementwiseAffine
  // embedding
  int64_t numEmbeddings = 0, embeddingDim = 0;
  // softplus, leakyrelu
  double beta = 1, threshold = 20, negativeSlope = 0.01;
  // adaptiveavgpool2d
  std::vector<int64_t> outputSize;
  // dropout, dropout2d
  double p = 0.5;
  // residual: the shortcut empty for the identity
  std::vector<LayerSpec> body, shortcut;
};

// PyTorch's losses, each with mean reduction: CrossEntropyLoss, MSELoss,
// NLLLoss (on log-probabilities), BCEWithLogitsLoss, HuberLoss.
enum class LossKind { CrossEntropy, Mse, Nll, BceWithLogits, Huber };

struct LossSpec {
  LossKind kind = LossKind::CrossEntropy;
  double labelSmoothing = 0;  // cross-entropy
  double delta = 1;           // huber
};

// The JS name of a loss ('cross-entropy', 'bce-with-logits', ...), for errors.
inline const char* LossName(LossKind kind) {
  switch (kind) {
    case LossKind::CrossEntropy: return "cross-entropy";
    case LossKind::Mse: return "mse";
    case LossKind::Nll: return "nll";
    case LossKind::BceWithLogits: return "bce-with-logits";
    case LossKind::Huber: return "huber";
  }
  return "?";
}
// Whether the loss takes int64 class labels [batch] (cross-entropy, nll);
// the others take float targets of the output's shape.
inline bool TakesLabels(LossKind kind) { return kind == LossKind::CrossEntropy || kind == LossKind::Nll; }

struct NetworkSpec {
  std::vector<int64_t> input;  // the input's shape without the batch dimension
  std::vector<LayerSpec> layers;
  LossSpec loss;
};

}  // namespace usam
