/**
 * OrderHead: the next-block planner with latent reasoning (METHOD.md
 * Algorithm 3; curriculum Stages 3 and 4).
 *
 *   x    = In(H_t, m_t, positions, class)            per-block input slots [B, nb, w]
 *   z_0  = Pool(x)                                    poolLayers transformer blocks over the nb slots
 *   z_r  = Core(z_{r-1} + step_r + Read(x)),  r = 1..R   (shared weights; Chain of Continuous Thought:
 *                                                     the continuous z_{r-1} is the next step's input,
 *                                                     no discrete token in between)
 *   q_t  = Head(z_R) + e·E + (-1e9 on visible)        next-block logits [B, nb]
 *
 * In: the backbone's per-block hidden state (lib/planner/features.ts),
 * RMS-normalised and projected to the planner width w, plus the predictive
 * entropy at the block's first token (scaled by a learned vector), a learned embedding of
 * the block mask m_t (visible / unseen), of the block's grid position, and of
 * the class. Read(x) re-injects the input at every latent step, so each step
 * reads H_t and m_t again (z_r = PlannerCore(z_{r-1}, H_t, m_t)). step_r is a
 * learned per-step embedding: the core knows which step it is taking, and its
 * gradient shows that the loss reaches every step (tests).
 *
 * E = the entropy at the block's first token; e starts at 1 so an untrained
 * planner already follows "most uncertain block first" and training learns
 * where the oracle departs from it.
 *
 * R = 0 is the one-shot planner; the core's weights exist at every R so the
 * R curriculum (0 -> 1 -> 2 -> 4) initialises each stage from the previous.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, OrderHeadError } from '../runtime/errors';
import { rng, seedFrom } from '../runtime/seed';
import { PlannerFeatures, selectFeatures } from './features';
import { Attention, headAttention, mergeHeads, rmsNorm, splitHeads, transformerBlock } from '../backbone/transformer';

/** The latent step counts the curriculum supports (METHOD.md §6.4). */
export const LATENT_STEPS = [0, 1, 2, 4] as const;
export type LatentSteps = (typeof LATENT_STEPS)[number];

/** Check R against LATENT_STEPS; the error lists the valid values. */
export function checkLatentSteps(R: unknown, where = 'planner.latentSteps'): LatentSteps {
  if ((LATENT_STEPS as readonly unknown[]).includes(R)) return R as LatentSteps;
  throw new OrderHeadError(`R = ${String(R)} latent steps is not supported`, where, `use one of: ${LATENT_STEPS.join(', ')}`);
}

export interface PlannerConfig {
  /** Planner width w. Default 64: the planner is ~1% of the backbone's size. */
  width: number;
  /** Attention heads over the block slots. Default 4. */
  heads: number;
  /** Hidden width of each block's MLP. Default 128. */
  ff: number;
  /** Transformer blocks in Pool (z_0). Default 1. */
  poolLayers: number;
  /** Transformer blocks in one latent step of PlannerCore. Default 1. */
  coreLayers: number;
  /** R, latent reasoning steps before choosing: one of 0, 1, 2, 4. Default 0 (one-shot). */
  latentSteps: LatentSteps;
  /** Seed of the initial weights. */
  seed: number;
}

export const PLANNER_DEFAULTS: PlannerConfig = { width: 64, heads: 4, ff: 128, poolLayers: 1, coreLayers: 1, latentSteps: 0, seed: 0 };

/** What the planner is built for: the backbone and block grid it reads (checked when loading). */
export interface PlannerShape {
  numBlocks: number;
  blocksY: number;
  blocksX: number;
  /** Backbone width d (features' last dimension). */
  backboneDim: number;
  /** Backbone classes (+1 for the unconditional id). */
  numClasses: number;
}

export interface Planner {
  cfg: PlannerConfig;
  shape: PlannerShape;
  params: Record<string, tf.Variable>;
}

/** Inputs of one planner call (tensors; see lib/planner/features.ts). */
export interface PlannerInputs {
  /** [B, nb, d] backbone per-block hidden states. */
  hidden: tf.Tensor3D;
  /** [B, nb] entropy at unseen blocks' first token (0 on visible). */
  entropy: tf.Tensor2D;
  /** [B, nb] float: 1 = visible. */
  visible: tf.Tensor2D;
  /** [B] int32 class ids. */
  classId: tf.Tensor1D;
}

export interface PlannerOutput {
  /** [B, nb] next-block logits, visible blocks at -1e9. */
  logits: tf.Tensor2D;
  /** z_0 .. z_R, each [B, nb, w] (for inspection and tests). */
  latents: tf.Tensor3D[];
}

const MAX_STEPS = Math.max(...LATENT_STEPS);

