/**
 * The headline comparison (METHOD.md §7): every setting against the best
 * raster setting, as paired differences with 95% intervals. A setting trained
 * with several seeds k (`<name> (seed k)`, settings.ts) is one row:
 *
 *   best raster = argmin over RASTER_SETTINGS of the mean over seeds of the selected checkpoint's validation NLL
 *                 (the test NLL only where no selection is recorded)
 *   Δ NLL       = mean_k mean_i [NLL_ki(setting) − NLL_ki(best raster)]   (bits/token; k: training seeds, paired: the same images drawn;
 *                                                                          i: the shared test images; seedImageInterval: seeds and
 *                                                                          images resampled together)
 *   Δ FID       = mean_ks [FID_ks(setting) − FID_ks(best raster)]         (s: the sampling seeds; interval: per-seed bootstrap replicates
 *                                                                          of the difference, recentred, pooled over k and s)
 *
 * A difference whose interval contains 0 reads "no difference", whichever
 * way its mean points. Δ < 0 is better for both.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../runtime/atomic';
import type { Figure } from '../oracle/dataset-figures';
import { budgetEpochs, formatBudget, TrainingBudget } from '../backbone/training-budget';
import { ensure } from '../runtime/errors';
import { bootstrapInterval, seedImageInterval } from './bootstrap';
import { SettingOutcome, SettingResult } from './results';
import { isMissing, parseSeededSetting, RASTER_SETTINGS } from './settings';
import { MetricSummary, summarizeRecentred } from './summary';
import { escapeLatex } from './tables';
import { estimateCell, Finding, finding, findingSentence, magnitudeParts, Phrasebook, signedCell, signedNumber } from '../stats/findings';
import { Verdict, verdictOf } from '../stats/verdict';

const escapeHtml = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface HeadlineRow {
  setting: string;
  /** The setting's own NLL (bits/token) and FID. */
  nll: number;
  fid: number;
  /** Paired differences against the best raster setting (absent for that setting itself). */
  dNll?: MetricSummary;
  dFid?: MetricSummary;
  nllVerdict?: Verdict;
  fidVerdict?: Verdict;
  budget?: TrainingBudget;
  /** Why its budget differs from the contest's (evaluateSettings' allowUnmatched). */
  unmatchedBudget?: string;
  /** The training seeds behind the row, the test NLL of each, and the step each was selected at on validation (NaN: not selected). */
  seeds: number[];
  nllPerSeed: number[];
  selectedSteps: number[];
}

export interface Headline {
  /** The best raster setting: the reference of every Δ. */
  reference: string;
  rows: HeadlineRow[];
  /** Shared test images behind Δ NLL, samples per seed and seeds behind Δ FID. */
  nllImages: number;
  samplesPerSeed: number;
  seeds: number;
  level: number;
  /** The settings that were missing. */
  missing: string[];
  /** The most training seeds behind a row, and what chose the reference. */
  trainingSeeds: number;
  referenceChosenOn: 'validation' | 'test';
}

/** Per-image NLL differences a − b on the shared images, with their bootstrap interval. */
export function pairedNllDifference(a: SettingResult, b: SettingResult, reps: number, level: number): MetricSummary {
  const x = a.seeds[0].perSample.nllBits, y = b.seeds[0].perSample.nllBits;
  ensure(x.length === y.length && x.length > 0, `'${a.name}' scored ${x.length} NLL images, '${b.name}' ${y.length}`, 'pairedNllDifference',
    'evaluate both settings with the same eval.nllImages (a cache from another config is recomputed)');
  const d = Float64Array.from(x, (v, i) => v - y[i]);
  const iv = bootstrapInterval(d, reps, `headline/nll/${a.name}`, level);
  return { mean: iv.mean, lo: Math.min(iv.lo, iv.mean), hi: Math.max(iv.hi, iv.mean), level, interval: 'bootstrap-samples', perSeed: [iv.mean], n: d.length };
}

