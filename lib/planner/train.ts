/**
 * Curriculum Stages 3 and 4: train OrderHead on the frozen backbone with
 * L_OH = CE(planner's next block, oracle a*) (METHOD.md §5, §6.3-6.4).
 *
 * The backbone is frozen in both stages, so its features of every oracle
 * state are computed once (lib/planner/features.ts) and the planner trains on
 * them. States are split by *image* so no image of the held-out set was seen
 * in training: image % heldOutEvery == heldOutEvery-1 -> test (metrics),
 * == heldOutEvery-2 -> val (checkpoint selection), the rest -> train.
 *
 * Targets: the plain CE baseline is one-hot a* = argmax u (label 'u'); the
 * options are the extrapolative label (argmax u_extrap) and soft targets
 * softmax(utility / softTemperature) over unseen blocks. Neither replaces the
 * baseline: they are separate runs.
 *
 * Runs are resumable: a checkpoint (weights, AdamW state, RNG state, best
 * validation loss) every `evalEvery` steps; the best-by-validation weights
 * are kept as `best-step<N>` (the planner later stages and notebooks load).
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ensure, oneOf, OrderHeadError } from '../runtime/errors';
import { AdamW, OptimConfig, scheduledLr, validateOptimConfig } from '../runtime/optim';
import { bestCheckpoint, resumeTraining, TrainingOutcome } from '../runtime/train-loop';
import { rng, rngFromState, seedFrom } from '../runtime/seed';
import { openRun, Run } from '../runtime/run';
import { checkpointName, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../runtime/checkpoint';
import { profileConfig, ProfileName } from '../runtime/profile';
import { OracleDataset, primaryLabelSet } from '../oracle/dataset';
import { PRIMARY_READING, Reading, READINGS } from '../oracle/utility';
import { PRIMARY_WEIGHT, WeightName, WEIGHTS } from '../oracle/weights';
import { PlannerFeatures } from './features';
import {
  checkLatentSteps, createPlanner, disposePlanner, LatentSteps, Planner, PLANNER_DEFAULTS, PlannerConfig, plannerForward,
  plannerInputs, plannerLoss, plannerProbs, PlannerShape, plannerParamShapes, validatePlannerConfig,
} from './orderhead';

export const LABELS = ['u', 'u_extrap'] as const;
/** Which oracle utility defines a*: plain u (the baseline) or u_extrap. */
export type LabelName = (typeof LABELS)[number];
export const TARGETS = ['hard', 'soft'] as const;
export type TargetName = (typeof TARGETS)[number];

export interface PlannerTrainConfig extends OptimConfig {
  planner: PlannerConfig;
  /** a* = argmax of this utility. Default 'u' (plain CE baseline). */
  label: LabelName;
  /** The oracle reading the labels must come from (the dataset's primary). Default 'block-marginal'. */
  reading: Reading;
  /** The weight w of u_extrap the dataset's primary labels must use (checked for every label). Default PRIMARY_WEIGHT (lib/oracle/weights.ts). */
  weight: WeightName;
  /** 'hard' = one-hot a* (baseline); 'soft' = softmax(utility / softTemperature) over unseen blocks. */
  target: TargetName;
  /** Temperature (nats of utility) of soft targets. Default 0.25. */
  softTemperature: number;
  /** Held-out split: image % heldOutEvery == heldOutEvery-1 is test, == heldOutEvery-2 is val. Default 8. */
  heldOutEvery: number;
}

/**
 * Stage 3 defaults: 500 steps of 128 states, validation (and a checkpoint)
 * every 50. lr 5e-4: on the default oracle set (~5k training states) the
 * planner overfits within a few hundred steps at 2e-3; the best-by-validation
 * checkpoint is kept anyway. β2 = 0.99: a small model on cached features,
 * whose gradient scale settles fast.
 */
export const PLANNER_TRAIN_DEFAULTS: PlannerTrainConfig = {
  planner: PLANNER_DEFAULTS, label: 'u', reading: PRIMARY_READING, weight: PRIMARY_WEIGHT, target: 'hard', softTemperature: 0.25, steps: 500, batch: 128, lr: 5e-4,
  warmup: 30, minLrRatio: 0.1, weightDecay: 0.1, betas: [0.9, 0.99], clipNorm: 1, evalEvery: 50, heldOutEvery: 8, seed: 0,
};

/** Stage 3 config per profile (smoke: seconds in CI). */
export function plannerTrainConfig(profile: ProfileName, overrides: Partial<PlannerTrainConfig> = {}): PlannerTrainConfig {
  return profileConfig(PLANNER_TRAIN_DEFAULTS, {
    smoke: { steps: 24, batch: 32, evalEvery: 8, warmup: 4 },
    default: {},
    full: { steps: 1500, evalEvery: 100 },
  }, profile, overrides, validatePlannerTrainConfig);
}

