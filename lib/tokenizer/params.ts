/**
 * The tokenizer's weights: their names and shapes for a config, their seeded
 * initialisation (with the host-side row normalisation of the codebook),
 * their count, and the config fields that shape them (which a checkpoint must
 * match to be loaded for encoding).
 */
import * as tf from '@tensorflow/tfjs';
import { rng, seedFrom, Rng } from '../runtime/seed';
import { TokenizerConfig, patchPixels, tokensPerImage } from './config';

/** The tokenizer's trainable tensors by name (`enc.in.w`, `codebook`, `dec.1.fc2.b`, ...). */
export type TokenizerParams = Record<string, tf.Variable>;

/** The config fields that shape the weights: a checkpoint must match these to be loaded for encoding. */
export const TOKENIZER_MODEL_KEYS = ['imageSize', 'patchSize', 'codebookSize', 'codeDim', 'width', 'depth', 'mlpRatio', 'mixRadius'] as const;

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
