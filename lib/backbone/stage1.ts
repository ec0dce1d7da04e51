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
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { backendReport } from '../runtime/backend';
import { checkTokenIds, GPTConfig, GPTSize, gptConfig, seqLen } from './config';
import { createGPT, disposeGPT, GPT, gptFromParams, lmLoss, paramShapes, Params, DecodeOrder, tokensInOrder } from './gpt';
import { blockGeometry, BlockGeometry, cellsOfBlockOrder, randomBlockOrder } from '../order';
import { AdamW, accumulateGrads, warmupCosine } from '../runtime/optim';
import { openRun, Run } from '../runtime/run';
import { checkpointName, loadCheckpoint, saveCheckpoint } from '../runtime/checkpoint';
import { OrderHeadError } from '../runtime/errors';
import { rngFromState, rng, Rng, seedFrom } from '../runtime/seed';

export type OrderMode = 'block-rar' | 'raster';

export interface Stage1Config {
  /** `block-rar` (annealed random block orders) or `raster` (the native baseline). */
  orderMode: OrderMode;
  /** Model size from the registry (lib/backbone/config.ts). */
  size: GPTSize;
  /** Block size in tokens (default 2x2: 16 blocks on an 8x8 grid). */
  blockH: number;
  blockW: number;
  /** Optimizer steps. */
  steps: number;
  /** Images per step, run as micro-batches of `microBatch` (wasm heap limit). */
  batch: number;
  microBatch: number;
  /** Peak learning rate, warmup steps, final lr as a fraction of peak. */
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  clipNorm: number;
  /** Fractions of `steps` where r starts falling from 1 and reaches 0 (block-rar only). */
  annealStart: number;
  annealEnd: number;
  /** Probability of replacing the class by the null class (for CFG). */
  classDropout: number;
  /** Save a checkpoint every this many steps (and at the end). */
  checkpointEvery: number;
  seed: number;
}

export const STAGE1_DEFAULTS: Omit<Stage1Config, 'orderMode'> = {
  size: 'small', blockH: 2, blockW: 2, steps: 1500, batch: 64, microBatch: 32,
  lr: 1e-3, warmup: 100, minLrRatio: 0.1, weightDecay: 0.05, clipNorm: 1.0,
  annealStart: 0.5, annealEnd: 0.9, classDropout: 0.1, checkpointEvery: 250, seed: 0,
};

