/**
 * What the evaluation of a setting produces: per seed (SeedResult) and per
 * setting (SettingResult: metric summaries over seeds, the recognizability
 * curve, the oracle trajectory metrics, timings), or a missing marker
 * (SettingOutcome). Intervals: see summary.ts (bootstrap over pooled samples
 * for per-sample metrics, recentred within-seed bootstrap for FID / sFID /
 * IS, seed range for precision / recall). Numbers from the feature network
 * carry FEATURE_NET_CAVEAT.
 */
import type { TrainingBudget } from '../backbone/training-budget';
import type { MissingSetting } from './settings';
import type { MetricSummary } from './summary';
import type { TrajectoryResult } from './trajectory';

/** The scalar metrics of a seed / a setting. */
export const EVAL_METRICS = ['fid', 'sfid', 'is', 'precision', 'recall', 'accuracy', 'recognizabilityAuc', 'nllBits'] as const;
export type EvalMetric = (typeof EVAL_METRICS)[number];

/** One generation trajectory as frames: frame t shows the first t + 1 blocks of the order decoded. */
export interface TrajectoryExample {
  classId: number;
  blockOrder: number[];
  /** [numBlocks * height * width], undecoded pixels = the config's fill. */
  frames: Float32Array;
  height: number;
  width: number;
}

/** Everything measured for one seed. */
export interface SeedResult {
  seed: number;
  /** Samples generated. */
  n: number;
  /** The scalar metrics (precision / recall NaN when switched off). */
  metrics: Record<EvalMetric, number>;
  /** Bootstrap replicates of FID / sFID / IS (setBootstrapReps each). */
  replicates: { fid: Float64Array; sfid: Float64Array; is: Float64Array };
  /** Per-sample values: 0/1 class accuracy, recognizability AUC; per test image: NLL bits per token. */
  perSample: { accuracy: Float64Array; recognizabilityAuc: Float64Array; nllBits: Float64Array };
  /** Per sample: 1 where the classifier recognises the class at each fraction ([n * fractions]). */
  recognizedAt: Uint8Array;
  /** Accuracy at each fraction. */
  curve: number[];
  /** Generated tokens [n * T], their conditioning classes and block orders (decode again for grids). */
  tokens: Int32Array;
  classes: Int32Array;
  blockOrders: number[][];
  example: TrajectoryExample;
}

/** Seconds spent per phase, all seeds together. */
export interface EvalTimings {
  sample: number;
  decode: number;
  features: number;
  fid: number;
  bootstrap: number;
  precisionRecall: number;
  recognizability: number;
  nll: number;
  trajectory: number;
  total: number;
}

/** The evaluation of one setting. */
export interface SettingResult {
  name: string;
  notes?: string;
  policy: string;
  geometry: { gridH: number; gridW: number; blockH: number; blockW: number; numBlocks: number };
  /** Per metric: mean over seeds and interval (summary.ts). */
  metrics: Record<EvalMetric, MetricSummary>;
  /** Recognizability curve: accuracy at each fraction of blocks decoded, pooled over seeds, with a bootstrap band. */
  curve: { fractions: number[]; accuracy: number[]; lo: number[]; hi: number[]; fill: string };
  seeds: SeedResult[];
  trajectory?: TrajectoryResult;
  samplesPerSeed: number;
  /** The sampling settings used (identical for every setting of a report). */
  sampling: { temperature: number; topK: number; topP: number; cfgScale: number };
  seconds: EvalTimings;
  /** The backbone's training budget (when its checkpoint records one), and why it may differ from the contest's (evaluateSettings' allowUnmatched). */
  budget?: TrainingBudget;
  unmatchedBudget?: string;
  /** The step and validation NLL its backbone was selected at (a validation-selected Stage 1 checkpoint). */
  selected?: { step: number; validationBits: number; validationImages: number; order: string };
}

export type SettingOutcome = SettingResult | MissingSetting;
