/**
 * The feature network of METHOD.md section 7: a small CNN classifier trained
 * on the project's own images (Fashion-MNIST padded to 32 x 32), standing in
 * for ImageNet Inception-v3, whose features mean nothing on 28 x 28
 * grayscale clothes. It supplies
 *
 *   pool     the penultimate features (FID), like Inception's pool3;
 *   spatial  an early spatial feature map (sFID), like Inception's mixed_6/conv;
 *   probs    its softmax (Inception Score, and the recognizability classifier).
 *
 * Numbers measured with it compare settings of this project with each other,
 * never with ImageNet papers: show FEATURE_NET_CAVEAT (metrics.ts) with them.
 *
 * Architecture (NHWC, one input channel):
 *   for each stage s:  conv kxk 'same' (channels[s]) -> ReLU -> 2x2 max-pool
 *   flatten -> dense `hidden` -> ReLU   = pool features [N, hidden]
 *   dense `classes` -> softmax          = probs
 *   spatial: stage `spatialStage`'s pooled output, average-pooled by
 *   `spatialPool`, first `spatialChannels` channels, flattened (y, x, c).
 *
 * Training on wasm: tfjs's own conv gradients are slow there (measured on a
 * batch of 64, second conv 16->32 at 16x16: Conv2DBackpropFilter 50 ms,
 * Conv2DBackpropInput 37 ms, MaxPoolGrad 16 ms, against 4 ms for the forward
 * conv), so `convSame` and `maxPool2` carry their own gradients built from
 * fast kernels: dx as a forward conv with the flipped kernel, dW as one plain
 * matmul of host-side im2col patches (written already transposed, because
 * wasm's Transpose is the slow part of the registered filter gradient), and
 * the max-pool gradient by nearest-neighbour upsampling and an argmax mask.
 * One training step of the default net went from 141 ms to 74 ms.
 *
 * Runs: `trainFeatureNet` trains in a run folder (openRun: config.json, a
 * folder made with another config is refused naming the field), checkpoints
 * atomically (safetensors with the config in the metadata), resumes from the
 * newest checkpoint, and reports test accuracy. `loadFeatureNet` opens the
 * finished net for evaluation.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { activeProfile, pick, ProfileName } from '../runtime/profile';
import { rng, seedFrom } from '../runtime/seed';
import { AdamW, accumulateGrads, warmupCosine } from '../runtime/optim';
import { openRun, Run } from '../runtime/run';
import { checkpointName, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../runtime/checkpoint';
import { Progress, ProgressInfo } from '../runtime/progress';
import { DatasetOptions, loadDataset } from '../data/dataset';
import { denseLayer } from '../tokenizer/vq';
import { yieldToEventLoop } from '../tokenizer/train';
import type { LabelledImages } from '../tokenizer/cache';

/** Checkpoint prefix and run stage of feature-network runs. */
export const FEATURE_NET_STAGE = 'featurenet';

/** Which images the feature network trains and is tested on (recorded in its config). */
export interface FeatureNetDataConfig {
  train: DatasetOptions;
  test: DatasetOptions;
}

export interface FeatureNetConfig {
  /** Side of the square single-channel input images. Default 32 (Fashion-MNIST padded, as the tokenizer sees it). */
  imageSize: number;
  /** Number of classes. Default 10 (Fashion-MNIST). */
  classes: number;
  /** Output channels of each conv stage; each stage halves the resolution. Default [16, 32] (32x32 -> 16x16 -> 8x8). */
  channels: number[];
  /** Side of the conv kernels (odd, 'same' padding). Default 3. */
  kernelSize: number;
  /** Width of the penultimate dense layer = dimension of the FID ('pool') features. Default 128. */
  hidden: number;
  /**
   * Stage whose pooled output gives the sFID ('spatial') features. Default 0:
   * the first conv block, the earliest map, 16x16 for 32x32 input.
   */
  spatialStage: number;
  /** Extra average pooling of that map before flattening (1 = none). Default 2: 16x16 -> 8x8. */
  spatialPool: number;
  /**
   * Channels of that map kept (the first ones, as ADM keeps 7 of mixed_6/conv).
   * Default 8, so the spatial features have 8 * 8 * 8 = 512 values: the
   * Fréchet distance costs O(dim^3), about 2 s at 512, and each covariance
   * about 0.5 s per 1,000 images (measured in JS).
   */
  spatialChannels: number;
  /** Peak AdamW learning rate (linear warmup, cosine to `minLrRatio` of it). Default 3e-3. */
  lr: number;
  /** Warmup steps. Default 30. */
  warmup: number;
  /** Final learning rate as a share of `lr`. Default 0.02. */
  minLrRatio: number;
  /** AdamW decoupled weight decay (matrices and kernels only). Default 1e-4. */
  weightDecay: number;
  /** Global gradient-norm clip (0 = off). Default 0: the default run was measured without clipping. */
  clipNorm: number;
  /** Optimizer steps of the run. */
  steps: number;
  /** Images per step. */
  batch: number;
  /** Append a training metrics row every this many steps. */
  logEvery: number;
  /** Save a checkpoint every this many steps (and always at the last step of a call). */
  checkpointEvery: number;
  /** Images per forward pass when evaluating the test set. Default 500. */
  evalBatch: number;
  /** Seed of the initial weights and of the data order. */
  seed: number;
  /** The data the run uses (the profile's dataset). */
  data: FeatureNetDataConfig;
}

