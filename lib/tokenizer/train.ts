/**
 * Training the VQ tokenizer: a resumable run folder, AdamW with warmup +
 * cosine, code-usage tracking, dead-code restarts, periodic evaluation and
 * atomic checkpoints.
 *
 * Resume: the run folder `<runDir>` (openRun) holds config.json; training
 * continues from the newest `tokenizer-step*.safetensors` in it, with the
 * optimizer state, the usage record and the data position, so a resumed run
 * takes the same steps as an uninterrupted one.
 *
 * Divergence: a non-finite loss or gradient stops training with an error
 * naming the step; nothing is updated or saved after it, so the last good
 * checkpoint stays as it was.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { AdamW, accumulateGrads, warmupCosine } from '../runtime/optim';
import { openRun, Run } from '../runtime/run';
import { checkpointName, diffConfig, formatDifferences, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../runtime/checkpoint';
import { Progress, ProgressInfo } from '../runtime/progress';
import { rng, seedFrom, Rng } from '../runtime/seed';
import { loadDataset } from '../data/dataset';
import { TokenizerConfig, patchPixels, tokensPerImage, validateTokenizerConfig } from './config';
import {
  TOKENIZER_MODEL_KEYS, TokenizerMetrics, TokenizerParams, VqTokenizer, codeUsageStats, encodePatches, imagesToPatches,
  nearestCodes, normalisedCodebook, normaliseRows, psnrFromMse, tokenizerParamShapes, vqLoss,
} from './vq';

/** Checkpoint prefix (and run stage) of tokenizer runs. */
export const TOKENIZER_STAGE = 'tokenizer';

/** Images for training or evaluation: N*S*S pixels in [-1, 1]. */
export interface TokenizerImages {
  images: Float32Array;
  n: number;
}

export interface TrainTokenizerOptions {
  config: TokenizerConfig;
  /** The run folder, e.g. tokenizerRunDir(session.runRoot, session.profile). */
  runDir: string;
  /** Training images; default: loadDataset(config.data.train). */
  train?: TokenizerImages;
  /** Images for the periodic evaluation (first config.evalImages); default: loadDataset(config.data.test). */
  test?: TokenizerImages;
  /** Progress bar factory (the notebook passes session.progress). */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Stop after this step (and save a checkpoint), to train in slices; default config.steps. */
  untilStep?: number;
  /** Called with each metrics row as it is logged (live curves). */
  onLog?: (row: Record<string, number>) => void;
  /** Backend name for the run manifest. */
  backend?: string;
}

export interface TrainTokenizerResult {
  tokenizer: VqTokenizer;
  run: Run<TokenizerConfig>;
  /** Step the run started (0) or resumed from. */
  startStep: number;
  /** Step reached. */
  step: number;
  /** Checkpoint resumed from, if any. */
  resumedFrom?: string;
  /** The newest checkpoint (the one `tokenizer.source` points at). */
  checkpoint: string;
  /** Wall time of the training steps in this call. */
  seconds: number;
  /** Mean wall time per step in this call (NaN when no step ran). */
  secondsPerStep: number;
  /** Dead codes restarted in this call. */
  restarts: number;
  /** Last periodic evaluation in this call, if any. */
  lastEval?: TokenizerMetrics;
}

/** Training state kept beside the weights in each checkpoint's `extra`. */
interface TrainState {
  optStep: number;
  epoch: number;
  cursor: number;
  restarts: number;
}

/** Resolve after pending I/O: a synchronous loop would hold every display update until it ends. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The data order of an epoch: a seeded permutation. */
function epochOrder(seed: number, epoch: number, n: number): Int32Array {
  const order = Array.from({ length: n }, (_, i) => i);
  rng(seedFrom(seed, 'tokenizer-data-order', epoch)).shuffle(order);
  return Int32Array.from(order);
}

/**
 * Restart dead codes: every code whose `lastUsed` step is at least
 * `config.deadAfter` steps before `step` is replaced by the encoder output of a
 * patch of `patches` (the current batch), drawn with probability proportional
 * to its squared distance to its current code (k-means++ style, so badly
 * served patches get the new codes), plus a little noise, L2-normalised. The
 * optimizer moments of those rows are zeroed and their `lastUsed` set to
 * `step`. Returns the restarted code indices.
 */
