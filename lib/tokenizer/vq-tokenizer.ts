/**
 * The VqTokenizer: a config and its weights, with batched encode (images ->
 * tokens), decode (tokens -> images), its reconstruction metrics and the
 * fingerprint token caches store. The network it runs is in vq.ts.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from '../runtime/errors';
import { TokenizerConfig, patchPixels, tokenGrid, tokensPerImage } from './config';
import { TOKENIZER_MODEL_KEYS, TokenizerParams, countParams, initTokenizerParams } from './params';
import { imagesToPatches, patchesToImages } from './patches';
import { decodeCodes, encodePatches, nearestCodes, normalisedCodebook } from './vq';
import { TokenizerMetrics, codeUsageStats, psnrFromMse } from './metrics';

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
