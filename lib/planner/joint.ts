/**
 * Curriculum Stage 5: limited joint tuning (METHOD.md §5, §6.5).
 *
 * Unfreeze the planner and only the top k GPT blocks and minimise
 *
 *   L = L_AR + λ · L_OH
 *
 * - L_AR: the backbone's AR loss on the orders the planner chooses
 *   (`arOrders` 'planner', the default: METHOD.md §6.5, "lets the generator
 *   adapt to the planner"): each training image in its cached planner order
 *   (planner-orders.ts: the frozen pair's choices, teacher-forced on the
 *   true tokens), with class dropout; batches from `drawOrderBatch`
 *   (lib/backbone/stage1.ts), the loss from `lmLoss`. The control run
 *   (`arOrders` 'raster') tunes the same blocks for the same steps on token
 *   raster; 'random' is the old block-RAR loss (r = 1).
 * - L_OH: the planner's CE against the oracle's a* (the plain CE baseline of
 *   §5). Unlike Stages 3-4, the planner's features are computed *through* the
 *   backbone at every step (`featureTensors` inside `tf.variableGrads`), so
 *   the top k blocks receive gradients from both terms: they may reshape what
 *   the planner reads, as long as L_AR (and the drift guard) allows.
 *
 * What trains (`tunedParamNames`): the planner's parameters and `h{L-k}.*` ..
 * `h{L-1}.*`. Everything else — embeddings (`tok_emb`, `cls_emb`, `tgt_pos`),
 * the lower blocks and, by default, the output `norm_f` / `head` — stays
 * bit-identical: only the tuned variables are passed to `tf.variableGrads` and
 * to the optimizer. Why `norm_f` and `head` are frozen by default
 * (`tuneOutput: false`): the head is the vocabulary readout shared by every
 * position and every order, and both feed the planner's entropy features
 * directly; leaving them trainable would let L_OH reshape predictive
 * entropies through a single matrix instead of through the representation.
 * "Limited" tuning means the top *blocks*; `tuneOutput: true` adds the two.
 *
 * Drift guard. Every `evalEvery` steps (and at step 0, before any update) the
 * NLL in bits/token of `driftImages` held-out images (the token cache's test
 * split) is measured under token raster order and under random block orders
 * (one seeded permutation per image, the same every time: `orderCells`), and
 * the planner's validation loss on the held-out oracle states (same split by
 * image as Stage 3) is computed with features from the *current* backbone.
 * A checkpoint is eligible as "best" only if neither NLL rose by more than
 * `maxNllIncrease` over its step-0 value; among eligible ones the lowest
 * held-out objective wins, the training objective measured on held-out data:
 *
 *   valObjective = ln 2 · NLL_planner(drift images) + λ · L_OH(val states)
 *
 * (NLL_planner: bits/token of the drift images in the current pair's own
 * planner orders). So the keep rule keeps a backbone that got better at
 * decoding the planner's orders even when the planner's loss did not move
 * (the old rule, planner validation loss alone, kept the untuned step 0).
 * Step 0 — the untuned pair — is always eligible, so a best always exists. Early stop: the first evaluation where
 * either NLL exceeds its step-0 value by more than `maxNllIncrease` ends the
 * run (recorded in the checkpoint, so a resumed run stays stopped); the best
 * checkpoint is what the run returns.
 *
 * Run folder (resumable like trainPlanner): `joint-step<N>` checkpoints hold
 * the tuned GPT weights (`gpt.<name>`), the planner (`planner.<name>`), the
 * AdamW state, RNG state and the guard's bookkeeping. The best pair is kept as
 * `backbone-step<N>-r1.00` (kind 'stage1', a full backbone: `loadBackbone`
 * reads it, and the run's config.json carries `stage1.blockH/blockW` and
 * `data.tokenizer` so an oracle dataset can be built on it) and `best-step<N>`
 * (kind 'planner', whose backboneFingerprint is that backbone file's, so
 * `loadPlanner(..., { backboneFingerprint })` and `bestPlannerCheckpoint` work).
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, oneOf, OrderHeadError } from '../runtime/errors';
import { accumulateGrads, AdamW, OptimConfig, scheduledLr, validateOptimConfig } from '../runtime/optim';
import { resumeTraining, TrainingOutcome } from '../runtime/train-loop';
import { MetricValues } from '../runtime/run';
import { rng, rngFromState, seedFrom } from '../runtime/seed';
import { openRun, Run } from '../runtime/run';
import { checkpointName, fileFingerprint, latestCheckpoint, saveCheckpoint, weightsFingerprint } from '../runtime/checkpoint';
export { fileFingerprint, weightsFingerprint };
import { profileConfig, ProfileName } from '../runtime/profile';
import { BlockGeometry } from '../order';
import { checkTokenIds, GPTConfig, seqLen } from '../backbone/config';
import { disposeGPT, GPT, gptFromParams, paramShapes, Params } from '../backbone/gpt';
import { drawOrderBatch, loadBackbone, microBatchSizes, orderBatchLoss, TargetCells, TargetOrderTable, targetOrderCells, TokenData } from '../backbone/stage1';
import { addBudget, runBudget } from '../backbone/training-budget';
import { nllInBlockOrders } from '../backbone/nll';
import { rollOutOrderSync } from '../order';
import { plannerPolicy } from './policy';
import { restrictToOrders } from './planner-orders';
import { imagesOf, RegimeImages } from '../backbone/regime';
import { nllByOrderType } from '../backbone/order-nll';
import { OracleDataset, oracleItem, primaryLabelSet } from '../oracle/dataset';
import { PRIMARY_READING, Reading } from '../oracle/utility';
import { TokenCache } from '../tokenizer/cache';
import { FeatureItem, featureTensors, plannerFeatures } from './features';
import { disposePlanner, Planner, PlannerConfig, plannerForward, plannerLoss, plannerProbs, PlannerShape } from './orderhead';
import { gradsByName, LABELS, LabelName, loadPlanner, PlannerCheckpointConfig, splitByImage, validationMetrics } from './train';

export interface JointTuningConfig extends OptimConfig {
  /** k: the number of top GPT blocks that train (h{L-k} .. h{L-1}). Default 2; must be 1 .. nLayer. */
  topBlocks: number;
  /** Also train the final norm `norm_f` and the output `head` (see the module comment). Default false. */
  tuneOutput: boolean;
  /** λ in L = L_AR + λ·L_OH. Default 1. */
  lambda: number;
  /** Oracle states per step for L_OH (features computed through the backbone); `batch` is the L_AR images per step. */
  batchStates: number;
  /** L_AR runs as passes of at most this many images (wasm heap). Default 32. */
  microBatch: number;
  /** Class dropout of L_AR samples (keeps the null class, i.e. CFG, trained). Default 0.1 as Stage 1. */
  classDropout: number;
  /** Drift guard: largest allowed rise of raster or random-block NLL (bits/token) over the step-0 value. Default 0.05. */
  maxNllIncrease: number;
  /** Held-out images (test split) the drift guard scores. */
  driftImages: number;
  /** At most this many validation states are scored per evaluation (the first ones of the val split). */
  valStates: number;
  /** Split of the oracle states by image, as Stage 3 (must match the planner's, so val states stay unseen). Default 8. */
  heldOutEvery: number;
  /** The orders L_AR trains on: 'planner' (the cached planner orders, default), 'raster' (the control), 'random' (block-RAR, r = 1). */
  arOrders: JointArOrders;
}

