// Public API of universal-sam (re-exports only).
export type { DType, Device, FloatDType, HvpMethod, SlotInfo } from './native/binding.js';
export { AddonLoadError, addonCandidates, loadedFrom, native } from './native/load.js';
export { labels, tensor, toFloatArray, zeros, type Tensor, type TensorOptions } from './tensor/tensor.js';
export { ops } from './tensor/ops.js';
export { scope } from './tensor/scope.js';
export { generator, sampleInto, streamSeed, type BuiltinMeasure, type Generator, type StreamPurpose } from './random.js';
export { Model, hvpCache, loadTorchScript, UNIT_ROUNDOFF, type TorchScriptSource, type HvpCache, type LossAndGrad, type ModelOptions } from './model/model.js';
export { type LoadStateDictOptions, type StateDictEntry, type StateDictSource } from './model/state-dict.js';
export { cnn, mlp, resnet18, type CnnOptions, type MlpOptions } from './model/presets.js';
export { parseModelSpec, type LayerSpecInput, type ModelSpec, type ModelSpecInput } from './model/spec.js';
export { symmetricEigen, tridiagonalEigen } from './hessian/linalg.js';
export { Optimizer, type OptimizerOptions, type OptimizerStateDict, type StepResult } from './optim/optimizer.js';
export { createBaseOptimizer, type BaseConfigInput, type BaseOptimizer } from './optim/base.js';
export { noWeightDecay, type ParamGroup, type ParamGroupInput } from './optim/groups.js';
export { schedule, type ScheduleConfig } from './optim/schedule.js';
export type { Batch, PassCounters } from './model/passes.js';
export {
  asam,
  defineRule,
  detSam,
  findRule,
  frobSam,
  gradientNormPenalty,
  parseSharpness,
  randomPerturbation,
  readingOf,
  registerRule,
  ruleKinds,
  ruleOf,
  rules,
  sam,
  traceSam,
  trainingDefaultsOf,
  universal,
  type BuiltRule,
  type Estimator,
  type Hyper,
  type Measure,
  type RuleDescriptor,
  type RuleEnv,
  type RuleSchemas,
  type SharpnessConfig,
  type SharpnessConfigInput,
} from './optim/rules/index.js';
export type { RuleContext, RuleResult, StepWeights } from './optim/rules/context.js';
export { sharpnessFields, type UserSampler } from './sharpness/config.js';
export type { Reading } from './sharpness/reading.js';
export { ArgumentError, ConfigError, DivergenceError, NativeError, NonFiniteError, UsamError, type ConfigIssue } from './errors.js';
export { scalarPresets, type ScalarFunction } from './sharpness/functions.js';
export { hessian, Hessian, Curvature, FULL_HESSIAN_LIMIT, type HessianOptions, type SharpnessProbe } from './hessian/hessian.js';
export { ggn, fisher, type FisherOptions } from './hessian/gauss-newton.js';
export { principalAngles, type PrincipalAngles } from './hessian/subspace.js';
export { lossLandscape, filterNormalisedDirection, type Landscape, type LandscapeOptions } from './hessian/landscape.js';
export { compareSubspaces, compareSubspacesAsync, type CompareOptions, type SubspaceComparison } from './hessian/compare.js';
export type { OperatorOptions } from './hessian/operator-args.js';
export type { CurvatureKind } from './hessian/operator.js';
export type { EigenOptions, EigenResult } from './hessian/eigen.js';
export type { Estimate } from './hessian/estimators.js';
export { readIdx, parseIdx, encodeIdx } from './data/idx.js';
export { readCifar } from './data/cifar.js';
export {
  cifar,
  fashionMnist,
  readIdxDataset,
  synthetic,
  subset,
  withLabelNoise,
  normalize,
  channelStats,
  FASHION_MNIST_DIR,
  type Dataset,
} from './data/dataset.js';
export { BatchTensors, DataLoader, type LoaderOptions } from './data/loader.js';
export { Trainer, type EpochMetrics, type TrainEvents, type TrainResult, type StepInfo } from './train/trainer.js';
export { trainConfig, parseTrainConfig, type TrainConfig, type TrainConfigInput } from './train/config.js';
export { trainInWorker, type WorkerRun } from './train/run.js';
export { evaluate, evaluateAsync, type Evaluation } from './train/evaluate.js';
export { saveCheckpoint, loadCheckpoint, type Progress } from './train/checkpoint.js';
export { readSafetensors, writeSafetensors, stTensor, type StTensor, type StDType } from './safetensors.js';
export { readRun, renderReport } from './report/report.js';
export { countAllocations, cpuReducedPrecision, cuda, memory, setThreads, trimMemory, versions } from './native/runtime.js';
export { ProcessGroup, processGroupFromEnv } from './distributed.js';
