/**
 * The VQ tokenizer (LlamaGen style, ViT-VQGAN-like patch encoder).
 *
 *   image 32x32 -> 64 patches of 4x4 = 16 pixels            (host-side reshuffle, no strided ops)
 *   encoder: per-patch linear -> `depth` mixer blocks -> linear to codeDim -> L2-normalise = z
 *   quantiser: q = c_k with k = argmax_k <z, c_k>, codes c_k L2-normalised (cosine = nearest in L2)
 *   straight-through: z_q = z + sg(q - z)
 *   decoder: linear -> `depth` mixer blocks -> linear to 16 pixels -> tanh
 *
 * A mixer block is  u = h + (M ⊙ T) h  (cross-patch mixing over the 8x8 grid, one
 * 64x64 matrix T masked to each patch's neighbourhood of radius `mixRadius`, shared
 * by all channels), then  h' = u + W2 relu(W1 u + b1) + b2  (per-patch MLP).
 * Everything is a 2-D matMul over rows [N*64, d] or a 64x64 product per image:
 * both take XNNPACK's fast path on wasm; no convolutions, no strided slices.
 *
 * Loss (all vectors L2-normalised, means over elements as in LlamaGen):
 *   L = mean (x̂ - x)^2 + w_cb · mean (sg(z) - q)^2 + β · mean (z - sg(q))^2
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { rng, seedFrom, Rng } from '../runtime/seed';
import { TokenizerConfig, patchPixels, tokenGrid, tokensPerImage } from './config';

/** The tokenizer's trainable tensors by name (`enc.in.w`, `codebook`, `dec.1.fc2.b`, ...). */
export type TokenizerParams = Record<string, tf.Variable>;

/** The config fields that shape the weights: a checkpoint must match these to be loaded for encoding. */
export const TOKENIZER_MODEL_KEYS = ['imageSize', 'patchSize', 'codebookSize', 'codeDim', 'width', 'depth', 'mlpRatio', 'mixRadius'] as const;

// ---------------------------------------------------------------- host-side patch layout

/**
 * Reorder images [N, S, S] into patches [N, T, P*P] (token t = gy * G + gx, pixel
 * p = py * P + px inside the patch). A pure permutation, done on the host so the
 * graph never needs a strided slice or a rank-5 transpose.
 */
export function imagesToPatches(images: Float32Array, n: number, imageSize: number, patchSize: number, out?: Float32Array): Float32Array {
  const S = imageSize, P = patchSize, G = S / P;
  ensure(images.length >= n * S * S, `holds ${images.length} values, fewer than ${n} images of ${S}x${S}`, 'imagesToPatches(images)', `pass N*${S}*${S} pixels`);
  const dst = out ?? new Float32Array(n * S * S);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const base = i * S * S;
    for (let gy = 0; gy < G; gy++) {
      for (let gx = 0; gx < G; gx++) {
        for (let py = 0; py < P; py++) {
          const row = base + (gy * P + py) * S + gx * P;
          for (let px = 0; px < P; px++) dst[o++] = images[row + px];
        }
      }
    }
  }
  return dst;
}

/** Inverse of `imagesToPatches`: patches [N, T, P*P] back to images [N, S, S]. */
export function patchesToImages(patches: Float32Array, n: number, imageSize: number, patchSize: number): Float32Array {
  const S = imageSize, P = patchSize, G = S / P;
  const dst = new Float32Array(n * S * S);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const base = i * S * S;
    for (let gy = 0; gy < G; gy++) {
      for (let gx = 0; gx < G; gx++) {
        for (let py = 0; py < P; py++) {
          const row = base + (gy * P + py) * S + gx * P;
          for (let px = 0; px < P; px++) dst[row + px] = patches[o++];
        }
      }
    }
  }
  return dst;
}

/** 0/1 matrix [T, T]: 1 where two grid cells are within `radius` (Chebyshev distance). */
export function neighbourhoodMask(grid: number, radius: number): Float32Array {
  const T = grid * grid;
  const m = new Float32Array(T * T);
  for (let a = 0; a < T; a++) {
    for (let b = 0; b < T; b++) {
      const dy = Math.abs(Math.floor(a / grid) - Math.floor(b / grid));
      const dx = Math.abs((a % grid) - (b % grid));
      if (Math.max(dy, dx) <= radius) m[a * T + b] = 1;
    }
  }
  return m;
}

