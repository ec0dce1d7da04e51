/**
 * Curriculum Stage 1: the order-robust backbone (block-RAR) and its raster-only
 * baseline (METHOD.md §6.1).
 *
 * Each training sample is decoded in a random *block* order (raster inside each
 * block) with probability r(step), else in token raster order:
 *
 *   r(s) = 1                                   for s <  annealStart · steps
 *        = 1 − (s − start) / (end − start)     between
 *        = 0                                   for s >= annealEnd · steps
 *
 * The raster baseline is the same model, budget and data with r ≡ 0. Checkpoints
 * are saved every `checkpointEvery` steps — many of them in the random phase,
 * named with step and r — and at the end; training resumes from the newest.
 *
 * The matched-budget contest (METHOD.md §6): the block-rar run is the random
 * phase (steps < annealStart · steps, r = 1) followed by the continuation
 * annealed to raster; its step-N/2 checkpoint is C. The other continuations
 * are runs started `from` C (weights, AdamW moments, step and data RNG all
 * copied), differing only in what the non-random samples decode in
 * (`annealTo`): token raster, the planner's order of each image (a
 * TargetOrderTable), or one fixed block order; 'kept random' is annealStart =
 * annealEnd = 1 (r ≡ 1). Because the draws of images, class dropout and
 * random orders do not depend on the target order, every annealed arm sees
 * the same images in the same steps: the arms are paired by construction.
 * Each checkpoint records its training budget (training-budget.ts).
 *
 * The regime (regime.ts): each run trains on the K unique images of its
 * config (`uniqueImages`) and is selected on the fixed validation images:
 * every `evalEvery` steps the model's validation NLL, in the order the arm is
 * evaluated in (selectionOrder), decides the `best-step*` file, and that file
 * is the arm's reported backbone (selectedCheckpoint). The test split is never
 * read here.
 *
 * Paired data: the images and class dropouts of step s come from a stream
 * seeded by (seed, s) alone, the order coins and random orders from a second
 * one, so every arm of one seed (raster-only included) sees the same images
 * in the same steps, and a resumed run needs no RNG state.
 *
 * One training step (trainStage1's loop) is drawStage1Batch → stage1Loss →
 * guarded AdamW update (stage1Optimizer) → validation NLL every evalEvery
 * steps (keepBest) → metrics row → checkpoint; each piece is exported, so a
 * notebook can show one step inline.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { backendReport } from '../runtime/backend';
import { checkTokenIds, GPTConfig, GPTSize, gptConfig, seqLen } from './config';
import { createGPT, disposeGPT, GPT, gptFromParams, lmLoss, paramShapes, Params, DecodeOrder, tokensInOrder } from './gpt';
import { blockGeometry, BlockGeometry, cellsOfBlockOrder, randomBlockOrder } from '../order';
import { accumulateGrads, AdamW, OptimConfig, scheduledLr, validateOptimConfig } from '../runtime/optim';
import { resumeTraining } from '../runtime/train-loop';
import { profileConfig, ProfileName } from '../runtime/profile';
import { openRun, Run } from '../runtime/run';
import { loadCheckpoint } from '../runtime/checkpoint';
import { ensure, OrderHeadError } from '../runtime/errors';
import { rng, Rng, seedFrom } from '../runtime/seed';
import { validateBlockOrder } from '../order';
import { fileFingerprint } from '../runtime/checkpoint';
import { writeFileAtomic } from '../runtime/atomic';
import { addBudget, budgetFromExtra, runBudget, TrainingBudget } from './training-budget';
import { imagesOf, Regime, regimeImages } from './regime';
import { exactNll } from './nll';
import { checkpointName, latestCheckpoint, saveCheckpoint } from '../runtime/checkpoint';

export type OrderMode = 'block-rar' | 'raster';

/** What the non-random samples of a block-rar run decode in: token raster, each image's planner order, or one fixed block order. */
export const ANNEAL_TARGETS = ['raster', 'planner', 'fixed'] as const;
export type AnnealTarget = (typeof ANNEAL_TARGETS)[number];