export function validatePlannerTrainConfig(cfg: PlannerTrainConfig): void {
  validateOptimConfig(cfg, 'planner');
  validatePlannerConfig(cfg.planner);
  oneOf(cfg.label, LABELS, 'planner.label');
  oneOf(cfg.reading, READINGS, 'planner.reading');
  oneOf(cfg.weight, WEIGHTS, 'planner.weight');
  oneOf(cfg.target, TARGETS, 'planner.target');
  ensure(cfg.evalEvery > 0, `evalEvery = ${cfg.evalEvery}: the best checkpoint is chosen on validation`, 'planner.evalEvery', 'use a positive integer');
  ensure(Number.isInteger(cfg.heldOutEvery) && cfg.heldOutEvery >= 3, `heldOutEvery = ${cfg.heldOutEvery} leaves no training images`, 'planner.heldOutEvery', 'use 3 or more (default 8)');
  ensure(cfg.softTemperature > 0, `softTemperature = ${cfg.softTemperature}`, 'planner.softTemperature', 'use a positive temperature');
}

/** The oracle states as planner training data: features plus the labelled utility. */
export interface PlannerData {
  features: PlannerFeatures;
  /** [n, nb] the utility the label comes from (NaN on visible). */
  utility: Float32Array;
  /** [n] a* = argmax utility. */
  aStar: Int32Array;
  /** [n] |S|. */
  size: Int32Array;
  /** [n] image index (the split is by image). */
  image: Int32Array;
  label: LabelName;
  /** The oracle's reading and weight, for captions. */
  reading: string;
  weight: string;
  backboneFingerprint: string;
}

/**
 * Pair an oracle dataset (primary labeling, which must be of `reading` and use
 * `weight`) with its features. The weight is checked for the u label too: a
 * config that names another weight than its dataset's is a mix-up either way.
 */
export function plannerData(ds: OracleDataset, features: PlannerFeatures, label: LabelName, reading: Reading = PRIMARY_READING,
  weight: WeightName = PRIMARY_WEIGHT): PlannerData {
  oneOf(label, LABELS, 'planner.label');
  ensure(features.n === ds.n && features.numBlocks === ds.geo.numBlocks,
    `features hold ${features.n} states of ${features.numBlocks} blocks, the oracle dataset ${ds.n} of ${ds.geo.numBlocks}`,
    ds.dir, 'compute the features from this dataset (plannerFeatures over oracleItem of every state)');
  const l = primaryLabelSet(ds, reading, 'planner.reading', { weight, field: 'planner.weight' });
  return {
    features, utility: label === 'u' ? l.u : l.uExtrap, aStar: label === 'u' ? l.aStar : l.aStarExtrap, size: ds.size, image: ds.image,
    label, reading: l.reading, weight: l.weight, backboneFingerprint: ds.manifest.backbone.fingerprint,
  };
}

export interface StateSplit { train: number[]; val: number[]; test: number[] }

/** Split state rows by image (see the module comment). */
export function splitByImage(image: Int32Array, heldOutEvery: number): StateSplit {
  const out: StateSplit = { train: [], val: [], test: [] };
  image.forEach((img, i) => {
    const r = img % heldOutEvery;
    (r === heldOutEvery - 1 ? out.test : r === heldOutEvery - 2 ? out.val : out.train).push(i);
  });
  for (const k of ['train', 'val', 'test'] as const) {
    ensure(out[k].length > 0, `the ${k} split is empty (${image.length} states)`, 'planner.heldOutEvery',
      'label more images in the oracle dataset or lower heldOutEvery');
  }
  return out;
}

/** Target distributions [rows, nb] for the given rows. */
export function plannerTargets(data: PlannerData, rows: readonly number[], target: TargetName, temperature: number): Float32Array {
  const nb = data.features.numBlocks, out = new Float32Array(rows.length * nb);
  rows.forEach((r, i) => {
    if (target === 'hard') { out[i * nb + data.aStar[r]] = 1; return; }
    let mx = -Infinity;
    for (let b = 0; b < nb; b++) { const u = data.utility[r * nb + b]; if (!Number.isNaN(u)) mx = Math.max(mx, u); }
    let s = 0;
    for (let b = 0; b < nb; b++) {
      const u = data.utility[r * nb + b];
      const e = Number.isNaN(u) ? 0 : Math.exp((u - mx) / temperature);
      out[i * nb + b] = e; s += e;
    }
    for (let b = 0; b < nb; b++) out[i * nb + b] /= s;
  });
  return out;
}

/** Everything a planner checkpoint records about what it was trained on. */
export interface PlannerCheckpointConfig {
  train: PlannerTrainConfig;
  shape: PlannerShape;
  backboneFingerprint: string;
  label: LabelName;
  reading: string;
  weight: string;
}