// ---------------------------------------------------------------- parameters

/**
 * A trainable variable holding `values`. Made inside tf.tidy: tf.variable
 * shares the initial tensor's data but leaves that tensor registered, so
 * without the tidy every weight would leave one stray tensor behind.
 */
function variableOf(values: Float32Array, shape: number[]): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(values, shape), true));
}

function randn(shape: number[], std: number, r: Rng): tf.Variable {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r.normal() * std;
  return variableOf(a, shape);
}

function zeros(shape: number[]): tf.Variable {
  return variableOf(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
}

/** Row-normalise a [K, D] array in place on the host. */
export function normaliseRows(a: Float32Array, dim: number): Float32Array {
  for (let o = 0; o < a.length; o += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += a[o + j] * a[o + j];
    const inv = 1 / Math.sqrt(s + 1e-12);
    for (let j = 0; j < dim; j++) a[o + j] *= inv;
  }
  return a;
}

/** Name -> shape of every weight of a config, in a fixed order (encoder, codebook, decoder). */
export function tokenizerParamShapes(cfg: TokenizerConfig): Record<string, number[]> {
  const W = cfg.width, H = Math.max(1, Math.round(cfg.width * cfg.mlpRatio)), D = cfg.codeDim, PP = patchPixels(cfg), T = tokensPerImage(cfg);
  const s: Record<string, number[]> = {};
  const blocks = (side: string) => {
    for (let l = 0; l < cfg.depth; l++) {
      s[`${side}.${l}.mix`] = [T, T];
      s[`${side}.${l}.fc1.w`] = [W, H];
      s[`${side}.${l}.fc1.b`] = [H];
      s[`${side}.${l}.fc2.w`] = [H, W];
      s[`${side}.${l}.fc2.b`] = [W];
    }
  };
  s['enc.in.w'] = [PP, W];
  s['enc.in.b'] = [W];
  blocks('enc');
  s['enc.out.w'] = [W, D];
  s['enc.out.b'] = [D];
  s['codebook'] = [cfg.codebookSize, D];
  s['dec.in.w'] = [D, W];
  s['dec.in.b'] = [W];
  blocks('dec');
  s['dec.out.w'] = [W, PP];
  s['dec.out.b'] = [PP];
  return s;
}

/**
 * Fresh weights for `cfg`, from the seeded generator (the same on every backend).
 * Biases start at 0; matrices are Gaussian with std 1/sqrt(fan-in) (sqrt(2/fan-in)
 * before a ReLU); the second layer of each residual MLP is scaled by
 * 1/sqrt(2·depth) so the residual stream starts near the identity; the
 * cross-patch mixing starts at 0.5/sqrt(neighbours); codes start as random unit vectors.
 */
export function initTokenizerParams(cfg: TokenizerConfig, seed: number = cfg.seed): TokenizerParams {
  const r = rng(seedFrom(seed, 'tokenizer-init'));
  const nbrs = (2 * cfg.mixRadius + 1) ** 2;
  const resScale = 1 / Math.sqrt(2 * Math.max(1, cfg.depth));
  const p: TokenizerParams = {};
  for (const [name, shape] of Object.entries(tokenizerParamShapes(cfg))) {
    const fanIn = shape[0];
    if (name.endsWith('.b')) p[name] = zeros(shape);
    else if (name === 'codebook') {
      const cb = new Float32Array(shape[0] * shape[1]);
      for (let i = 0; i < cb.length; i++) cb[i] = r.normal();
      p[name] = variableOf(normaliseRows(cb, shape[1]), shape);
    } else if (name.endsWith('.mix')) p[name] = randn(shape, 0.5 / Math.sqrt(nbrs), r);
    else if (name.endsWith('.fc1.w')) p[name] = randn(shape, Math.sqrt(2 / fanIn), r);
    else if (name.endsWith('.fc2.w')) p[name] = randn(shape, resScale / Math.sqrt(fanIn), r);
    else if (name === 'dec.in.w') p[name] = randn(shape, 1, r); // input rows are unit vectors
    else p[name] = randn(shape, 1 / Math.sqrt(fanIn), r);
  }
  return p;
}

/** Number of scalar weights. */
export function countParams(params: Record<string, tf.Tensor>): number {
  return Object.values(params).reduce((s, t) => s + t.size, 0);
}

// ---------------------------------------------------------------- graph pieces

/**
 * Identity forward, zero gradient: sg(x) in the formulas. tfjs has no
 * stop_gradient op, so it is a custom gradient.
 */
export const stopGradient: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

/** x / ||x|| over the last axis. */
export function l2Normalise(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), -1, true), 1e-12)));
}