export const JOINT_AR_ORDERS = ['planner', 'raster', 'random'] as const;
export type JointArOrders = (typeof JOINT_AR_ORDERS)[number];

/**
 * Stage 5 defaults. lr 1e-4, shared by the planner and the tuned blocks:
 * Stage 1 ends at 1e-4 and the planner is already trained; larger steps
 * mostly buy drift. β2 = 0.95 as Stage 1's (the tuned blocks are the GPT's).
 */
export const JOINT_TUNING_DEFAULTS: JointTuningConfig = {
  topBlocks: 2, tuneOutput: false, lambda: 1, steps: 200, batchStates: 32, batch: 32, microBatch: 32,
  lr: 1e-4, warmup: 20, minLrRatio: 0.1, weightDecay: 0.05, betas: [0.9, 0.95], clipNorm: 1, classDropout: 0.1,
  evalEvery: 25, maxNllIncrease: 0.05, driftImages: 64, valStates: 512, heldOutEvery: 8, arOrders: 'planner', seed: 0,
};

/**
 * Stage 5 config per profile. smoke: seconds in CI on the tiny backbone;
 * default: a few minutes on the `small` backbone (2 CPU cores); full: longer.
 */
export function jointTuningConfig(profile: ProfileName, overrides: Partial<JointTuningConfig> = {}): JointTuningConfig {
  return profileConfig(JOINT_TUNING_DEFAULTS, {
    smoke: { steps: 8, batchStates: 8, batch: 8, microBatch: 8, warmup: 2, evalEvery: 4, driftImages: 8, valStates: 32 },
    default: { steps: 120, evalEvery: 30 }, // about 3 minutes on one core of our 2-core machine
    full: { steps: 600, batchStates: 64, batch: 64, warmup: 50, evalEvery: 50, driftImages: 256, valStates: 2048 },
  }, profile, overrides, validateJointTuningConfig);
}

