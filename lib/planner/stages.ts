/**
 * Stages 3 and 4 as notebook steps: the oracle states' backbone features
 * (computed once, cached beside the planner runs), planner and baseline
 * metrics on held-out states with bootstrap intervals, and the R curriculum.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { ensure, OrderHeadError } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { encodeSafetensors, readSafetensors } from '../runtime/safetensors';
import { rng, seedFrom } from '../runtime/seed';
import { BlockGeometry } from '../order';
import { GPT } from '../backbone/gpt';
import { OracleDataset, oracleItem } from '../oracle/dataset';
import { TokenCache } from '../tokenizer/cache';
import { PlannerFeatures, plannerFeatures } from './features';
import { LatentSteps, Planner, disposePlanner } from './orderhead';
import { PlannerData, PlannerTrainConfig, plannerProbs, trainPlanner, TrainPlannerResult, StateSplit } from './train';
import { BaselineName, baselineProbs, baselineScores, plannerMetrics, PlannerSummary, summarizePerState, PlannerPerState } from './metrics';

/** Planner runs of a profile live in `<runRoot>/planner-<profile>/`. */
export const plannerRoot = (runRoot: string, profile: string): string => path.join(runRoot, `planner-${profile}`);

const FEATURES_FILE = 'oracle-features.safetensors';
const FEATURES_FORMAT = 'orderhead-planner-features/1';

/**
 * Backbone features of every state of an oracle dataset (lib/planner/features.ts),
 * cached as `<dir>/oracle-features.safetensors`. The cache is keyed by the
 * dataset's merged file and the backbone fingerprint: a different dataset or
 * backbone recomputes (and atomically replaces) it.
 */
export function oracleStateFeatures(dir: string, ds: OracleDataset, cache: TokenCache, backbone: GPT,
  onBatch?: (done: number, total: number) => void): { features: PlannerFeatures; cached: boolean; seconds: number } {
  const file = path.join(dir, FEATURES_FILE);
  const merged = path.join(ds.dir, 'oracle.safetensors');
  const key = createHash('sha256').update(fs.readFileSync(merged)).update(ds.manifest.backbone.fingerprint).digest('hex').slice(0, 16);
  if (fs.existsSync(file)) {
    try {
      const { tensors, metadata } = readSafetensors(file);
      if (metadata.format === FEATURES_FORMAT && metadata.key === key) {
        const t = (k: string) => tensors[k].data;
        const f: PlannerFeatures = {
          n: ds.n, numBlocks: ds.geo.numBlocks, dim: Number(metadata.dim), hidden: t('hidden') as Float32Array, entropy: t('entropy') as Float32Array,
          blockEntropy: t('blockEntropy') as Float32Array, visible: t('visible') as Uint8Array, classId: t('classId') as Int32Array,
        };
        ensure(f.dim === backbone.cfg.dModel && f.hidden.length === ds.n * ds.geo.numBlocks * f.dim, 'cached features do not fit the backbone', file, 'delete the file; it is recomputed');
        return { features: f, cached: true, seconds: 0 };
      }
    } catch (err) {
      if (!(err instanceof OrderHeadError)) throw err; // an unreadable cache is recomputed below
    }
  }
  const t0 = performance.now();
  const items = Array.from({ length: ds.n }, (_, i) => oracleItem(ds, i, cache));
  const f = plannerFeatures(backbone, ds.geo, items, undefined, onBatch);
  const nb = ds.geo.numBlocks, d = f.dim;
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(file, encodeSafetensors({
    hidden: { dtype: 'F32', shape: [ds.n, nb, d], data: f.hidden },
    entropy: { dtype: 'F32', shape: [ds.n, nb], data: f.entropy },
    blockEntropy: { dtype: 'F32', shape: [ds.n, nb], data: f.blockEntropy },
    visible: { dtype: 'U8', shape: [ds.n, nb], data: f.visible },
    classId: { dtype: 'I32', shape: [ds.n], data: f.classId },
  }, { format: FEATURES_FORMAT, key, dim: String(d), dataset: ds.dir, backbone: ds.manifest.backbone.fingerprint }));
  return { features: f, cached: false, seconds: (performance.now() - t0) / 1000 };
}

/** A way of choosing the next block, scored on held-out states. */
export interface Chooser {
  setting: string;
  /** [rows, nb] preference per block (higher = preferred). */
  scores: Float32Array;
  /** [rows, nb] a distribution over unseen blocks (for calibration), when the chooser has one. */
  probs?: Float32Array;
}

/** The baselines of the planner issue, on feature rows: random, raster-next, nearest-visible, and both entropies. */
export function baselineChoosers(data: PlannerData, rows: readonly number[], geo: BlockGeometry, seed = 0): Chooser[] {
  const nb = geo.numBlocks, n = rows.length;
  const pick = (a: ArrayLike<number>) => { const o = new Float32Array(n * nb); rows.forEach((r, i) => { for (let b = 0; b < nb; b++) o[i * nb + b] = a[r * nb + b]; }); return o; };
  const visible = Uint8Array.from(pick(data.features.visible));
  const make = (setting: string, name: BaselineName, entropy?: Float32Array): Chooser => {
    const opts = { geo, visible, n, entropy, seed };
    return { setting, scores: baselineScores(name, opts), probs: baselineProbs(name, opts) };
  };
  return [
    make('random unseen block', 'random'),
    make('raster-next block', 'raster-next'),
    make('nearest-to-visible block', 'nearest-visible'),
    make('highest entropy (first token)', 'entropy', pick(data.features.entropy)),
    make('highest entropy (whole block, one-step)', 'entropy', pick(data.features.blockEntropy)),
  ];
}