/**
 * y = x W + b for rows x [n, a], W [a, b], with a gradient written for wasm
 * (measured on [8192, 128] -> [8192, 256], see the tokenizer notebook):
 * - db = 1ᵀ dy as a [1, n] x [n, b] product: 0.2 ms, where tf.sum over rows
 *   (tfjs's bias gradient) takes 37 ms;
 * - dW contracts over the n rows, so one operand must be transposed, and wasm's
 *   Transpose (~50 M values/s) costs more than the product itself: we
 *   transpose the narrower of x and dy (dW = xᵀ dy, or (dyᵀ x)ᵀ).
 */
export const denseLayer = tf.customGrad(((x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.add(tf.matMul(x, w), b),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as tf.Tensor2D[];
      const [n, a] = xs.shape;
      const bOut = ws.shape[1];
      const dx = tf.matMul(dy, tf.transpose(ws));
      const dw = a <= bOut ? tf.matMul(tf.transpose(xs), dy) : tf.transpose(tf.matMul(tf.transpose(dy), xs));
      const db = tf.reshape(tf.matMul(tf.ones([1, n]), dy), [bOut]);
      return [dx, dw, db];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor2D;

function dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return denseLayer(x, w, b);
}

/** `depth` mixer blocks on rows h [nImages*T, W]. */
function mixerBlocks(cfg: TokenizerConfig, p: TokenizerParams, side: 'enc' | 'dec', h: tf.Tensor, nImages: number, mask: tf.Tensor): tf.Tensor {
  const T = tokensPerImage(cfg), W = cfg.width;
  for (let l = 0; l < cfg.depth; l++) {
    const mix = tf.mul(p[`${side}.${l}.mix`], mask);
    // [T, T] @ [n, T, W]: one 64x64 product per image (fast path, no transposes).
    const mixed = tf.matMul(tf.reshape(mix, [1, T, T]) as tf.Tensor3D, tf.reshape(h, [nImages, T, W]) as tf.Tensor3D);
    const u = tf.add(h, tf.reshape(mixed, [nImages * T, W]));
    const f = dense(tf.relu(dense(u, p[`${side}.${l}.fc1.w`], p[`${side}.${l}.fc1.b`])), p[`${side}.${l}.fc2.w`], p[`${side}.${l}.fc2.b`]);
    h = tf.add(u, f);
  }
  return h;
}

function maskTensor(cfg: TokenizerConfig): tf.Tensor {
  return tf.tensor(neighbourhoodMask(tokenGrid(cfg).w, cfg.mixRadius), [tokensPerImage(cfg), tokensPerImage(cfg)]);
}

/** Encoder: patches [n*T, P*P] -> L2-normalised z [n*T, codeDim]. */
export function encodePatches(cfg: TokenizerConfig, p: TokenizerParams, patches: tf.Tensor, nImages: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h = dense(patches, p['enc.in.w'], p['enc.in.b']);
    h = mixerBlocks(cfg, p, 'enc', h, nImages, maskTensor(cfg));
    return l2Normalise(dense(h, p['enc.out.w'], p['enc.out.b'])) as tf.Tensor2D;
  });
}

/** Decoder: (quantised) codes [n*T, codeDim] -> patches [n*T, P*P] in [-1, 1]. */
export function decodeCodes(cfg: TokenizerConfig, p: TokenizerParams, codes: tf.Tensor, nImages: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h = dense(codes, p['dec.in.w'], p['dec.in.b']);
    h = mixerBlocks(cfg, p, 'dec', h, nImages, maskTensor(cfg));
    return tf.tanh(dense(h, p['dec.out.w'], p['dec.out.b'])) as tf.Tensor2D;
  });
}