export function validatePlannerConfig(cfg: PlannerConfig): void {
  checkLatentSteps(cfg.latentSteps);
  for (const k of ['width', 'heads', 'ff', 'poolLayers', 'coreLayers'] as const) {
    ensure(Number.isInteger(cfg[k]) && cfg[k] > 0, `${k} = ${cfg[k]} is not a positive integer`, `planner.${k}`, 'use a positive integer');
  }
  ensure(cfg.width % cfg.heads === 0, `width ${cfg.width} is not a multiple of heads ${cfg.heads}`, 'planner.width', 'choose width divisible by heads');
}

function blockShapes(prefix: string, w: number, ff: number): [string, number[]][] {
  return [
    [`${prefix}attn_norm`, [w]], [`${prefix}wq`, [w, w]], [`${prefix}wk`, [w, w]], [`${prefix}wv`, [w, w]], [`${prefix}wo`, [w, w]],
    [`${prefix}mlp_norm`, [w]], [`${prefix}w1`, [w, ff]], [`${prefix}w2`, [ff, w]],
  ];
}

/** Parameter names and shapes (stable: checkpoints store them by name). */
export function plannerParamShapes(cfg: PlannerConfig, shape: PlannerShape): [string, number[]][] {
  const w = cfg.width;
  const out: [string, number[]][] = [
    ['in.norm', [shape.backboneDim]], ['in.w', [shape.backboneDim, w]], ['in.entropy', [1, w]], ['in.mask', [2, w]],
    ['in.pos', [shape.numBlocks, w]], ['in.class', [shape.numClasses + 1, w]],
  ];
  for (let l = 0; l < cfg.poolLayers; l++) out.push(...blockShapes(`pool${l}.`, w, cfg.ff));
  out.push(['core.step', [MAX_STEPS, w]], ['core.read', [w, w]]);
  for (let l = 0; l < cfg.coreLayers; l++) out.push(...blockShapes(`core${l}.`, w, cfg.ff));
  out.push(['head.norm', [w]], ['head.w', [w, 1]], ['head.entropy', [1, 1]]);
  return out;
}

/** A fresh planner (norm gains 1, matrices ~ N(0, 0.02), output projections scaled down by depth). */
export function createPlanner(cfg: PlannerConfig, shape: PlannerShape): Planner {
  validatePlannerConfig(cfg);
  const r = rng(seedFrom(cfg.seed, 'planner-init'));
  const depth = cfg.poolLayers + cfg.coreLayers;
  const params: Record<string, tf.Variable> = {};
  for (const [name, s] of plannerParamShapes(cfg, shape)) {
    const size = s.reduce((a, b) => a * b, 1);
    const v = new Float32Array(size);
    if (name.endsWith('norm')) v.fill(1);
    else if (name === 'head.entropy') v.set([1]); // start from the prior "most uncertain block first"; training moves it
    else {
      const std = name.endsWith('wo') || name.endsWith('w2') ? 0.02 / Math.sqrt(2 * depth) : 0.02;
      for (let i = 0; i < size; i++) v[i] = r.normal() * std;
    }
    const init = tf.tensor(v, s);
    params[name] = tf.variable(init, true); // auto-named: several planners may coexist
    init.dispose(); // the variable holds its own reference to the data
  }
  return { cfg, shape, params };
}

export function disposePlanner(p: Planner): void {
  for (const v of Object.values(p.params)) v.dispose();
}

/** The planner's RMSNorm epsilon (the backbone's is its cfg.normEps). */
const NORM_EPS = 1e-6;
const rms = (x: tf.Tensor, g: tf.Tensor): tf.Tensor => rmsNorm(x as tf.Tensor2D, g, NORM_EPS);

/** One pre-norm transformer block over the nb block slots (all-to-all attention: a set, not a sequence; SiLU MLP). */
function slotBlock(p: Record<string, tf.Variable>, pre: string, z: tf.Tensor3D, heads: number): tf.Tensor3D {
  const [B, nb, w] = z.shape;
  const split = (t: tf.Tensor) => splitHeads(t, B, nb, heads); // [B, H, nb, hd]
  const allToAll: Attention = (q, k, v) => mergeHeads(headAttention(split(q), split(k), split(v))); // no mask
  const out = transformerBlock(p, tf.reshape(z, [B * nb, w]), { prefix: pre, eps: NORM_EPS, gated: false, attend: allToAll });
  return tf.reshape(out, [B, nb, w]);
}

/**
 * Algorithm 3 up to the logits: In -> Pool -> R latent steps -> Head, masked.
 * `R` overrides cfg.latentSteps (the curriculum evaluates one planner at several R).
 */