/** The config fields that shape the weights and the outputs: a net must match these to be used in place of another. */
export const FEATURE_NET_MODEL_KEYS = ['imageSize', 'classes', 'channels', 'kernelSize', 'hidden', 'spatialStage', 'spatialPool', 'spatialChannels'] as const;

/** One line per config field, for a notebook's config table. */
export const FEATURE_NET_CONFIG_DOCS: Record<keyof FeatureNetConfig, string> = {
  imageSize: 'side of the padded input images (pixels)',
  classes: 'number of classes',
  channels: 'channels of each conv stage (each halves the resolution)',
  kernelSize: 'conv kernel side (odd)',
  hidden: 'penultimate width = FID feature dimension',
  spatialStage: 'stage whose output gives the sFID features',
  spatialPool: 'extra average pooling of that map',
  spatialChannels: 'channels of that map kept for sFID',
  lr: 'peak AdamW learning rate (warmup, cosine)',
  warmup: 'warmup steps',
  minLrRatio: 'final learning rate / peak',
  weightDecay: 'AdamW weight decay (kernels and matrices)',
  clipNorm: 'gradient-norm clip (0 = off)',
  steps: 'optimizer steps',
  batch: 'images per step',
  logEvery: 'metrics row every N steps',
  checkpointEvery: 'checkpoint every N steps',
  evalBatch: 'images per forward pass in evaluation',
  seed: 'seed of initialisation and data order',
  data: 'train and test datasets (profile)',
};

/**
 * The feature-network config of a profile, with `overrides` on top.
 *
 * - smoke: 30 steps of 32 images on the 512-image subset: seconds, for CI;
 *   its accuracy means nothing.
 * - default: Fashion-MNIST train (60,000 images), 780 steps of 128 (about 1.7
 *   epochs). Measured once on the 2-core machine (one wasm core, while other
 *   jobs shared the machine): 89.7% test accuracy on the 10,000 test images,
 *   94 s of training (121 ms/step on average; 89 ms/step in quiet stretches,
 *   so about 70 s on an idle core), plus ~2 s to load the data and evaluate.
 *   Prototype runs chose the size: batch 64 x 1,200 steps 89.3% in 92 s;
 *   batch 128 x 650 steps 89.3% in 71 s; a third stage [16, 32, 64] reached
 *   only 88.4% in 70 s. Batch 128 costs 0.85 ms per image against 1.2 ms at 64.
 * - full: the same net trained four times longer (not measured; expect
 *   about 91%).
 */
export function featureNetConfig(profile: ProfileName = activeProfile(), overrides: Partial<FeatureNetConfig> = {}): FeatureNetConfig {
  const schedule = pick(
    {
      smoke: { steps: 30, batch: 32, warmup: 5, logEvery: 5, checkpointEvery: 15 },
      default: { steps: 780, batch: 128, warmup: 30, logEvery: 20, checkpointEvery: 200 },
      full: { steps: 3120, batch: 128, warmup: 100, logEvery: 50, checkpointEvery: 500 },
    },
    profile,
  );
  const data = pick<FeatureNetDataConfig>(
    {
      smoke: { train: { name: 'subset', split: 'train', limit: 512, pad: 32 }, test: { name: 'subset', split: 'test', limit: 128, pad: 32 } },
      default: { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } },
      full: { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } },
    },
    profile,
  );
  const cfg: FeatureNetConfig = {
    imageSize: 32,
    classes: 10,
    channels: [16, 32],
    kernelSize: 3,
    hidden: 128,
    spatialStage: 0,
    spatialPool: 2,
    spatialChannels: 8,
    lr: 3e-3,
    minLrRatio: 0.02,
    weightDecay: 1e-4,
    clipNorm: 0,
    evalBatch: 500,
    seed: 0,
    ...schedule,
    data,
    ...overrides,
  };
  validateFeatureNetConfig(cfg);
  return cfg;
}

/** Side of stage `s`'s pooled output. */
function stageSide(cfg: Pick<FeatureNetConfig, 'imageSize'>, s: number): number {
  return cfg.imageSize / 2 ** (s + 1);
}

/** Dimensions of the three outputs of a config. */
export function featureNetDims(cfg: FeatureNetConfig): { poolDim: number; spatialDim: number; classes: number } {
  const side = stageSide(cfg, cfg.spatialStage) / cfg.spatialPool;
  return { poolDim: cfg.hidden, spatialDim: side * side * cfg.spatialChannels, classes: cfg.classes };
}