export interface Stage1Config extends OptimConfig, Regime {
  /** `block-rar` (annealed random block orders) or `raster` (the native baseline). */
  orderMode: OrderMode;
  /** Model size from the registry (lib/backbone/config.ts). */
  size: GPTSize;
  /** Block size in tokens (default 2x2: 16 blocks on an 8x8 grid). */
  blockH: number;
  blockW: number;
  /** Images per step run as passes of at most this many (wasm heap limit), gradients summed. */
  microBatch: number;
  /** Fractions of `steps` where r starts falling from 1 and reaches 0 (block-rar only; both 1: r ≡ 1, 'kept random'). */
  annealStart: number;
  annealEnd: number;
  /** The order the non-random samples decode in (block-rar only): 'raster' (token raster), 'planner' (TokenData.targetOrders), 'fixed' (fixedOrder). */
  annealTo: AnnealTarget;
  /** The block order of annealTo 'fixed' (a permutation of the blocks); null otherwise. */
  fixedOrder: number[] | null;
  /** Probability of replacing the class by the null class (for CFG). */
  classDropout: number;
  /** Save a resume checkpoint every this many steps (and at the end). Validation (selection) runs every `evalEvery` steps. */
  checkpointEvery: number;
}

export const STAGE1_DEFAULTS: Omit<Stage1Config, 'orderMode'> = {
  size: 'small', blockH: 2, blockW: 2, steps: 1500, batch: 64, microBatch: 32,
  lr: 1e-3, warmup: 100, minLrRatio: 0.1, weightDecay: 0.05, betas: [0.9, 0.95], clipNorm: 1.0, evalEvery: 50,
  annealStart: 0.5, annealEnd: 0.9, annealTo: 'raster', fixedOrder: null, classDropout: 0.1, checkpointEvery: 250, seed: 0,
  uniqueImages: 'all', validationImages: 512, plannerImages: 2048,
};

/** The share r of random-order samples at `step`. */
export function randomShare(cfg: Stage1Config, step: number): number {
  if (cfg.orderMode === 'raster') return 0;
  if (cfg.annealStart >= 1) return 1; // kept random: r never falls (its last checkpoint is tagged r1.00 too)
  const start = cfg.annealStart * cfg.steps, end = cfg.annealEnd * cfg.steps;
  if (step < start) return 1;
  if (step >= end) return 0;
  return 1 - (step - start) / (end - start);
}

/** Token data for training: N grids of T tokens (indexed by cell) and labels. */
export interface TokenData {
  tokens: Int32Array;
  labels: Int32Array;
  n: number;
  /** Fingerprint of the tokenizer that made the tokens: a run never mixes two tokenizers. */
  tokenizer?: string;
  /** Per-image block orders for annealTo 'planner' (the planner-order cache). */
  targetOrders?: TargetOrderTable;
}

/**
 * Block orders of some images of a split (lib/planner/planner-orders.ts builds
 * them from a planner): `blockOrders[k*nb .. (k+1)*nb)` is the order of image
 * `image[k]` (ascending image indices).
 */
export interface TargetOrderTable {
  image: Int32Array;
  blockOrders: Int32Array;
  numBlocks: number;
  /** What made the orders (planner weights, backbone file, token cache): a run records it. */
  fingerprint: string;
  /** The file it was read from, for messages. */
  file: string;
}

/** Cells of each non-random sample's target order: null = token raster. */
export type TargetCells = (image: number) => Int32Array | null;

/** The target order of a config on `data`, checked before any run folder is made. */
export function targetCells(cfg: Stage1Config, data: TokenData, geo: BlockGeometry, where: string): TargetCells {
  if (cfg.orderMode === 'raster' || cfg.annealTo === 'raster') return () => null;
  if (cfg.annealTo === 'fixed') {
    const cells = cellsOfBlockOrder(geo, validateBlockOrder(geo, cfg.fixedOrder ?? [], `${where} (stage1.fixedOrder)`));
    return () => cells;
  }
  const t = data.targetOrders;
  if (!t) {
    throw new OrderHeadError('annealTo is \'planner\' but the token data carries no planner orders', `${where} (data.targetOrders)`,
      'build the planner-order cache with notebooks/06_stage5_joint_tuning.ipynb (buildPlannerOrders) and pass it as targetOrders');
  }
  return targetOrderCells(t, geo);
}

/** Each image's cells in its order from `t`; an image the table lacks is an error naming the cache file. */
export function targetOrderCells(t: TargetOrderTable, geo: BlockGeometry): TargetCells {
  ensure(t.numBlocks === geo.numBlocks && t.blockOrders.length === t.image.length * geo.numBlocks,
    `the planner-order cache holds orders of ${t.numBlocks} blocks, the run trains on ${geo.numBlocks}`, t.file, 'rebuild the cache with the planner of this block grid');
  const row = new Map<number, number>();
  t.image.forEach((img, k) => row.set(img, k));
  const memo = new Map<number, Int32Array>();
  return (image) => {
    let cells = memo.get(image);
    if (!cells) {
      const k = row.get(image);
      if (k === undefined) {
        throw new OrderHeadError(`the planner-order cache has no order for image ${image} of the train split (a training or validation image of this run)`, t.file,
          'rebuild the cache for the images this run draws (plannerOrderImages lists them): the cache was made for another run or schedule');
      }
      cells = cellsOfBlockOrder(geo, Array.from(t.blockOrders.subarray(k * geo.numBlocks, (k + 1) * geo.numBlocks)));
      memo.set(image, cells);
    }
    return cells;
  };
}

