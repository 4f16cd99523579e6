// Public API of universal-sam (re-exports only).
export type { DType, Device, FloatDType, SlotInfo } from './native/binding.js';
export { AddonLoadError, addonCandidates, loadedFrom, native } from './native/load.js';
export { labels, tensor, toFloatArray, zeros, type Tensor, type TensorOptions } from './tensor.js';
export { ops } from './ops.js';
export { generator, sampleInto, type BuiltinMeasure, type Generator } from './random.js';
export { Model, type LossAndGrad, type ModelOptions } from './model/model.js';
export { cnn, mlp, resnet18, type CnnOptions, type MlpOptions } from './model/presets.js';
export { parseModelSpec, type LayerSpecInput, type ModelSpec, type ModelSpecInput } from './model/spec.js';
export { symmetricEigen, tridiagonalEigen } from './hessian/linalg.js';
export { Optimizer, type OptimizerOptions, type StepResult } from './optim/optimizer.js';
export { createBaseOptimizer, type BaseConfigInput, type BaseOptimizer } from './optim/base.js';
export { schedule, type ScheduleConfig } from './optim/schedule.js';
export type { Batch, PassCounters } from './optim/passes.js';
export {
  asam,
  detSam,
  frobSam,
  parseSharpness,
  sam,
  traceSam,
  universal,
  type SharpnessConfig,
  type SharpnessConfigInput,
  type UserSampler,
} from './sharpness/config.js';
export { scalarPresets, type ScalarFunction } from './sharpness/functions.js';