/** Check a config; each problem names the field (`featureNet.channels`) and the fix. */
export function validateFeatureNetConfig(cfg: FeatureNetConfig): void {
  const where = (k: string) => `featureNet.${k}`;
  const int = (name: keyof FeatureNetConfig, min: number) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${v}`, where(name), `set ${name} to a whole number >= ${min}`);
  };
  const num = (name: keyof FeatureNetConfig, allowZero: boolean) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isFinite(v) && (allowZero ? v >= 0 : v > 0), `must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`, where(name), `set ${name} to a ${allowZero ? 'non-negative' : 'positive'} number`);
  };
  int('imageSize', 2);
  int('classes', 2);
  ensure(
    Array.isArray(cfg.channels) && cfg.channels.length >= 1 && cfg.channels.every((c) => Number.isInteger(c) && c >= 1),
    `must be a non-empty list of whole numbers >= 1, got ${JSON.stringify(cfg.channels)}`,
    where('channels'),
    'use e.g. [16, 32]',
  );
  ensure(
    cfg.imageSize % 2 ** cfg.channels.length === 0,
    `imageSize ${cfg.imageSize} cannot be halved ${cfg.channels.length} times (one 2x2 max-pool per stage)`,
    where('channels'),
    `use at most ${Math.log2(cfg.imageSize & -cfg.imageSize)} stages for ${cfg.imageSize}x${cfg.imageSize} images`,
  );
  int('kernelSize', 1);
  ensure(cfg.kernelSize % 2 === 1, `must be odd ('same' padding on both sides), got ${cfg.kernelSize}`, where('kernelSize'), 'use 3 or 5');
  int('hidden', 1);
  int('spatialStage', 0);
  ensure(cfg.spatialStage < cfg.channels.length, `stage ${cfg.spatialStage} does not exist (stages 0..${cfg.channels.length - 1})`, where('spatialStage'), 'use 0, the first conv stage');
  int('spatialPool', 1);
  const side = stageSide(cfg, cfg.spatialStage);
  ensure(side % cfg.spatialPool === 0, `the ${side}x${side} map of stage ${cfg.spatialStage} does not divide by spatialPool ${cfg.spatialPool}`, where('spatialPool'), 'use a divisor of the map side, e.g. 2');
  int('spatialChannels', 1);
  ensure(
    cfg.spatialChannels <= cfg.channels[cfg.spatialStage],
    `asks for ${cfg.spatialChannels} channels but stage ${cfg.spatialStage} has ${cfg.channels[cfg.spatialStage]}`,
    where('spatialChannels'),
    `use at most ${cfg.channels[cfg.spatialStage]}`,
  );
  const ds = featureNetDims(cfg).spatialDim;
  ensure(ds <= 4096, `the spatial features would have ${ds} values per image; the Fréchet distance costs O(dim^3) (minutes beyond 1,000)`, where('spatialChannels'), 'keep spatialDim near 512: fewer channels or more spatialPool');
  num('lr', false);
  int('warmup', 0);
  num('minLrRatio', true);
  ensure(cfg.minLrRatio <= 1, `must be at most 1, got ${cfg.minLrRatio}`, where('minLrRatio'), 'use e.g. 0.02');
  num('weightDecay', true);
  num('clipNorm', true);
  int('steps', 1);
  int('batch', 1);
  int('logEvery', 1);
  int('checkpointEvery', 1);
  int('evalBatch', 1);
  ensure(Number.isInteger(cfg.seed), `must be a whole number, got ${cfg.seed}`, where('seed'), 'pass an integer seed such as 0');
  ensure(
    typeof cfg.data === 'object' && cfg.data !== null && typeof cfg.data.train === 'object' && typeof cfg.data.test === 'object',
    'must give the train and test dataset options',
    where('data'),
    "pass { train: profileDataset('train'), test: profileDataset('test') }",
  );
  for (const split of ['train', 'test'] as const) {
    const pad = cfg.data[split].pad;
    ensure(pad === undefined || pad === cfg.imageSize, `pads images to ${pad} but the net expects ${cfg.imageSize}x${cfg.imageSize}`, where(`data.${split}.pad`), `pad to imageSize (${cfg.imageSize})`);
  }
}

/** The feature network's run folder for a profile: `<runRoot>/featurenet-<profile>`. */
export function featureNetRunDir(runRoot: string, profile: ProfileName = activeProfile()): string {
  return path.join(runRoot, `${FEATURE_NET_STAGE}-${profile}`);
}

// ---------------------------------------------------------------- parameters

export type FeatureNetParams = Record<string, tf.Variable>;

/** Name -> shape of every weight: conv0.w [k, k, 1, c0], conv0.b, ..., hidden.w [flat, hidden], hidden.b, out.w, out.b. */
export function featureNetParamShapes(cfg: FeatureNetConfig): Record<string, number[]> {
  const k = cfg.kernelSize;
  const s: Record<string, number[]> = {};
  let cin = 1;
  cfg.channels.forEach((c, i) => {
    s[`conv${i}.w`] = [k, k, cin, c];
    s[`conv${i}.b`] = [c];
    cin = c;
  });
  const side = stageSide(cfg, cfg.channels.length - 1);
  s['hidden.w'] = [side * side * cin, cfg.hidden];
  s['hidden.b'] = [cfg.hidden];
  s['out.w'] = [cfg.hidden, cfg.classes];
  s['out.b'] = [cfg.classes];
  return s;
}

/** A trainable variable holding `values` (in tf.tidy: tf.variable leaves its initial tensor registered otherwise). */
function variableOf(values: Float32Array, shape: number[]): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(values, shape), true));
}

/**
 * Fresh weights from the seeded generator (identical on every backend):
 * biases 0, kernels and the hidden layer He-normal (std sqrt(2 / fan-in),
 * they feed ReLUs), the output layer std 1/sqrt(hidden).
 */
export function initFeatureNetParams(cfg: FeatureNetConfig, seed: number = cfg.seed): FeatureNetParams {
  const r = rng(seedFrom(seed, 'featurenet-init'));
  const p: FeatureNetParams = {};
  for (const [name, shape] of Object.entries(featureNetParamShapes(cfg))) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (!name.endsWith('.b')) {
      const fanIn = shape.length === 4 ? shape[0] * shape[1] * shape[2] : shape[0];
      const std = name === 'out.w' ? 1 / Math.sqrt(fanIn) : Math.sqrt(2 / fanIn);
      for (let i = 0; i < size; i++) values[i] = r.normal() * std;
    }
    p[name] = variableOf(values, shape);
  }
  return p;
}

// ---------------------------------------------------------------- layers with wasm-friendly gradients

/**
 * im2col of x [B, H, W, C] for a k x k 'same' stride-1 convolution, written
 * transposed: [k*k*C, B*H*W], row (ky*k + kx)*C + c, zero outside the image.
 * Then dW [k*k*C, co] = patchesᵀ @ dy[B*H*W, co] is a plain matmul.
 */
export function im2colTransposed(x: Float32Array, B: number, H: number, W: number, C: number, k: number): Float32Array {
  const r = (k - 1) / 2, rows = B * H * W;
  const out = new Float32Array(k * k * C * rows);
  for (let ky = 0; ky < k; ky++) {
    for (let kx = 0; kx < k; kx++) {
      const dy = ky - r, dx = kx - r;
      const x0 = Math.max(0, -dx), x1 = Math.min(W, W - dx);
      for (let c = 0; c < C; c++) {
        let o = ((ky * k + kx) * C + c) * rows;
        for (let b = 0; b < B; b++) {
          for (let y = 0; y < H; y++, o += W) {
            const iy = y + dy;
            if (iy < 0 || iy >= H) continue;
            const src = (b * H + iy) * W * C + c;
            for (let xx = x0; xx < x1; xx++) out[o + xx] = x[src + (xx + dx) * C];
          }
        }
      }
    }
  }
  return out;
}

type ConvFn = (x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D) => tf.Tensor4D;

/**
 * y = conv2d(x, w, stride 1, 'same') + b with a gradient built from fast wasm
 * kernels (see the module comment):
 *   dx = conv2d(dy, w flipped in space with in/out channels swapped, 'same')
 *        (the transposed convolution of a stride-1 'same' conv with an odd kernel);
 *   dW = im2colᵀ(x) @ dy, the patches built on the host;
 *   db = 1ᵀ dy as a [1, rows] @ [rows, co] product.
 * With `inputGrad` false, dx is zeros: the first layer's input is data.
 */
function makeConvSame(inputGrad: boolean): ConvFn {
  return tf.customGrad(((x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    save([x, w]);
    return {
      value: tf.add(tf.conv2d(x, w, 1, 'same'), b),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as tf.Tensor4D[];
        const [B, H, W, C] = xs.shape;
        const [k, , , co] = ws.shape;
        const rows = B * H * W;
        const dy2 = tf.reshape(dy, [rows, co]); // [B*H*W, co]
        const patchesT = tf.tensor2d(im2colTransposed(xs.dataSync() as Float32Array, B, H, W, C, k), [k * k * C, rows]);
        const dw = tf.reshape(tf.matMul(patchesT, dy2), ws.shape); // [k*k*C, co] -> [k, k, C, co]
        const db = tf.reshape(tf.matMul(tf.ones([1, rows]), dy2), [co]);
        const wFlip = tf.transpose(tf.reverse(ws, [0, 1]), [0, 1, 3, 2]); // [k, k, co, C]
        const dx = inputGrad ? tf.conv2d(dy, wFlip as tf.Tensor4D, 1, 'same') : tf.zerosLike(xs);
        return [dx, dw, db];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as ConvFn;
}

/** Conv layer inside the net (its input needs a gradient). */
export const convSame: ConvFn = makeConvSame(true);
/** Conv layer on the input images (no input gradient). */
export const inputConvSame: ConvFn = makeConvSame(false);

/**
 * 2x2 max-pool, stride 2, with the gradient routed through an argmax mask:
 * dx = upsample(dy) * [x == upsample(max)]. Ties within a window would each
 * get the gradient; after a ReLU the only likely ties are zeros, whose ReLU
 * gradient is zero anyway.
 */
export const maxPool2: (x: tf.Tensor4D) => tf.Tensor4D = tf.customGrad(((x: tf.Tensor4D, save: tf.GradSaveFunc) => {
  const y = tf.maxPool(x, 2, 2, 'valid');
  save([x, y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
      const [xs, ys] = saved as tf.Tensor4D[];
      const [, H, W] = xs.shape;
      const isMax = tf.cast(tf.equal(xs, tf.image.resizeNearestNeighbor(ys, [H, W])), 'float32'); // [B, H, W, C]
      return tf.mul(tf.image.resizeNearestNeighbor(dy, [H, W]), isMax);
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor4D) => tf.Tensor4D;

/** What one forward pass returns (tensors owned by the caller's tidy). */
export interface FeatureNetForward {
  /** [N, classes] */
  logits: tf.Tensor2D;
  /** [N, hidden], after the ReLU */
  pool: tf.Tensor2D;
  /** [N, spatialDim], only when asked for */
  spatial?: tf.Tensor2D;
}

/** The forward pass on images x [N, S, S, 1]. Call inside tf.tidy. */
export function featureNetForward(cfg: FeatureNetConfig, p: Record<string, tf.Tensor>, x: tf.Tensor4D, withSpatial = false): FeatureNetForward {
  const n = x.shape[0];
  let h: tf.Tensor4D = x;
  let spatial: tf.Tensor2D | undefined;
  cfg.channels.forEach((c, i) => {
    const conv = i === 0 ? inputConvSame : convSame;
    h = maxPool2(tf.relu(conv(h, p[`conv${i}.w`] as tf.Tensor4D, p[`conv${i}.b`] as tf.Tensor1D))); // [N, S/2^(i+1), S/2^(i+1), c]
    if (withSpatial && i === cfg.spatialStage) {
      const pooled = cfg.spatialPool > 1 ? tf.avgPool(h, cfg.spatialPool, cfg.spatialPool, 'valid') : h;
      const side = pooled.shape[1];
      const kept = cfg.spatialChannels < c ? tf.slice(pooled, [0, 0, 0, 0], [n, side, side, cfg.spatialChannels]) : pooled;
      spatial = tf.reshape(kept, [n, -1]) as tf.Tensor2D; // [N, side*side*spatialChannels], (y, x, c) order
    }
  });
  const flat = tf.reshape(h, [n, -1]);
  const pool = tf.relu(denseLayer(flat, p['hidden.w'], p['hidden.b'])) as tf.Tensor2D;
  const logits = denseLayer(pool, p['out.w'], p['out.b']);
  return { logits, pool, spatial };
}

/** Mean softmax cross-entropy of logits [N, classes] against integer labels [N]. */
function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, classes: number): tf.Scalar {
  const y = tf.oneHot(labels, classes); // [N, classes]
  return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(logits)), -1))) as tf.Scalar;
}

// ---------------------------------------------------------------- the model

/** Where a loaded or trained net came from. */
export interface FeatureNetSource {
  checkpoint?: string;
  step: number;
  /** Test accuracy recorded when it was saved, if any. */
  testAccuracy?: number;
}

/** The three outputs of featureNetOutputs, as flat row-major arrays. */
export interface FeatureNetOutputs {
  /** [n * poolDim] penultimate features (FID). */
  pool: Float32Array;
  /** [n * spatialDim] early spatial features (sFID). */
  spatial: Float32Array;
  /** [n * classes] softmax (IS, recognizability). */
  probs: Float32Array;
  n: number;
  poolDim: number;
  spatialDim: number;
  classes: number;
}

export class FeatureNet {
  constructor(
    readonly config: FeatureNetConfig,
    readonly params: FeatureNetParams,
    public source: FeatureNetSource = { step: 0 },
  ) {}

  /** Fresh, untrained weights (seeded). */
  static init(config: FeatureNetConfig, seed: number = config.seed): FeatureNet {
    validateFeatureNetConfig(config);
    return new FeatureNet(config, initFeatureNetParams(config, seed), { step: 0 });
  }

  get dims(): { poolDim: number; spatialDim: number; classes: number } {
    return featureNetDims(this.config);
  }

  get numParams(): number {
    return Object.values(this.params).reduce((s, t) => s + t.size, 0);
  }

  /** Number of images in a flat pixel array, checked against the net's input size. */
  countImages(images: Float32Array, where: string): number {
    const px = this.config.imageSize ** 2;
    ensure(images instanceof Float32Array, 'expected a Float32Array of pixels', where, `pass N*${this.config.imageSize}*${this.config.imageSize} values in [-1, 1]`);
    ensure(
      images.length % px === 0,
      `holds ${images.length} values, not a whole number of ${this.config.imageSize}x${this.config.imageSize} images`,
      where,
      `pad images to ${this.config.imageSize}x${this.config.imageSize} (loadDataset({ pad: ${this.config.imageSize} }) or padTo)`,
    );
    return images.length / px;
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}

/**
 * The three outputs for images [N * S * S] in [-1, 1], `batch` images per
 * forward pass. Each batch runs in its own tf.tidy and its results are copied
 * out, so no tensor outlives the call (tf.memory().numTensors is unchanged).
 */
export function featureNetOutputs(net: FeatureNet, images: Float32Array, batch = 256): FeatureNetOutputs {
  const n = net.countImages(images, 'featureNetOutputs(images)');
  ensure(Number.isInteger(batch) && batch >= 1, `batch ${batch} must be a whole number >= 1`, 'featureNetOutputs(batch)', 'use e.g. 256');
  const cfg = net.config, S = cfg.imageSize, px = S * S;
  const { poolDim, spatialDim, classes } = featureNetDims(cfg);
  const pool = new Float32Array(n * poolDim), spatial = new Float32Array(n * spatialDim), probs = new Float32Array(n * classes);
  for (let s = 0; s < n; s += batch) {
    const m = Math.min(batch, n - s);
    // Tensors out of the tidy, typed arrays copied outside it (PLATFORM.md: tidy walks what it returns).
    const outs = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(s * px, (s + m) * px), [m, S, S, 1]);
      const f = featureNetForward(cfg, net.params, x, true);
      return [f.pool, f.spatial!, tf.softmax(f.logits)];
    });
    pool.set(outs[0].dataSync() as Float32Array, s * poolDim);
    spatial.set(outs[1].dataSync() as Float32Array, s * spatialDim);
    probs.set(outs[2].dataSync() as Float32Array, s * classes);
    tf.dispose(outs);
  }
  return { pool, spatial, probs, n, poolDim, spatialDim, classes };
}

/** Class probabilities [N * classes] only (cheaper than featureNetOutputs). */
export function featureNetProbs(net: FeatureNet, images: Float32Array, batch = 256): Float32Array {
  const n = net.countImages(images, 'featureNetProbs(images)');
  const cfg = net.config, S = cfg.imageSize, px = S * S;
  const probs = new Float32Array(n * cfg.classes);
  for (let s = 0; s < n; s += batch) {
    const m = Math.min(batch, n - s);
    const p = tf.tidy(() => tf.softmax(featureNetForward(cfg, net.params, tf.tensor4d(images.subarray(s * px, (s + m) * px), [m, S, S, 1])).logits));
    probs.set(p.dataSync() as Float32Array, s * cfg.classes);
    p.dispose();
  }
  return probs;
}

/** The net as a classifier function for recognizabilityCurve: images -> probs [N * classes]. */
export function featureNetClassifier(net: FeatureNet, batch = 256): (images: Float32Array) => Float32Array {
  return (images) => featureNetProbs(net, images, batch);
}

/** Test-set accuracy and mean cross-entropy. */
export interface FeatureNetEval {
  accuracy: number;
  loss: number;
  n: number;
}

/** Accuracy and mean cross-entropy of the net on labelled images. */
export function evaluateFeatureNet(net: FeatureNet, data: LabelledImages, batch = net.config.evalBatch): FeatureNetEval {
  const n = checkLabelled(net.config, data, 'evaluateFeatureNet(data)');
  const probs = featureNetProbs(net, data.images.subarray(0, n * net.config.imageSize ** 2), batch);
  const C = net.config.classes;
  let correct = 0, loss = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (probs[i * C + c] > probs[i * C + best]) best = c;
    if (best === data.labels[i]) correct++;
    loss -= Math.log(Math.max(probs[i * C + data.labels[i]], 1e-30));
  }
  return { accuracy: correct / n, loss: loss / n, n };
}

/** Check images and labels against the config; returns N. */
function checkLabelled(cfg: FeatureNetConfig, data: LabelledImages, where: string): number {
  const px = cfg.imageSize ** 2;
  ensure(data && data.images instanceof Float32Array && data.labels instanceof Int32Array, 'expected { images: Float32Array, labels: Int32Array, n }', where, 'pass an ImageDataset from loadDataset');
  ensure(Number.isInteger(data.n) && data.n >= 1, `n ${data.n} must be a whole number >= 1`, where, 'pass a non-empty dataset');
  ensure(
    data.images.length >= data.n * px && data.images.length % px === 0,
    `holds ${data.images.length} pixel values, not ${data.n} images of ${cfg.imageSize}x${cfg.imageSize}`,
    where,
    `pad the images to ${cfg.imageSize}x${cfg.imageSize} (loadDataset({ pad: ${cfg.imageSize} }))`,
  );
  ensure(data.labels.length >= data.n, `has ${data.labels.length} labels for ${data.n} images`, where, 'pass one label per image');
  for (let i = 0; i < data.n; i++) {
    const l = data.labels[i];
    if (!(l >= 0 && l < cfg.classes)) {
      throw new OrderHeadError(`label ${l} at index ${i} is outside 0..${cfg.classes - 1}`, where, `set featureNet.classes to the dataset's class count`);
    }
  }
  return data.n;
}

