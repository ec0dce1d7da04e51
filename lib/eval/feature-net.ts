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
import { activeProfile, profileConfig, ProfileName } from '../runtime/profile';
import { rng, seedFrom } from '../runtime/seed';
import { accumulateGrads, OPTIM_CONFIG_DOCS, OptimConfig, validateOptimConfig } from '../runtime/optim';
import { openRun, Run } from '../runtime/run';
import { checkpointName, latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../runtime/checkpoint';
import { Progress } from '../runtime/progress';
import { DatasetOptions, loadDataset } from '../data/dataset';
import { denseLayer } from '../tokenizer/vq';
import { runTrainingAsync, TrainingOutcome } from '../runtime/train-loop';
import type { LabelledImages } from '../tokenizer/cache';

/** Checkpoint prefix and run stage of feature-network runs. */
export const FEATURE_NET_STAGE = 'featurenet';

/** Which images the feature network trains and is tested on (recorded in its config). */
export interface FeatureNetDataConfig {
  train: DatasetOptions;
  test: DatasetOptions;
}

export interface FeatureNetConfig extends OptimConfig {
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
  /** Append a training metrics row every this many steps. */
  logEvery: number;
  /** Save a checkpoint every this many steps (and always at the last step of a call). */
  checkpointEvery: number;
  /** Images per forward pass when evaluating the test set. Default 500. */
  evalBatch: number;
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
  ...OPTIM_CONFIG_DOCS,
  batch: 'images per step',
  evalEvery: 'test evaluation every N steps (0 = at the end of each call)',
  logEvery: 'metrics row every N steps',
  checkpointEvery: 'checkpoint every N steps',
  evalBatch: 'images per forward pass in evaluation',
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
  const fashion = { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } } as const;
  return profileConfig<FeatureNetConfig>(FEATURE_NET_DEFAULTS, {
    smoke: { steps: 30, batch: 32, warmup: 5, logEvery: 5, checkpointEvery: 15,
      data: { train: { name: 'subset', split: 'train', limit: 512, pad: 32 }, test: { name: 'subset', split: 'test', limit: 128, pad: 32 } } },
    default: {},
    full: { steps: 3120, warmup: 100, logEvery: 50, checkpointEvery: 500, data: fashion },
  }, profile, overrides, validateFeatureNetConfig);
}

/** The default profile's feature network (see featureNetConfig for how it was sized). β2 = 0.999: the measured runs used it. */
export const FEATURE_NET_DEFAULTS: FeatureNetConfig = {
  imageSize: 32, classes: 10, channels: [16, 32], kernelSize: 3, hidden: 128, spatialStage: 0, spatialPool: 2, spatialChannels: 8,
  steps: 780, batch: 128, lr: 3e-3, warmup: 30, minLrRatio: 0.02, weightDecay: 1e-4, betas: [0.9, 0.999], clipNorm: 0, seed: 0, evalEvery: 0,
  logEvery: 20, checkpointEvery: 200, evalBatch: 500,
  data: { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } },
};

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
  validateOptimConfig(cfg, 'featureNet');
  int('logEvery', 1);
  int('checkpointEvery', 1);
  int('evalBatch', 1);
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
  config: FeatureNetConfig;
  /** The run folder, e.g. featureNetRunDir(session.runRoot, session.profile). */
  runDir: string;
  /** Training images; default: loadDataset(config.data.train). */
  train?: LabelledImages;
  /** Test images (evaluated at the end of the call); default: loadDataset(config.data.test). */
  test?: LabelledImages;
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

/** What the last checkpoint's `extra` records about the test set. */
interface TestRecord {
  testAccuracy?: number;
  testLoss?: number;
  testImages?: number;
}

/** Copy a checkpoint's weights into the net's variables, refusing a missing or misshapen one. */
function assignWeights(net: FeatureNet, weights: Record<string, tf.Tensor>, file: string): void {
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
  }
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

/**
 * Train the feature network of `options.config` in `options.runDir` (await
 * it), resuming from the newest checkpoint there; `train` and `test` default
 * to the config's datasets. A run folder made with another config is refused,
 * naming each differing field (openRun). At the end of the call the test set
 * is evaluated and the accuracy logged, stored in the last checkpoint and
 * returned. The returned net belongs to the caller (dispose it).
 */
export async function trainFeatureNet(options: TrainFeatureNetOptions): Promise<TrainFeatureNetResult> {
  const cfg = options?.config;
  ensure(cfg !== undefined, 'no config given', 'trainFeatureNet(options.config)', 'pass config: featureNetConfig(session.profile)');
  validateFeatureNetConfig(cfg);
  ensure(typeof options.runDir === 'string' && options.runDir.length > 0, 'no run folder given', 'trainFeatureNet(options.runDir)', 'pass runDir: featureNetRunDir(session.runRoot, session.profile)');
  const runDir = path.resolve(options.runDir);
  const run = openRun<FeatureNetConfig>({ root: path.dirname(runDir), name: path.basename(runDir), stage: FEATURE_NET_STAGE, config: cfg, resume: true, backend: options.backend });
  const net = FeatureNet.init(cfg);
  try {
    return await train(options, run, net);
  } catch (err) {
    net.dispose();
    throw err;
  }
}