export function validateJointTuningConfig(cfg: JointTuningConfig): void {
  validateOptimConfig(cfg, 'joint');
  for (const k of ['topBlocks', 'batchStates', 'microBatch', 'evalEvery', 'driftImages', 'valStates', 'heldOutEvery'] as const) {
    ensure(Number.isInteger(cfg[k]) && cfg[k] > 0, `${k} = ${cfg[k]} is not a positive integer`, `joint.${k}`,
      k === 'topBlocks' ? 'tune at least one block (k = 0 is Stage 3: trainPlanner)' : 'use a positive integer');
  }
  ensure(cfg.heldOutEvery >= 3, `heldOutEvery = ${cfg.heldOutEvery} leaves no training images`, 'joint.heldOutEvery', 'use the Stage 3 value (default 8)');
  ensure(Number.isFinite(cfg.lambda) && cfg.lambda >= 0, `lambda = ${cfg.lambda}`, 'joint.lambda', 'use λ >= 0 (default 1)');
  ensure(Number.isFinite(cfg.maxNllIncrease) && cfg.maxNllIncrease >= 0, `maxNllIncrease = ${cfg.maxNllIncrease}`, 'joint.maxNllIncrease',
    'use a non-negative number of bits per token (default 0.05)');
  ensure(cfg.classDropout >= 0 && cfg.classDropout < 1, `classDropout = ${cfg.classDropout}`, 'joint.classDropout', 'use a probability in [0, 1)');
  oneOf(cfg.arOrders, JOINT_AR_ORDERS, 'joint.arOrders');
  ensure(typeof cfg.tuneOutput === 'boolean', `tuneOutput = ${String(cfg.tuneOutput)}`, 'joint.tuneOutput', 'use true or false');
}

/**
 * The GPT parameters Stage 5 trains: every parameter of blocks h{L-k} .. h{L-1}
 * (and norm_f, head with `tuneOutput`), in paramShapes order. Refuses k outside
 * 1 .. nLayer, naming the backbone's layer count.
 */
export function tunedParamNames(model: GPTConfig, topBlocks: number, tuneOutput = false): string[] {
  const L = model.nLayer;
  if (!(Number.isInteger(topBlocks) && topBlocks >= 1 && topBlocks <= L)) {
    throw new OrderHeadError(`topBlocks = ${topBlocks}, but the backbone has ${L} layer${L === 1 ? '' : 's'} (h0 .. h${L - 1})`, 'joint.topBlocks',
      `choose k between 1 and ${L} (default 2; k = ${L} tunes every block, k = 0 is Stage 3)`);
  }
  const first = L - topBlocks;
  return paramShapes(model).map(([n]) => n).filter((n) => {
    const m = /^h(\d+)\./.exec(n);
    if (m) return Number(m[1]) >= first;
    return tuneOutput && (n === 'norm_f' || n === 'head');
  });
}

/** What Stage 5 trains on. */
export interface JointData {
  geo: BlockGeometry;
  /** Oracle states: the image's tokens (only visible blocks are read), class, visible blocks in reveal order. */
  items: FeatureItem[];
  /** [n] a* of each state (argmax of the label utility). */
  aStar: Int32Array;
  /** [n] image index of each state (the split is by image, as Stage 3). */
  image: Int32Array;
  label: LabelName;
  reading: string;
  weight: string;
  /** Fingerprint of the backbone checkpoint the oracle labelled with (the one the Stage 3/4 planner was trained on). */
  backboneFingerprint: string;
  /** L_AR images: the backbone's training split, or (arOrders 'planner') its cached images with their planner orders (restrictToOrders). */
  train: TokenData;
  /** The images of `train` L_AR draws from: the backbone's K training images (regime.ts). */
  trainImages: Int32Array;
  /** Drift-guard images: held out from the backbone's training (the regime's validation images; the test split only without a regime). */
  heldOut: { tokens: Int32Array; labels: Int32Array; n: number };
}

/**
 * Stage 5 data from an oracle dataset (primary labeling, a* of `label`) and its
 * token cache: L_AR draws from the cache's train split, the drift guard scores
 * the first images of its test split. (If the oracle labelled the test split,
 * its states' images overlap the drift images; only their a* labels are used.)
 */
