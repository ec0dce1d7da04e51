/**
 * Headroom among orders on one backbone (METHOD.md §7.5): how much could any
 * order policy gain on the kept-random backbone, the one the OrderHead
 * settings decode with?
 *
 * The valid rivals are ordinary settings (settings.ts): raster and random
 * block order, lowest and highest entropy first, the planner. Beside them
 * stands the **greedy oracle order**, an *oracle bound*: at every state it
 * reveals a* = argmax u(a | S) of the true image's oracle utilities
 * (trajectory.ts, oraclePolicy). It reads the hidden tokens, so it is not a
 * generator and its orders are no valid factorisation: it never enters the
 * headline, it has no samples, no FID, and its NLL is not a likelihood.
 *
 * Why argmax u (the default target) and not the planner's trained target:
 * the headroom is measured on the remaining-loss curve, whose area sums
 * L_rest(S_t) over the steps, and L_rest(S_{t+1}) = L_rest(S_t) - u(a_t | S_t).
 * argmax u is therefore greedy on exactly the quantity the area adds up:
 * every step removes the most remaining loss there is to remove. In
 * particular its L_rest(S_1) is the smallest of any first block, so no
 * order's first step beats it (the tests assert this). Greedy is not optimal
 * over the whole path, so a valid order *may* beat its area: "bound" means
 * "what reading the true image buys a greedy chooser", not a proof. argmax
 * u_extrap (target 'trained') can be asked for, but it is not greedy on the
 * area even for one step.
 *
 * What is measured, on the first `eval.trajectory.images` test images (the
 * images of every setting's remaining-loss curve, so each row pairs with
 * every other image by image):
 *   - the area under L_rest along the order (trajectory.ts, remainingLoss);
 *   - the teacher-forced NLL of those images in those orders (bits/token;
 *     for the settings: their exact NLL on the same images, the first ones of
 *     the NLL images);
 *   - Δ area and Δ NLL against raster block order on the same backbone,
 *     paired per image, and the share of the headroom a setting closes:
 *     (area of raster order - area) / (area of raster order - area of the
 *     bound), a ratio of sums over images (0 = raster order, 1 = the bound).
 * Cost of the bound: its rollout scores every candidate at every state of
 * every image (scoreStates, one call per step for all images, about |R|
 * times the cost of L_rest alone), i.e. the per-step oracle comparison of
 * one setting on all the curve's images instead of the first few; then the
 * curve and one NLL pass. METHOD.md §7.5 gives the measured seconds.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { GPT } from '../backbone/gpt';
import { seqLen } from '../backbone/config';
import { nllInBlockOrders } from '../backbone/nll';
import { BlockGeometry } from '../order';
import { weightsFingerprint } from '../runtime/checkpoint';
import { ensure, oneOf } from '../runtime/errors';
import { EvalConfig } from './config';
import { cacheKey, readKeyedCache, writeKeyedCache } from './cache';
import { SettingOutcome, SettingResult } from './results';
import { isMissing, MissingSetting } from './settings';
import { MetricSummary, summarizeRatio, summarizeSamples } from './summary';
import { MetricColumn, ResultTable, resultTable, TableOptions, TableRowInput, TRAJECTORY_REFERENCE } from './tables';
import {
  ORACLE_TARGETS, OracleTargetName, oraclePolicy, pairedTrajectoryDifference, TrajectoryData, trajectoryMetrics, TrajectoryResult, targetLabel,
} from './trajectory';

/** The row name of the bound, in every table and finding: the word "bound" and why it is not a generator. */
export const GREEDY_ORACLE_BOUND = 'greedy oracle order (bound: reads the true image, not a generator)';

/**
 * The settings of the headroom table: the valid orders on the kept-random
 * backbone (seed 0), raster block order first (the reference).
 */