/** The normalised codebook [K, D]. */
export function normalisedCodebook(p: TokenizerParams): tf.Tensor2D {
  return tf.tidy(() => l2Normalise(p['codebook']) as tf.Tensor2D);
}

/**
 * Nearest code (largest cosine) of each row of z, computed off the gradient
 * tape: the indices come back as a host array (the caller needs them for usage
 * counts anyway) and, when asked, each row's squared distance to its code.
 */
export function nearestCodes(z: tf.Tensor2D, codebookNorm: tf.Tensor2D, withDistances = false): { indices: Int32Array; dist2?: Float32Array } {
  const [idxT, maxT] = tf.tidy(() => {
    const sim = tf.matMul(z, tf.transpose(codebookNorm) as tf.Tensor2D);
    return withDistances ? [tf.argMax(sim, 1), tf.max(sim, 1)] : [tf.argMax(sim, 1)];
  }) as [tf.Tensor, tf.Tensor | undefined];
  const indices = Int32Array.from(idxT.dataSync() as Int32Array);
  idxT.dispose();
  let dist2: Float32Array | undefined;
  if (maxT) {
    const m = maxT.dataSync() as Float32Array;
    dist2 = new Float32Array(m.length);
    // Unit vectors: ||z - c||^2 = 2 - 2 cos.
    for (let i = 0; i < m.length; i++) dist2[i] = Math.max(0, 2 - 2 * m[i]);
    maxT.dispose();
  }
  return { indices, dist2 };
}

/**
 * The quantiser: nearest normalised code q of each z (indices found off the
 * tape), and the straight-through value z_q = z + sg(q - z), which equals q
 * forward and passes the decoder's gradient to z unchanged (none to the codebook).
 */
export function quantise(z: tf.Tensor2D, codebookNorm: tf.Tensor2D): { q: tf.Tensor2D; zq: tf.Tensor2D; indices: Int32Array } {
  const { indices } = nearestCodes(z, codebookNorm);
  const q = tf.gather(codebookNorm, tf.tensor1d(indices, 'int32')) as tf.Tensor2D;
  const zq = tf.add(z, stopGradient(tf.sub(q, z))) as tf.Tensor2D;
  return { q, zq, indices };
}

/** The loss terms of one batch (host numbers) and the chosen codes. */
export interface VqLossParts {
  /** Total loss as a scalar tensor (on the gradient tape). */
  loss: tf.Scalar;
  /** mean (x̂ - x)^2 on the [-1, 1] scale. */
  recMse: number;
  /** mean (z - q)^2: the value of both the codebook and the commitment term. */
  vqDist: number;
  /** Chosen code per patch row. */
  indices: Int32Array;
}

/**
 * Forward pass and loss of a batch of patches [n*T, P*P]: encoder, nearest
 * code, straight-through decoder, and
 * L = rec + codebookWeight * mean (sg(z) - q)^2 + beta * mean (z - sg(q))^2.
 * Call inside tf.variableGrads (or accumulateGrads); reads two scalars to the host.
 */
export function vqLoss(cfg: TokenizerConfig, p: TokenizerParams, patches: tf.Tensor2D, nImages: number): VqLossParts {
  const z = encodePatches(cfg, p, patches, nImages);
  const { q, zq, indices } = quantise(z, normalisedCodebook(p));
  const xr = decodeCodes(cfg, p, zq, nImages);
  const rec = tf.mean(tf.square(tf.sub(xr, patches))) as tf.Scalar;
  const codebookTerm = tf.mean(tf.square(tf.sub(stopGradient(z), q)));
  const commitTerm = tf.mean(tf.square(tf.sub(z, stopGradient(q))));
  const loss = tf.addN([rec, tf.mul(codebookTerm, cfg.codebookWeight), tf.mul(commitTerm, cfg.beta)]) as tf.Scalar;
  const recMse = rec.dataSync()[0];
  const vqDist = codebookTerm.dataSync()[0];
  return { loss, recMse, vqDist, indices };
}

// ---------------------------------------------------------------- metrics

/** PSNR in dB of an MSE measured on [-1, 1] pixels, after mapping them to [0, 1] (MSE / 4). */
export function psnrFromMse(mseSigned: number): number {
  const mse01 = mseSigned / 4;
  return mse01 > 0 ? 10 * Math.log10(1 / mse01) : Infinity;
}

