/**
 * AdamW with global-norm gradient clipping, gradient accumulation over
 * micro-batches, and the warmup + cosine learning-rate schedule.
 *
 * Micro-batches exist because the wasm heap is 32-bit: one step's activations
 * must stay well under 2 GB (PLATFORM.md), so a batch of 64 runs as e.g. 4
 * micro-batches of 16 whose gradients are summed before one update.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, OrderHeadError } from './errors';

/**
 * The optimiser fields every training stage shares; each stage's config
 * extends it, so every run's config.json records the whole recipe (betas
 * included) and one validation checks them all.
 */
export interface OptimConfig {
  /** Optimizer steps of the whole run. */
  steps: number;
  /** Examples per optimizer step (images, or oracle states for the planner and router). */
  batch: number;
  /** Peak learning rate: linear warmup to it, then cosine decay to `minLrRatio · lr` at `steps`. */
  lr: number;
  /** Warmup steps. */
  warmup: number;
  /** Final learning rate as a share of `lr`. */
  minLrRatio: number;
  /** AdamW decoupled weight decay, on matrices only (not norm gains or biases). */
  weightDecay: number;
  /** AdamW (β1, β2). */
  betas: [number, number];
  /** Clip the global gradient norm to this (0 = off). */
  clipNorm: number;
  /** Seed of the initial weights and of the data draws. */
  seed: number;
  /** Evaluate every this many steps, and at the last step (0 = only at the end). */
  evalEvery: number;
}

/** One line per OptimConfig field, for the notebooks' config tables. */
export const OPTIM_CONFIG_DOCS: Record<keyof OptimConfig, string> = {
  steps: 'optimizer steps',
  batch: 'examples per step',
  lr: 'peak AdamW learning rate (warmup, then cosine)',
  warmup: 'warmup steps',
  minLrRatio: 'final learning rate / peak',
  weightDecay: 'AdamW weight decay (matrices)',
  betas: 'AdamW (β1, β2)',
  clipNorm: 'gradient-norm clip (0 = off)',
  seed: 'seed of initialisation and data draws',
  evalEvery: 'evaluation every N steps (0 = at the end)',
};

/** Check the OptimConfig fields of a stage config; each problem names `<prefix>.<field>` and the fix. */
export function validateOptimConfig(cfg: OptimConfig, prefix: string): void {
  const int = (k: 'steps' | 'batch' | 'warmup' | 'evalEvery', min: number) =>
    ensure(Number.isInteger(cfg[k]) && cfg[k] >= min, `${k} = ${cfg[k]} is not a whole number >= ${min}`, `${prefix}.${k}`, `set ${k} to a whole number >= ${min}`);
  int('steps', 1);
  int('batch', 1);
  int('warmup', 0);
  int('evalEvery', 0);
  ensure(Number.isSafeInteger(cfg.seed), `seed = ${cfg.seed} is not an integer`, `${prefix}.seed`, 'use an integer seed such as 0');
  ensure(Number.isFinite(cfg.lr) && cfg.lr > 0, `lr = ${cfg.lr} is not a positive number`, `${prefix}.lr`, 'use a positive learning rate');
  ensure(Number.isFinite(cfg.minLrRatio) && cfg.minLrRatio >= 0 && cfg.minLrRatio <= 1, `minLrRatio = ${cfg.minLrRatio} is not in [0, 1]`, `${prefix}.minLrRatio`, 'use a share of the peak such as 0.1');
  ensure(Number.isFinite(cfg.weightDecay) && cfg.weightDecay >= 0, `weightDecay = ${cfg.weightDecay} is negative or not a number`, `${prefix}.weightDecay`, 'use a non-negative weight decay');
  ensure(Number.isFinite(cfg.clipNorm) && cfg.clipNorm >= 0, `clipNorm = ${cfg.clipNorm} is negative or not a number`, `${prefix}.clipNorm`, 'use a non-negative norm (0 = no clipping)');
  ensure(Array.isArray(cfg.betas) && cfg.betas.length === 2 && cfg.betas.every((b) => Number.isFinite(b) && b >= 0 && b < 1),
    `betas = ${JSON.stringify(cfg.betas)} is not a pair in [0, 1)`, `${prefix}.betas`, 'use two numbers in [0, 1), e.g. [0.9, 0.95]');
}

/** The learning rate of `step` under a config's warmup + cosine schedule. */
export const scheduledLr = (cfg: OptimConfig, step: number): number => warmupCosine(step, cfg.steps, cfg.warmup, cfg.lr, cfg.minLrRatio);

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

const STATE_PREFIX = { m: 'adam.m.', v: 'adam.v.' } as const;

export class AdamW {
  readonly m: Record<string, tf.Variable> = {};
  readonly v: Record<string, tf.Variable> = {};
  step = 0;

  /** AdamW over `params` with a stage config's lr, betas, weight decay and clipping. */
  static fromConfig(params: Record<string, tf.Variable>, cfg: OptimConfig): AdamW {
    return new AdamW(params, { lr: cfg.lr, beta1: cfg.betas[0], beta2: cfg.betas[1], eps: DEFAULT_ADAMW.eps, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm });
  }

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

  /** Optimizer state for checkpoints: `adam.m.<param>` and `adam.v.<param>`. */
  state(): Record<string, tf.Tensor> {
    const s: Record<string, tf.Tensor> = {};
    for (const k of Object.keys(this.m)) { s[`${STATE_PREFIX.m}${k}`] = this.m[k]; s[`${STATE_PREFIX.v}${k}`] = this.v[k]; }
    return s;
  }

  /**
   * Restore the moments written by `state()` from checkpoint tensors, and the
   * step count. A moment missing or misshapen in `weights` is refused, naming
   * `file`: resuming with fresh moments would silently change the run.
   */
  loadState(weights: Record<string, tf.Tensor>, step: number, file: string): void {
    for (const k of Object.keys(this.m)) {
      for (const [which, prefix] of Object.entries(STATE_PREFIX) as ['m' | 'v', string][]) {
        const w = weights[prefix + k], target = this[which][k];
        ensure(w && tf.util.arraysEqual(w.shape, target.shape), `optimizer state '${prefix}${k}' is ${w ? `shaped [${w.shape}], the parameter [${target.shape}]` : 'missing'}`,
          file, 'the checkpoint does not belong to this run: delete the run folder or use another one');
        target.assign(w);
      }
    }
    this.step = step;
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