export const HEADROOM_SETTINGS: readonly string[] = Object.freeze([
  'block-RAR + raster order', 'block-RAR + random order', 'block-RAR + lowest entropy first', 'block-RAR + highest entropy first',
  'OrderHead R=0', 'OrderHead R=1', 'OrderHead R=2', 'OrderHead R=4',
]);

export interface HeadroomConfig {
  /** The oracle target the greedy order follows (ORACLE_TARGETS); default 'argmax u' (the file comment says why). */
  target: OracleTargetName;
}

export const DEFAULT_HEADROOM_CONFIG: HeadroomConfig = Object.freeze({ target: 'argmax u' as OracleTargetName });

/** The greedy oracle order on one backbone: an oracle bound, not a generator. */
export interface HeadroomBound {
  kind: 'oracle bound';
  name: string;
  target: OracleTargetName;
  /** The target in words (targetLabel). */
  targetLabel: string;
  images: number;
  /** The remaining-loss curve along its orders (no per-step comparison: against its own target its regret is 0 by construction). */
  trajectory: TrajectoryResult;
  /** Teacher-forced NLL of the same images in its orders, bits per token (not a likelihood: the orders read the images). */
  nll: { bitsPerToken: number; perImageBits: Float64Array };
  seconds: { curve: number; nll: number; total: number };
}

/** Format tag of the bound's cache file (cache.ts readKeyedCache); raised when HeadroomBound's shape changes. */
export const HEADROOM_CACHE_FORMAT = 'orderhead-headroom-bound/1';

/** Check the inputs of the bound; every refusal names the field and the fix. */
function checkBoundInputs(m: GPT | undefined, data: TrajectoryData | undefined, cfg: EvalConfig, target: string): OracleTargetName {
  ensure(m != null && typeof m === 'object' && m.cfg !== undefined, 'no backbone given: the oracle utilities of the bound are the backbone\'s losses',
    'headroom.backbone', 'pass the backbone whose headroom is measured (contestHeadroomBound loads the kept-random one from the run folders)');
  ensure(data != null && data.tokens instanceof Int32Array && data.labels instanceof Int32Array,
    'no test images given: the greedy oracle reads each true image\'s oracle utilities', 'headroom.data',
    'pass { tokens, labels } of the token cache test split (ctx.testTokens, ctx.testLabels)');
  const name = oneOf(target, ORACLE_TARGETS, 'headroom.target');
  ensure(cfg.trajectory.images > 0, 'the bound is measured on the remaining-loss images, and eval.trajectory.images is 0', 'eval.trajectory.images',
    'set eval.trajectory.images > 0 (default 64), or do not ask for the bound');
  ensure(cfg.nllImages >= cfg.trajectory.images, `the headroom table pairs the NLL of ${cfg.trajectory.images} trajectory images, the settings score only ${cfg.nllImages}`,
    'eval.nllImages', `raise nllImages to at least ${cfg.trajectory.images} or lower eval.trajectory.images`);
  return name;
}

/**
 * The greedy oracle bound of backbone `m` on the first cfg.trajectory.images
 * images of `data` (see the file comment): its orders and remaining-loss
 * curve (trajectoryMetrics of oraclePolicy, the same curve as every
 * setting's), then their teacher-forced NLL. `onStep(done, total)` after
 * each step of the curve. Leaks no tensors.
 */