/** Usage of a code histogram: codes used, their share of the codebook, and the perplexity exp(H). */
export function codeUsageStats(counts: ArrayLike<number>): { used: number; usage: number; perplexity: number; total: number } {
  let total = 0, used = 0;
  for (let k = 0; k < counts.length; k++) { total += counts[k]; if (counts[k] > 0) used++; }
  let h = 0;
  if (total > 0) {
    for (let k = 0; k < counts.length; k++) {
      if (counts[k] > 0) { const pk = counts[k] / total; h -= pk * Math.log(pk); }
    }
  }
  return { used, usage: counts.length > 0 ? used / counts.length : 0, perplexity: Math.exp(h), total };
}

/** Reconstruction and codebook metrics of a set of images. */
export interface TokenizerMetrics {
  /** Images evaluated. */
  n: number;
  /** Mean squared error per pixel on the [-1, 1] scale. */
  mse: number;
  /** The same on the [0, 1] scale (mse / 4). */
  mse01: number;
  /** 10 log10(1 / mse01), from the pooled MSE over all pixels. */
  psnr: number;
  /** Codes used at least once. */
  codesUsed: number;
  /** codesUsed / codebookSize. */
  usage: number;
  /** exp(entropy) of the code distribution; codebookSize when all codes are equally used. */
  perplexity: number;
  /** How often each code was chosen. */
  counts: Int32Array;
}

// ---------------------------------------------------------------- the tokenizer

/** Where a tokenizer's weights came from (for caches and messages). */
export interface TokenizerSource {
  checkpoint?: string;
  step: number;
}

export interface BatchOptions {
  /** Images per forward pass; default 256. */
  batch?: number;
  /** Called after each batch with the images done so far (progress bars). */
  onBatch?: (done: number, total: number) => void;
}

/**
 * A VQ tokenizer: its config and weights, with batched `encode` (images ->
 * tokens) and `decode` (tokens -> images). Owns its variables: `dispose()` them.
 */
export class VqTokenizer {
  constructor(
    readonly config: TokenizerConfig,
    readonly params: TokenizerParams,
    public source: TokenizerSource = { step: 0 },
  ) {}

  /** Fresh, untrained weights (seeded). */
  static init(config: TokenizerConfig, seed: number = config.seed): VqTokenizer {
    return new VqTokenizer(config, initTokenizerParams(config, seed), { step: 0 });
  }

  get grid(): { h: number; w: number } {
    return tokenGrid(this.config);
  }

  get tokensPerImage(): number {
    return tokensPerImage(this.config);
  }

  get codebookSize(): number {
    return this.config.codebookSize;
  }

  /** Trainable scalars. */
  get numParams(): number {
    return countParams(this.params);
  }

  private pixels(): number {
    return this.config.imageSize * this.config.imageSize;
  }

  private checkImages(images: Float32Array, where: string): number {
    const px = this.pixels();
    ensure(images instanceof Float32Array, 'expected a Float32Array of pixels', where, 'pass dataset.images (N*32*32 values in [-1, 1])');
    ensure(
      images.length % px === 0,
      `holds ${images.length} values, not a whole number of ${this.config.imageSize}x${this.config.imageSize} images`,
      where,
      `pad images to ${this.config.imageSize}x${this.config.imageSize} (loadDataset({ pad: ${this.config.imageSize} }))`,
    );
    return images.length / px;
  }

  /** Tokens of images [N*S*S] in [-1, 1]: Int32Array [N*T], row-major over the grid. */
  encode(images: Float32Array, opts: BatchOptions = {}): Int32Array {
    const n = this.checkImages(images, 'VqTokenizer.encode(images)');
    const T = this.tokensPerImage, px = this.pixels(), B = opts.batch ?? 256;
    const out = new Int32Array(n * T);
    const cbn = normalisedCodebook(this.params);
    try {
      for (let s = 0; s < n; s += B) {
        const m = Math.min(B, n - s);
        const patches = imagesToPatches(images.subarray(s * px, (s + m) * px), m, this.config.imageSize, this.config.patchSize);
        const z = tf.tidy(() => encodePatches(this.config, this.params, tf.tensor2d(patches, [m * T, patchPixels(this.config)]), m));
        const { indices } = nearestCodes(z, cbn);
        z.dispose();
        out.set(indices, s * T);
        opts.onBatch?.(s + m, n);
      }
    } finally {
      cbn.dispose();
    }
    return out;
  }

