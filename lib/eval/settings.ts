/**
 * The evaluation settings of METHOD.md section 7: each is a backbone and the
 * order policy that drives it (raster baseline, block-RAR with random or
 * raster order or lowest / highest entropy first, OrderHead at R latent
 * steps, the adaptive budget). Every
 * setting is evaluated with the same seeds, sampling settings and test images
 * (evaluate.ts), so the numbers compare.
 *
 * Settings whose inputs do not exist yet (no planner checkpoint, Stage 6 not
 * implemented) are carried as `{ name, missing }` markers (settingOrMissing),
 * so a report shows "missing" in their row instead of failing.
 */
import { disposeGPT, GPT } from '../backbone/gpt';
import { BlockGeometry, fixedOrderPolicy, OrderPolicy, randomPolicy, rasterPolicy, tokenRasterGeometry } from '../order';
import { plannerPolicy } from '../planner/policy';
import { EntropyEnd, entropyFirstPolicy } from '../planner/baselines';
import { disposePlanner, LatentSteps, Planner } from '../planner/orderhead';
import { OrderHeadError } from '../runtime/errors';
import { seedFrom } from '../runtime/seed';

/** The setting names of METHOD.md section 7, in the order tables show them. */
export const EVAL_SETTING_NAMES = [
  'raster baseline', 'annealed to raster', 'block-RAR + random order', 'block-RAR + raster order',
  'block-RAR + lowest entropy first', 'block-RAR + highest entropy first', 'OrderHead R=0', 'OrderHead R=1', 'OrderHead R=2', 'OrderHead R=4', 'annealed to planner', 'annealed to fixed order', 'adaptive budget',
] as const;
export type EvalSettingName = (typeof EVAL_SETTING_NAMES)[number];

/**
 * The headline arms are trained once per training seed (lib/backbone/stage1.ts,
 * STAGE1_SEEDS): seed 0's setting keeps the plain name, seed k's is
 * `<name> (seed k)`. The headline pools a name's seeds (headline.ts).
 */
export const seededSettingName = (name: string, seed: number, primary = 0): string => (seed === primary ? name : `${name} (seed ${seed})`);

/** The setting name without its seed suffix, and the seed (0 when it has none). */
export function seededSettingBase(name: string): string {
  return parseSeededSetting(name).base;
}
export function parseSeededSetting(name: string): { base: string; seed: number } {
  const m = / \(seed (\d+)\)$/.exec(name);
  return m ? { base: name.slice(0, m.index), seed: Number(m[1]) } : { base: name, seed: 0 };
}

/** The raster settings: the headline compares every other setting with the best of these (headline.ts). */
export const RASTER_SETTINGS: readonly EvalSettingName[] = ['raster baseline', 'annealed to raster'];

/**
 * Which stage, notebook or command produces the inputs of each standard
 * setting: the text a missing marker points the reader to.
 */
export const SETTING_PRODUCERS: Readonly<Record<EvalSettingName, string>> = Object.freeze({
  'raster baseline': 'Stage 1 raster-only backbone (notebooks/02_stage1_backbone.ipynb, orderMode raster)',
  'annealed to raster': 'Stage 1 block-RAR run, random phase then annealed to raster (notebooks/02_stage1_backbone.ipynb)',
  'block-RAR + random order': 'the kept-random continuation from C (notebooks/06_stage5_joint_tuning.ipynb)',
  'block-RAR + raster order': 'the kept-random continuation from C (notebooks/06_stage5_joint_tuning.ipynb)',
  'block-RAR + lowest entropy first': 'the kept-random continuation from C (notebooks/06_stage5_joint_tuning.ipynb)',
  'block-RAR + highest entropy first': 'the kept-random continuation from C (notebooks/06_stage5_joint_tuning.ipynb)',
  'annealed to planner': 'the continuation annealed to the planner\'s orders (notebooks/06_stage5_joint_tuning.ipynb) and the Stage 3 planner (04)',
  'annealed to fixed order': 'the continuation annealed to the planner\'s average order (notebooks/06_stage5_joint_tuning.ipynb)',
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
  /** Frees what the setting holds besides its backbone (its planner, the backbone the planner reads, a router); disposeSetting calls it. */
  release?: () => void;
}

/** Free a setting's backbone and whatever else it holds (a worker evaluates one setting after another in one engine). */
export function disposeSetting(s: EvalSetting): void {
  disposeGPT(s.backbone);
  s.release?.();
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

/**
 * 'block-RAR + lowest entropy first' / '... highest entropy first': the
 * backbone revealing, at every step, the unseen block whose first token it
 * is most (lowest) or least (highest) sure of given the visible tokens
 * (entropyFirstPolicy): valid state-dependent orders with no training, on the
 * backbone the OrderHead settings use, so they show what reading the
 * backbone's uncertainty alone does against the planner.
 */
export function entropyFirstSetting(backbone: GPT, geo: BlockGeometry, first: EntropyEnd, notes?: string): EvalSetting {
  return { name: `block-RAR + ${first} entropy first`, backbone, geo, policy: entropyFirstPolicy(backbone, geo, first), notes: notes ?? `block-RAR backbone, ${first} entropy block first` };
}

/**
 * 'OrderHead R=<R>': the planner's argmax block at every step (plannerPolicy)
 * driving `backbone`. The planner reads the features of `reads` (default the
 * backbone itself): the frozen backbone C it was trained on, when it drives a
 * continuation of C, so its inputs at inference are those it was trained on.
 */
export function orderHeadSetting(backbone: GPT, planner: Planner, geo: BlockGeometry, R: LatentSteps = planner.cfg.latentSteps, notes?: string, reads: GPT = backbone): EvalSetting {
  return {
    name: `OrderHead R=${R}`, backbone, geo, policy: plannerPolicy(planner, reads, geo, R), notes: notes ?? `planner with ${R} latent step(s)`,
    release: () => { disposePlanner(planner); if (reads !== backbone) disposeGPT(reads); },
  };
}

/** 'annealed to raster': the block-RAR run's annealed end (RAR's recipe), decoding in token raster order as it annealed to. */
export function annealedRasterSetting(backbone: GPT, notes = 'random phase, then annealed to token raster (RAR); token raster order'): EvalSetting {
  return { ...rasterBaselineSetting(backbone, notes), name: 'annealed to raster' };
}

/** 'annealed to fixed order': the continuation annealed to one fixed block order, decoding in it. */
export function annealedFixedSetting(backbone: GPT, geo: BlockGeometry, order: readonly number[], notes?: string): EvalSetting {
  return { name: 'annealed to fixed order', backbone, geo, policy: fixedOrderPolicy(geo, [...order]), notes: notes ?? `fixed block order ${order.join(' ')}` };
}