/** The per-sampling-seed FID differences a − b (same seeds, same class lists), their bootstrap replicates, and the samples behind them. */
function fidDifferences(a: SettingResult, b: SettingResult): { values: number[]; reps: Float64Array[]; n: number } {
  ensure(a.seeds.length === b.seeds.length && a.seeds.every((s, i) => s.seed === b.seeds[i].seed), `'${a.name}' and '${b.name}' were sampled with different seeds`,
    'pairedFidDifference', 'evaluate every setting with the same eval.seeds');
  const values = a.seeds.map((s, i) => s.metrics.fid - b.seeds[i].metrics.fid);
  const reps = a.seeds.map((s, i) => {
    const ra = s.replicates.fid, rb = b.seeds[i].replicates.fid, n = Math.min(ra.length, rb.length);
    return Float64Array.from({ length: n }, (_, r) => ra[r] - rb[r]);
  });
  return { values, reps, n: a.seeds.reduce((t, s) => t + s.n, 0) };
}

/** Per-seed FID differences a − b (same seeds, same class lists), the interval from the seeds' bootstrap replicates of the difference. */
export function pairedFidDifference(a: SettingResult, b: SettingResult, level: number): MetricSummary {
  return seededFidDifference([[a, b]], level);
}

/** Paired per-image NLL differences a − b of each training seed (pairs of results of one seed), with the seed-and-image interval. */
export function seededNllDifference(pairs: readonly [SettingResult, SettingResult][], reps: number, level: number): MetricSummary {
  const perSeed = pairs.map(([a, b]) => {
    const x = a.seeds[0].perSample.nllBits, y = b.seeds[0].perSample.nllBits;
    ensure(x.length === y.length && x.length > 0, `'${a.name}' scored ${x.length} NLL images, '${b.name}' ${y.length}`, 'seededNllDifference',
      'evaluate both settings with the same eval.nllImages (a cache from another config is recomputed)');
    return Float64Array.from(x, (v, i) => v - y[i]);
  });
  const iv = seedImageInterval(perSeed, reps, `headline/nll/${pairs[0][0].name}`, level);
  return { mean: iv.mean, lo: iv.lo, hi: iv.hi, level, interval: pairs.length > 1 ? 'bootstrap-training-seeds' : 'bootstrap-samples', perSeed: iv.perSeed, n: iv.images * pairs.length };
}

/** Per-seed FID differences pooled over training seeds: each pair's sampling seeds, their replicates recentred and pooled. */
export function seededFidDifference(pairs: readonly [SettingResult, SettingResult][], level: number): MetricSummary {
  const parts = pairs.map(([a, b]) => fidDifferences(a, b));
  return summarizeRecentred(parts.flatMap((p) => p.values), parts.flatMap((p) => p.reps), parts.reduce((t, p) => t + p.n, 0), level);
}

const meanOf = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/** The headline from a report's outcomes; the best raster setting must have been evaluated. */
export function headline(outcomes: readonly SettingOutcome[], opts: { reps?: number; level?: number } = {}): Headline {
  const done = outcomes.filter((o): o is SettingResult => !isMissing(o));
  // One group per setting, its training seeds in ascending order.
  const groups = new Map<string, { seed: number; o: SettingResult }[]>();
  for (const o of done) {
    const { base, seed } = parseSeededSetting(o.name);
    groups.set(base, [...(groups.get(base) ?? []), { seed, o }].sort((x, y) => x.seed - y.seed));
  }
  const rasters = RASTER_SETTINGS.filter((n) => groups.has(n));
  ensure(rasters.length > 0, `no raster setting was evaluated (${RASTER_SETTINGS.join(', ')})`, 'headline(outcomes)',
    'evaluate the raster baseline (notebooks/02_stage1_backbone.ipynb trains it) before reading the headline');
  const level = opts.level ?? done[0].metrics.nllBits.level ?? 0.95, reps = opts.reps ?? 2000;
  // The reference is chosen on validation, never on test, wherever the backbones record their selection.
  const onValidation = rasters.every((n) => groups.get(n)!.every((g) => g.o.selected));
  const score = (n: string) => meanOf(groups.get(n)!.map((g) => (onValidation ? g.o.selected!.validationBits : g.o.metrics.nllBits.mean)));
  const ref = rasters.reduce((a, b) => (score(b) < score(a) ? b : a));
  const refBySeed = new Map(groups.get(ref)!.map((g) => [g.seed, g.o]));
  const rows = [...groups.entries()].map(([name, g]): HeadlineRow => {
    const first = g[0].o;
    const row: HeadlineRow = {
      setting: name, nll: meanOf(g.map((x) => x.o.metrics.nllBits.mean)), fid: meanOf(g.map((x) => x.o.metrics.fid.mean)),
      budget: first.budget, unmatchedBudget: first.unmatchedBudget,
      seeds: g.map((x) => x.seed), nllPerSeed: g.map((x) => x.o.metrics.nllBits.mean), selectedSteps: g.map((x) => x.o.selected?.step ?? NaN),
    };
    if (name === ref) return row;
    // Paired by training seed: a seed the reference lacks has no partner (a seed-0-only setting pairs with seed 0).
    const pairs = g.filter((x) => refBySeed.has(x.seed)).map((x): [SettingResult, SettingResult] => [x.o, refBySeed.get(x.seed)!]);
    ensure(pairs.length > 0, `'${name}' was trained with seeds ${row.seeds.join(', ')}, the reference '${ref}' with ${[...refBySeed.keys()].join(', ')}`,
      'headline(outcomes)', 'evaluate the reference for every training seed of the other settings');
    const dNll = seededNllDifference(pairs, reps, level), dFid = seededFidDifference(pairs, level);
    return { ...row, dNll, dFid, nllVerdict: verdictOf(dNll), fidVerdict: verdictOf(dFid) };
  });
  const refFirst = groups.get(ref)![0].o;
  return {
    reference: ref, rows, nllImages: refFirst.seeds[0].perSample.nllBits.length, samplesPerSeed: refFirst.samplesPerSeed, seeds: refFirst.seeds.length, level,
    missing: outcomes.filter(isMissing).map((o) => o.name), trainingSeeds: Math.max(...rows.map((r) => r.seeds.length)),
    referenceChosenOn: onValidation ? 'validation' : 'test',
  };
}