export function jointData(ds: OracleDataset, cache: TokenCache, label: LabelName = 'u', reading: Reading = PRIMARY_READING, plannerOrders?: TargetOrderTable,
  regime?: Pick<RegimeImages, 'train' | 'validation'>): JointData {
  oneOf(label, LABELS, 'joint label');
  const l = primaryLabelSet(ds, reading, 'joint reading');
  const full: TokenData = { tokens: cache.train.tokens, labels: cache.train.labels, n: cache.train.n, tokenizer: cache.tokenizer.fingerprint };
  const train = plannerOrders ? restrictToOrders(full, plannerOrders) : full;
  // The planner-order cache also holds the validation images (their orders select the planner arm): L_AR draws only the K training images.
  const isTrain = new Uint8Array(full.n);
  if (regime) for (const i of regime.train) isTrain[i] = 1; else isTrain.fill(1);
  const trainImages = plannerOrders ? Int32Array.from([...plannerOrders.image.keys()].filter((k) => isTrain[plannerOrders.image[k]]))
    : Int32Array.from({ length: full.n }, (_, i) => i).filter((i) => isTrain[i]);
  const heldOut = regime ? imagesOf(full, regime.validation) : { tokens: cache.test.tokens, labels: cache.test.labels, n: cache.test.n };
  return {
    geo: ds.geo, items: Array.from({ length: ds.n }, (_, i) => oracleItem(ds, i, cache)),
    aStar: label === 'u' ? l.aStar : l.aStarExtrap, image: ds.image, label, reading: l.reading, weight: l.weight,
    backboneFingerprint: ds.manifest.backbone.fingerprint,
    train, trainImages, heldOut,
  };
}


/**
 * L_OH through the backbone: the planner's CE against a* on `rows` of `data`,
 * with features computed by `featureTensors` (grouped by |S|, one backbone pass
 * per group) so gradients reach the backbone. Call inside tf.variableGrads or tidy.
 */
export function plannerLossThroughBackbone(m: GPT, pl: Planner, geo: BlockGeometry, items: readonly FeatureItem[], aStar: ArrayLike<number>,
  rows: readonly number[]): tf.Scalar {
  const nb = geo.numBlocks;
  const groups = new Map<number, number[]>();
  for (const r of rows) {
    const g = groups.get(items[r].visible.length) ?? [];
    g.push(r);
    groups.set(items[r].visible.length, g);
  }
  const order = [...groups.values()].flat(); // rows in group order: the concatenated features' row order
  const parts = [...groups.values()].map((g) => featureTensors(m, geo, g.map((r) => items[r])));
  const cat = <T extends tf.Tensor>(ts: T[]): T => (ts.length === 1 ? ts[0] : tf.concat(ts, 0) as T);
  const visible = new Float32Array(order.length * nb), target = new Float32Array(order.length * nb);
  order.forEach((r, i) => {
    for (const b of items[r].visible) visible[i * nb + b] = 1;
    target[i * nb + aStar[r]] = 1;
  });
  const out = plannerForward(pl, {
    hidden: cat(parts.map((p) => p.hidden)), // [B, nb, d]
    entropy: cat(parts.map((p) => p.entropy)), // [B, nb]
    visible: tf.tensor2d(visible, [order.length, nb]),
    classId: tf.tensor1d(order.map((r) => items[r].classId), 'int32'),
  });
  return plannerLoss(out.logits, tf.tensor2d(target, [order.length, nb]));
}

export interface JointTuningHooks {
  /** Stop after this many steps in this call (resume tests). */
  maxSteps?: number;
  /** After every step; `models` are the working copies (tests inspect them; do not dispose). */
  onStep?: (step: number, metrics: JointStepMetrics, models: { backbone: GPT; planner: Planner }) => void;
}

export interface JointStepMetrics {
  /** L_AR, nats per token. */
  lAR: number;
  /** L_OH, nats (CE against a*). */
  lOH: number;
  /** L_AR + λ·L_OH. */
  loss: number;
  lr: number;
  gradNorm: number;
  ms: number;
  /** On evaluation steps: held-out NLL (bits/token), planner validation loss / top-1, and whether the NLLs are within the guard. */
  rasterBits?: number;
  randomBits?: number;
  valLoss?: number;
  valTop1?: number;
  withinDrift?: boolean;
}

export interface JointEval {
  step: number; rasterBits: number; randomBits: number;
  /** Held-out NLL (bits/token) in the current pair's own planner orders, and the keep rule's objective (see the module comment). */
  plannerBits: number; valObjective: number;
  valLoss: number; valTop1: number; withinDrift: boolean;
}

/**
 * NLL (bits/token) of the first `n` held-out images decoded in the orders the
 * planner `pl` chooses on them reading `m` (teacher-forced rollout, then one
 * exact pass): the generator's side of the keep rule.
 */
export function plannerOrderBits(m: GPT, pl: Planner, geo: BlockGeometry, heldOut: { tokens: Int32Array; labels: Int32Array }, n: number): number {
  const T = seqLen(m.cfg);
  const grids = heldOut.tokens.subarray(0, n * T), classes = heldOut.labels.subarray(0, n);
  const orders = rollOutOrderSync(plannerPolicy(pl, m, geo, 0), geo, n, {
    tokens: Array.from({ length: n }, (_, i) => grids.subarray(i * T, (i + 1) * T)), classIds: Array.from(classes),
  });
  return nllInBlockOrders(m, grids, classes, orders, geo).bitsPerToken;
}