export interface TrainPlannerOptions {
  /** Initialise from this planner's weights (the R curriculum). Same shape and width required. */
  init?: Planner;
  /** Stop after this many steps in this call (resume tests). */
  maxSteps?: number;
  onStep?: (step: number, m: { loss: number; lr: number; valLoss?: number; valTop1?: number }) => void;
}

export interface TrainPlannerResult {
  run: Run<PlannerCheckpointConfig>;
  /** The best-by-validation planner (caller disposes). */
  planner: Planner;
  steps: number;
  bestStep: number;
  bestValLoss: number;
  bestPath: string;
}


/**
 * Train (or resume) a planner in `<root>/<name>` on `data`. Returns the best
 * planner by validation loss. The run's config.json holds the whole
 * PlannerCheckpointConfig (a changed config is refused by openRun).
 */
export function trainPlanner(root: string, name: string, cfg: PlannerTrainConfig, data: PlannerData, grid: { blocksY: number; blocksX: number; numClasses: number },
  opts: TrainPlannerOptions = {}): TrainPlannerResult {
  validatePlannerTrainConfig(cfg);
  const f = data.features;
  const shape: PlannerShape = { numBlocks: f.numBlocks, blocksY: grid.blocksY, blocksX: grid.blocksX, backboneDim: f.dim, numClasses: grid.numClasses };
  ensure(shape.blocksY * shape.blocksX === shape.numBlocks, `grid ${grid.blocksY}x${grid.blocksX} does not hold ${shape.numBlocks} blocks`,
    'trainPlanner(grid)', 'pass the block grid of the oracle dataset (ds.geo)');
  const ckCfg: PlannerCheckpointConfig = { train: cfg, shape, backboneFingerprint: data.backboneFingerprint, label: data.label, reading: data.reading, weight: data.weight };
  const run = openRun({ root, stage: 'planner', name, config: ckCfg, resume: true, backend: tf.getBackend() });
  const split = splitByImage(data.image, cfg.heldOutEvery);
  const pl = createPlanner(cfg.planner, shape);
  const nb = shape.numBlocks;
  let r = rng(seedFrom(cfg.seed, 'planner-batches')); // not the run name: a renamed run draws the same batches
  let outcome: TrainingOutcome;
  // A refused resume or a diverged step disposes the working planner (no leak).
  try {
    if (opts.init) copyPlannerWeights(opts.init, pl, 'trainPlanner(init)');
    const valTargets = plannerTargets(data, split.val, cfg.target, cfg.softTemperature);
    const t = resumeTraining({
      run, stage: 'planner', configName: 'planner', optim: cfg, optimizer: AdamW.fromConfig(pl.params, cfg), checkpointConfig: ckCfg, maxSteps: opts.maxSteps,
      restore: (extra) => { r = rngFromState(Number(extra.rngState)); },
    });
    try {
      for (let step = t.step; step < t.until; step++) {
        const lr = scheduledLr(cfg, step);
        const rows = Array.from({ length: cfg.batch }, () => split.train[r.int(split.train.length)]);
        const targets = plannerTargets(data, rows, cfg.target, cfg.softTemperature);
        const { value, grads } = tf.variableGrads(() => {
          const out = plannerForward(pl, plannerInputs(data.features, rows));
          return plannerLoss(out.logits, tf.tensor2d(targets, [rows.length, nb]));
        }, Object.values(pl.params));
        const loss = value.dataSync()[0];
        value.dispose();
        // At R = 0 the core's weights take no part: they get no gradient and stay as they are.
        t.update(step, loss, gradsByName(pl.params, grads), lr);
        const s = step + 1;
        let row: { loss: number; lr: number; valLoss?: number; valTop1?: number } = { loss, lr };
        if (t.isEvalStep(s)) {
          const e = validationMetrics(plannerProbs(pl, data.features, split.val), valTargets, split.val.map((i) => data.aStar[i]), nb);
          t.keepBest(s, e.valLoss, () => [{ prefix: 'best', file: saveCheckpoint(run.checkpointDir, checkpointName('best', s), { weights: pl.params, config: ckCfg, step: s, kind: 'planner', extra: { valLoss: e.valLoss } }) }]);
          row = { ...row, ...e };
        }
        run.logMetrics(s, row);
        if (t.isCheckpointStep(s)) t.checkpoint(s, { extra: { rngState: r.state() } });
        opts.onStep?.(s, row);
      }
    } finally {
      t.dispose();
    }
    outcome = t.outcome();
  } finally {
    disposePlanner(pl);
  }
  const best = bestCheckpoint(run);
  const loaded = loadPlanner(best.path, { shape, backboneFingerprint: data.backboneFingerprint });
  return { run, planner: loaded.planner, steps: outcome.step, bestStep: outcome.best?.step ?? 0, bestValLoss: outcome.best?.value ?? Infinity, bestPath: best.path };
}