export function plannerForward(pl: Planner, x: PlannerInputs, R: LatentSteps = pl.cfg.latentSteps): PlannerOutput {
  checkLatentSteps(R);
  const { params: p, cfg, shape } = pl;
  const [B, nb, d] = x.hidden.shape;
  if (nb !== shape.numBlocks || d !== shape.backboneDim) {
    throw new OrderHeadError(`features are [${B}, ${nb}, ${d}] but the planner was built for ${shape.numBlocks} blocks of a ${shape.backboneDim}-wide backbone`,
      'plannerForward(hidden)', 'compute features with the backbone and block grid the planner was trained with');
  }
  const w = cfg.width;
  const hN = rms(tf.reshape(x.hidden, [B * nb, d]), p['in.norm']) as tf.Tensor2D;
  const entropy = tf.reshape(x.entropy, [B * nb, 1]); // [B*nb, 1]
  const inp = [
    tf.reshape(tf.matMul(hN, p['in.w']), [B, nb, w]),
    tf.reshape(tf.matMul(entropy, p['in.entropy']), [B, nb, w]), // entropy * a learned vector
    tf.reshape(tf.matMul(tf.reshape(tf.oneHot(tf.cast(x.visible, 'int32'), 2), [B * nb, 2]), p['in.mask']), [B, nb, w]),
    tf.reshape(p['in.pos'], [1, nb, w]), // broadcast over the batch
    tf.reshape(tf.gather(p['in.class'], x.classId), [B, 1, w]), // broadcast over the blocks
  ].reduce((a, b) => tf.add(a, b)) as tf.Tensor3D; // [B, nb, w]
  let z = inp;
  for (let l = 0; l < cfg.poolLayers; l++) z = slotBlock(p, `pool${l}.`, z, cfg.heads);
  const latents = [z];
  if (R > 0) {
    const read = tf.reshape(tf.matMul(tf.reshape(inp, [B * nb, w]), p['core.read']), [B, nb, w]);
    for (let r = 0; r < R; r++) {
      const stepEmb = tf.reshape(tf.slice(p['core.step'], [r, 0], [1, w]), [1, 1, w]);
      z = tf.add(tf.add(z, stepEmb), read) as tf.Tensor3D; // continuous feedback: z_{r-1} is this step's input
      for (let l = 0; l < cfg.coreLayers; l++) z = slotBlock(p, `core${l}.`, z, cfg.heads);
      latents.push(z);
    }
  }
  const logits = tf.add(
    tf.reshape(tf.matMul(rms(tf.reshape(z, [B * nb, w]), p['head.norm']) as tf.Tensor2D, p['head.w']), [B, nb]),
    tf.reshape(tf.matMul(entropy, p['head.entropy']), [B, nb])); // direct path from the backbone's uncertainty
  return { logits: tf.add(logits, tf.mul(x.visible, -1e9)) as tf.Tensor2D, latents };
}

// ---------------------------------------------------------------- inference on cached features

/** Planner input tensors for feature rows (caller disposes, or call inside tidy). */
export function plannerInputs(f: PlannerFeatures, rows?: readonly number[]) {
  const g = rows ? selectFeatures(f, rows) : f;
  return {
    hidden: tf.tensor3d(g.hidden, [g.n, g.numBlocks, g.dim]),
    entropy: tf.tensor2d(g.entropy, [g.n, g.numBlocks]),
    visible: tf.tensor2d(Float32Array.from(g.visible), [g.n, g.numBlocks]),
    classId: tf.tensor1d(g.classId, 'int32'),
  };
}

/** Next-block probabilities [n, nb] of the planner on feature rows (no gradients; batched). */
export function plannerProbs(pl: Planner, f: PlannerFeatures, rows?: readonly number[], R?: LatentSteps, batch = 256): Float32Array {
  const all = rows ?? Array.from({ length: f.n }, (_, i) => i);
  const nb = f.numBlocks, out = new Float32Array(all.length * nb);
  for (let s = 0; s < all.length; s += batch) {
    const chunk = all.slice(s, s + batch);
    const p = tf.tidy(() => tf.softmax(plannerForward(pl, plannerInputs(f, chunk), R).logits));
    out.set(p.dataSync(), s * nb);
    p.dispose();
  }
  return out;
}

/**
 * L_OH (METHOD.md §5): cross-entropy of the masked next-block distribution
 * against `target` [B, nb] (one-hot a* for the plain CE baseline, or a soft
 * distribution over unseen blocks). Visible blocks carry zero target mass.
 */
export function plannerLoss(logits: tf.Tensor2D, target: tf.Tensor2D): tf.Scalar {
  return tf.mean(tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(logits)), -1))) as tf.Scalar;
}

/** Number of planner parameters. */
export const plannerParamCount = (p: Planner): number => Object.values(p.params).reduce((a, v) => a + v.size, 0);