export function restartDeadCodes(
  tokenizer: VqTokenizer, patches: Float32Array, nImages: number, lastUsed: Int32Array, step: number, r: Rng, opt?: AdamW,
): number[] {
  const cfg = tokenizer.config, K = cfg.codebookSize, D = cfg.codeDim;
  const dead: number[] = [];
  for (let k = 0; k < K; k++) if (step - lastUsed[k] >= cfg.deadAfter) dead.push(k);
  if (dead.length === 0) return dead;
  const rows = nImages * tokensPerImage(cfg);
  const z = tf.tidy(() => encodePatches(cfg, tokenizer.params, tf.tensor2d(patches.subarray(0, rows * patchPixels(cfg)), [rows, patchPixels(cfg)]), nImages));
  const cbn = normalisedCodebook(tokenizer.params);
  const { dist2 } = nearestCodes(z, cbn, true);
  const zHost = z.dataSync() as Float32Array;
  tf.dispose([z, cbn]);
  // Cumulative weights for sampling rows proportional to dist2 (uniform if all are 0).
  const cum = new Float64Array(rows);
  let acc = 0;
  for (let i = 0; i < rows; i++) { acc += dist2![i] + 1e-9; cum[i] = acc; }
  const cb = Float32Array.from(tokenizer.params['codebook'].dataSync() as Float32Array);
  for (const k of dead) {
    const u = r.next() * acc;
    let lo = 0, hi = rows - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cum[mid] < u) lo = mid + 1; else hi = mid; }
    for (let j = 0; j < D; j++) cb[k * D + j] = zHost[lo * D + j] + 0.01 * r.normal();
    lastUsed[k] = step;
  }
  // Only the dead rows change, and they are written normalised.
  const fresh = new Float32Array(dead.length * D);
  dead.forEach((k, i) => fresh.set(cb.subarray(k * D, (k + 1) * D), i * D));
  normaliseRows(fresh, D);
  dead.forEach((k, i) => cb.set(fresh.subarray(i * D, (i + 1) * D), k * D));
  tf.tidy(() => tokenizer.params['codebook'].assign(tf.tensor2d(cb, [K, D])));
  if (opt) {
    for (const moments of [opt.m, opt.v]) {
      const mv = moments['codebook'];
      if (!mv) continue;
      const a = Float32Array.from(mv.dataSync() as Float32Array);
      for (const k of dead) a.fill(0, k * D, (k + 1) * D);
      tf.tidy(() => mv.assign(tf.tensor2d(a, [K, D])));
    }
  }
  return dead;
}

/** Refuse image sets that would train or evaluate on nothing or on misaligned pixels. */
function checkImages(given: TokenizerImages, cfg: TokenizerConfig, split: 'train' | 'test'): void {
  const where = `trainTokenizer(${split})`;
  const px = cfg.imageSize * cfg.imageSize;
  ensure(Number.isInteger(given.n) && given.n >= 1, `holds no images (n = ${given.n})`, where,
    `pass at least one ${cfg.imageSize}x${cfg.imageSize} image, or leave ${split} out to load tokenizer.data.${split}`);
  ensure(given.images instanceof Float32Array && given.images.length === given.n * px,
    `holds ${given.images?.length} pixels for ${given.n} images; ${cfg.imageSize}x${cfg.imageSize} images need ${given.n * px}`, where,
    `pad the images to tokenizer.imageSize (loadDataset({ ..., pad: ${cfg.imageSize} })) and pass n = the number of images`);
}

function loadImages(given: TokenizerImages | undefined, cfg: TokenizerConfig, split: 'train' | 'test'): TokenizerImages {
  if (given) return given;
  const ds = loadDataset({ ...cfg.data[split], pad: cfg.imageSize });
  return { images: ds.images, n: ds.n };
}

/**
 * Train the tokenizer of `config` in `runDir` (await it), resuming from the newest
 * checkpoint there. A run folder made with another config is refused, naming
 * the differing fields (openRun). Returns the trained tokenizer (the caller
 * disposes it) and the run.
 */