// ---------------------------------------------------------------- training

export interface TrainFeatureNetOptions {
  /** The run folder, e.g. featureNetRunDir(session.runRoot, session.profile). */
  runDir: string;
  /** Progress bar factory (the notebook passes session.progress). */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Stop after this step (and save), to train in slices; default config.steps. */
  untilStep?: number;
  /** Called with each metrics row as it is logged (live curves). */
  onLog?: (row: Record<string, number>) => void;
  /** Backend name for the run manifest. */
  backend?: string;
}

export interface TrainFeatureNetResult {
  /** The trained net; the caller disposes it. */
  net: FeatureNet;
  run: Run<FeatureNetConfig>;
  /** Step the call started from (0, or the checkpoint it resumed). */
  startStep: number;
  /** Step reached. */
  step: number;
  /** True when step = config.steps (a finished net, what loadFeatureNet accepts). */
  complete: boolean;
  resumedFrom?: string;
  /** The newest checkpoint. */
  checkpoint: string;
  /** Wall time of the training steps in this call. */
  seconds: number;
  /** Mean wall time per step in this call (NaN when none ran). */
  secondsPerStep: number;
  /** Accuracy on the test set at `step`. */
  testAccuracy: number;
  /** Mean test cross-entropy at `step`. */
  testLoss: number;
  testImages: number;
}