export async function greedyOracleBound(m: GPT | undefined, geo: BlockGeometry, data: TrajectoryData | undefined, cfg: EvalConfig,
  headroom: Partial<HeadroomConfig> = {}, onStep?: (done: number, total: number) => void): Promise<HeadroomBound> {
  const target = checkBoundInputs(m, data, cfg, headroom.target ?? DEFAULT_HEADROOM_CONFIG.target);
  const model = m!, test = data!, t = cfg.trajectory, t0 = Date.now();
  const chosen = target === 'argmax u' ? { label: 'u' as const, weight: t.weight } : t.trainedTarget;
  const policy = oraclePolicy(model, geo, test, { reading: t.reading, weight: chosen.weight, batch: t.batch, label: chosen.label });
  const trajectory = await trajectoryMetrics(model, geo, policy, test, { ...t, oracleImages: 0 }, onStep);
  const t1 = Date.now();
  const n = trajectory.images, T = seqLen(model.cfg);
  const nll = nllInBlockOrders(model, test.tokens.subarray(0, n * T), test.labels.subarray(0, n), trajectory.blockOrders, geo, cfg.nllBatch);
  const t2 = Date.now();
  return {
    kind: 'oracle bound', name: GREEDY_ORACLE_BOUND, target, targetLabel: targetLabel(target, t.trainedTarget), images: n, trajectory,
    nll: { bitsPerToken: nll.bitsPerToken, perImageBits: Float64Array.from(nll.perImage, (v) => v / T / Math.LN2) },
    seconds: { curve: (t1 - t0) / 1000, nll: (t2 - t1) / 1000, total: (t2 - t0) / 1000 },
  };
}

/**
 * greedyOracleBound, read from `<cacheDir>/greedy-oracle-bound-<key>.json`
 * when that file holds it for exactly these inputs (backbone weights, block
 * geometry, trajectory config, NLL batch, target, the test images scored),
 * else computed and written there (atomically). `source` says which.
 */
export async function greedyOracleBoundCached(m: GPT | undefined, geo: BlockGeometry, data: TrajectoryData | undefined, cfg: EvalConfig, cacheDir: string,
  headroom: Partial<HeadroomConfig> = {}, onStep?: (done: number, total: number) => void): Promise<{ bound: HeadroomBound; source: 'cached' | 'computed' }> {
  const target = checkBoundInputs(m, data, cfg, headroom.target ?? DEFAULT_HEADROOM_CONFIG.target);
  const model = m!, n = cfg.trajectory.images, T = seqLen(model.cfg);
  const h = createHash('sha256').update(Buffer.from(data!.tokens.slice(0, n * T).buffer)).update('|').update(Buffer.from(data!.labels.slice(0, n).buffer));
  const identity = JSON.parse(JSON.stringify({
    format: HEADROOM_CACHE_FORMAT, endianness: os.endianness(), bound: GREEDY_ORACLE_BOUND, target,
    backbone: { config: model.cfg, weights: weightsFingerprint(model.params) },
    geometry: { gridH: geo.gridH, gridW: geo.gridW, blockH: geo.blockH, blockW: geo.blockW },
    trajectory: cfg.trajectory, nllBatch: cfg.nllBatch, images: h.digest('hex').slice(0, 16),
  }));
  const key = cacheKey(identity);
  const file = path.join(cacheDir, `greedy-oracle-bound-${key}.json`);
  const read = readKeyedCache<HeadroomBound>(file, HEADROOM_CACHE_FORMAT, key, identity, (b) => b?.kind === 'oracle bound' && b.images === n);
  if (read && 'value' in read) return { bound: read.value, source: 'cached' };
  const bound = await greedyOracleBound(model, geo, data, cfg, { target }, onStep);
  fs.mkdirSync(cacheDir, { recursive: true });
  writeKeyedCache(file, HEADROOM_CACHE_FORMAT, key, identity, bound);
  return { bound, source: 'computed' };
}

/** The headroom table's columns, in order; Δ and the share are against raster block order on the same backbone. */
export const HEADROOM_COLUMNS: readonly MetricColumn[] = Object.freeze([
  { key: 'area', label: 'Area L_rest', better: 'lower', digits: 2, description: 'area under the remaining-loss curve along the order (nats), trajectory.ts' },
  { key: 'areaDiff', label: 'Δ area vs raster order', better: 'lower', digits: 2, description: 'area minus raster block order\'s, paired per image' },
  { key: 'headroomShare', label: 'Share of headroom', better: 'higher', digits: 2,
    description: '(area of raster order - area) / (area of raster order - area of the greedy oracle bound), ratio of sums over images' },
  { key: 'nllBits', label: 'NLL (bits/token)', better: 'lower', digits: 3, description: 'teacher-forced NLL of the same images in the order (the bound\'s: not a likelihood)' },
  { key: 'nllDiff', label: 'Δ NLL vs raster order', better: 'lower', digits: 3, description: 'NLL minus raster block order\'s, paired per image' },
]);