export async function trainTokenizer(options: TrainTokenizerOptions): Promise<TrainTokenizerResult> {
  const cfg = options.config;
  validateTokenizerConfig(cfg);
  // Before openRun, so bad input leaves no run folder behind.
  if (options.train) checkImages(options.train, cfg, 'train');
  if (options.test) checkImages(options.test, cfg, 'test');
  const runDir = path.resolve(options.runDir);
  const run = openRun<TokenizerConfig>({ root: path.dirname(runDir), name: path.basename(runDir), stage: TOKENIZER_STAGE, config: cfg, resume: true, backend: options.backend });

  const tokenizer = VqTokenizer.init(cfg);
  const opt = new AdamW(tokenizer.params, { lr: cfg.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm });
  try {
    return await trainLoop(options, run, tokenizer, opt);
  } catch (err) {
    tokenizer.dispose();
    throw err;
  } finally {
    opt.dispose();
  }
}

async function trainLoop(options: TrainTokenizerOptions, run: Run<TokenizerConfig>, tokenizer: VqTokenizer, opt: AdamW): Promise<TrainTokenizerResult> {
  const cfg = options.config;
  const until = Math.min(cfg.steps, options.untilStep ?? cfg.steps);
  const K = cfg.codebookSize;
  let lastUsed = new Int32Array(K);
  let state: TrainState = { optStep: 0, epoch: 0, cursor: 0, restarts: 0 };
  let startStep = 0;
  let resumedFrom: string | undefined;
  let checkpoint: string | undefined;

  const latest = run.latestCheckpoint(TOKENIZER_STAGE);
  if (latest) {
    const ck = loadCheckpoint<TokenizerConfig>(latest.path, { expectConfig: cfg });
    try {
      for (const [name, v] of Object.entries(tokenizer.params)) {
        const w = ck.weights[name];
        if (!w || !tf.util.arraysEqual(w.shape, v.shape)) {
          throw new OrderHeadError(`weight '${name}' is ${w ? `shaped [${w.shape}]` : 'missing'}, the model needs [${v.shape}]`, latest.path, 'the file does not belong to this config: delete the run folder or use another one');
        }
        v.assign(w);
        const m = ck.weights[`adam.m.${name}`], s = ck.weights[`adam.v.${name}`];
        if (m && s) { opt.m[name].assign(m); opt.v[name].assign(s); }
      }
      const lu = ck.weights['usage.lastUsed'];
      if (lu) lastUsed = Int32Array.from(lu.dataSync() as Int32Array);
    } finally {
      tf.dispose(Object.values(ck.weights));
    }
    state = { ...state, ...(ck.extra as Partial<TrainState>) };
    opt.step = state.optStep;
    startStep = ck.step;
    resumedFrom = latest.path;
    checkpoint = latest.path;
  }
  tokenizer.source = { checkpoint, step: startStep };

  const save = (step: number): string => {
    const weights: Record<string, tf.Tensor | Int32Array> = { ...tokenizer.params, ...opt.state(), 'usage.lastUsed': lastUsed };
    const file = saveCheckpoint(run.checkpointDir, checkpointName(TOKENIZER_STAGE, step), {
      weights, config: cfg, step, kind: TOKENIZER_STAGE, extra: { ...state, optStep: opt.step },
    });
    checkpoint = file;
    tokenizer.source = { checkpoint: file, step };
    return file;
  };

  if (startStep >= until) {
    return { tokenizer, run, startStep, step: startStep, resumedFrom, checkpoint: checkpoint!, seconds: 0, secondsPerStep: NaN, restarts: 0 };
  }

  const train = loadImages(options.train, cfg, 'train');
  const testAll = loadImages(options.test, cfg, 'test');
  const px = cfg.imageSize * cfg.imageSize;
  const evalN = Math.min(cfg.evalImages, testAll.n);
  const evalImages = testAll.images.subarray(0, evalN * px);
  const T = tokensPerImage(cfg), PP = patchPixels(cfg);
  const B = cfg.batch, micro = cfg.microBatches, mb = B / micro;

  let order = epochOrder(cfg.seed, state.epoch, train.n);
  const batchImages = new Float32Array(B * px);
  const batchPatches = new Float32Array(B * T * PP);
  const nextBatch = (): void => {
    for (let b = 0; b < B; b++) {
      if (state.cursor >= train.n) { state.epoch++; state.cursor = 0; order = epochOrder(cfg.seed, state.epoch, train.n); }
      const i = order[state.cursor++];
      batchImages.set(train.images.subarray(i * px, (i + 1) * px), b * px);
    }
    imagesToPatches(batchImages, B, cfg.imageSize, cfg.patchSize, batchPatches);
  };

  const bar = options.progress?.({ total: until - startStep, label: 'tokenizer train' });
  const window = new Float64Array(K);
  let winLoss = 0, winRec = 0, winDist = 0, winNorm = 0, winSteps = 0, restartsHere = 0, restartedInWindow = 0;
  let lastEval: TokenizerMetrics | undefined;
  const t0 = Date.now();
  let winStart = t0;
  let step = startStep;
  const lastGood = () => checkpoint ? `the last good checkpoint ${checkpoint} is unchanged` : 'no checkpoint had been saved yet';

  try {
    while (step < until) {
      const s = step + 1;
      nextBatch();
      const lr = warmupCosine(step, cfg.steps, cfg.warmup, cfg.lr);
      const indices: Int32Array[] = [];
      let rec = 0, dist = 0;
      const { grads, loss } = accumulateGrads(tokenizer.params, micro, (i) => {
        const x = tf.tensor2d(batchPatches.subarray(i * mb * T * PP, (i + 1) * mb * T * PP), [mb * T, PP]);
        const parts = vqLoss(cfg, tokenizer.params, x, mb);
        indices.push(parts.indices);
        rec += parts.recMse / micro;
        dist += parts.vqDist / micro;
        return parts.loss;
      });
      let norm: number;
      try {
        if (!Number.isFinite(loss) || !Number.isFinite(rec)) {
          throw new OrderHeadError(
            `the training loss is ${loss} (reconstruction ${rec}) at step ${s}; training stopped before updating, ${lastGood()}`,
            run.dir,
            'check the images for NaN/Inf, then lower tokenizer.lr (or set clipNorm) and resume: the run continues from the last good checkpoint',
          );
        }
        try {
          norm = opt.apply(grads, lr);
        } catch (err) {
          if (err instanceof OrderHeadError) {
            throw new OrderHeadError(`${err.problem} (tokenizer step ${s}); ${lastGood()}`, run.dir, 'lower tokenizer.lr or tokenizer.clipNorm and resume from the last good checkpoint');
          }
          throw err;
        }
      } finally {
        tf.dispose(Object.values(grads));
      }
      step = s;

      for (const idx of indices) for (let i = 0; i < idx.length; i++) { lastUsed[idx[i]] = step; window[idx[i]]++; }
      if (cfg.restartEvery > 0 && step % cfg.restartEvery === 0 && step < cfg.steps) {
        // Seeded per step, so a resumed run restarts the same codes as an uninterrupted one.
        const dead = restartDeadCodes(tokenizer, batchPatches, B, lastUsed, step, rng(seedFrom(cfg.seed, 'tokenizer-restart', step)), opt);
        restartsHere += dead.length;
        restartedInWindow += dead.length;
        state.restarts += dead.length;
      }

      winLoss += loss; winRec += rec; winDist += dist; winNorm += norm; winSteps++;
      const info: ProgressInfo = { loss: loss, psnr: Number(psnrFromMse(rec).toFixed(2)) };
      if (step % cfg.logEvery === 0 || step === until) {
        const u = codeUsageStats(window);
        const now = Date.now();
        const row: Record<string, number> = {
          loss: winLoss / winSteps, rec_mse: winRec / winSteps, train_psnr: psnrFromMse(winRec / winSteps), vq_dist: winDist / winSteps,
          commit_loss: cfg.beta * winDist / winSteps, codebook_loss: cfg.codebookWeight * winDist / winSteps,
          grad_norm: winNorm / winSteps, lr, codes_used: u.used, usage: u.usage, perplexity: u.perplexity,
          restarted: restartedInWindow, sec_per_step: (now - winStart) / 1000 / winSteps, epoch: state.epoch + state.cursor / train.n,
        };
        run.logMetrics(step, row);
        options.onLog?.({ step, ...row });
        window.fill(0);
        winLoss = winRec = winDist = winNorm = 0; winSteps = 0; restartedInWindow = 0; winStart = now;
      }
      if ((cfg.evalEvery > 0 && step % cfg.evalEvery === 0) || step === cfg.steps) {
        lastEval = tokenizer.evaluate(evalImages);
        const row = { test_mse: lastEval.mse, test_psnr: lastEval.psnr, test_usage: lastEval.usage, test_perplexity: lastEval.perplexity, test_images: evalN };
        run.logMetrics(step, row);
        options.onLog?.({ step, ...row });
        info.test_psnr = Number(lastEval.psnr.toFixed(2));
      }
      if (step % cfg.checkpointEvery === 0 || step === until) save(step);
      bar?.tick(1, info);
      // Let the notebook's live display (and Ctrl-C) through between steps.
      await yieldToEventLoop();
    }
  } catch (err) {
    bar?.done({ stopped: `step ${step + 1}` });
    throw err;
  }
  bar?.done();
  const seconds = (Date.now() - t0) / 1000;
  return {
    tokenizer, run, startStep, step, resumedFrom, checkpoint: checkpoint!, seconds,
    secondsPerStep: step > startStep ? seconds / (step - startStep) : NaN, restarts: restartsHere, lastEval,
  };
}