/** Training state kept beside the weights in each checkpoint's `extra`. */
interface TrainState {
  optStep: number;
  epoch: number;
  cursor: number;
  testAccuracy?: number;
  testLoss?: number;
  testImages?: number;
}

function epochOrder(seed: number, epoch: number, n: number): Int32Array {
  const order = Array.from({ length: n }, (_, i) => i);
  rng(seedFrom(seed, 'featurenet-data-order', epoch)).shuffle(order);
  return Int32Array.from(order);
}

function loadSplit(given: LabelledImages | undefined, cfg: FeatureNetConfig, split: 'train' | 'test'): LabelledImages {
  if (given) return given;
  return loadDataset({ ...cfg.data[split], pad: cfg.imageSize });
}

/** Copy checkpoint tensors into the net's variables (and the optimizer's moments when present). */
function assignWeights(net: FeatureNet, weights: Record<string, tf.Tensor>, file: string, opt?: AdamW): void {
  for (const [name, v] of Object.entries(net.params)) {
    const w = weights[name];
    if (!w || !tf.util.arraysEqual(w.shape, v.shape)) {
      throw new OrderHeadError(
        `weight '${name}' is ${w ? `shaped [${w.shape}]` : 'missing'}, the config needs [${v.shape}]`,
        file,
        'the file is damaged or belongs to another config: retrain the feature network (delete the run folder or use another one)',
      );
    }
    v.assign(w);
    const m = weights[`adam.m.${name}`], s = weights[`adam.v.${name}`];
    if (opt && m && s) {
      opt.m[name].assign(m);
      opt.v[name].assign(s);
    }
  }
}