/** The GPT config of a Stage 1 run on a token grid. */
export function stage1ModelConfig(cfg: Stage1Config, grid: { h: number; w: number }, vocabSize: number, numClasses: number): GPTConfig {
  return gptConfig(cfg.size, { gridH: grid.h, gridW: grid.w, vocabSize, numClasses });
}

export interface Stage1Hooks {
  /** Called after every step (progress displays). */
  onStep?: (step: number, metrics: Record<string, number>) => void;
  /** Stop after this many steps in this call (to test resume); default: run to the end. */
  maxSteps?: number;
}

export interface Stage1Result {
  run: Run; model: GPT; steps: number;
  /** Every resume checkpoint of the run, oldest first: those of earlier, killed calls too (a rerun after training ended writes none). */
  checkpoints: string[];
}

const paramNames = (m: GPTConfig) => paramShapes(m).map(([n]) => n);

/**
 * Train (or resume) a Stage 1 backbone in run folder `<root>/<name>`. The run
 * config holds the stage config, the model config and the data fingerprint.
 */
export function trainStage1(root: string, name: string, cfg: Stage1Config, data: TokenData, model: GPTConfig, hooks: Stage1Hooks = {}, from?: string): Stage1Result {
  const T = seqLen(model);
  validateStage1Config(cfg);
  // Every check on the data comes before openRun, so bad input leaves no run folder behind.
  if (!(Number.isInteger(data.n) && data.n >= 1)) {
    throw new OrderHeadError(`token data holds no images (n = ${data.n})`, 'stage1 token data',
      'pass the token cache of a tokenized dataset (loadTokenCache(tokenizerRunDir).train), with at least one image');
  }
  if (data.tokens.length !== data.n * T) {
    throw new OrderHeadError(`token data holds ${data.tokens.length} tokens for ${data.n} images; the model grid needs ${T} per image`,
      'stage1 token data', 'tokenize with the tokenizer whose grid matches the backbone config');
  }
  if (data.labels.length !== data.n) {
    throw new OrderHeadError(`token data holds ${data.labels.length} labels for ${data.n} images`, 'stage1 token data',
      'pass the labels of the same split as the tokens (cache.train.labels with cache.train.tokens)');
  }
  checkTokenIds(model, data.tokens, data.labels, 'stage1 token data');
  const geo = stage1Geometry(cfg, model);
  const images = regimeImages(data.n, cfg, cfg.batch, 'stage1');
  const target = targetCells(cfg, data, geo, `stage1 run ${name}`);
  const validation = selectionCells(cfg, data, geo, target, images.validation);
  const start = from === undefined ? undefined : continuationStart(from, cfg, model);
  const run = openRun({ root, stage: 'stage1', name, backend: tf.getBackend(), resume: true, config: {
    stage1: cfg, model, data: { n: data.n, uniqueImages: images.k, tokenizer: data.tokenizer ?? 'unknown', ...(data.targetOrders && cfg.annealTo === 'planner' ? { targetOrders: data.targetOrders.fingerprint } : {}) },
    ...(start ? { from: { checkpoint: start.fingerprint, step: start.step } } : {}),
  } });
  // A continuation starts from a copy of C (written atomically): the loop resumes from it as from its own checkpoint.
  if (start && !run.latestCheckpoint('stage1')) {
    fs.mkdirSync(run.checkpointDir, { recursive: true });
    writeFileAtomic(path.join(run.checkpointDir, path.basename(from!)), fs.readFileSync(from!));
  }
  const m = createGPT(model, cfg.seed);
  let base: TrainingBudget | undefined = start?.budget;
  const budgetAt = (step: number) => {
    const fromStep = base ? base.steps : 0;
    const own = runBudget(`stage1 ${name}`, fromStep, step, cfg.batch, T, images.k);
    return base ? addBudget(base, own) : own;
  };
  try {
    const t = resumeTraining({
      run, stage: 'stage1', configName: 'stage1', optim: cfg, optimizer: stage1Optimizer(m, cfg), checkpointConfig: model,
      checkpointEvery: cfg.checkpointEvery, maxSteps: hooks.maxSteps,
      restore: (extra) => { if (extra.from) base = extra.from as TrainingBudget; },
    });
    // C's copy carries the block-rar run's best validation NLL, read in raster order: a continuation selects among its own checkpoints.
    if (start && t.step === start.step) t.best = undefined;
    try {
      for (let step = t.step; step < t.until; step++) {
        const t0 = performance.now();
        const lr = scheduledLr(cfg, step);
        const batch = drawStage1Batch(stage1Draws(cfg.seed, step), data, images.train, geo, cfg, step, model.numClasses, target);
        const { loss, grads } = stage1Loss(m, batch);
        const gradNorm = t.update(step, loss, grads, lr);
        const s = step + 1;
        const row: Record<string, number> = { loss, lr, r: batch.share, randomShare: batch.randomCount / cfg.batch, gradNorm, ms: performance.now() - t0 };
        if (t.isEvalStep(s)) {
          row.validationBits = exactNll(m, validation.grids, validation.classes, validation.cells).bitsPerToken;
          t.keepBest(s, row.validationBits, () => [{ prefix: 'best', file: saveCheckpoint(run.checkpointDir, checkpointName('best', s, [`r${randomShare(cfg, s).toFixed(2)}`]), {
            weights: m.params, config: model, step: s, kind: 'stage1',
            // The allowance, not the steps used: every arm of the contest may use N steps, and selection picks where.
            extra: { orderMode: cfg.orderMode, annealTo: cfg.annealTo, r: randomShare(cfg, s), budget: budgetAt(cfg.steps),
              selected: { step: s, validationBits: row.validationBits, validationImages: images.validation.length, order: validation.order } },
          }) }]);
        }
        run.logMetrics(s, row);
        if (t.isCheckpointStep(s)) {
          const rs = randomShare(cfg, s);
          t.checkpoint(s, { extra: { orderMode: cfg.orderMode, annealTo: cfg.annealTo, r: rs, budget: budgetAt(s), ...(base ? { from: base } : {}) }, tags: [`r${rs.toFixed(2)}`] });
        }
        hooks.onStep?.(s, row);
      }
    } finally {
      t.dispose();
    }
    return { run, model: m, steps: t.step, checkpoints: run.checkpoints('stage1').map((c) => c.path) };
  } catch (err) {
    // A failure (bad checkpoint, NaN loss, full disk) must not leak the model tensors.
    disposeGPT(m);
    throw err;
  }
}

