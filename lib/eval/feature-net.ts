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
 *
 * Config: feature-net-config.ts; conv layers with their own gradients:
 * feature-net-layers.ts; training and loading: feature-net-train.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { denseLayer } from '../tokenizer/layers';
import type { LabelledImages } from '../tokenizer/cache';
import { FeatureNetConfig, featureNetDims, stageSide, validateFeatureNetConfig } from './feature-net-config';
import { convSame, inputConvSame, maxPool2 } from './feature-net-layers';

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
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, classes: number): tf.Scalar {
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
export function checkLabelled(cfg: FeatureNetConfig, data: LabelledImages, where: string): number {
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
