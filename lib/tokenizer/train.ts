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
import { AdamW, accumulateGrads, scheduledLr } from '../runtime/optim';
import { EpochCursor, resumeTraining, TrainCallOptions, TrainCallResult, trainCallResult, TrainingOutcome } from '../runtime/train-loop';
import { openRun, Run } from '../runtime/run';
import { diffConfig, formatDifferences, latestCheckpoint, loadCheckpoint } from '../runtime/checkpoint';
import { Progress, yieldToEventLoop } from '../runtime/progress';
import { rng, seedFrom, Rng } from '../runtime/seed';
import { loadDataset } from '../data/dataset';
import { TokenizerConfig, patchPixels, tokensPerImage, validateTokenizerConfig } from './config';
import { TOKENIZER_MODEL_KEYS, TokenizerParams, normaliseRows, tokenizerParamShapes } from './params';
import { imagesToPatches } from './patches';
import { encodePatches, nearestCodes, normalisedCodebook } from './vq';
import { vqLoss } from './loss';
import { TokenizerMetrics, codeUsageStats, psnrFromMse } from './metrics';
import { VqTokenizer } from './vq-tokenizer';

/** Checkpoint prefix (and run stage) of tokenizer runs. */
export const TOKENIZER_STAGE = 'tokenizer';

/** Images for training or evaluation: N*S*S pixels in [-1, 1]. */
export interface TokenizerImages {
  images: Float32Array;
  n: number;
}

export interface TrainTokenizerOptions extends TrainCallOptions {
  config: TokenizerConfig;
  /** Training images; default: loadDataset(config.data.train). */
  train?: TokenizerImages;
  /** Images for the periodic evaluation (first config.evalImages); default: loadDataset(config.data.test). */
  test?: TokenizerImages;
}

export interface TrainTokenizerResult extends TrainCallResult {
  /** The trained tokenizer; `tokenizer.source` points at `checkpoint`. */
  tokenizer: VqTokenizer;
  run: Run<TokenizerConfig>;
  /** Dead codes restarted in this call. */
  restarts: number;
  /** Last periodic evaluation in this call, if any. */
  lastEval?: TokenizerMetrics;
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
  try {
    return await train(options, run, tokenizer);
  } catch (err) {
    tokenizer.dispose();
    throw err;
  }
}