/**
 * The draws of Stage 1 step `step` of training seed `seed`: `images` (which
 * image, class dropout) and `orders` (random or target, the random order).
 * Seeded by (seed, step) alone, so arms of one seed draw the same images and
 * dropouts whatever their order, and a resume needs no RNG state.
 */
export function stage1Draws(seed: number, step: number): Stage1Draws {
  return { images: rng(seedFrom(seed, 'stage1-images', step)), orders: rng(seedFrom(seed, 'stage1-orders', step)) };
}
export interface Stage1Draws { images: Rng; orders: Rng }

/** The order an arm is read in, hence selected in: random block orders for kept random (r stays 1), else its target order. */
export type SelectionOrder = 'token raster' | 'random blocks' | 'fixed' | 'planner';

export function selectionOrder(cfg: Stage1Config): SelectionOrder {
  if (cfg.orderMode === 'raster' || (cfg.annealTo === 'raster' && randomShare(cfg, cfg.steps) < 1)) return 'token raster';
  if (randomShare(cfg, cfg.steps) === 1) return 'random blocks';
  return cfg.annealTo === 'fixed' ? 'fixed' : 'planner';
}

/** The validation images of a run, in the order its selection reads them. */
export interface SelectionCells { grids: Int32Array; classes: Int32Array; cells: Int32Array; order: SelectionOrder }

/**
 * Tokens, classes (never dropped) and decode cells of the validation images
 * in the arm's selection order. Random block orders are seeded by the image
 * alone, so every arm, seed and checkpoint is scored on the same orders; a
 * planner arm needs the planner's order of every validation image.
 */
export function selectionCells(cfg: Stage1Config, data: TokenData, geo: BlockGeometry, target: TargetCells, validation: Int32Array): SelectionCells {
  const T = geo.numTokens;
  const order = selectionOrder(cfg);
  const { tokens: grids, labels: classes } = imagesOf(data, validation);
  const cells = new Int32Array(validation.length * T);
  validation.forEach((img, i) => {
    const own = order === 'random blocks' ? cellsOfBlockOrder(geo, randomBlockOrder(geo, seedFrom('validation-order', img))) : target(img);
    if (own) cells.set(own, i * T);
    else for (let t = 0; t < T; t++) cells[i * T + t] = t;
  });
  return { grids, classes, cells, order };
}