export interface JointTuningLog {
  /** Steps done. */
  steps: number;
  /** Per step (1-based step i at index i-1): L_AR and L_OH. */
  lAR: number[];
  lOH: number[];
  /** Every evaluation, step 0 first. */
  evals: JointEval[];
  /** Held-out NLL (bits/token) before tuning (step 0) and of the returned (best) checkpoint. */
  before: { raster: number; random: number };
  after: { raster: number; random: number };
  stoppedEarly: boolean;
  stopReason?: string;
}

export interface JointTuningResult {
  run: Run<JointRunConfig>;
  /** The best tuned backbone and planner (caller disposes both). */
  backbone: GPT;
  planner: Planner;
  steps: number;
  bestStep: number;
  bestValLoss: number;
  /** The best pair's files: a Stage-1-compatible backbone checkpoint and a planner checkpoint. */
  backbonePath: string;
  plannerPath: string;
  log: JointTuningLog;
}

/** The run's config.json: the stage config, what it started from, and Stage-1-compatible fields for the tuned backbone. */
export interface JointRunConfig {
  joint: JointTuningConfig;
  model: GPTConfig;
  /** The block size, where checkBackboneForDataset looks for it (so the tuned backbone can label a new oracle dataset). */
  stage1: { blockH: number; blockW: number; orderMode: 'block-rar' };
  data: { tokenizer: string; trainImages: number; heldOutImages: number; states: number; label: LabelName; reading: string; weight: string };
  /** The starting backbone: its checkpoint fingerprint (from the oracle dataset) and a hash of the weights actually passed. */
  backbone: { fingerprint: string; weights: string };
  planner: { cfg: PlannerConfig; shape: PlannerShape; weights: string };
  tunedParams: string[];
}

/** A planner checkpoint written by Stage 5 (loadPlanner reads `train.planner` and `shape`). */
type JointPlannerCheckpointConfig = Omit<PlannerCheckpointConfig, 'train'> & { train: { planner: PlannerConfig }; joint: JointTuningConfig };

function cloneParams(params: Record<string, tf.Variable>, trainable: (k: string) => boolean): Record<string, tf.Variable> {
  const out: Record<string, tf.Variable> = {};
  for (const [k, v] of Object.entries(params)) out[k] = tf.variable(v, trainable(k)); // shares the data until the first assign
  return out;
}

/**
 * Train (or resume) Stage 5 in `<root>/<name>` from `backbone` and `planner`
 * (neither is modified: the run works on copies). Returns the best pair (see
 * the module comment) and a log.
 */