type Scored = { name: string; area: Float64Array; nll: Float64Array | undefined; trajectory: TrajectoryResult };

/** A setting's per-image area and NLL on the first n images (its NLL is undefined when it scored fewer). */
function scoredSetting(o: SettingResult & { trajectory: TrajectoryResult }): Scored {
  const n = o.trajectory.images, bits = o.seeds[0]?.perSample.nllBits;
  return { name: o.name, area: o.trajectory.perImage.area, nll: bits && bits.length >= n ? bits.subarray(0, n) : undefined, trajectory: o.trajectory };
}

/**
 * The headroom table: the greedy oracle bound (first row, named so), then
 * the HEADROOM_SETTINGS that `outcomes` hold (missing ones marked), each with
 * its area, NLL on the bound's images, and both against raster block order
 * (`reference`, default TRAJECTORY_REFERENCE) paired per image, and the share
 * of the headroom it closes. `bound` may be a missing marker (its backbone
 * was not trained) or undefined (not computed): its row says so, and the
 * share column is then empty.
 */
export function headroomTable(outcomes: readonly SettingOutcome[], bound: HeadroomBound | MissingSetting | undefined,
  opts: TableOptions & { reference?: string } = {}): ResultTable {
  const refName = opts.reference ?? TRAJECTORY_REFERENCE;
  const named = (name: string) => outcomes.find((o) => o.name === name);
  const refOutcome = named(refName);
  const ref = refOutcome && !isMissing(refOutcome) && refOutcome.trajectory ? scoredSetting(refOutcome as SettingResult & { trajectory: TrajectoryResult }) : undefined;
  const b = bound && !isMissing(bound) ? bound : undefined;
  const boundScored: Scored | undefined = b && { name: b.name, area: b.trajectory.perImage.area, nll: b.nll.perImageBits, trajectory: b.trajectory };
  if (ref && b) {
    ensure(b.images === ref.trajectory.images && b.trajectory.reading === ref.trajectory.reading,
      `the bound scored ${b.images} images (${b.trajectory.reading}), ${refName} ${ref.trajectory.images} (${ref.trajectory.reading})`,
      'headroomTable(bound)', 'compute the bound with the evaluation config of the settings (the same eval.trajectory)');
  }
  const boot = (b?.trajectory ?? ref?.trajectory)?.bootstrap ?? { reps: 200, level: 0.95, seed: 0 };
  const seed = (what: string) => `${boot.seed}/headroom/${what}`;
  const values = (s: Scored): Record<string, MetricSummary | undefined> => {
    const v: Record<string, MetricSummary | undefined> = { area: s.trajectory.totals.area };
    if (s.nll) v.nllBits = summarizeSamples([s.nll], boot.reps, seed(`nll/${s.name}`), boot.level);
    if (ref && s !== ref) {
      v.areaDiff = pairedTrajectoryDifference(s.trajectory, ref.trajectory, 'area');
      if (s.nll && ref.nll) {
        const refNll = ref.nll;
        v.nllDiff = summarizeSamples([Float64Array.from(s.nll, (x, i) => x - refNll[i])], boot.reps, seed(`nllDiff/${s.name}`), boot.level);
      }
    }
    if (ref && boundScored) {
      v.headroomShare = summarizeRatio(Float64Array.from(ref.area, (r, i) => r - s.area[i]), Float64Array.from(ref.area, (r, i) => r - boundScored.area[i]),
        boot.reps, seed(`share/${s.name}`), boot.level);
    }
    return v;
  };
  const rows: TableRowInput[] = [];
  if (boundScored) rows.push({ name: boundScored.name, values: values(boundScored) });
  else rows.push({ name: GREEDY_ORACLE_BOUND, missing: bound && isMissing(bound) ? bound.missing : 'not computed (evaluation.contestHeadroomBound)' });
  for (const name of HEADROOM_SETTINGS) {
    const o = named(name);
    if (!o) continue;
    if (isMissing(o)) rows.push({ name, missing: o.missing });
    else if (!o.trajectory) rows.push({ name, missing: 'trajectory metrics were not computed (eval.trajectory.images = 0)' });
    else rows.push({ name, values: values(name === refName && ref ? ref : scoredSetting(o as SettingResult & { trajectory: TrajectoryResult })) });
  }
  const t = b?.trajectory ?? ref?.trajectory;
  const about = t && `Orders on the kept-random backbone (the OrderHead settings' backbone, training seed 0) on the first ${t.images} held-out test images, ` +
    `the images of the remaining-loss table (${t.reading} reading, nats); ` +
    `${GREEDY_ORACLE_BOUND}: at every state it reveals ${b ? b.targetLabel : 'argmax u'} of the true image's oracle utilities, greedy on the area ` +
    '(each step removes the most remaining loss); it is an oracle bound, not a generator: it has no samples and no FID, ' +
    'its NLL is the teacher-forced loss in its own orders, not a likelihood, and it never enters the headline; greedy is not optimal over the whole path, ' +
    'so the bound is exact only at the first step; the settings are valid orders (they read visible tokens only) with their exact NLL on the same images; ' +
    `Δ = minus ${refName}, paired per image; share of headroom = (area of ${refName} - area) / (area of ${refName} - area of the bound)`;
  return resultTable(rows, HEADROOM_COLUMNS, {
    title: 'Headroom among orders on one backbone: how much any planner could gain', meanOver: 'test images', ...opts,
    note: [about, opts.note].filter((x) => x && x.trim()).map((x) => x!.trim().replace(/[.;]$/, '')).join('; ') || undefined,
  });
}

