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
import { BlockGeometry, OrderPolicy } from '../order';
import { exactNll, nllUnderPolicy, NllResult } from '../backbone/nll';
import { orderCells } from '../backbone/order-nll';
import { GPT } from '../backbone/gpt';
import { OracleDataset, oracleItem } from '../oracle/dataset';
import { TokenCache } from '../tokenizer/cache';
import { PlannerFeatures, plannerFeatures } from './features';
import { checkLatentSteps, LatentSteps, Planner, disposePlanner, plannerProbs } from './orderhead';
import {
  bestPlannerCheckpoint, LabelName, loadPlanner, PlannerData, plannerData, PlannerTrainConfig, plannerTrainConfig, trainPlanner,
  TrainPlannerResult, StateSplit, TargetName,
} from './train';
import { ProfileName } from '../runtime/profile';
import { plannerMetrics, PlannerSummary, summarizePerState, PlannerPerState } from './metrics';
import { BaselineName, baselineProbs, baselineScores } from './baselines';

import { weightsFingerprint } from '../runtime/checkpoint';
import { Direction, meritOf, verdictOf } from '../stats/verdict';
import { estimateCell, Finding, finding, findingsSection, MERIT_WORDS, MeritWords, verdictWords } from '../stats/findings';

/** Planner runs of a profile live in `<runRoot>/planner-<profile>/`. */
export const plannerRoot = (runRoot: string, profile: string): string => path.join(runRoot, `planner-${profile}`);

/** The run folder of a Stage 3 run under the planner root: `stage3-<key>` (key: STAGE3_RUNS). */
export const stage3RunName = (key: string): string => `stage3-${key}`;
/** The run folder trainLatentCurriculum gives the stage with R latent steps: `<prefix>-R<R>`. */
export const latentRunName = (prefix: string, R: LatentSteps): string => `${prefix}-R${R}`;
/** The run-folder prefix of the Stage 4 curriculum started from Stage 3 run `from`: `stage4-<from>`. */
export const stage4RunPrefix = (from: string): string => `stage4-${from}`;
/** The run folder of a Stage 4 (R curriculum) stage started from Stage 3 run `from`: `stage4-<from>-R<R>`. */
export const stage4RunName = (from: string, R: LatentSteps): string => latentRunName(stage4RunPrefix(from), R);

/** The feature cache of the frozen backbone (Stages 3 and 4), beside the planner runs. */
export const FEATURES_FILE = 'oracle-features.safetensors';
/** The feature cache of the Stage 5 tuned backbone (Stage 6 reads it), beside the planner runs. */
export const JOINT_FEATURES_FILE = 'oracle-features-stage5.safetensors';
const FEATURES_FORMAT = 'orderhead-planner-features/2';

export interface OracleStateFeaturesOptions {
  /** Called after each batch of states with (states done, total): a progress bar. */
  onBatch?: (done: number, total: number) => void;
  /** Cache file name inside the folder. Default FEATURES_FILE; the Stage 5 tuned backbone uses JOINT_FEATURES_FILE. */
  fileName?: string;
}

/**
 * Backbone features of every state of an oracle dataset (lib/planner/features.ts),
 * cached as `<dir>/<opts.fileName>` (default oracle-features.safetensors). The cache is
 * keyed by the dataset's merged file and the backbone's weights: a different
 * dataset or backbone recomputes (and atomically replaces) it.
 */
