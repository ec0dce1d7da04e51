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
import { accumulateGrads, OptimConfig, validateOptimConfig } from '../runtime/optim';
import { runTraining } from '../runtime/train-loop';
import { profileConfig, ProfileName } from '../runtime/profile';
import { openRun, Run } from '../runtime/run';
import { loadCheckpoint } from '../runtime/checkpoint';
import { OrderHeadError } from '../runtime/errors';
import { rngFromState, rng, Rng, seedFrom } from '../runtime/seed';

export type OrderMode = 'block-rar' | 'raster';

export interface Stage1Config extends OptimConfig {
  /** `block-rar` (annealed random block orders) or `raster` (the native baseline). */
  orderMode: OrderMode;
  /** Model size from the registry (lib/backbone/config.ts). */
  size: GPTSize;
  /** Block size in tokens (default 2x2: 16 blocks on an 8x8 grid). */
  blockH: number;
  blockW: number;
  /** Images per step run as passes of at most this many (wasm heap limit), gradients summed. */
  microBatch: number;
  /** Fractions of `steps` where r starts falling from 1 and reaches 0 (block-rar only). */
  annealStart: number;
  annealEnd: number;
  /** Probability of replacing the class by the null class (for CFG). */
  classDropout: number;
  /**
   * Save a checkpoint every this many steps (and at the end). Stage 1 has no
   * evaluation inside the loop (evalEvery 0): notebook 02 scores every
   * checkpoint's exact NLL afterwards.
   */
  checkpointEvery: number;
}

export const STAGE1_DEFAULTS: Omit<Stage1Config, 'orderMode'> = {
  size: 'small', blockH: 2, blockW: 2, steps: 1500, batch: 64, microBatch: 32,
  lr: 1e-3, warmup: 100, minLrRatio: 0.1, weightDecay: 0.05, betas: [0.9, 0.95], clipNorm: 1.0, evalEvery: 0,
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
  validateOptimConfig(cfg, 'stage1');
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
  let r = rng(seedFrom(cfg.seed, 'stage1-data', cfg.orderMode));
  const nMicro = Math.ceil(cfg.batch / cfg.microBatch);
  let share = 0, randomCount = 0;
  try {
    const outcome = runTraining({
      run, stage: 'stage1', configName: 'stage1', optim: cfg, params: m.params, checkpointConfig: model,
      checkpointEvery: cfg.checkpointEvery, maxSteps: hooks.maxSteps,
      tags: (step) => [`r${randomShare(cfg, step).toFixed(2)}`],
      state: {
        save: (step) => ({ orderMode: cfg.orderMode, r: randomShare(cfg, step), rngState: r.state() }),
        restore: (extra) => { r = rngFromState(Number(extra.rngState)); },
      },
      step: (step) => {
        share = randomShare(cfg, step);
        // Draw the whole batch on the host: images, orders, class dropout.
        const micro: OrderBatch[] = [];
        randomCount = 0;
        for (let i = 0; i < nMicro; i++) {
          const mb = drawOrderBatch(r, data, geo, Math.min(cfg.microBatch, cfg.batch - i * cfg.microBatch), share, cfg.classDropout, model.numClasses);
          micro.push(mb);
          randomCount += mb.randomCount;
        }
        return accumulateGrads(m.params, nMicro, (i) => {
          const { order, toks, classes } = micro[i];
          return lmLoss(m, order, tf.tensor2d(toks, [order.B, T], 'int32'), tf.tensor1d(classes, 'int32'));
        });
      },
      row: (_step, s) => ({ loss: s.loss, lr: s.lr, r: share, randomShare: randomCount / cfg.batch, gradNorm: s.gradNorm, ms: s.ms }),
      onStep: (step, row) => hooks.onStep?.(step, row as Record<string, number>),
    });
    return { run, model: m, steps: outcome.step, checkpoints: outcome.checkpoints };
  } catch (err) {
    // A failure (bad checkpoint, NaN loss, full disk) must not leak the model tensors.
    disposeGPT(m);
    throw err;
  }
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
  const workers: Worker[] = [];
  const runArm = (job: ParallelStage1Job) => new Promise<{ runDir: string; steps: number; checkpoints: string[] }>((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'stage1-worker.js'), {
      workerData: { backend, job: { root, name: job.name, cfg: job.cfg, data, model: job.model, maxSteps: job.maxSteps } },
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
 * The Stage 1 config of each profile. `default` is sized so that both models
 * train side by side (one per core) in about 10 minutes on our 2-core machine.
 */
export function stage1Config(profile: ProfileName, orderMode: OrderMode, overrides: Partial<Stage1Config> = {}): Stage1Config {
  return profileConfig<Stage1Config>({ ...STAGE1_DEFAULTS, orderMode }, {
    smoke: { size: 'tiny', steps: 6, batch: 8, microBatch: 8, warmup: 2, checkpointEvery: 2 },
    default: { steps: 600, warmup: 50, checkpointEvery: 100 },
    full: { steps: 3000, warmup: 200, checkpointEvery: 250 },
  }, profile, overrides, (c) => validateOptimConfig(c, 'stage1'));
}