/**
 * Load a trained tokenizer for encoding and decoding: from a checkpoint file,
 * or from a run folder (its newest tokenizer checkpoint). With `expectConfig`,
 * the model fields (TOKENIZER_MODEL_KEYS) must match, or the error names each
 * differing field with both values.
 */
export function loadTokenizer(fileOrRunDir: string, opts: { expectConfig?: Partial<TokenizerConfig> } = {}): VqTokenizer {
  let file = fileOrRunDir;
  if (!file.endsWith('.safetensors')) {
    const run = path.join(fileOrRunDir, 'checkpoints');
    const ref = latestCheckpoint(run, TOKENIZER_STAGE);
    if (!ref) {
      throw new OrderHeadError('holds no tokenizer checkpoint', run, 'train the tokenizer first (notebooks/01_tokenizer.ipynb, or trainTokenizer) in this profile');
    }
    file = ref.path;
  }
  const expectKeys = opts.expectConfig ? TOKENIZER_MODEL_KEYS.filter((k) => opts.expectConfig![k] !== undefined) : undefined;
  const ck = loadCheckpoint<TokenizerConfig>(file, opts.expectConfig ? { expectConfig: opts.expectConfig, compareKeys: [...expectKeys!] } : {});
  try {
    if (ck.kind !== TOKENIZER_STAGE) {
      throw new OrderHeadError(`is a '${ck.kind}' checkpoint, not a tokenizer checkpoint`, file, 'pass a tokenizer-step*.safetensors file or the tokenizer run folder');
    }
    validateTokenizerConfig(ck.config);
    const fresh = tokenizerParamShapes(ck.config);
    const params: TokenizerParams = {};
    for (const [name, shape] of Object.entries(fresh)) {
      const w = ck.weights[name];
      if (!w || !tf.util.arraysEqual(w.shape, shape)) {
        tf.dispose(Object.values(params));
        throw new OrderHeadError(`weight '${name}' is ${w ? `shaped [${w.shape}]` : 'missing'}, its config needs [${shape}]`, file, 'the file is damaged or from another version: retrain the tokenizer');
      }
      params[name] = tf.variable(w, true);
    }
    return new VqTokenizer(ck.config, params, { checkpoint: file, step: ck.step });
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}

/** Differences between two tokenizer configs' model fields, as text ('' when they agree). */
export function tokenizerModelDifferences(a: TokenizerConfig, b: TokenizerConfig): string {
  return formatDifferences(diffConfig(a, b, [...TOKENIZER_MODEL_KEYS]), 'first', 'second');
}