/**
 * Validation CE and top-1 of next-block probabilities `probs` [n, nb] against
 * target distributions `targets` [n, nb] and labels a* [n].
 */
export function validationMetrics(probs: Float32Array, targets: Float32Array, aStar: ArrayLike<number>, nb: number): { valLoss: number; valTop1: number } {
  const n = aStar.length;
  let ce = 0, top1 = 0;
  for (let i = 0; i < n; i++) {
    let best = -1, bp = -1;
    for (let b = 0; b < nb; b++) {
      const t = targets[i * nb + b];
      if (t > 0) ce -= t * Math.log(Math.max(probs[i * nb + b], 1e-12));
      if (probs[i * nb + b] > bp) { bp = probs[i * nb + b]; best = b; }
    }
    if (best === aStar[i]) top1++;
  }
  return { valLoss: ce / n, valTop1: top1 / n };
}

/** tf.variableGrads keys gradients by variable name; the optimizer by parameter name. Parameters without a gradient are left out. */
export function gradsByName(params: Record<string, tf.Variable>, grads: tf.NamedTensorMap): Record<string, tf.Tensor> {
  const named: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(params)) if (grads[v.name]) named[k] = grads[v.name];
  return named;
}

/** Copy weights between planners of the same shape and width (the R curriculum: R changes, weights carry over). */
export function copyPlannerWeights(from: Planner, to: Planner, where: string): void {
  for (const [k, v] of Object.entries(to.params)) {
    const src = from.params[k];
    ensure(src && src.shape.join('x') === v.shape.join('x'), `weight ${k} is missing or shaped ${src?.shape.join('x')} in the initial planner, ${v.shape.join('x')} here`,
      where, 'initialise from a planner with the same width, layers and backbone');
    v.assign(src);
  }
}

export interface LoadedPlanner {
  planner: Planner;
  config: PlannerCheckpointConfig;
  step: number;
  path: string;
}

/**
 * Load a planner checkpoint. With `expect`, refuses (naming the field) a
 * planner trained for another block grid, backbone width or backbone.
 */
export function loadPlanner(file: string, expect: { shape?: Partial<PlannerShape>; backboneFingerprint?: string; latentSteps?: LatentSteps } = {}): LoadedPlanner {
  const ck = loadCheckpoint<PlannerCheckpointConfig>(file);
  try {
    const c = ck.config;
    ensure(ck.kind === 'planner' && c.shape && c.train, `is a '${ck.kind}' checkpoint, not a planner`, file, 'pass a best-step*.safetensors or planner-step*.safetensors file of a planner run');
    for (const [k, v] of Object.entries(expect.shape ?? {})) {
      ensure((c.shape as unknown as Record<string, number>)[k] === v,
        `the planner was trained for ${k} = ${(c.shape as unknown as Record<string, number>)[k]}, here it is ${v}`, `${file} (shape.${k})`,
        'use a planner trained on this backbone and block grid, or retrain Stage 3 (notebooks/04_stage3_orderhead.ipynb) for it');
    }
    if (expect.backboneFingerprint !== undefined) {
      ensure(c.backboneFingerprint === expect.backboneFingerprint,
        `the planner was trained on backbone ${c.backboneFingerprint}, not on ${expect.backboneFingerprint}`, `${file} (backboneFingerprint)`,
        'use the planner trained with this backbone checkpoint, or retrain Stage 3 on it');
    }
    const pcfg = { ...c.train.planner, latentSteps: checkLatentSteps(expect.latentSteps ?? c.train.planner.latentSteps, `${file} (latentSteps)`) };
    const names = plannerParamShapes(pcfg, c.shape);
    const params: Record<string, tf.Variable> = {};
    try {
      for (const [k, s] of names) {
        const w = ck.weights[k];
        ensure(w && w.shape.join('x') === s.join('x'), `weight ${k} is missing or shaped ${w?.shape.join('x')} (expected ${s.join('x')})`, file,
          'the file does not match its own config: use another checkpoint');
        params[k] = tf.variable(w, true);
      }
    } catch (err) {
      tf.dispose(Object.values(params)); // the weights made before the bad one
      throw err;
    }
    return { planner: { cfg: pcfg, shape: c.shape, params }, config: c, step: ck.step, path: file };
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}

/** The best checkpoint of a planner run folder, with a clear error when the stage has not run. */
export function bestPlannerCheckpoint(runDir: string, producedBy: string): string {
  const dir = path.join(runDir, 'checkpoints');
  const best = latestCheckpoint(dir, 'best');
  if (!best) {
    throw new OrderHeadError('no trained planner here (no best-step*.safetensors)', runDir, `run ${producedBy} in this profile first`);
  }
  return best.path;
}

export { disposePlanner };