/**
 * Train the feature network of `config` in `options.runDir` (await it),
 * resuming from the newest checkpoint there; `train` and `test` default to
 * the config's datasets. A run folder made with another config is refused,
 * naming each differing field (openRun). At the end of the call the test set
 * is evaluated and the accuracy logged, stored in the last checkpoint and
 * returned. The returned net belongs to the caller (dispose it).
 */
export async function trainFeatureNet(
  config: FeatureNetConfig, train: LabelledImages | undefined, test: LabelledImages | undefined, options: TrainFeatureNetOptions,
): Promise<TrainFeatureNetResult> {
  validateFeatureNetConfig(config);
  ensure(typeof options?.runDir === 'string' && options.runDir.length > 0, 'no run folder given', 'trainFeatureNet(options.runDir)', 'pass runDir: featureNetRunDir(session.runRoot, session.profile)');
  const runDir = path.resolve(options.runDir);
  const run = openRun<FeatureNetConfig>({ root: path.dirname(runDir), name: path.basename(runDir), stage: FEATURE_NET_STAGE, config, resume: true, backend: options.backend });
  const net = FeatureNet.init(config);
  const opt = new AdamW(net.params, { lr: config.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: config.weightDecay, clipNorm: config.clipNorm });
  try {
    return await trainLoop(config, train, test, options, run, net, opt);
  } catch (err) {
    net.dispose();
    throw err;
  } finally {
    opt.dispose();
  }
}

