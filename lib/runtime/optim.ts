/**
 * AdamW with global-norm gradient clipping, gradient accumulation over
 * micro-batches, and the warmup + cosine learning-rate schedule.
 *
 * Micro-batches exist because the wasm heap is 32-bit: one step's activations
 * must stay well under 2 GB (PLATFORM.md), so a batch of 64 runs as e.g. 4
 * micro-batches of 16 whose gradients are summed before one update.
 */
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError } from './errors';

export interface AdamWConfig {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay, applied to matrices only (not norm gains). */
  weightDecay: number;
  /** Clip the global gradient norm to this (0 = off). */
  clipNorm: number;
}

export const DEFAULT_ADAMW: AdamWConfig = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05, clipNorm: 1.0 };

/** Linear warmup to `peak`, then cosine decay to `peak * minRatio` at `total`. */
export function warmupCosine(step: number, total: number, warmup: number, peak: number, minRatio = 0.1): number {
  if (step < warmup) return peak * (step + 1) / warmup;
  const t = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * t)));
}

/** A non-trainable variable of zeros shaped like `p` (tf.variable keeps its initial tensor alive: dispose it). */
function zeroVariable(p: tf.Tensor): tf.Variable {
  const z = tf.zerosLike(p);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

export class AdamW {
  readonly m: Record<string, tf.Variable> = {};
  readonly v: Record<string, tf.Variable> = {};
  step = 0;

  constructor(readonly params: Record<string, tf.Variable>, readonly cfg: AdamWConfig = DEFAULT_ADAMW) {
    for (const [k, p] of Object.entries(params)) {
      this.m[k] = zeroVariable(p);
      this.v[k] = zeroVariable(p);
    }
  }

  /**
   * Apply one update from summed gradients. Returns the gradient norm before
   * clipping (host number: one sync per step, which the loss needs anyway).
   */
  apply(grads: Record<string, tf.Tensor>, lr = this.cfg.lr): number {
    const { beta1, beta2, eps, weightDecay, clipNorm } = this.cfg;
    this.step++;
    const bc1 = 1 - Math.pow(beta1, this.step), bc2 = 1 - Math.pow(beta2, this.step);
    const normT = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g))))));
    const norm = normT.dataSync()[0];
    normT.dispose();
    if (!Number.isFinite(norm)) {
      throw new OrderHeadError(`gradient norm is ${norm} at optimizer step ${this.step}`, 'training loss',
        'lower the learning rate or check the data; no parameter was updated');
    }
    const clip = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;
    tf.tidy(() => {
      for (const [k, p] of Object.entries(this.params)) {
        const g = grads[k];
        if (!g) continue;
        const gc = clip === 1 ? g : tf.mul(g, clip);
        const m = tf.add(tf.mul(this.m[k], beta1), tf.mul(gc, 1 - beta1));
        const v = tf.add(tf.mul(this.v[k], beta2), tf.mul(tf.square(gc), 1 - beta2));
        this.m[k].assign(m);
        this.v[k].assign(v);
        let upd = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps));
        if (weightDecay > 0 && p.rank >= 2) upd = tf.add(upd, tf.mul(p, weightDecay));
        p.assign(tf.sub(p, tf.mul(upd, lr)));
      }
    });
    return norm;
  }

  /** Optimizer state for checkpoints. */
  state(): Record<string, tf.Tensor> {
    const s: Record<string, tf.Tensor> = {};
    for (const k of Object.keys(this.m)) { s[`adam.m.${k}`] = this.m[k]; s[`adam.v.${k}`] = this.v[k]; }
    return s;
  }

  dispose(): void {
    for (const t of [...Object.values(this.m), ...Object.values(this.v)]) t.dispose();
  }
}

/**
 * Sum of gradients of `lossFn(i)` over micro-batches i = 0..n-1, each scaled by
 * 1/n so the result is the gradient of the mean loss. Returns the grads (the
 * caller disposes them) and the mean loss.
 */
export function accumulateGrads(params: Record<string, tf.Variable>, n: number, lossFn: (i: number) => tf.Scalar):
  { grads: Record<string, tf.Tensor>; loss: number } {
  const names = Object.keys(params);
  const vars = names.map((k) => params[k]);
  let acc: tf.Tensor[] | null = null;
  let lossSum = 0;
  for (let i = 0; i < n; i++) {
    const { value, grads } = tf.variableGrads(() => tf.mul(lossFn(i), 1 / n) as tf.Scalar, vars);
    lossSum += value.dataSync()[0] * n;
    value.dispose();
    const g = names.map((k) => grads[params[k].name]); // tfjs keys grads by variable name
    if (acc === null) acc = g;
    else {
      const prev: tf.Tensor[] = acc;
      acc = prev.map((a, j) => { const s = tf.add(a, g[j]); a.dispose(); g[j].dispose(); return s; });
    }
  }
  const grads: Record<string, tf.Tensor> = {};
  names.forEach((k, j) => { grads[k] = acc![j]; });
  return { grads, loss: lossSum / n };
}