export function oracleStateFeatures(dir: string, ds: OracleDataset, cache: TokenCache, backbone: GPT,
  opts: OracleStateFeaturesOptions = {}): { features: PlannerFeatures; cached: boolean; seconds: number } {
  const { onBatch, fileName = FEATURES_FILE } = opts;
  const file = path.join(dir, fileName);
  const merged = path.join(ds.dir, 'oracle.safetensors');
  // Keyed by the backbone's weights, not the dataset's backbone file: Stage 5's tuned backbone gets its own features.
  const key = createHash('sha256').update(fs.readFileSync(merged)).update(weightsFingerprint(backbone.params)).digest('hex').slice(0, 16);
  if (fs.existsSync(file)) {
    try {
      const { tensors, metadata } = readSafetensors(file);
      if (metadata.format === FEATURES_FORMAT && metadata.key === key) {
        const t = (k: string) => tensors[k].data;
        const f: PlannerFeatures = {
          n: ds.n, numBlocks: ds.geo.numBlocks, dim: Number(metadata.dim), hidden: t('hidden') as Float32Array, entropy: t('entropy') as Float32Array,
          visible: t('visible') as Uint8Array, classId: t('classId') as Int32Array,
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

/** The baselines of the planner issue, on feature rows: random, raster-next, nearest-visible, and the first-token entropy. */
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
 * Stage 4: the R curriculum. For each R in `latentSteps` (default 1, 2, 4), train
 * a planner with R latent steps initialised from the previous stage's best
 * planner (the first from `init`, the Stage 3 R = 0 planner), same loss.
 * Run folders `<root>/<prefix>-R<R>`. Returns each stage's result, in order;
 * the caller disposes the planners.
 */
export function trainLatentCurriculum(root: string, prefix: string, cfg: PlannerTrainConfig, data: PlannerData,
  grid: { blocksY: number; blocksX: number; numClasses: number }, init: Planner, latentSteps: readonly LatentSteps[] = [1, 2, 4],
  onStep?: (R: LatentSteps, step: number, m: { loss: number; valLoss?: number; valTop1?: number }) => void): { R: LatentSteps; result: TrainPlannerResult }[] {
  const out: { R: LatentSteps; result: TrainPlannerResult }[] = [];
  let prev = init;
  // Every R is checked before the first stage trains: a bad value late in the list would otherwise surface after hours.
  for (const R of latentSteps) {
    checkLatentSteps(R, 'trainLatentCurriculum(latentSteps)');
    ensure(R > 0, `the curriculum's R values must be > 0 (got ${R}); R = 0 is Stage 3`, 'trainLatentCurriculum(latentSteps)', 'pass e.g. [1, 2, 4]');
  }
  for (const R of latentSteps) {
    const result = trainPlanner(root, latentRunName(prefix, R), { ...cfg, planner: { ...cfg.planner, latentSteps: R } }, data, grid,
      { init: prev, onStep: onStep ? (s, m) => onStep(R, s, m) : undefined });
    out.push({ R, result });
    prev = result.planner;
  }
  return out;
}

/** One Stage 3 run: a label and a target kind (METHOD.md §5). */
export interface Stage3Run {
  /** Run folder suffix: `stage3-<key>`. */
  key: string;
  /** Legend and table name. */
  name: string;
  label: LabelName;
  target: TargetName;
}

/**
 * The Stage 3 runs notebook 04 trains: the plain-CE baseline on a* = argmax u,
 * and the two options of the issue, each a separate run (neither replaces the
 * baseline): the extrapolative label argmax u_extrap, and soft targets from u.
 */
export const STAGE3_RUNS: readonly Stage3Run[] = [
  { key: 'u-hard', name: 'plain CE on argmax u (baseline)', label: 'u', target: 'hard' },
  { key: 'u_extrap-hard', name: 'plain CE on argmax u_extrap', label: 'u_extrap', target: 'hard' },
  { key: 'u-soft', name: 'soft targets from u', label: 'u', target: 'soft' },
];

/**
 * The Stage 3 run the later stages build on (R curriculum, joint tuning,
 * budget, evaluation): the extrapolative label. Why: in the default oracle
 * run (notebook 03), argmax u was the hidden block with the largest loss on
 * its *own* tokens in 84% of states (that term is 96% of u(a*)), which is
 * the "most uncertain block" shortcut METHOD.md §1 rules out as a target;
 * u_extrap measures only the help a block gives the *rest* of the image.
 * The plain-u planner stays in every table as the baseline. Its u_extrap is
 * the oracle dataset's primary labeling, whose weight is PRIMARY_WEIGHT
 * (lib/oracle/weights.ts; planner.weight checks it): the runs are per label
 * and target, not per weight, so switching the weight switches every run.
 */
export const PRIMARY_STAGE3_RUN = 'u_extrap-hard';

/**
 * The R = 0 planner the later stages read (curriculum.ts `primaryPlannerRun`:
 * stageInputs' `planner`, so Stage 5 and through it Stage 6). 'on-policy':
 * the last on-policy round's planner (lib/planner/on-policy.ts, notebook 04)
 * once every round finished, else the Stage 3 run PRIMARY_STAGE3_RUN, which
 * stays as it is. Why: the rounds train on the states the planner's own
 * orders reach, which are the states it meets when it decodes. 'stage3'
 * switches back to the Stage 3 planner.
 */
export const PRIMARY_PLANNER: 'on-policy' | 'stage3' = 'on-policy';

/** Stage 4 (the R curriculum): which Stage 3 run it starts from, the R values, and the training config per R. */
export interface LatentCurriculumConfig {
  /** Stage 3 run key to start from (its label and target are kept). Default PRIMARY_STAGE3_RUN. */
  from: string;
  /** R values, trained in order, each initialised from the previous. Default [1, 2, 4]. */
  latentSteps: LatentSteps[];
  /** Training config of every R stage (steps per stage; latentSteps is set per stage). */
  train: PlannerTrainConfig;
}

/** Stage 4 config per profile: fewer steps per R than Stage 3, since each stage starts from a trained planner. */
export function latentCurriculumConfig(profile: ProfileName, overrides: Partial<LatentCurriculumConfig> = {}): LatentCurriculumConfig {
  const run = STAGE3_RUNS.find((r) => r.key === (overrides.from ?? PRIMARY_STAGE3_RUN));
  ensure(run, `unknown Stage 3 run '${overrides.from}'`, 'curriculum.from', `use one of: ${STAGE3_RUNS.map((r) => r.key).join(', ')}`);
  const steps = { smoke: 12, default: 250, full: 800 }[profile];
  return {
    from: run.key,
    latentSteps: overrides.latentSteps ?? [1, 2, 4],
    train: overrides.train ?? plannerTrainConfig(profile, { label: run.label, target: run.target, steps, warmup: Math.min(20, steps), evalEvery: Math.max(4, Math.floor(steps / 5)) }),
  };
}

/** Paired difference b − a of a per-state metric over the same states, with a 95% bootstrap interval. */
export function pairedDifference(a: MetricsRow, b: MetricsRow, metric: 'correct' | 'regret', reps = 1000, seed = 0): PairedDifference {
  const x = a.perState[metric], y = b.perState[metric];
  ensure(x.length === y.length, `rows cover ${x.length} and ${y.length} states`, 'pairedDifference', 'evaluate both settings on the same states');
  const m = x.length, d = Float64Array.from({ length: m }, (_, i) => Number(y[i]) - Number(x[i]));
  const mean = (rows?: Int32Array) => { let s = 0; for (let i = 0; i < m; i++) s += d[rows ? rows[i] : i]; return s / m; };
  const r = rng(seedFrom(seed, 'paired'));
  const boots = Array.from({ length: reps }, () => mean(Int32Array.from({ length: m }, () => r.int(m)))).sort((p, q) => p - q);
  return { diff: mean(), lo: boots[Math.floor(0.025 * reps)], hi: boots[Math.min(reps - 1, Math.floor(0.975 * reps))] };
}

/** A paired difference (from pairedDifference or orderNllComparison) b − a, with its 95% interval. */
export interface PairedDifference {
  diff: number;
  lo: number;
  hi: number;
}

/** The table cell of a paired interval: "better", "worse" or "no clear difference" (higher is better unless `lowerIsBetter`). */
export function verdict(d: PairedDifference, lowerIsBetter = false): MeritWords {
  return MERIT_WORDS[meritOf(verdictOf(d), lowerIsBetter ? 'lower is better' : 'higher is better')];
}

/** A paired difference as a finding record: `subject` minus `reference` in `claim`, 3 decimals. */
export function pairedFinding(subject: string, claim: string, reference: string, d: PairedDifference, direction: Direction, unit = ''): Finding {
  return finding({ subject, claim, reference, estimate: d.diff, lo: d.lo, hi: d.hi, digits: 3, unit, direction });
}

/** "Δ +0.012 [-0.010, +0.034]: better": a planner finding inside its sentence. */
export const deltaWords = (f: Finding): string => `Δ ${estimateCell(f)}: ${verdictWords(f)}`;

export type { StateSplit };
export { disposePlanner };

type ProgressFactory = (opts: { total: number; label: string }) => { tick(n?: number, info?: Record<string, number | string>): void; done(): void };

/** Stage 3 as one call: train every run of `runs` (resuming finished ones instantly) on the same features. */
export function trainStage3Runs(root: string, profile: ProfileName, ds: OracleDataset, features: PlannerFeatures, numClasses: number,
  progress?: ProgressFactory, runs: readonly Stage3Run[] = STAGE3_RUNS): { run: Stage3Run; data: PlannerData; result: TrainPlannerResult }[] {
  const grid = { blocksY: ds.geo.blocksY, blocksX: ds.geo.blocksX, numClasses };
  return runs.map((run) => {
    const cfg = plannerTrainConfig(profile, { label: run.label, target: run.target });
    const data = plannerData(ds, features, run.label, cfg.reading, cfg.weight);
    const bar = progress?.({ total: cfg.steps, label: `stage3 ${run.key}` });
    const result = trainPlanner(root, stage3RunName(run.key), cfg, data, grid, {
      onStep: (_s, m) => bar?.tick(1, m.valTop1 !== undefined ? { loss: m.loss, 'val top-1': m.valTop1 } : { loss: m.loss }),
    });
    bar?.done();
    return { run, data, result };
  });
}

/** Stage 4 as one call: the R curriculum from the Stage 3 run `cfg.from` (its best planner is loaded from disk). */
export function trainStage4(root: string, cfg: LatentCurriculumConfig, ds: OracleDataset, features: PlannerFeatures, numClasses: number,
  progress?: ProgressFactory): { init: Planner; data: PlannerData; stages: { R: LatentSteps; result: TrainPlannerResult }[] } {
  const data = plannerData(ds, features, cfg.train.label, cfg.train.reading, cfg.train.weight);
  const initPath = bestPlannerCheckpoint(path.join(root, stage3RunName(cfg.from)), 'notebooks/04_stage3_orderhead.ipynb');
  const init = loadPlanner(initPath, { backboneFingerprint: ds.manifest.backbone.fingerprint }).planner;
  const grid = { blocksY: ds.geo.blocksY, blocksX: ds.geo.blocksX, numClasses };
  const bars = new Map<number, ReturnType<ProgressFactory>>();
  const stages = trainLatentCurriculum(root, stage4RunPrefix(cfg.from), cfg.train, data, grid, init, cfg.latentSteps, (R, _s, m) => {
    if (!bars.has(R)) { bars.forEach((b) => b.done()); bars.clear(); const b = progress?.({ total: cfg.train.steps, label: `stage4 R=${R}` }); if (b) bars.set(R, b); }
    bars.get(R)?.tick(1, m.valTop1 !== undefined ? { loss: m.loss, 'val top-1': m.valTop1 } : { loss: m.loss });
  });
  bars.forEach((b) => b.done());
  return { init, data, stages };
}


/** Per label: the best baselines on top-1 and on regret, and each planner against them. */
function stage3Comparisons(tables: readonly { label: string; rows: readonly MetricsRow[] }[]) {
  return tables.map((t) => {
    const base = t.rows.filter((r) => !r.setting.startsWith('OrderHead'));
    const bestTop1 = base.reduce((a, b) => (b.summary.top1 > a.summary.top1 ? b : a));
    const bestRegret = base.reduce((a, b) => (b.summary.regret < a.summary.regret ? b : a));
    const planners = t.rows.filter((r) => r.setting.startsWith('OrderHead')).map((p) => ({
      row: p,
      top1: pairedFinding(p.setting, `top-1 (a* = argmax ${t.label})`, bestTop1.setting, pairedDifference(bestTop1, p, 'correct'), 'higher is better'),
      regret: pairedFinding(p.setting, `regret (a* = argmax ${t.label})`, bestRegret.setting, pairedDifference(bestRegret, p, 'regret'), 'lower is better', 'nats'),
    }));
    return { label: t.label, bestTop1, bestRegret, planners };
  });
}

/** Stage 3 as finding records (for findingsTable): each planner's top-1 and regret against the best baseline, per label. */
export const stage3FindingRows = (tables: readonly { label: string; rows: readonly MetricsRow[] }[]): Finding[] =>
  stage3Comparisons(tables).flatMap((c) => c.planners.flatMap((p) => [p.top1, p.regret]));

/** Markdown bullets for "What this run showed": each planner against the best baseline, per label, with paired intervals. */
export function stage3Findings(tables: readonly { label: string; rows: readonly MetricsRow[] }[], profile: ProfileName, stamp: string): string {
  const f = (v: number) => v.toFixed(3);
  const lines = [`In this run (**${stamp}**), on held-out states (95% paired bootstrap intervals of the differences):`];
  for (const { label, bestTop1, bestRegret, planners } of stage3Comparisons(tables)) {
    lines.push(`- **Against a\\* = argmax ${label}**: the best baseline on top-1 is *${bestTop1.setting}* (${f(bestTop1.summary.top1)}), on regret *${bestRegret.setting}* (${f(bestRegret.summary.regret)} nats).`);
    for (const { row: p, top1, regret } of planners) {
      lines.push(`  - ${p.setting}: top-1 ${f(p.summary.top1)} (${deltaWords(top1)}), regret ${f(p.summary.regret)} (${deltaWords(regret)}), ECE ${p.summary.ece === undefined ? '–' : f(p.summary.ece)}.`);
    }
  }
  if (profile === 'smoke') lines.push('- *Smoke profile*: a tiny backbone and a few dozen states; these numbers exercise the pipeline, they are not evidence about the method.');
  return findingsSection(lines, stage3FindingRows(tables));
}

/** One row of the NLL-per-order table: bits per token of the same held-out images under one order. */
export interface OrderNllComparisonRow {
  order: string;
  bitsPerToken: number;
  /** 95% bootstrap interval over images. */
  ci: [number, number];
  /** Paired difference to the reference order (this − reference, bits/token) with its 95% interval. */
  vsReference: { diff: number; lo: number; hi: number };
  /** Per image bits per token (for further paired comparisons). */
  perImage: Float64Array;
  n: number;
}

export interface OrderNllComparisonOptions {
  /** Called after each order with its name: a progress bar. */
  onOrder?: (name: string) => void;
  /** The order every difference is taken against. Default 'random blocks', the order the backbone was trained on. */
  reference?: string;
  /** Bootstrap resamples. Default 1000. */
  reps?: number;
}

/**
 * Exact NLL (bits per token) of the first `n` images of `data` under the fixed
 * orders (token raster, block raster, random blocks) and under each policy
 * (planner orders are valid AR factorizations: METHOD.md §7), on one backbone.
 * Intervals: bootstrap over images; differences are paired (same images) and
 * taken against `opts.reference` (default the random block order the backbone was
 * trained on).
 */
export async function orderNllComparison(m: GPT, geo: BlockGeometry, data: { tokens: Int32Array; labels: Int32Array }, n: number,
  policies: readonly OrderPolicy[], opts: OrderNllComparisonOptions = {}): Promise<OrderNllComparisonRow[]> {
  const { onOrder, reference = 'random blocks', reps = 1000 } = opts;
  const T = geo.numTokens;
  ensure(data.labels.length >= n && n > 0, `asks for ${n} images, the split has ${data.labels.length}`, 'orderNllComparison(n)', `use 1..${data.labels.length}`);
  const grids = data.tokens.subarray(0, n * T), classes = data.labels.subarray(0, n);
  const perImageBits = (r: NllResult) => Float64Array.from(r.perImage, (v) => v / T / Math.LN2);
  const raw: { order: string; perImage: Float64Array }[] = [];
  for (const [name, type] of [['token raster', 'raster'], ['block raster', 'block-raster'], ['random blocks', 'random-blocks']] as const) {
    raw.push({ order: name, perImage: perImageBits(exactNll(m, grids, classes, orderCells(type, geo, n))) });
    onOrder?.(name);
  }
  for (const p of policies) {
    raw.push({ order: p.name, perImage: perImageBits(await nllUnderPolicy(m, grids, classes, p, geo)) });
    onOrder?.(p.name);
  }
  const ref = raw.find((r) => r.order === reference) ?? raw[2];
  const r = rng(seedFrom(0, 'nll-bootstrap'));
  const resamples = Array.from({ length: reps }, () => Int32Array.from({ length: n }, () => r.int(n)));
  const mean = (a: Float64Array, rows?: Int32Array) => { let s = 0; for (let i = 0; i < n; i++) s += a[rows ? rows[i] : i]; return s / n; };
  const q = (a: number[]) => { a.sort((x, y) => x - y); return [a[Math.floor(0.025 * reps)], a[Math.min(reps - 1, Math.floor(0.975 * reps))]] as [number, number]; };
  return raw.map(({ order, perImage }) => {
    const d = Float64Array.from(perImage, (v, i) => v - ref.perImage[i]);
    const dci = q(resamples.map((rows) => mean(d, rows)));
    return { order, bitsPerToken: mean(perImage), ci: q(resamples.map((rows) => mean(perImage, rows))), vsReference: { diff: mean(d), lo: dci[0], hi: dci[1] }, perImage, n };
  });
}

/** The R = 0 planner `r0` against baseline `b`: paired top-1 and regret findings. */
const r0VsBaseline = (r0: MetricsRow, b: MetricsRow): [Finding, Finding] => [
  pairedFinding(r0.setting, 'top-1', b.setting, pairedDifference(b, r0, 'correct'), 'higher is better'),
  pairedFinding(r0.setting, 'regret', b.setting, pairedDifference(b, r0, 'regret'), 'lower is better', 'nats'),
];

/** One order's NLL against the reference order of its orderNllComparison (default random blocks), as a finding. */
export const orderNllFinding = (r: OrderNllComparisonRow, reference = 'random blocks'): Finding =>
  pairedFinding(r.order, 'NLL', reference, r.vsReference, 'lower is better', 'bits/token');

/** Notebook 05's findings as records (for findingsTable): R = 0 against every baseline, then every order's NLL against random blocks. */
export function stage4FindingRows(rows: readonly MetricsRow[], nll: readonly OrderNllComparisonRow[]): Finding[] {
  const r0 = rows.filter((r) => r.setting.startsWith('OrderHead'))[0];
  return [...rows.filter((r) => !r.setting.startsWith('OrderHead')).flatMap((b) => r0VsBaseline(r0, b)),
    ...nll.filter((r) => r.order !== 'random blocks').map((r) => orderNllFinding(r))];
}

/** Markdown bullets for notebook 05: the R = 0 planner against the baselines, whether each R helps, and the NLL per order. */
export function stage4Findings(rows: readonly MetricsRow[], helps: readonly Record<string, string>[], nll: readonly OrderNllComparisonRow[],
  profile: ProfileName, stamp: string): string {
  const f = (v: number) => v.toFixed(3);
  const base = rows.filter((r) => !r.setting.startsWith('OrderHead'));
  const planners = rows.filter((r) => r.setting.startsWith('OrderHead'));
  const r0 = planners[0];
  const vsBase = base.map((b) => r0VsBaseline(r0, b));
  const beats = (i: 0 | 1) => vsBase.filter((x) => x[i].merit === 'better').length;
  const lines = [`In this run (**${stamp}**):`,
    `- **R = 0 against the ${base.length} baselines** (held-out states, paired 95% intervals): clearly better on top-1 than ${beats(0)} of ${base.length} ` +
    `(top-1 ${f(r0.summary.top1)}; best baseline ${f(Math.max(...base.map((b) => b.summary.top1)))}), clearly better on regret than ${beats(1)} of ${base.length} ` +
    `(regret ${f(r0.summary.regret)}; best baseline ${f(Math.min(...base.map((b) => b.summary.regret)))}).`];
  for (const h of helps) {
    lines.push(`- **${h.setting}** vs the previous R: top-1 ${h['Δ top-1 vs previous R']} (${h['top-1 verdict']}), regret ${h['Δ regret vs previous R']} (${h['regret verdict']}).`);
  }
  const best = planners.reduce((a, b) => (b.summary.top1 > a.summary.top1 ? b : a));
  lines.push(`- Highest held-out top-1: ${best.setting} (${f(best.summary.top1)}).`);
  const ref = nll.find((r) => r.order === 'random blocks');
  for (const r of nll) {
    if (r === ref) continue;
    const x = orderNllFinding(r);
    lines.push(`- NLL under **${r.order}**: ${f(r.bitsPerToken)} bits/token, ${estimateCell(x)} against random blocks (${ref ? f(ref.bitsPerToken) : '?'}): ${x.verdict}.`);
  }
  if (profile === 'smoke') lines.push('- *Smoke profile*: a tiny backbone and a few dozen states; these numbers exercise the pipeline, they are not evidence about the method.');
  return findingsSection(lines, stage4FindingRows(rows, nll));
}