async function trainLoop(
  cfg: FeatureNetConfig, trainGiven: LabelledImages | undefined, testGiven: LabelledImages | undefined, options: TrainFeatureNetOptions,
  run: Run<FeatureNetConfig>, net: FeatureNet, opt: AdamW,
): Promise<TrainFeatureNetResult> {
  const until = Math.min(cfg.steps, options.untilStep ?? cfg.steps);
  let state: TrainState = { optStep: 0, epoch: 0, cursor: 0 };
  let startStep = 0;
  let resumedFrom: string | undefined;
  let checkpoint: string | undefined;

  const latest = run.latestCheckpoint(FEATURE_NET_STAGE);
  if (latest) {
    const ck = loadCheckpoint<FeatureNetConfig>(latest.path, { expectConfig: cfg });
    try {
      assignWeights(net, ck.weights, latest.path, opt);
    } finally {
      tf.dispose(Object.values(ck.weights));
    }
    state = { ...state, ...(ck.extra as Partial<TrainState>) };
    opt.step = state.optStep;
    startStep = ck.step;
    resumedFrom = latest.path;
    checkpoint = latest.path;
  }
  net.source = { checkpoint, step: startStep, testAccuracy: state.testAccuracy };

  const test = loadSplit(testGiven, cfg, 'test');
  checkLabelled(cfg, test, 'trainFeatureNet(test)');
  const save = (step: number): string => {
    const file = saveCheckpoint(run.checkpointDir, checkpointName(FEATURE_NET_STAGE, step), {
      weights: { ...net.params, ...opt.state() }, config: cfg, step, kind: FEATURE_NET_STAGE, extra: { ...state, optStep: opt.step },
    });
    checkpoint = file;
    net.source = { checkpoint: file, step, testAccuracy: state.testAccuracy };
    return file;
  };
  const finish = (step: number, seconds: number): TrainFeatureNetResult => {
    const ev = evaluateFeatureNet(net, test, cfg.evalBatch);
    state = { ...state, testAccuracy: ev.accuracy, testLoss: ev.loss, testImages: ev.n };
    return {
      net, run, startStep, step, complete: step >= cfg.steps, resumedFrom, checkpoint: checkpoint!, seconds,
      secondsPerStep: step > startStep ? seconds / (step - startStep) : NaN, testAccuracy: ev.accuracy, testLoss: ev.loss, testImages: ev.n,
    };
  };

  if (startStep >= until) {
    const result = finish(startStep, 0);
    net.source = { ...net.source, testAccuracy: result.testAccuracy };
    return result;
  }

  const train = loadSplit(trainGiven, cfg, 'train');
  checkLabelled(cfg, train, 'trainFeatureNet(train)');
  const S = cfg.imageSize, px = S * S, B = cfg.batch;
  let order = epochOrder(cfg.seed, state.epoch, train.n);
  const batchImages = new Float32Array(B * px);
  const batchLabels = new Int32Array(B);
  const nextBatch = (): void => {
    for (let b = 0; b < B; b++) {
      if (state.cursor >= train.n) {
        state.epoch++;
        state.cursor = 0;
        order = epochOrder(cfg.seed, state.epoch, train.n);
      }
      const i = order[state.cursor++];
      batchImages.set(train.images.subarray(i * px, (i + 1) * px), b * px);
      batchLabels[b] = train.labels[i];
    }
  };

  const bar = options.progress?.({ total: until - startStep, label: 'feature net train' });
  const lastGood = () => (checkpoint ? `the last good checkpoint ${checkpoint} is unchanged` : 'no checkpoint had been saved yet');
  let winLoss = 0, winCorrect = 0, winNorm = 0, winSteps = 0;
  const t0 = Date.now();
  let winStart = t0;
  let step = startStep;
  try {
    while (step < until) {
      const s = step + 1;
      nextBatch();
      const lr = warmupCosine(step, cfg.steps, cfg.warmup, cfg.lr, cfg.minLrRatio);
      let correctT: tf.Tensor | undefined;
      const { grads, loss } = accumulateGrads(net.params, 1, () => {
        const x = tf.tensor4d(batchImages, [B, S, S, 1]);
        const labels = tf.tensor1d(batchLabels, 'int32');
        const { logits } = featureNetForward(cfg, net.params, x);
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32')));
        return crossEntropy(logits, labels, cfg.classes);
      });
      const correct = correctT!.dataSync()[0];
      correctT!.dispose();
      let norm: number;
      try {
        if (!Number.isFinite(loss)) {
          throw new OrderHeadError(
            `the training loss is ${loss} at step ${s}; training stopped before updating, ${lastGood()}`,
            run.dir,
            'check the images for NaN/Inf, then lower featureNet.lr (or set clipNorm) and resume',
          );
        }
        try {
          norm = opt.apply(grads, lr);
        } catch (err) {
          if (err instanceof OrderHeadError) {
            throw new OrderHeadError(`${err.problem} (feature net step ${s}); ${lastGood()}`, run.dir, 'lower featureNet.lr or set featureNet.clipNorm and resume');
          }
          throw err;
        }
      } finally {
        tf.dispose(Object.values(grads));
      }
      step = s;
      winLoss += loss;
      winCorrect += correct;
      winNorm += norm;
      winSteps++;
      if (step % cfg.logEvery === 0 || step === until) {
        const now = Date.now();
        const row: Record<string, number> = {
          loss: winLoss / winSteps, train_accuracy: winCorrect / (winSteps * B), grad_norm: winNorm / winSteps, lr,
          sec_per_step: (now - winStart) / 1000 / winSteps, epoch: state.epoch + state.cursor / train.n,
        };
        run.logMetrics(step, row);
        options.onLog?.({ step, ...row });
        winLoss = winCorrect = winNorm = 0;
        winSteps = 0;
        winStart = now;
      }
      const info: ProgressInfo = { loss: Number(loss.toFixed(4)), acc: Number((correct / B).toFixed(3)) };
      if (step === until) {
        // Evaluate before the last save, so the checkpoint records the test accuracy.
        const seconds = (Date.now() - t0) / 1000;
        const result = finish(step, seconds);
        run.logMetrics(step, { test_accuracy: result.testAccuracy, test_loss: result.testLoss, test_images: result.testImages });
        options.onLog?.({ step, test_accuracy: result.testAccuracy, test_loss: result.testLoss });
        save(step);
        result.checkpoint = checkpoint!;
        bar?.tick(1, { ...info, test_acc: Number(result.testAccuracy.toFixed(4)) });
        bar?.done();
        return result;
      }
      if (step % cfg.checkpointEvery === 0) save(step);
      bar?.tick(1, info);
      await yieldToEventLoop();
    }
  } catch (err) {
    bar?.done({ stopped: `step ${step + 1}` });
    throw err;
  }
  // Not reached: the loop returns at step === until.
  throw new OrderHeadError('training ended without reaching its last step', run.dir, 'report this as a bug');
}