/**
 * The checkpoint a Stage 1 run reports: its best validation NLL among the
 * checkpoints it scored (every evalEvery steps, at most N steps in). The file
 * records the selected step and its validation NLL (`extra.selected`).
 */
export function selectedCheckpoint(runDir: string, producedBy = 'notebooks/02_stage1_backbone.ipynb'): string {
  const best = latestCheckpoint(path.join(runDir, 'checkpoints'), 'best');
  if (!best) {
    throw new OrderHeadError('no validation-selected checkpoint here (no best-step*.safetensors)', runDir,
      `run ${producedBy} in this profile first (a Stage 1 run scores the validation images every evalEvery steps)`);
  }
  return best.path;
}

/** AdamW over a Stage 1 model's weights with the config's betas, weight decay and clipping; `opt.apply(grads, scheduledLr(cfg, step))` is one update. */
export function stage1Optimizer(m: GPT, cfg: Stage1Config): AdamW {
  return AdamW.fromConfig(m.params, cfg);
}

/** One Stage 1 batch, drawn on the host: its micro-batches, the share r of step `step`, and how many samples got a random order. */
export interface Stage1Batch {
  micro: OrderBatch[];
  /** r(step): the probability of a random block order. */
  share: number;
  randomCount: number;
}

/** Sizes of the micro-batches one step of `batch` examples runs as: `microBatch` each, the last one the rest. */
export const microBatchSizes = (batch: number, microBatch: number): number[] =>
  Array.from({ length: Math.ceil(batch / microBatch) }, (_, i) => Math.min(microBatch, batch - i * microBatch));

/**
 * Draw the batch of Stage 1 step `step` (0-based) from `draws`
 * (stage1Draws(seed, step)): per sample one of the `images` (the K training
 * images), its class (or the null class) and its decode order, with a random
 * block order at probability r(step), else the target order.
 */
export function drawStage1Batch(draws: Stage1Draws, data: TokenData, images: Int32Array, geo: BlockGeometry, cfg: Stage1Config, step: number, numClasses: number,
  target: TargetCells = () => null): Stage1Batch {
  const share = randomShare(cfg, step);
  const micro = microBatchSizes(cfg.batch, cfg.microBatch).map((B) => drawOrderBatch(draws, data, images, geo, B, share, cfg.classDropout, numClasses, target));
  return { micro, share, randomCount: micro.reduce((n, mb) => n + mb.randomCount, 0) };
}

/** The next-token loss of one micro-batch in its samples' decode orders (lmLoss on the batch's tokens and classes). */
export function orderBatchLoss(m: GPT, b: OrderBatch): tf.Scalar {
  return lmLoss(m, b.order, tf.tensor2d(b.toks, [b.order.B, b.order.T], 'int32'), tf.tensor1d(b.classes, 'int32'));
}

/** Forward and backward of one Stage 1 step: the mean loss over the batch and its gradients (micro-batches summed; the caller disposes them). */
export function stage1Loss(m: GPT, batch: Stage1Batch): { loss: number; grads: Record<string, tf.Tensor> } {
  return accumulateGrads(m.params, batch.micro.length, (i) => orderBatchLoss(m, batch.micro[i]));
}

/** One micro-batch of block-RAR training samples, drawn on the host. */
export interface OrderBatch {
  /** The decode order of each sample (block order with raster inside blocks, or token raster). */
  order: DecodeOrder;
  /** [B*T] the samples' tokens in decode order (lmLoss input). */
  toks: Int32Array;
  /** [B] class ids, the null class where class dropout hit. */
  classes: Int32Array;
  /** [B] the training image of each sample. */
  image: Int32Array;
  /** How many samples got a random block order. */
  randomCount: number;
}

/** One training sample's draws: the image, whether its class is dropped, and its random block order (null: the target order). */
interface SampleDraw { image: number; dropClass: boolean; randomOrder: number[] | null }

/**
 * The RNG calls of one sample, in their fixed order: image and class dropout
 * from `draws.images`, random-or-target and the random order from
 * `draws.orders`. The image stream never depends on the order, which is what
 * pairs the arms of one seed.
 */
function drawSample(draws: Stage1Draws, images: Int32Array, geo: BlockGeometry, share: number, classDropout: number): SampleDraw {
  const image = images[draws.images.int(images.length)];
  const dropClass = draws.images.next() < classDropout;
  const randomOrder = draws.orders.next() < share ? randomBlockOrder(geo, draws.orders) : null;
  return { image, dropClass, randomOrder };
}

