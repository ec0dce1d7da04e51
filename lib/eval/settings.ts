/**
 * The evaluation settings of METHOD.md section 7: each is a backbone and the
 * order policy that drives it (raster baseline, block-RAR with random or
 * raster order, OrderHead at R latent steps, the adaptive budget). Every
 * setting is evaluated with the same seeds, sampling settings and test images
 * (evaluate.ts), so the numbers compare.
 *
 * Settings whose inputs do not exist yet (no planner checkpoint, Stage 6 not
 * implemented) are carried as `{ name, missing }` markers (settingOrMissing),
 * so a report shows "missing" in their row instead of failing.
 */
import { GPT } from '../backbone/gpt';
import { BlockGeometry, OrderPolicy, randomPolicy, rasterPolicy, tokenRasterGeometry } from '../order';
import { plannerPolicy } from '../planner/policy';
import { LatentSteps, Planner } from '../planner/orderhead';
import { OrderHeadError } from '../runtime/errors';
import { seedFrom } from '../runtime/seed';

/** The setting names of METHOD.md section 7, in the order tables show them. */
export const EVAL_SETTING_NAMES = [
  'raster baseline', 'block-RAR + random order', 'block-RAR + raster order',
  'OrderHead R=0', 'OrderHead R=1', 'OrderHead R=2', 'OrderHead R=4', 'adaptive budget',
] as const;
export type EvalSettingName = (typeof EVAL_SETTING_NAMES)[number];

/**
 * Which stage, notebook or command produces the inputs of each standard
 * setting: the text a missing marker points the reader to.
 */
export const SETTING_PRODUCERS: Readonly<Record<EvalSettingName, string>> = Object.freeze({
  'raster baseline': 'Stage 1 raster-only backbone (notebooks/02_stage1_backbone.ipynb, orderMode raster)',
  'block-RAR + random order': 'Stage 1 block-RAR backbone (notebooks/02_stage1_backbone.ipynb)',
  'block-RAR + raster order': 'Stage 1 block-RAR backbone (notebooks/02_stage1_backbone.ipynb)',
  'OrderHead R=0': 'Stage 3 OrderHead planner (notebooks/04_stage3_orderhead.ipynb)',
  'OrderHead R=1': 'Stage 4 latent-reasoning curriculum, R = 1 (notebooks/05_stage4_latent_planner.ipynb)',
  'OrderHead R=2': 'Stage 4 latent-reasoning curriculum, R = 2 (notebooks/05_stage4_latent_planner.ipynb)',
  'OrderHead R=4': 'Stage 4 latent-reasoning curriculum, R = 4 (notebooks/05_stage4_latent_planner.ipynb)',
  'adaptive budget': 'Stage 6 adaptive-budget router on the Stage 5 pair (notebooks/06_stage5_joint_tuning.ipynb, notebooks/07_stage6_adaptive_budget.ipynb)',
});

/** One evaluated configuration: a backbone and the order policy that drives it. */
export interface EvalSetting {
  /** Row name in tables (EVAL_SETTING_NAMES for the standard ones). */
  name: string;
  backbone: GPT;
  /** The order policy used for sampling, NLL and trajectories. */
  policy: OrderPolicy;
  /**
   * A fresh policy per evaluation seed, for randomised policies: each seed
   * then draws new orders (a policy's random orders are keyed by sample index
   * only). Default: `policy` for every seed.
   */
  policyFor?: (seed: number) => OrderPolicy;
  /**
   * The block geometry the policy works in; default the context's. The raster
   * baseline decodes in token raster order: one block per token row
   * (tokenRasterGeometry).
   */
  geo?: BlockGeometry;
  notes?: string;
}

/** A setting that cannot be evaluated yet, and why (names the stage and what produces it). */
export interface MissingSetting {
  name: string;
  missing: string;
}

export function isMissing(x: unknown): x is MissingSetting {
  return typeof x === 'object' && x !== null && typeof (x as MissingSetting).missing === 'string';
}

/** A missing marker with an explicit message. */
export function missingSetting(name: string, message: string): MissingSetting {
  return { name, missing: message };
}

function missingFrom(name: string, err: OrderHeadError, producedBy: string | undefined): MissingSetting {
  const what = `${err.where}: ${err.problem}`;
  return { name, missing: producedBy ? `${what}. Produced by ${producedBy}; run it in this profile first.` : `${what}. Fix: ${err.fix}` };
}

/**
 * Build a setting with `fn` (which typically loads checkpoints); an
 * OrderHeadError from it (missing or foreign checkpoint) becomes a missing
 * marker naming what failed and `producedBy` (default: SETTING_PRODUCERS for
 * the standard names, else the error's own fix). Other errors propagate.
 * `fn` may be async; the result then is a Promise. Tensors `fn` created
 * before failing (a backbone loaded before its planner failed) are its to
 * dispose.
 */
export function settingOrMissing(name: string, fn: () => EvalSetting, producedBy?: string): EvalSetting | MissingSetting;
export function settingOrMissing(name: string, fn: () => Promise<EvalSetting>, producedBy?: string): Promise<EvalSetting | MissingSetting>;
export function settingOrMissing(name: string, fn: () => EvalSetting | Promise<EvalSetting>, producedBy?: string): EvalSetting | MissingSetting | Promise<EvalSetting | MissingSetting> {
  const producer = producedBy ?? (SETTING_PRODUCERS as Record<string, string>)[name];
  const onError = (err: unknown): MissingSetting => {
    if (err instanceof OrderHeadError) return missingFrom(name, err, producer);
    throw err;
  };
  try {
    const out = fn();
    if (out && typeof (out as Promise<EvalSetting>).then === 'function') return (out as Promise<EvalSetting>).then((s) => ({ ...s, name }), onError);
    return { ...(out as EvalSetting), name };
  } catch (err) {
    return onError(err);
  }
}

/** 'raster baseline': the raster-trained backbone decoding in token raster order (LlamaGen's native order). */
export function rasterBaselineSetting(backbone: GPT, notes = 'raster-trained backbone, token raster order'): EvalSetting {
  const geo = tokenRasterGeometry({ gridH: backbone.cfg.gridH, gridW: backbone.cfg.gridW });
  return { name: 'raster baseline', backbone, policy: rasterPolicy(geo), geo, notes };
}

/** 'block-RAR + random order': a fresh uniformly random block order per sample, new orders for every seed. */
export function blockRarRandomSetting(backbone: GPT, geo: BlockGeometry, seed = 0, notes = 'block-RAR backbone, random block order'): EvalSetting {
  return {
    name: 'block-RAR + random order', backbone, geo, notes,
    policy: randomPolicy(geo, seedFrom(seed, 'eval-random-order')),
    policyFor: (s) => randomPolicy(geo, seedFrom(seed, 'eval-random-order', s)),
  };
}

/** 'block-RAR + raster order': the same backbone in raster block order. */
export function blockRarRasterSetting(backbone: GPT, geo: BlockGeometry, notes = 'block-RAR backbone, raster block order'): EvalSetting {
  return { name: 'block-RAR + raster order', backbone, policy: rasterPolicy(geo), geo, notes };
}

/** 'OrderHead R=<R>': the planner's argmax block at every step (plannerPolicy). */
export function orderHeadSetting(backbone: GPT, planner: Planner, geo: BlockGeometry, R: LatentSteps = planner.cfg.latentSteps, notes?: string): EvalSetting {
  return { name: `OrderHead R=${R}`, backbone, geo, policy: plannerPolicy(planner, backbone, geo, R), notes: notes ?? `planner with ${R} latent step(s)` };
}