  /** Images [N*S*S] in [-1, 1] from tokens [N*T]. */
  decode(tokens: Int32Array, opts: BatchOptions = {}): Float32Array {
    const T = this.tokensPerImage, K = this.codebookSize, px = this.pixels(), B = opts.batch ?? 256;
    ensure(tokens instanceof Int32Array && tokens.length % T === 0, `expected an Int32Array of N*${T} tokens, got ${tokens?.length} values`, 'VqTokenizer.decode(tokens)', `pass tokens as returned by encode (N*${T})`);
    for (let i = 0; i < tokens.length; i++) {
      if (!(tokens[i] >= 0 && tokens[i] < K)) {
        throw new OrderHeadError(`token ${tokens[i]} at index ${i} is outside 0 .. ${K - 1}`, 'VqTokenizer.decode(tokens)', `pass tokens of this tokenizer (codebook size ${K})`);
      }
    }
    const n = tokens.length / T;
    const out = new Float32Array(n * px);
    const cbn = normalisedCodebook(this.params);
    try {
      for (let s = 0; s < n; s += B) {
        const m = Math.min(B, n - s);
        const patchesT = tf.tidy(() => decodeCodes(this.config, this.params, tf.gather(cbn, tf.tensor1d(tokens.subarray(s * T, (s + m) * T), 'int32')), m));
        const patches = patchesT.dataSync() as Float32Array;
        out.set(patchesToImages(patches, m, this.config.imageSize, this.config.patchSize), s * px);
        patchesT.dispose();
        opts.onBatch?.(s + m, n);
      }
    } finally {
      cbn.dispose();
    }
    return out;
  }

  /** Encode then decode: the tokens and the reconstructed images. */
  reconstruct(images: Float32Array, opts: BatchOptions = {}): { tokens: Int32Array; images: Float32Array } {
    const tokens = this.encode(images, opts);
    return { tokens, images: this.decode(tokens, opts) };
  }

  /** Reconstruction MSE / PSNR and code usage on `images` (pass the test split). */
  evaluate(images: Float32Array, opts: BatchOptions = {}): TokenizerMetrics {
    const { tokens, images: rec } = this.reconstruct(images, opts);
    return this.metricsOf(images, rec, tokens);
  }

  /** Metrics from already computed reconstructions and tokens. */
  metricsOf(images: Float32Array, rec: Float32Array, tokens: Int32Array): TokenizerMetrics {
    let se = 0;
    for (let i = 0; i < images.length; i++) { const d = rec[i] - images[i]; se += d * d; }
    const mse = images.length > 0 ? se / images.length : NaN;
    const counts = new Int32Array(this.codebookSize);
    for (let i = 0; i < tokens.length; i++) counts[tokens[i]]++;
    const u = codeUsageStats(counts);
    return { n: images.length / this.pixels(), mse, mse01: mse / 4, psnr: psnrFromMse(mse), codesUsed: u.used, usage: u.usage, perplexity: u.perplexity, counts };
  }

  /** The normalised codebook as a host array [K * D]. */
  codebookVectors(): Float32Array {
    const t = normalisedCodebook(this.params);
    const a = Float32Array.from(t.dataSync() as Float32Array);
    t.dispose();
    return a;
  }

  /**
   * A hash of the weights and the model fields of the config: two tokenizers
   * with the same fingerprint produce the same tokens. Token caches store it.
   */
  fingerprint(): string {
    const h = createHash('sha256');
    const model: Record<string, unknown> = {};
    for (const k of TOKENIZER_MODEL_KEYS) model[k] = this.config[k];
    h.update(JSON.stringify(model));
    for (const name of Object.keys(this.params).sort()) {
      const data = this.params[name].dataSync() as Float32Array;
      h.update(name);
      h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    return h.digest('hex').slice(0, 16);
  }

  dispose(): void {
    tf.dispose(Object.values(this.params));
  }
}