// ---------------------------------------------------------------- loading

export interface LoadFeatureNetOptions {
  /** Accept a net whose training stopped before config.steps (default false: numbers from it would not be comparable). */
  allowIncomplete?: boolean;
  /** The model fields (FEATURE_NET_MODEL_KEYS) given here must match, or the error names each differing field. */
  expectConfig?: Partial<FeatureNetConfig>;
}

/**
 * Load a trained feature network from a checkpoint file or a run folder (its
 * newest `featurenet-step*.safetensors`). Missing folders or checkpoints,
 * truncated or corrupt files, wrong kinds and misshapen weights are
 * OrderHeadErrors naming the path. A net whose training did not finish is
 * refused unless `allowIncomplete`.
 */
export function loadFeatureNet(fileOrRunDir: string, opts: LoadFeatureNetOptions = {}): FeatureNet {
  let file = fileOrRunDir;
  if (!file.endsWith('.safetensors')) {
    const dir = path.join(fileOrRunDir, 'checkpoints');
    const ref = latestCheckpoint(dir, FEATURE_NET_STAGE);
    if (!ref) {
      throw new OrderHeadError(
        'holds no feature-network checkpoint (featurenet-step*.safetensors)',
        dir,
        'train the feature network first (trainFeatureNet with this runDir, in this profile), or pass the right folder',
      );
    }
    file = ref.path;
  }
  const expectKeys = opts.expectConfig ? FEATURE_NET_MODEL_KEYS.filter((k) => opts.expectConfig![k] !== undefined) : undefined;
  const ck = loadCheckpoint<FeatureNetConfig>(file, opts.expectConfig ? { expectConfig: opts.expectConfig, compareKeys: [...expectKeys!] } : {});
  try {
    if (ck.kind !== FEATURE_NET_STAGE) {
      throw new OrderHeadError(`is a '${ck.kind}' checkpoint, not a feature-network checkpoint`, file, 'pass a featurenet-step*.safetensors file or the feature-network run folder');
    }
    validateFeatureNetConfig(ck.config);
    if (ck.step < ck.config.steps && !opts.allowIncomplete) {
      throw new OrderHeadError(
        `the feature network stopped at step ${ck.step} of ${ck.config.steps}; metrics from an unfinished net are not comparable with the finished one's`,
        file,
        'finish training (trainFeatureNet with the same config and runDir resumes), or pass allowIncomplete: true',
      );
    }
    const net = FeatureNet.init(ck.config);
    try {
      assignWeights(net, ck.weights, file);
    } catch (err) {
      net.dispose();
      throw err;
    }
    const extra = ck.extra as Partial<TrainState>;
    net.source = { checkpoint: file, step: ck.step, testAccuracy: typeof extra.testAccuracy === 'number' ? extra.testAccuracy : undefined };
    return net;
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}