const cellOf = (s: MetricSummary | undefined, d: number) => (s ? signedCell(s.mean, s, d) : 'reference');
/** The verdict cell of the headline table: "lower NLL", "higher FID", "no difference"; empty for the reference row. */
const VERDICT_CELL: Readonly<Record<Verdict, (what: string) => string>> = {
  lower: (what) => `lower ${what}`, higher: (what) => `higher ${what}`, 'no difference': () => 'no difference',
};
const verdictText = (v: Verdict | undefined, what: string) => (v === undefined ? '' : VERDICT_CELL[v](what));

/** The table's header and rows as text cells (Markdown, CSV and LaTeX share them). */
function headlineCells(h: Headline): { header: string[]; rows: string[][] } {
  const header = ['setting', 'NLL (bits/token)', `Δ NLL vs ${h.reference}`, 'Δ NLL per seed', 'NLL verdict', 'FID', `Δ FID vs ${h.reference}`, 'FID verdict',
    'seeds', 'selected steps', 'steps', 'unique images', 'epochs'];
  const rows = h.rows.map((r) => [
    r.unmatchedBudget ? `${r.setting} (budget not matched)` : r.setting,
    r.nll.toFixed(3), cellOf(r.dNll, 3), r.dNll ? r.dNll.perSeed.map((v) => signedNumber(v, 3)).join(' / ') : '', verdictText(r.nllVerdict, 'NLL'),
    r.fid.toFixed(2), cellOf(r.dFid, 2), verdictText(r.fidVerdict, 'FID'),
    r.seeds.join(', '), r.selectedSteps.map((x) => (Number.isNaN(x) ? 'last' : String(x))).join(', '),
    r.budget ? String(r.budget.steps) : 'n/a', r.budget ? String(r.budget.trainImages) : 'n/a', r.budget ? budgetEpochs(r.budget).toFixed(2) : 'n/a',
  ]);
  return { header, rows };
}

/** The caption: what the Δ are, over what, and the budget. */
export function headlineCaption(h: Headline): string {
  const lv = Math.round(h.level * 100);
  const contest = h.rows.find((r) => r.budget && !r.unmatchedBudget)?.budget;
  const unmatched = h.rows.filter((r) => r.unmatchedBudget).map((r) => `${r.setting}: ${r.unmatchedBudget}`);
  return `Every setting against the best raster setting (${h.reference}, the raster setting with the lowest ${h.referenceChosenOn} NLL). ` +
    `Δ NLL: paired per test image over the same ${h.nllImages} held-out images and per training seed (up to ${h.trainingSeeds}; each arm's checkpoint ` +
    `selected on validation NLL), ${lv}% bootstrap interval ${h.trainingSeeds > 1 ? 'resampling training seeds and test images together' : 'over images'}; ` +
    'Δ NLL per seed lists each seed\'s mean; a setting trained with one seed (the planner settings, which read seed 0\'s C) pairs with the reference\'s seed 0. ' +
    `Δ FID: paired per sampling seed within each training seed (${h.seeds} sampling seeds x ${h.samplesPerSeed} samples, same classes), ${lv}% interval from per-seed bootstrap replicates. ` +
    'Negative Δ is better; "no difference" where the interval contains 0. ' +
    (contest ? `Matched budget: ${formatBudget(contest)} for every backbone${unmatched.length ? ` except ${unmatched.join('; ')}` : ''}. ` : '') +
    'FID from a classifier trained on this dataset: comparable across these settings, not with ImageNet papers.' +
    (h.missing.length ? ` Missing: ${h.missing.join(', ')}.` : '');
}