async function train(options: TrainTokenizerOptions, run: Run<TokenizerConfig>, tokenizer: VqTokenizer): Promise<TrainTokenizerResult> {
  const cfg = options.config;
  const K = cfg.codebookSize, T = tokensPerImage(cfg), PP = patchPixels(cfg), px = cfg.imageSize * cfg.imageSize;
  const B = cfg.batch, mb = Math.min(cfg.microBatch, B), micro = B / mb;
  // The stage's state: data position, code usage (a code's last step of use), restart count.
  let lastUsed = new Int32Array(K);
  const data = new EpochCursor(cfg.seed, 'tokenizer-data-order');
  let restarts = 0;
  let train: TokenizerImages | undefined, evalImages: Float32Array | undefined, evalN = 0;
  const batchImages = new Float32Array(B * px), batchPatches = new Float32Array(B * T * PP);
  const window = new Float64Array(K);
  let win = { loss: 0, rec: 0, dist: 0, norm: 0, steps: 0, restarted: 0, start: Date.now() };
  let restartsHere = 0, lastEval: TokenizerMetrics | undefined;
  let bar: Progress | undefined;
  const load = () => {
    if (train) return;
    train = loadImages(options.train, cfg, 'train');
    const testAll = loadImages(options.test, cfg, 'test');
    evalN = Math.min(cfg.evalImages, testAll.n);
    evalImages = testAll.images.subarray(0, evalN * px);
  };
  const nextBatch = (): void => {
    for (let b = 0; b < B; b++) {
      const i = data.next(train!.n);
      batchImages.set(train!.images.subarray(i * px, (i + 1) * px), b * px);
    }
    imagesToPatches(batchImages, B, cfg.imageSize, cfg.patchSize, batchPatches);
  };

  let outcome: TrainingOutcome;
  try {
    const t = resumeTraining({
      run, stage: TOKENIZER_STAGE, configName: 'tokenizer', optim: cfg, optimizer: AdamW.fromConfig(tokenizer.params, cfg), checkpointConfig: cfg,
      checkpointEvery: cfg.checkpointEvery, untilStep: options.untilStep,
      restore: (extra, weights) => {
        data.restore(extra);
        restarts = Number(extra.restarts ?? 0);
        const lu = weights['usage.lastUsed'];
        if (lu) lastUsed = Int32Array.from(lu.dataSync() as Int32Array);
      },
    });
    try {
      if (t.step < t.until) bar = options.progress?.({ total: t.until - t.step, label: 'tokenizer train' });
      for (let step = t.step; step < t.until; step++) {
        const lr = scheduledLr(cfg, step);
        load();
        nextBatch();
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
        const gradNorm = t.update(step, Number.isFinite(rec) ? loss : NaN, grads, lr, { detail: `reconstruction ${rec}` });
        const s = step + 1;
        // Code usage, then dead-code restarts (seeded per step, so a resumed run restarts the same codes as an uninterrupted one).
        for (const idx of indices) for (let i = 0; i < idx.length; i++) { lastUsed[idx[i]] = s; window[idx[i]]++; }
        if (cfg.restartEvery > 0 && s % cfg.restartEvery === 0 && s < cfg.steps) {
          const dead = restartDeadCodes(tokenizer, batchPatches, B, lastUsed, s, rng(seedFrom(cfg.seed, 'tokenizer-restart', s)), t.optimizer);
          restartsHere += dead.length; win.restarted += dead.length; restarts += dead.length;
        }
        // One row per logEvery steps (and at the end of the call), averaged over its window.
        win.loss += loss; win.rec += rec; win.dist += dist; win.norm += gradNorm; win.steps++;
        let row: Record<string, number> | undefined;
        if (s % cfg.logEvery === 0 || s === t.until) {
          const u = codeUsageStats(window), now = Date.now(), n = win.steps;
          row = {
            loss: win.loss / n, rec_mse: win.rec / n, train_psnr: psnrFromMse(win.rec / n), vq_dist: win.dist / n,
            commit_loss: cfg.beta * win.dist / n, codebook_loss: cfg.codebookWeight * win.dist / n,
            grad_norm: win.norm / n, lr, codes_used: u.used, usage: u.usage, perplexity: u.perplexity,
            restarted: win.restarted, sec_per_step: (now - win.start) / 1000 / n, epoch: data.progress(train!.n),
          };
          window.fill(0);
          win = { loss: 0, rec: 0, dist: 0, norm: 0, steps: 0, restarted: 0, start: now };
        }
        let evaluation: Record<string, number> | undefined;
        if (t.isEvalStep(s)) {
          lastEval = tokenizer.evaluate(evalImages!);
          evaluation = { test_mse: lastEval.mse, test_psnr: lastEval.psnr, test_usage: lastEval.usage, test_perplexity: lastEval.perplexity, test_images: evalN };
        }
        if (row) run.logMetrics(s, row);
        if (evaluation) run.logMetrics(s, evaluation);
        // Also at the end of the call: a notebook trains in slices.
        if (t.isCheckpointStep(s) || s === t.until) t.checkpoint(s, { extra: { ...data.state(), restarts }, arrays: { 'usage.lastUsed': lastUsed } });
        if (row) options.onLog?.({ step: s, ...row });
        if (evaluation) options.onLog?.({ step: s, ...evaluation });
        bar?.tick(1, { psnr: Number(psnrFromMse(rec).toFixed(2)), ...(evaluation ? { test_psnr: Number(lastEval!.psnr.toFixed(2)) } : {}) });
        await yieldToEventLoop();
      }
    } finally {
      t.dispose();
    }
    outcome = t.outcome();
  } catch (err) {
    bar?.done({ stopped: 'error' });
    throw err;
  }
  bar?.done();
  tokenizer.source = { checkpoint: outcome.checkpoint, step: outcome.step };
  return { ...trainCallResult(outcome), tokenizer, run, restarts: restartsHere, lastEval };
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