export function trainJointTuning(root: string, name: string, cfg: JointTuningConfig, data: JointData, backbone: GPT, planner: Planner,
  hooks: JointTuningHooks = {}): JointTuningResult {
  validateJointTuningConfig(cfg);
  const mcfg = backbone.cfg, geo = data.geo, T = seqLen(mcfg), nb = geo.numBlocks;
  const tuned = tunedParamNames(mcfg, cfg.topBlocks, cfg.tuneOutput);
  // Every check before openRun: bad input leaves no run folder behind.
  ensure(geo.gridH === mcfg.gridH && geo.gridW === mcfg.gridW, `the block geometry is on a ${geo.gridH}x${geo.gridW} grid, the backbone's is ${mcfg.gridH}x${mcfg.gridW}`,
    'trainJointTuning(data.geo)', 'use the oracle dataset labelled with this backbone');
  ensure(planner.shape.numBlocks === nb && planner.shape.backboneDim === mcfg.dModel,
    `the planner was built for ${planner.shape.numBlocks} blocks of a ${planner.shape.backboneDim}-wide backbone, here: ${nb} blocks, width ${mcfg.dModel}`,
    'trainJointTuning(planner)', 'pass the Stage 3/4 planner trained on this backbone and block grid');
  const n = data.items.length;
  ensure(n > 0 && data.aStar.length === n && data.image.length === n, `${n} states, ${data.aStar.length} labels, ${data.image.length} image ids`,
    'trainJointTuning(data)', 'build the data with jointData(oracleDataset, tokenCache)');
  data.items.forEach((it, i) => ensure(it.visible.length < nb && !it.visible.includes(data.aStar[i]) && data.aStar[i] >= 0 && data.aStar[i] < nb,
    `state ${i}: a* = ${data.aStar[i]} is not an unseen block`, 'trainJointTuning(data.aStar)', 'use the oracle labels of these states'));
  ensure(data.trainImages.length >= 1, 'L_AR has no training images to draw from (data.trainImages is empty)', 'trainJointTuning(data.trainImages)',
    'build the data with jointData(ds, cache, label, reading, plannerOrders, regime): its planner-order cache must hold some of the K training images');
  ensure(data.train.n >= 1 && data.train.tokens.length === data.train.n * T && data.train.labels.length === data.train.n,
    `L_AR data holds ${data.train.tokens.length} tokens and ${data.train.labels.length} labels for ${data.train.n} images of ${T} tokens`,
    'trainJointTuning(data.train)', 'pass the token cache split the backbone was trained on');
  checkTokenIds(mcfg, data.train.tokens, data.train.labels, 'trainJointTuning(data.train)');
  ensure(cfg.arOrders !== 'planner' || data.train.targetOrders !== undefined, "arOrders is 'planner' but the L_AR data carries no planner orders",
    'trainJointTuning(data.train.targetOrders)', 'pass jointData(ds, cache, label, reading, plannerOrders) with the planner-order cache that notebooks/06_stage5_joint_tuning.ipynb builds (buildPlannerOrders)');
  const arTarget: TargetCells = cfg.arOrders === 'planner' ? targetOrderCells(data.train.targetOrders!, geo) : () => null;
  const arShare = cfg.arOrders === 'random' ? 1 : 0;
  const startBudget = backbone.budget;
  ensure(data.heldOut.n >= cfg.driftImages && data.heldOut.tokens.length >= cfg.driftImages * T,
    `the drift guard needs ${cfg.driftImages} held-out images, the data has ${data.heldOut.n}`, 'joint.driftImages', `set driftImages to at most ${data.heldOut.n}`);
  const split = splitByImage(data.image, cfg.heldOutEvery);
  const valRows = split.val.slice(0, cfg.valStates);

  const runCfg: JointRunConfig = {
    joint: cfg, model: mcfg, stage1: { blockH: geo.blockH, blockW: geo.blockW, orderMode: 'block-rar' },
    data: { tokenizer: data.train.tokenizer ?? 'unknown', trainImages: data.trainImages.length, heldOutImages: cfg.driftImages, states: n, label: data.label, reading: data.reading, weight: data.weight,
      ...(data.train.targetOrders && cfg.arOrders === 'planner' ? { plannerOrders: data.train.targetOrders.fingerprint } : {}) },
    backbone: { fingerprint: data.backboneFingerprint, weights: weightsFingerprint(backbone.params) },
    planner: { cfg: planner.cfg, shape: planner.shape, weights: weightsFingerprint(planner.params) },
    tunedParams: tuned,
  };
  const run = openRun({ root, stage: 'joint', name, config: runCfg, resume: true, backend: tf.getBackend() });
  const tunedSet = new Set(tuned);
  const m = gptFromParams(mcfg, cloneParams(backbone.params, (k) => tunedSet.has(k)) as Params);
  const pl: Planner = { cfg: planner.cfg, shape: planner.shape, params: cloneParams(planner.params, () => true) };
  const gptVars: Record<string, tf.Variable> = {}, allVars: Record<string, tf.Variable> = {};
  for (const k of tuned) { gptVars[`gpt.${k}`] = m.params[k]; allVars[`gpt.${k}`] = m.params[k]; }
  for (const [k, v] of Object.entries(pl.params)) allVars[`planner.${k}`] = v;
  let bestNll = { raster: NaN, random: NaN }, before = { raster: NaN, random: NaN };
  let r = rng(seedFrom(cfg.seed, 'joint-batches'));
  const ckpt = run.checkpointDir;

  /** Held-out NLL under raster and random block orders (the drift guard), and the planner's validation loss through the current backbone. */
  const evaluate = (step: number): JointEvalValues => {
    const rows = nllByOrderType(m, geo, data.heldOut, cfg.driftImages, ['raster', 'random-blocks'], cfg.seed);
    const probs = plannerProbs(pl, plannerFeatures(m, geo, valRows.map((i) => data.items[i])));
    const valAStar = valRows.map((row) => data.aStar[row]);
    const oneHot = new Float32Array(valRows.length * nb);
    valAStar.forEach((a, i) => { oneHot[i * nb + a] = 1; });
    const v = validationMetrics(probs, oneHot, valAStar, nb);
    const own = plannerOrderBits(m, pl, geo, data.heldOut, cfg.driftImages);
    const e = { rasterBits: rows[0].bitsPerToken, randomBits: rows[1].bitsPerToken, plannerBits: own, ...v, valObjective: own * Math.LN2 + cfg.lambda * v.valLoss };
    if (step === 0) before = { raster: e.rasterBits, random: e.randomBits };
    const withinDrift = e.rasterBits - before.raster <= cfg.maxNllIncrease && e.randomBits - before.random <= cfg.maxNllIncrease;
    return { ...e, withinDrift };
  };
  /** The best pair: a Stage-1-compatible backbone and its planner, whose backboneFingerprint is that file's. */
  const writeBest = (step: number, e: MetricValues) => {
    bestNll = { raster: Number(e.rasterBits), random: Number(e.randomBits) };
    const budget = startBudget ? addBudget(startBudget, runBudget(`stage5 ${name}`, 0, step, cfg.batch, T, data.trainImages.length)) : undefined;
    const bFile = saveCheckpoint(ckpt, checkpointName('backbone', step, ['r1.00']), {
      weights: m.params, config: mcfg, step, kind: 'stage1',
      extra: { orderMode: 'block-rar', r: 1, ...(budget ? { budget } : {}), joint: { topBlocks: cfg.topBlocks, tuneOutput: cfg.tuneOutput, from: data.backboneFingerprint, rasterBits: bestNll.raster, randomBits: bestNll.random } },
    });
    const pCfg: JointPlannerCheckpointConfig = {
      train: { planner: pl.cfg }, shape: pl.shape, backboneFingerprint: fileFingerprint(bFile), label: data.label, reading: data.reading, weight: data.weight, joint: cfg,
    };
    const pFile = saveCheckpoint(ckpt, checkpointName('best', step), { weights: pl.params, config: pCfg, step, kind: 'planner', extra: { valLoss: e.valLoss, backbone: bFile } });
    // Every other best pair goes, also ones left by a kill between an earlier write and its clean-up.
    return [{ prefix: 'backbone', file: bFile }, { prefix: 'best', file: pFile }];
  };

  const state = () => ({ extra: { rngState: r.state(), before, bestNll } });

  let outcome: TrainingOutcome;
  try {
    const t = resumeTraining({
      run, stage: 'joint', configName: 'joint', optim: cfg, optimizer: AdamW.fromConfig(allVars, cfg), checkpointConfig: runCfg, maxSteps: hooks.maxSteps,
      restore: (x) => { r = rngFromState(Number(x.rngState)); before = x.before as typeof before; bestNll = x.bestNll as typeof bestNll; },
    });
    /** Why the drift guard stops the run at `step`: both held-out NLLs at step 0 and now. */
    const driftStop = (e: JointEvalValues, step: number) =>
      `held-out NLL rose past joint.maxNllIncrease = ${cfg.maxNllIncrease} bits/token at step ${step}: ` +
      `raster ${before.raster.toFixed(4)} -> ${e.rasterBits.toFixed(4)} (${signed(e.rasterBits - before.raster)}), ` +
      `random blocks ${before.random.toFixed(4)} -> ${e.randomBits.toFixed(4)} (${signed(e.randomBits - before.random)})`;
    /** Evaluate at `step`; keep the best pair within the drift guard, and stop the run for good once the guard is crossed. */
    const evaluated = (step: number): JointEvalValues => {
      const e = evaluate(step);
      if (e.withinDrift) t.keepBest(step, e.valObjective, () => writeBest(step, e));
      else t.stop(driftStop(e, step));
      return e;
    };
    try {
      // A fresh run evaluates and checkpoints step 0 first: the drift guard's reference.
      if (!t.resumedFrom) {
        run.logMetrics(0, evaluated(0));
        t.checkpoint(0, state());
      }
      for (let step = t.step; step < t.until && t.stopReason === undefined; step++) {
        const t0 = performance.now();
        const lr = scheduledLr(cfg, step);
        // Host-side draws first (the RNG stream is part of the resume contract): L_AR images and orders, then L_OH states.
        const micro = microBatchSizes(cfg.batch, cfg.microBatch).map((B) => drawOrderBatch({ images: r, orders: r }, data.train, data.trainImages, geo, B, arShare, cfg.classDropout, mcfg.numClasses, arTarget));
        const rows = Array.from({ length: cfg.batchStates }, () => split.train[r.int(split.train.length)]);
        // L_AR: gradients for the tuned GPT blocks only.
        const ar = accumulateGrads(gptVars, micro.length, (i) => orderBatchLoss(m, micro[i]));
        // λ·L_OH: gradients for the tuned blocks (through featureTensors) and the planner.
        const oh = tf.variableGrads(() => tf.mul(plannerLossThroughBackbone(m, pl, geo, data.items, data.aStar, rows), cfg.lambda) as tf.Scalar, Object.values(allVars));
        const lOHw = oh.value.dataSync()[0];
        oh.value.dispose();
        const ohGrads = gradsByName(allVars, oh.grads); // the planner core at R = 0 gets none
        const grads: Record<string, tf.Tensor> = {}, owned: tf.Tensor[] = [...Object.values(ar.grads), ...Object.values(ohGrads)];
        for (const k of Object.keys(allVars)) {
          const a = ar.grads[k], b = ohGrads[k];
          if (a && b) { grads[k] = tf.add(a, b); owned.push(grads[k]); } else if (a || b) grads[k] = (a ?? b)!;
        }
        const loss = ar.loss + lOHw;
        const gradNorm = t.update(step, loss, grads, lr, { owned, detail: `L_AR ${ar.loss}, λ·L_OH ${lOHw}` });
        const s = step + 1;
        let row: MetricValues = { lAR: ar.loss, lOH: cfg.lambda > 0 ? lOHw / cfg.lambda : NaN, loss, lr, gradNorm, ms: performance.now() - t0 };
        if (t.isEvalStep(s)) row = { ...row, ...evaluated(s) };
        run.logMetrics(s, row);
        // A stopped run checkpoints at once, so a resumed one stays stopped.
        if (t.isCheckpointStep(s) || t.stopReason !== undefined) t.checkpoint(s, state());
        hooks.onStep?.(s, row as unknown as JointStepMetrics, { backbone: m, planner: pl });
      }
    } finally {
      t.dispose();
    }
    outcome = t.outcome();
  } finally {
    disposeGPT(m);
    disposePlanner(pl);
  }
  const bFile = latestCheckpoint(ckpt, 'backbone'), pFile = latestCheckpoint(ckpt, 'best');
  ensure(bFile && pFile, 'no best checkpoint was written', run.dir, 'the step-0 evaluation writes one: delete the run folder and start again');
  const tunedBackbone = loadBackbone(bFile.path, mcfg);
  let loaded;
  try {
    loaded = loadPlanner(pFile.path, { shape: planner.shape, backboneFingerprint: fileFingerprint(bFile.path) });
  } catch (err) {
    disposeGPT(tunedBackbone);
    throw err;
  }
  const stopped = outcome.stopReason !== undefined;
  return {
    run, backbone: tunedBackbone, planner: loaded.planner, steps: outcome.step, bestStep: outcome.best?.step ?? -1, bestValLoss: outcome.best?.value ?? Infinity,
    backbonePath: bFile.path, plannerPath: pFile.path, log: jointLog(run, outcome.step, before, bestNll, stopped, outcome.stopReason),
  };
}