export function headlineMarkdown(h: Headline): string {
  const { header, rows } = headlineCells(h);
  const line = (c: string[]) => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [`**The headline.** ${headlineCaption(h)}`, '', line(header), `|${header.map((_, i) => ([0, 3, 4, 7, 8, 9].includes(i) ? '---' : '---:')).join('|')}|`, ...rows.map(line), ''].join('\n');
}

export function headlineCsv(h: Headline): string {
  const header = ['setting', 'nll', 'dnll', 'dnll_lo', 'dnll_hi', 'dnll_per_seed', 'nll_verdict', 'fid', 'dfid', 'dfid_lo', 'dfid_hi', 'fid_verdict', 'seeds', 'selected_steps',
    'steps', 'batch', 'tokens_seen', 'unique_images', 'epochs', 'unmatched_budget'];
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const n = (v: number | undefined) => (v === undefined ? '' : String(v));
  const rows = h.rows.map((r) => [r.setting, n(r.nll), n(r.dNll?.mean), n(r.dNll?.lo), n(r.dNll?.hi), r.dNll ? r.dNll.perSeed.join(' ') : '', r.nllVerdict ?? 'reference',
    n(r.fid), n(r.dFid?.mean), n(r.dFid?.lo), n(r.dFid?.hi), r.fidVerdict ?? 'reference', r.seeds.join(' '), r.selectedSteps.join(' '),
    n(r.budget?.steps), r.budget?.batch ?? '', n(r.budget?.tokensSeen), n(r.budget?.trainImages), r.budget ? n(budgetEpochs(r.budget)) : '', r.unmatchedBudget ?? ''].map(q).join(','));
  return [header.join(','), ...rows].join('\n') + '\n';
}

export function headlineLatex(h: Headline): string {
  const { header, rows } = headlineCells(h);
  return [
    '\\begin{table}[t]', '\\centering', `\\caption{${escapeLatex(headlineCaption(h))}}`, '\\label{tab:headline}', '\\small',
    `\\begin{tabular}{l${'r'.repeat(header.length - 1)}}`, '\\toprule', `${header.map(escapeLatex).join(' & ')} \\\\`, '\\midrule',
    ...rows.map((r) => `${r.map(escapeLatex).join(' & ')} \\\\`), '\\bottomrule', '\\end{tabular}', '\\end{table}', '',
  ].join('\n');
}