async function train(options: TrainFeatureNetOptions, run: Run<FeatureNetConfig>, net: FeatureNet): Promise<TrainFeatureNetResult> {
  const cfg = options.config;
  const until = Math.min(cfg.steps, options.untilStep ?? cfg.steps);
  const test = loadSplit(options.test, cfg, 'test');
  checkLabelled(cfg, test, 'trainFeatureNet(test)');
  const S = cfg.imageSize, px = S * S, B = cfg.batch;
  const data = { epoch: 0, cursor: 0 };
  let record: TestRecord = {};
  let trainSet: LabelledImages | undefined, order: Int32Array | undefined;
  const batchImages = new Float32Array(B * px), batchLabels = new Int32Array(B);
  const nextBatch = (): void => {
    if (!trainSet) {
      trainSet = loadSplit(options.train, cfg, 'train');
      checkLabelled(cfg, trainSet, 'trainFeatureNet(train)');
      order = epochOrder(cfg.seed, data.epoch, trainSet.n);
    }
    for (let b = 0; b < B; b++) {
      if (data.cursor >= trainSet.n) { data.epoch++; data.cursor = 0; order = epochOrder(cfg.seed, data.epoch, trainSet.n); }
      const i = order![data.cursor++];
      batchImages.set(trainSet.images.subarray(i * px, (i + 1) * px), b * px);
      batchLabels[b] = trainSet.labels[i];
    }
  };
  const evaluate = () => {
    const ev = evaluateFeatureNet(net, test, cfg.evalBatch);
    record = { testAccuracy: ev.accuracy, testLoss: ev.loss, testImages: ev.n };
    return { test_accuracy: ev.accuracy, test_loss: ev.loss, test_images: ev.n };
  };
  let bar: Progress | undefined, correct = 0;
  let win = { loss: 0, correct: 0, norm: 0, steps: 0, start: Date.now() };
  let outcome: TrainingOutcome;
  try {
    outcome = await runTrainingAsync({
      run, stage: FEATURE_NET_STAGE, configName: 'featureNet', optim: cfg, params: net.params, checkpointConfig: cfg,
      checkpointEvery: cfg.checkpointEvery, checkpointAtCallEnd: true, evaluateAtCallEnd: true, evalRow: 'separate', untilStep: options.untilStep,
      state: {
        save: () => ({ ...data, ...record }),
        restore: (extra) => {
          Object.assign(data, { epoch: Number(extra.epoch ?? 0), cursor: Number(extra.cursor ?? 0) });
          record = { testAccuracy: extra.testAccuracy as number | undefined, testLoss: extra.testLoss as number | undefined, testImages: extra.testImages as number | undefined };
        },
      },
      onStart: ({ startStep }) => { if (startStep < until) bar = options.progress?.({ total: until - startStep, label: 'feature net train' }); },
      step: () => {
        nextBatch();
        let correctT: tf.Tensor | undefined;
        const { grads, loss } = accumulateGrads(net.params, 1, () => {
          const x = tf.tensor4d(batchImages, [B, S, S, 1]);
          const labels = tf.tensor1d(batchLabels, 'int32');
          const { logits } = featureNetForward(cfg, net.params, x);
          correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32')));
          return crossEntropy(logits, labels, cfg.classes);
        });
        correct = correctT!.dataSync()[0];
        correctT!.dispose();
        return { loss, grads };
      },
      row: (step, r) => {
        win.loss += r.loss; win.correct += correct; win.norm += r.gradNorm; win.steps++;
        if (step % cfg.logEvery !== 0 && step !== until) return undefined;
        const now = Date.now(), n = win.steps;
        const row = { loss: win.loss / n, train_accuracy: win.correct / (n * B), grad_norm: win.norm / n, lr: r.lr, sec_per_step: (now - win.start) / 1000 / n, epoch: data.epoch + data.cursor / trainSet!.n };
        win = { loss: 0, correct: 0, norm: 0, steps: 0, start: now };
        return row;
      },
      evaluate,
      onStep: (step, row, evaluation) => {
        if (row) options.onLog?.({ step, ...(row as Record<string, number>) });
        if (evaluation) options.onLog?.({ step, test_accuracy: Number(evaluation.test_accuracy), test_loss: Number(evaluation.test_loss) });
        bar?.tick(1, { acc: Number((correct / B).toFixed(3)), ...(evaluation ? { test_acc: Number(Number(evaluation.test_accuracy).toFixed(4)) } : {}) });
      },
    });
  } catch (err) {
    bar?.done({ stopped: 'error' });
    throw err;
  }
  bar?.done();
  // A call that trained nothing (already finished) still reports the test set.
  if (outcome.step === outcome.startStep) evaluate();
  net.source = { checkpoint: outcome.checkpoint, step: outcome.step, testAccuracy: record.testAccuracy };
  return {
    net, run, startStep: outcome.startStep, step: outcome.step, complete: outcome.step >= cfg.steps, resumedFrom: outcome.resumedFrom, checkpoint: outcome.checkpoint!,
    seconds: outcome.seconds, secondsPerStep: outcome.step > outcome.startStep ? outcome.seconds / (outcome.step - outcome.startStep) : NaN,
    testAccuracy: record.testAccuracy!, testLoss: record.testLoss!, testImages: record.testImages!,
  };
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
    const extra = ck.extra as TestRecord;
    net.source = { checkpoint: file, step: ck.step, testAccuracy: typeof extra.testAccuracy === 'number' ? extra.testAccuracy : undefined };
    return net;
  } finally {
    tf.dispose(Object.values(ck.weights));
  }
}