const signed = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`;

type JointEvalValues = Omit<JointEval, 'step'>;

/** The log of a run from its metrics.jsonl (the last row of a step wins: a resumed run may repeat steps past its last checkpoint). */
function jointLog(run: Run<JointRunConfig>, steps: number, before: { raster: number; random: number }, after: { raster: number; random: number },
  stoppedEarly: boolean, stopReason?: string): JointTuningLog {
  const byStep = new Map<number, Record<string, unknown>>();
  for (const row of run.readMetrics({ warn: () => {} })) if (row.step <= steps) byStep.set(row.step, row);
  const lAR: number[] = [], lOH: number[] = [], evals: JointEval[] = [];
  for (const s of [...byStep.keys()].sort((a, b) => a - b)) {
    const row = byStep.get(s)!;
    if (s > 0) { lAR.push(Number(row.lAR)); lOH.push(Number(row.lOH)); }
    if (row.valLoss !== undefined) {
      evals.push({ step: s, rasterBits: Number(row.rasterBits), randomBits: Number(row.randomBits), plannerBits: Number(row.plannerBits), valObjective: Number(row.valObjective), valLoss: Number(row.valLoss), valTop1: Number(row.valTop1), withinDrift: Boolean(row.withinDrift) });
    }
  }
  return { steps, lAR, lOH, evals, before, after, stoppedEarly, ...(stopReason ? { stopReason } : {}) };
}

/** The tuned backbone and planner a Stage 5 run kept (for Stage 6 and the evaluation); a clear error when the stage has not run. */
export function loadJointPair(runDir: string): { backbone: GPT; planner: Planner; backbonePath: string; plannerPath: string } {
  const ckpt = `${runDir}/checkpoints`;
  const bFile = latestCheckpoint(ckpt, 'backbone'), pFile = latestCheckpoint(ckpt, 'best');
  if (!bFile || !pFile) {
    throw new OrderHeadError('no tuned backbone and planner here (Stage 5 has not run)', runDir, 'run notebooks/06_stage5_joint_tuning.ipynb in this profile first');
  }
  const backbone = loadBackbone(bFile.path);
  try {
    const planner = loadPlanner(pFile.path, { backboneFingerprint: fileFingerprint(bFile.path) }).planner;
    return { backbone, planner, backbonePath: bFile.path, plannerPath: pFile.path };
  } catch (err) {
    disposeGPT(backbone);
    throw err;
  }
}