/**
 * Draw B training samples the Stage 1 way: per sample one of `images`
 * (uniform with replacement), class dropout with probability
 * `classDropout`, and with probability `share` (r) a random block order,
 * else the target order (`target`; default token raster). Stage 5's L_AR
 * (lib/planner/joint.ts) draws its batches with this too.
 */
export function drawOrderBatch(draws: Stage1Draws, data: TokenData, images: Int32Array, geo: BlockGeometry, B: number, share: number, classDropout: number, numClasses: number,
  target: TargetCells = () => null): OrderBatch {
  const T = geo.numTokens;
  const grids = new Int32Array(B * T), classes = new Int32Array(B), cells = new Int32Array(B * T), image = new Int32Array(B);
  let randomCount = 0;
  for (let b = 0; b < B; b++) {
    const d = drawSample(draws, images, geo, share, classDropout);
    image[b] = d.image;
    grids.set(data.tokens.subarray(d.image * T, (d.image + 1) * T), b * T);
    classes[b] = d.dropClass ? numClasses : data.labels[d.image];
    const own = d.randomOrder ? null : target(d.image);
    if (d.randomOrder) { cells.set(cellsOfBlockOrder(geo, d.randomOrder), b * T); randomCount++; }
    else if (own) cells.set(own, b * T);
    else for (let t = 0; t < T; t++) cells[b * T + t] = t;
  }
  const order = { B, T, cells };
  return { order, toks: tokensInOrder(grids, order), classes, image, randomCount };
}

/** The checks of a Stage 1 config beyond the optimiser's: the schedule and the anneal target. */
export function validateStage1Config(cfg: Stage1Config): void {
  validateOptimConfig(cfg, 'stage1');
  ensure(Number.isInteger(cfg.evalEvery) && cfg.evalEvery >= 1, `evalEvery ${cfg.evalEvery}`, 'stage1.evalEvery',
    'use a positive number of steps: every arm is selected on its validation NLL, scored every evalEvery steps');
  ensure(cfg.annealStart >= 0 && cfg.annealStart <= cfg.annealEnd && cfg.annealEnd <= 1, `annealStart ${cfg.annealStart}, annealEnd ${cfg.annealEnd}`,
    'stage1.annealStart / annealEnd', 'use 0 <= annealStart <= annealEnd <= 1 (both 1: r stays 1, the kept-random arm)');
  ensure((ANNEAL_TARGETS as readonly string[]).includes(cfg.annealTo), `annealTo '${cfg.annealTo}'`, 'stage1.annealTo', `use one of ${ANNEAL_TARGETS.join(', ')}`);
  ensure(cfg.annealTo === 'fixed' || cfg.fixedOrder === null || cfg.fixedOrder === undefined, `fixedOrder is set but annealTo is '${cfg.annealTo}'`,
    'stage1.fixedOrder', "set annealTo 'fixed' to train on it, or leave fixedOrder null");
}

/** Where a continuation starts: checkpoint C's step, file fingerprint and budget, checked against the arm's config. */
function continuationStart(file: string, cfg: Stage1Config, model: GPTConfig): { step: number; fingerprint: string; budget: TrainingBudget } {
  const ck = loadCheckpoint<GPTConfig>(file, { expectConfig: model as unknown as Record<string, unknown> });
  tf.dispose(Object.values(ck.weights));
  const budget = budgetFromExtra(ck.extra, file);
  const half = Math.round(cfg.annealStart * cfg.steps);
  ensure(ck.step <= half, `checkpoint C is at step ${ck.step}, past where this arm's anneal starts (${half})`,
    `${file} (start of the continuation)`, 'start continuations from the random-phase checkpoint at annealStart · steps (randomPhaseCheckpoint of the block-rar run)');
  ensure(Number(ck.extra.r) === 1, `checkpoint C has r = ${String(ck.extra.r)}, not a random-phase (r = 1) checkpoint`, file,
    'start continuations from randomPhaseCheckpoint(block-rar run)');
  return { step: ck.step, fingerprint: fileFingerprint(file), budget };
}

/**
 * The images whose target order a planner-annealed continuation from C
 * reads: every non-random sample of steps C.step .. cfg.steps − 1 (found by
 * replaying the seed's draws) and the validation images its selection scores
 * in the planner's order. The planner-order cache needs exactly these.
 * Ascending raw train-split indices.
 */