/** The share r of random-order samples at `step`. */
export function randomShare(cfg: Stage1Config, step: number): number {
  if (cfg.orderMode === 'raster') return 0;
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

export interface Stage1Result { run: Run; model: GPT; steps: number; checkpoints: string[] }

const paramNames = (m: GPTConfig) => paramShapes(m).map(([n]) => n);

/**
 * Train (or resume) a Stage 1 backbone in run folder `<root>/<name>`. The run
 * config holds the stage config, the model config and the data fingerprint.
 */
export function trainStage1(root: string, name: string, cfg: Stage1Config, data: TokenData, model: GPTConfig, hooks: Stage1Hooks = {}): Stage1Result {
  const T = seqLen(model);
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
  const run = openRun({ root, stage: 'stage1', name, config: { stage1: cfg, model, data: { n: data.n, tokenizer: data.tokenizer ?? 'unknown' } }, resume: true, backend: tf.getBackend() });
  const m = createGPT(model, cfg.seed);
  const opt = new AdamW(m.params, { lr: cfg.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm });
  let step = 0;
  let r = rng(seedFrom(cfg.seed, 'stage1-data', cfg.orderMode));
  const checkpoints: string[] = [];
  // A failure (bad checkpoint, NaN loss, full disk) must not leak the model and optimizer tensors.
  try {
    const last = run.latestCheckpoint('stage1');
    if (last) {
      const ck = loadCheckpoint(last.path, { expectConfig: model as unknown as Record<string, unknown> });
      for (const [k, v] of Object.entries(ck.weights)) {
        const target = k.startsWith('adam.m.') ? opt.m[k.slice(7)] : k.startsWith('adam.v.') ? opt.v[k.slice(7)] : m.params[k];
        if (target) target.assign(v);
      }
      tf.dispose(Object.values(ck.weights));
      step = ck.step;
      opt.step = Number(ck.extra.optStep ?? step);
      r = rngFromState(Number(ck.extra.rngState));
    }
    const save = () => {
      const tag = `r${randomShare(cfg, step).toFixed(2)}`;
      const path = saveCheckpoint(run.checkpointDir, checkpointName('stage1', step, [tag]), {
        weights: { ...m.params, ...opt.state() }, config: model, step, kind: 'stage1',
        extra: { orderMode: cfg.orderMode, r: randomShare(cfg, step), optStep: opt.step, rngState: r.state() },
      });
      checkpoints.push(path);
    };
    const end = Math.min(cfg.steps, hooks.maxSteps !== undefined ? step + hooks.maxSteps : cfg.steps);
    const nMicro = Math.ceil(cfg.batch / cfg.microBatch);
    while (step < end) {
      const t0 = performance.now();
      const share = randomShare(cfg, step);
      const lr = warmupCosine(step, cfg.steps, cfg.warmup, cfg.lr, cfg.minLrRatio);
      // Draw the whole batch on the host: images, orders, class dropout.
      const micro: OrderBatch[] = [];
      let randomCount = 0;
      for (let i = 0; i < nMicro; i++) {
        const mb = drawOrderBatch(r, data, geo, Math.min(cfg.microBatch, cfg.batch - i * cfg.microBatch), share, cfg.classDropout, model.numClasses);
        micro.push(mb);
        randomCount += mb.randomCount;
      }
      const { grads, loss } = accumulateGrads(m.params, nMicro, (i) => {
        const { order, toks, classes } = micro[i];
        return lmLoss(m, order, tf.tensor2d(toks, [order.B, T], 'int32'), tf.tensor1d(classes, 'int32'));
      });
      if (!Number.isFinite(loss)) {
        tf.dispose(Object.values(grads));
        throw new OrderHeadError(`training loss is ${loss} at step ${step}`, `run ${run.dir}`,
          `lower stage1.lr (now ${cfg.lr}); the last good checkpoint (${run.latestCheckpoint('stage1')?.path ?? 'none yet'}) is untouched`);
      }
      let gradNorm: number;
      try { gradNorm = opt.apply(grads, lr); } finally { tf.dispose(Object.values(grads)); }
      step++;
      const metrics = { loss, lr, r: share, randomShare: randomCount / cfg.batch, gradNorm, ms: performance.now() - t0 };
      run.logMetrics(step, metrics);
      hooks.onStep?.(step, metrics);
      if (step % cfg.checkpointEvery === 0 || step === cfg.steps) save();
    }
  } catch (err) {
    opt.dispose();
    disposeGPT(m);
    throw err;
  }
  opt.dispose();
  return { run, model: m, steps: step, checkpoints };
}

/** One micro-batch of block-RAR training samples, drawn on the host. */
export interface OrderBatch {
  /** The decode order of each sample (block order with raster inside blocks, or token raster). */
  order: DecodeOrder;
  /** [B*T] the samples' tokens in decode order (lmLoss input). */
  toks: Int32Array;
  /** [B] class ids, the null class where class dropout hit. */
  classes: Int32Array;
  /** How many samples got a random block order. */
  randomCount: number;
}

/**
 * Draw B training samples the Stage 1 way: per sample an image (uniform with
 * replacement), class dropout with probability `classDropout`, and with
 * probability `share` (r) a random block order, else token raster. Stage 5's
 * L_AR (lib/planner/joint.ts) draws its batches with this too, at share 1.
 * The RNG calls and their order are part of the resume contract: do not reorder.
 */
export function drawOrderBatch(r: Rng, data: TokenData, geo: BlockGeometry, B: number, share: number, classDropout: number, numClasses: number): OrderBatch {
  const T = geo.numTokens;
  const grids = new Int32Array(B * T), classes = new Int32Array(B), cells = new Int32Array(B * T);
  let randomCount = 0;
  for (let b = 0; b < B; b++) {
    const idx = r.int(data.n);
    grids.set(data.tokens.subarray(idx * T, (idx + 1) * T), b * T);
    classes[b] = r.next() < classDropout ? numClasses : data.labels[idx];
    if (r.next() < share) { cells.set(cellsOfBlockOrder(geo, randomBlockOrder(geo, r)), b * T); randomCount++; }
    else for (let t = 0; t < T; t++) cells[b * T + t] = t;
  }
  const order = { B, T, cells };
  return { order, toks: tokensInOrder(grids, order), classes, randomCount };
}

/** Load a Stage 1 checkpoint as a backbone (model weights only), checking its config. */
export function loadBackbone(path: string, expect?: Partial<GPTConfig>): GPT {
  return loadBackboneWithInfo(path, expect).model;
}

/** As loadBackbone, with the checkpoint's step and random-order share r. */
export function loadBackboneWithInfo(path: string, expect?: Partial<GPTConfig>): { model: GPT; step: number; r: number } {
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
  return { model: gptFromParams(ck.config, params), step: ck.step, r: Number(ck.extra.r ?? Number.NaN) };
}

/** Geometry of the blocks a Stage 1 config trains on. */
export const stage1Geometry = (cfg: Stage1Config, model: GPTConfig): BlockGeometry =>
  blockGeometry({ gridH: model.gridH, gridW: model.gridW, blockH: cfg.blockH, blockW: cfg.blockW });

export { disposeGPT };

export interface ParallelStage1Job {
  name: string;
  cfg: Stage1Config;
  model: GPTConfig;
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
  return Promise.all(jobs.map((job) => new Promise<{ runDir: string; steps: number; checkpoints: string[] }>((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'stage1-worker.js'), {
      workerData: { backend, job: { root, name: job.name, cfg: job.cfg, data, model: job.model, maxSteps: job.maxSteps } },
    });
    w.on('message', (m: { type: string; step?: number; metrics?: Record<string, number>; runDir?: string; steps?: number; checkpoints?: string[]; message?: string }) => {
      if (m.type === 'step') job.onStep?.(m.step!, m.metrics!);
      else if (m.type === 'done') { resolve({ runDir: m.runDir!, steps: m.steps!, checkpoints: m.checkpoints! }); void w.terminate(); }
      else if (m.type === 'error') { reject(new OrderHeadError(m.message!, `stage1 run ${job.name}`, 'see the message')); void w.terminate(); }
    });
    w.on('error', (e) => reject(e));
  })));
}

/**
 * The Stage 1 config of each profile. `default` is sized so that both models
 * train side by side (one per core) in about 10 minutes on our 2-core machine.
 */
export function stage1Config(profile: 'smoke' | 'default' | 'full', orderMode: OrderMode): Stage1Config {
  const base = { ...STAGE1_DEFAULTS, orderMode };
  switch (profile) {
    case 'smoke': return { ...base, size: 'tiny', steps: 6, batch: 8, microBatch: 8, warmup: 2, checkpointEvery: 2 };
    case 'default': return { ...base, steps: 600, warmup: 50, checkpointEvery: 100 };
    case 'full': return { ...base, steps: 3000, warmup: 200, checkpointEvery: 250 };
  }
}