/** A planner at R latent steps as a chooser (its probabilities are its scores). */
export function plannerChooser(pl: Planner, data: PlannerData, rows: readonly number[], R: LatentSteps = pl.cfg.latentSteps, setting = `OrderHead R=${R}`): Chooser {
  const probs = plannerProbs(pl, data.features, rows, R);
  return { setting, scores: probs, probs };
}

/** One row of a metrics table: the summary and 95% bootstrap intervals of its headline metrics. */
export interface MetricsRow {
  setting: string;
  summary: PlannerSummary;
  /** 95% percentile-bootstrap interval over states, per metric. */
  ci: { top1: [number, number]; top3: [number, number]; regret: [number, number]; spearman: [number, number] };
  perState: PlannerPerState;
}

/**
 * Metrics of every chooser on the same held-out rows, against a* of `data`'s
 * label; intervals from `reps` bootstrap resamples of the states (the same
 * resamples for every chooser, so the intervals are comparable).
 */
export function evaluateChoosers(data: PlannerData, rows: readonly number[], choosers: readonly Chooser[], reps = 1000, seed = 0): MetricsRow[] {
  const nb = data.features.numBlocks, n = rows.length;
  const visible = new Uint8Array(n * nb), utility = new Float32Array(n * nb);
  rows.forEach((r, i) => {
    visible.set(data.features.visible.subarray(r * nb, (r + 1) * nb), i * nb);
    utility.set(data.utility.subarray(r * nb, (r + 1) * nb), i * nb);
  });
  const rg = rng(seedFrom(seed, 'bootstrap'));
  const first = plannerMetrics({ nb, visible, utility, scores: choosers[0].scores });
  const m = first.perState.chosen.length;
  const resamples = Array.from({ length: reps }, () => Int32Array.from({ length: m }, () => rg.int(m)));
  const q = (a: number[], p: number) => { const s = a.filter(Number.isFinite).sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
  return choosers.map((c) => {
    const met = plannerMetrics({ nb, visible, utility, scores: c.scores, probs: c.probs });
    const boots = resamples.map((rows2) => summarizePerState(met.perState, rows2));
    const ci = (k: 'top1' | 'top3' | 'regret' | 'spearman'): [number, number] => [q(boots.map((b) => b[k]), 0.025), q(boots.map((b) => b[k]), 0.975)];
    const { perState, ...summary } = met;
    return { setting: c.setting, summary, ci: { top1: ci('top1'), top3: ci('top3'), regret: ci('regret'), spearman: ci('spearman') }, perState };
  });
}

/** Table rows (numbers rounded) with intervals, for showTable and the report. */
export function metricsRowsForTable(rows: readonly MetricsRow[]): Record<string, string | number | null>[] {
  const f = (v: number, d = 3) => (Number.isFinite(v) ? Number(v.toFixed(d)) : null);
  const iv = (c: [number, number], d = 3) => `[${c[0].toFixed(d)}, ${c[1].toFixed(d)}]`;
  return rows.map((r) => ({
    setting: r.setting, states: r.summary.n,
    'top-1': f(r.summary.top1), 'top-1 95% CI': iv(r.ci.top1),
    'top-3': f(r.summary.top3),
    regret: f(r.summary.regret), 'regret 95% CI': iv(r.ci.regret),
    Spearman: f(r.summary.spearman), Kendall: f(r.summary.kendall),
    ECE: r.summary.ece === undefined ? null : f(r.summary.ece),
  }));
}

/**
 * Stage 4: the R curriculum. For each R in `steps` (default 1, 2, 4), train
 * a planner with R latent steps initialised from the previous stage's best
 * planner (the first from `init`, the Stage 3 R = 0 planner), same loss.
 * Run folders `<root>/<prefix>-R<R>`. Returns each stage's result, in order;
 * the caller disposes the planners.
 */
export function trainLatentCurriculum(root: string, prefix: string, cfg: PlannerTrainConfig, data: PlannerData,
  grid: { blocksY: number; blocksX: number; numClasses: number }, init: Planner, steps: readonly LatentSteps[] = [1, 2, 4],
  onStep?: (R: LatentSteps, step: number, m: { loss: number; valLoss?: number; valTop1?: number }) => void): { R: LatentSteps; result: TrainPlannerResult }[] {
  const out: { R: LatentSteps; result: TrainPlannerResult }[] = [];
  let prev = init;
  for (const R of steps) {
    ensure(R > 0, `the curriculum steps must be R > 0 (got ${R}); R = 0 is Stage 3`, 'trainLatentCurriculum(steps)', 'pass e.g. [1, 2, 4]');
    const result = trainPlanner(root, `${prefix}-R${R}`, { ...cfg, planner: { ...cfg.planner, latentSteps: R } }, data, grid,
      { init: prev, onStep: onStep ? (s, m) => onStep(R, s, m) : undefined });
    out.push({ R, result });
    prev = result.planner;
  }
  return out;
}

export type { StateSplit };
export { disposePlanner };