/**
 * The headroom in findings lines: the bound against raster block order, then
 * each valid setting's share of that headroom. Empty without the bound or
 * the reference.
 */
export function headroomFindings(outcomes: readonly SettingOutcome[], bound: HeadroomBound | MissingSetting | undefined): string[] {
  if (!bound || isMissing(bound)) return [];
  const table = headroomTable(outcomes, bound);
  const row = (name: string) => table.rows.find((r) => r.name === name && !r.missing);
  const ref = row(TRAJECTORY_REFERENCE), top = row(bound.name);
  if (!ref || !top) return [];
  const iv = (s: MetricSummary | undefined, d: number) => (s ? `${s.mean.toFixed(d)} [${s.lo.toFixed(d)}, ${s.hi.toFixed(d)}]` : 'n/a');
  const lines = [`- **Headroom on the kept-random backbone** (first ${bound.images} test images; the ${GREEDY_ORACLE_BOUND} follows ${bound.targetLabel} ` +
    `of the true image; not a generator): Δ area ${iv(top.values?.areaDiff, 2)} nats against raster block order (whose area is ${iv(ref.values?.area, 2)}), ` +
    'what a greedy chooser that could see the image gains; its teacher-forced NLL in those orders (not a likelihood) ' +
    `${iv(top.values?.nllBits, 3)} bits/token, raster order's ${iv(ref.values?.nllBits, 3)}. The valid orders on that backbone:`];
  for (const r of table.rows) {
    if (r === ref || r === top || r.missing) continue;
    lines.push(`  - ${r.name}: Δ area ${iv(r.values?.areaDiff, 2)} nats, share of the headroom ${iv(r.values?.headroomShare, 2)}, Δ NLL ${iv(r.values?.nllDiff, 3)} bits/token.`);
  }
  return lines;
}