export function headlineHtml(h: Headline): string {
  const { header, rows } = headlineCells(h);
  return `<table><caption>${escapeHtml(headlineCaption(h))}</caption><thead><tr>${header.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('') + '</tbody></table>';
}

/** A resolved difference: "0.030 bits/token below annealed to raster in NLL [0.010, 0.050]". */
const resolved = (f: Finding, side: string) => {
  const [m, lo, hi] = magnitudeParts(f);
  return `${m} ${f.unit} ${side} ${f.reference} in ${f.claim} [${lo}, ${hi}]`;
};
const HEADLINE_WORDS: Phrasebook = {
  lower: (f) => resolved(f, 'below'),
  higher: (f) => resolved(f, 'above'),
  'no difference': (f) => `no difference in ${f.claim} from ${f.reference} (Δ ${estimateCell(f)} ${f.unit})`,
};

/** A row with paired differences: every setting but the reference. */
type ComparedRow = HeadlineRow & Required<Pick<HeadlineRow, 'dNll' | 'dFid'>>;
const compared = (h: Headline) => h.rows.filter((r): r is ComparedRow => !!(r.dNll && r.dFid));

/** One compared row's findings: its Δ NLL and Δ FID against the best raster setting. */
function rowFindings(h: Headline, r: ComparedRow): [Finding, Finding] {
  const of = (claim: string, d: MetricSummary, digits: number, unit: string) =>
    finding({ subject: r.setting, claim, reference: h.reference, estimate: d.mean, lo: d.lo, hi: d.hi, digits, unit, direction: 'lower is better' });
  return [of('NLL', r.dNll, 3, 'bits/token'), of('FID', r.dFid, 2, 'FID points')];
}

/** The headline as finding records (for findingsTable): Δ NLL and Δ FID of every setting against the best raster setting. */
export const headlineFindingRows = (h: Headline): Finding[] => compared(h).flatMap((r) => rowFindings(h, r));

/** The findings under the table, one line per setting, from the paired differences only. */
export function headlineFindings(h: Headline): string[] {
  const lines = compared(h).map((r) => {
    const [nll, fid] = rowFindings(h, r);
    return `- **${r.setting}**${r.unmatchedBudget ? ' (budget not matched)' : ''}: ${findingSentence(nll, HEADLINE_WORDS)}; ${findingSentence(fid, HEADLINE_WORDS)}.`;
  });
  const better = h.rows.filter((r) => r.nllVerdict === 'lower' && !r.unmatchedBudget);
  const best = h.rows.filter((r) => r.dNll && !r.unmatchedBudget).sort((a, b) => a.dNll!.mean - b.dNll!.mean)[0];
  const answer = better.length
    ? `**Answer in this run:** ${better.map((r) => r.setting).join(', ')} beat${better.length === 1 ? 's' : ''} the best raster setting (${h.reference}) in NLL beyond the interval; best: ${better.sort((a, b) => a.dNll!.mean - b.dNll!.mean)[0].setting}.`
    : `**Answer in this run:** no setting beats the best raster setting (${h.reference}) in NLL beyond its interval${best ? `; the closest is ${best.setting} (Δ ${cellOf(best.dNll, 3)} bits/token)` : ''}.`;
  return [answer, ...lines];
}

/** Write `<dir>/<base>.md`, `.csv` and `.tex` atomically (the folder is created) and return the paths and the HTML. */
export function writeHeadline(h: Headline, dir: string, base = 'eval-headline'): { md: string; csv: string; tex: string; html: string } {
  fs.mkdirSync(dir, { recursive: true });
  const md = path.join(dir, `${base}.md`), csv = path.join(dir, `${base}.csv`), tex = path.join(dir, `${base}.tex`);
  writeFileAtomic(md, headlineMarkdown(h));
  writeFileAtomic(csv, headlineCsv(h));
  writeFileAtomic(tex, headlineLatex(h));
  return { md, csv, tex, html: headlineHtml(h) };
}

/** Green for a setting whose Δ NLL lies below 0 (better than the best raster setting), red above, grey for no difference. */
const VERDICT_COLOR: Readonly<Record<Verdict, string>> = { lower: '#1a9850', higher: '#d73027', 'no difference': '#777' };

/** The headline as a figure: Δ NLL of every setting against the best raster setting with its interval (a forest plot; the dashed line is "no difference"). */
export function headlineFigure(h: Headline, stamp: string): Figure {
  const rows = h.rows.filter((r) => r.dNll);
  const y = rows.map((r) => (r.unmatchedBudget ? `${r.setting} (budget not matched)` : r.setting));
  return {
    traces: [{
      type: 'scatter', mode: 'markers', x: rows.map((r) => r.dNll!.mean), y,
      error_x: { type: 'data', symmetric: false, array: rows.map((r) => r.dNll!.hi - r.dNll!.mean), arrayminus: rows.map((r) => r.dNll!.mean - r.dNll!.lo) },
      marker: { size: 9, color: rows.map((r) => VERDICT_COLOR[r.nllVerdict ?? 'no difference']) },
      name: 'Δ NLL',
    }],
    layout: {
      title: `Δ NLL against ${h.reference} (bits/token; paired over ${h.nllImages} test images, ${Math.round(h.level * 100)}% interval) — ${stamp}`,
      xaxis: { title: 'Δ NLL (bits/token; < 0: better than the best raster setting)', zeroline: false },
      yaxis: { automargin: true, autorange: 'reversed' },
      shapes: [{ type: 'line', x0: 0, x1: 0, yref: 'paper', y0: 0, y1: 1, line: { dash: 'dash', color: '#333' } }],
      height: 120 + 34 * rows.length, margin: { l: 230 },
    },
  };
}