export function plannerOrderImages(cfg: Stage1Config, n: number, geo: BlockGeometry, from: string): Int32Array {
  const ck = loadCheckpoint(from);
  tf.dispose(Object.values(ck.weights));
  const images = regimeImages(n, cfg, cfg.batch, 'stage1');
  const seen = new Uint8Array(n);
  for (const img of images.validation) seen[img] = 1;
  for (let step = ck.step; step < cfg.steps; step++) {
    const share = randomShare(cfg, step), draws = stage1Draws(cfg.seed, step);
    for (const B of microBatchSizes(cfg.batch, cfg.microBatch)) {
      for (let b = 0; b < B; b++) { const d = drawSample(draws, images.train, geo, share, cfg.classDropout); if (!d.randomOrder) seen[d.image] = 1; }
    }
  }
  const out: number[] = [];
  seen.forEach((v, i) => { if (v) out.push(i); });
  return Int32Array.from(out);
}

/** Load a Stage 1 checkpoint as a backbone (model weights only), checking its config. */
export function loadBackbone(path: string, expect?: Partial<GPTConfig>): GPT {
  return loadBackboneWithInfo(path, expect).model;
}

/** As loadBackbone, with the checkpoint's step and random-order share r. */
export function loadBackboneWithInfo(path: string, expect?: Partial<GPTConfig>): { model: GPT; step: number; r: number; budget?: TrainingBudget; selected?: Selection } {
  const ck = loadCheckpoint<GPTConfig>(path, expect ? { expectConfig: expect as Record<string, unknown>, compareKeys: Object.keys(expect) } : {});
  // Check every weight against the stored config before making variables, so a damaged file is named and leaks nothing.
  for (const [k, shape] of paramShapes(ck.config)) {
    const w = ck.weights[k];
    if (!w || !tf.util.arraysEqual(w.shape, shape)) {
      tf.dispose(Object.values(ck.weights));
      throw new OrderHeadError(w ? `weight '${k}' has shape [${w.shape}], its config needs [${shape}]` : `checkpoint lacks weight ${k}`, path,
        'the file is damaged or was not written by trainStage1: use another stage1 checkpoint of the run');
    }
  }
  const params: Params = {};
  for (const k of paramNames(ck.config)) params[k] = tf.variable(ck.weights[k], true); // copies
  tf.dispose(Object.values(ck.weights));
  const budget = ck.extra.budget as TrainingBudget | undefined;
  const model = gptFromParams(ck.config, params);
  if (budget) model.budget = budget;
  const selected = ck.extra.selected as Selection | undefined;
  if (selected) model.selected = selected;
  return { model, step: ck.step, r: Number(ck.extra.r ?? Number.NaN), budget, selected };
}

/** What a validation-selected checkpoint records about its selection. */
export interface Selection { step: number; validationBits: number; validationImages: number; order: SelectionOrder }

/** Geometry of the blocks a Stage 1 config trains on. */
export const stage1Geometry = (cfg: Stage1Config, model: GPTConfig): BlockGeometry =>
  blockGeometry({ gridH: model.gridH, gridW: model.gridW, blockH: cfg.blockH, blockW: cfg.blockW });

export { disposeGPT };

export interface ParallelStage1Job {
  name: string;
  cfg: Stage1Config;
  model: GPTConfig;
  /** Checkpoint C a continuation starts from (undefined: from scratch). */
  from?: string;
  /** The job's own token data (default: the shared `data`), e.g. with planner orders. */
  data?: TokenData;
  /** Stop after this many steps in this call (resume tests). */
  maxSteps?: number;
  onStep?: (step: number, metrics: Record<string, number>) => void;
}

/**
 * Train several Stage 1 runs at once, each in its own worker thread (wasm is
 * single-threaded: two runs use both cores). Resolves with each run's folder,
 * steps and checkpoints, in job order; rejects with the first worker's error.
 */
export async function trainStage1Parallel(root: string, data: TokenData, jobs: ParallelStage1Job[]):
  Promise<{ runDir: string; steps: number; checkpoints: string[] }[]> {
  const backend = backendReport()?.kind ?? 'auto';
  const workers: Worker[] = [];
  const runArm = (job: ParallelStage1Job) => new Promise<{ runDir: string; steps: number; checkpoints: string[] }>((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'stage1-worker.js'), {
      workerData: { backend, job: { root, name: job.name, cfg: job.cfg, data: job.data ?? data, model: job.model, maxSteps: job.maxSteps, from: job.from } },
    });
    workers.push(w);
    const where = `stage1 run ${job.name} (worker thread)`;
    const resume = 'run the stage again: it resumes from the last checkpoint of the run, which a failed step never touches';
    let settled = false;
    const fail = (err: OrderHeadError) => { if (!settled) { settled = true; reject(err); } };
    w.on('message', (m: { type: string; step?: number; metrics?: Record<string, number>; runDir?: string; steps?: number; checkpoints?: string[]; message?: string }) => {
      if (m.type === 'step') job.onStep?.(m.step!, m.metrics!);
      else if (m.type === 'done') { settled = true; resolve({ runDir: m.runDir!, steps: m.steps!, checkpoints: m.checkpoints! }); void w.terminate(); }
      else if (m.type === 'error') { fail(new OrderHeadError(m.message!, where, `see the message; ${resume}`)); void w.terminate(); }
    });
    w.on('error', (e) => fail(new OrderHeadError(`the worker thread failed: ${e.message}`, where, resume)));
    w.on('exit', (code) => fail(new OrderHeadError(`the worker thread exited (code ${code}) before finishing`, where, resume)));
  });
  // One arm failing stops the others: their last checkpoints stay, and a rerun resumes every arm.
  return Promise.all(jobs.map((job) => runArm(job).catch((err) => { for (const w of workers) void w.terminate(); throw err; })));
}

/**
 * The training seeds of each profile's contest: every headline arm is trained
 * once per seed (arms of one seed draw the same images, stage1Draws), and the
 * headline's intervals resample seeds and test images together. Seed 0 is
 * the primary: its checkpoint C is the backbone the oracle and the planner are
 * built on. Where seeds and model sizes compete for the default's time, seeds
 * win: one seed cannot show the variation between training runs.
 */
export const STAGE1_SEEDS: Readonly<Record<ProfileName, readonly number[]>> = { smoke: [0, 1], default: [0, 1], full: [0, 1, 2] };

/** The profile's training seeds, or `override`; a seed given twice, or none, is an error. */
export function trainingSeeds(profile: ProfileName, override?: readonly number[]): number[] {
  const seeds = [...(override ?? STAGE1_SEEDS[profile])];
  ensure(seeds.length >= 1 && seeds.every((s) => Number.isInteger(s) && s >= 0), `seeds [${seeds.join(', ')}]`, 'stage1 seeds',
    'give at least one whole-number seed, e.g. [0, 1]');
  const twice = seeds.find((s, i) => seeds.indexOf(s) !== i);
  ensure(twice === undefined, `seed ${twice} is given twice in [${seeds.join(', ')}]`, 'stage1 seeds',
    'give each training seed once: a repeated seed trains the same run twice and would count one run as two in the intervals');
  return seeds;
}

/** The continuations from checkpoint C besides the block-rar run's own (annealed to raster): METHOD.md §6. */
export const CONTINUATION_ARMS = ['kept-random', 'annealed-planner', 'annealed-fixed'] as const;
export type ContinuationArm = (typeof CONTINUATION_ARMS)[number];

/**
 * The config of a continuation arm: the block-rar config of the profile
 * (same steps N, batch, schedule, seed) with what differs: kept random
 * (annealStart = annealEnd = 1, so r ≡ 1), or the anneal target.
 */
export function continuationConfig(profile: ProfileName, arm: ContinuationArm, fixedOrder?: number[], overrides: Partial<Stage1Config> = {}): Stage1Config {
  const by: Record<ContinuationArm, Partial<Stage1Config>> = {
    'kept-random': { annealStart: 1, annealEnd: 1 },
    'annealed-planner': { annealTo: 'planner' },
    'annealed-fixed': { annealTo: 'fixed', fixedOrder: fixedOrder ?? null },
  };
  ensure(arm !== 'annealed-fixed' || fixedOrder !== undefined, 'the fixed-order arm needs its order', 'continuationConfig(fixedOrder)',
    'pass the block order, e.g. averageOrder(plannerOrders).order');
  return stage1Config(profile, 'block-rar', { ...by[arm], ...overrides });
}

/**
 * The Stage 1 config of each profile. `default`'s N = 300 (with 2 seeds, 18 min
 * of the default main job's 79.5, README) has its checkpoints every 75 steps,
 * C at N/2 = 150 included.
 */
export function stage1Config(profile: ProfileName, orderMode: OrderMode, overrides: Partial<Stage1Config> = {}): Stage1Config {
  return profileConfig<Stage1Config>({ ...STAGE1_DEFAULTS, orderMode }, {
    smoke: { size: 'tiny', steps: 8, batch: 8, microBatch: 8, warmup: 2, checkpointEvery: 2, evalEvery: 2, validationImages: 32, plannerImages: 16 },
    // K = 1,024: the crossover study's choice on validation at N = 300 (regimeChoice, docs/results/README.md).
    default: { steps: 300, warmup: 50, checkpointEvery: 75, evalEvery: 25, uniqueImages: 1024 },
    full: { steps: 3000, warmup: 200, checkpointEvery: 250, evalEvery: 100, validationImages: 1000, plannerImages: 4096 },
  }, profile, overrides, validateStage1Config);
}
