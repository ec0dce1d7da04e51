/**
 * What the crossover study measured: per (K, N) and arm, the test NLL and the
 * paired difference to raster-only, Δ NLL = arm − raster-only per test image
 * within each training seed, with seedImageInterval (seeds and test images
 * resampled together) and the one verdict rule (verdictOf: an interval that
 * contains 0 is "no difference"). Then the table (Markdown, CSV, LaTeX and a
 * long-form CSV of every cell, seed and arm), the figures (Δ NLL against
 * epochs and against K, one trace per arm and N) and the findings sentences.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../runtime/atomic';
import { seedImageInterval, SeedImageInterval } from '../eval/bootstrap';
import { MetricSummary } from '../eval/summary';
import { MetricColumn, recordsCsv, resultTable, ResultTable, TableRowInput, writeResultTable, WrittenTable } from '../eval/tables';
import type { Figure } from '../oracle/dataset-figures';
import { finding, Finding, findingsSection, signedCell } from '../stats/findings';
import { Merit, meritOf, Verdict, verdictOf } from '../stats/verdict';
import { StudyArm, STUDY_ARMS, uniqueImagesAt } from './config';
import { CellResult } from './run';
import { StudyMerge } from './merge';

/** One (K, N, arm) of the study, over its seeds. */
export interface StudyRow {
  k: number | 'all';
  /** K resolved ('all' is the pool's size). */
  kImages: number;
  n: number;
  /** N · batch / K. */
  epochs: number;
  arm: StudyArm;
  /** Seeds done (every seed of the study, or the row is not made). */
  seeds: number[];
  /** Test NLL in bits/token: mean over seeds and images, with its interval. */
  testBits: SeedImageInterval;
  /** Δ NLL = arm − raster-only, paired per image within each seed (undefined for raster-only itself). */
  delta?: SeedImageInterval;
  verdict?: Verdict;
  merit?: Merit;
  /** Per seed: the selected step and its validation NLL. */
  selectedSteps: number[];
  validationBits: number[];
}

export interface StudyAnalysis {
  fingerprint: string;
  profile: string;
  rows: StudyRow[];
  /** (K, N) pairs with a seed not finished: left out of the rows. */
  incomplete: string[];
  testImages: number;
  seeds: number[];
  level: number;
  cells: CellResult[];
}

const kLabel = (k: number | 'all', kImages: number) => (k === 'all' ? `all (${kImages})` : String(k));

/** Rows for every (K, N) whose seeds are all finished; Δ intervals seeded by (K, N, arm), so a rerun shows the same numbers. */
export function analyseStudy(merge: StudyMerge, level = 0.95): StudyAnalysis {
  const study = merge.config;
  const rows: StudyRow[] = [];
  const incomplete: string[] = [];
  for (const n of study.steps) {
    for (const k of uniqueImagesAt(study, n)) {
      const cells = study.seeds.map((seed) => merge.cells.find((c) => c.cell.k === k && c.cell.n === n && c.cell.seed === seed));
      if (cells.some((c) => !c)) {
        incomplete.push(`K ${k}, N ${n}: ${cells.filter((c) => c).length} of ${study.seeds.length} seeds done`);
        continue;
      }
      const done = cells as CellResult[];
      const raster = done.map((c) => c.arms['raster-only'].perImage);
      for (const arm of STUDY_ARMS) {
        const own = done.map((c) => c.arms[arm].perImage);
        const key = `study K${k} N${n} ${arm}`;
        const delta = arm === 'raster-only' ? undefined
          : seedImageInterval(own.map((v, s) => v.map((x, i) => x - raster[s][i])), study.bootstrapReps, `${key} delta`, level);
        const verdict = delta && verdictOf(delta);
        rows.push({
          k, kImages: done[0].kImages, n, epochs: done[0].epochs, arm, seeds: [...study.seeds],
          testBits: seedImageInterval(own, study.bootstrapReps, `${key} bits`, level),
          ...(delta ? { delta, verdict, merit: meritOf(verdict!, 'lower is better') } : {}),
          selectedSteps: done.map((c) => c.arms[arm].selectedStep), validationBits: done.map((c) => c.arms[arm].validationBits),
        });
      }
    }
  }
  return {
    fingerprint: merge.fingerprint, profile: merge.identity.profile, rows, incomplete, testImages: study.testImages, seeds: [...study.seeds], level,
    cells: merge.cells,
  };
}

const summary = (iv: SeedImageInterval): MetricSummary => ({
  mean: iv.mean, lo: iv.lo, hi: iv.hi, level: iv.level, interval: 'bootstrap-training-seeds', perSeed: iv.perSeed, n: iv.images * iv.perSeed.length,
});

/** The table's columns: the arm's test NLL and its paired difference to raster-only. */
export const STUDY_COLUMNS: readonly MetricColumn[] = Object.freeze([
  { key: 'testBits', label: 'test NLL (bits/token)', better: 'lower', digits: 3, description: 'exact NLL of the test images in the order the arm is read in' },
  { key: 'deltaBits', label: 'Δ NLL vs raster-only', better: 'lower', digits: 3, description: 'arm − raster-only, paired per test image within each seed' },
]);

/** The study as a ResultTable (lib/eval/tables.ts): one row per (K, N, arm), named with its epochs. */
export function studyTable(a: StudyAnalysis): ResultTable {
  const rows: TableRowInput[] = a.rows.map((r) => ({
    name: `K ${kLabel(r.k, r.kImages)} · N ${r.n} · ${r.epochs.toPrecision(3)} epochs · ${r.arm}`,
    values: { testBits: summary(r.testBits), ...(r.delta ? { deltaBits: summary(r.delta) } : {}) },
  }));
  return resultTable(rows.length ? rows : [{ name: 'no (K, N) with every seed done', missing: 'run the study (runStudy) first' }], STUDY_COLUMNS, {
    title: 'Crossover study: test NLL and Δ NLL against raster-only per K, N and arm', style: 'interval', meanOver: 'training seeds and test images',
    note: `${a.seeds.length} training seeds (${a.seeds.join(', ')}) x ${a.testImages} test images; every arm validation-selected; ` +
      'kept random is read in random block orders (seeded per image), annealed-fixed in the fixed order, the others in token raster',
  });
}

/** The study's plain rows for showTable: one per (K, N, arm), Δ with its interval and verdict, the per-seed values. */
export function studyRows(a: StudyAnalysis): Record<string, string | number>[] {
  return a.rows.map((r) => ({
    K: kLabel(r.k, r.kImages), N: r.n, epochs: Number(r.epochs.toPrecision(3)), arm: r.arm,
    'test NLL (bits/token)': signedCell(r.testBits.mean, r.testBits, 3).replace(/\+/g, ''),
    'Δ NLL vs raster-only': r.delta ? signedCell(r.delta.mean, r.delta, 3) : 'reference',
    verdict: r.merit ? ({ better: 'beats raster-only', worse: 'worse than raster-only', 'no difference': 'no difference' } as const)[r.merit] : '',
    'Δ per seed': r.delta ? r.delta.perSeed.map((v) => v.toFixed(3)).join(', ') : '',
    'selected steps': r.selectedSteps.join(', '),
  }));
}

/** One row per cell, seed and arm (the long form, for other tools): every number at full precision. */
export function studyCellRecords(a: StudyAnalysis): Record<string, string | number>[] {
  return a.cells.flatMap((c) => STUDY_ARMS.map((arm) => {
    const r = c.arms[arm], ref = c.arms['raster-only'];
    const delta = r.perImage.reduce((s, v, i) => s + v - ref.perImage[i], 0) / r.perImage.length;
    return {
      cell: c.cell.name, K: String(c.cell.k), kImages: c.kImages, N: c.cell.n, seed: c.cell.seed, batch: c.batch, epochs: c.epochs, arm, order: r.order,
      selectedStep: r.selectedStep, validationBits: r.validationBits, testBits: r.testBits, deltaBits: delta,
    };
  }));
}

/** Write the table (`study-table.md/.csv/.tex`) and the long form (`study-cells.csv`) into `dir`; returns the paths and the HTML. */
export function writeStudyTables(a: StudyAnalysis, dir: string): WrittenTable & { cellsCsv: string } {
  const written = writeResultTable(studyTable(a), dir, 'study-table');
  const cellsCsv = path.join(dir, 'study-cells.csv');
  fs.mkdirSync(dir, { recursive: true });
  if (a.cells.length) writeFileAtomic(cellsCsv, recordsCsv(studyCellRecords(a)));
  return { ...written, cellsCsv };
}

const ARM_COLORS: Record<StudyArm, string> = { 'raster-only': '#7f7f7f', 'annealed-raster': '#1f77b4', 'kept-random': '#ff7f0e', 'annealed-fixed': '#2ca02c' };

/**
 * Δ NLL (arm − raster-only) against epochs or against K (log x), one trace
 * per arm and N (dashes tell N apart), asymmetric error bars from the
 * seed-and-image interval; the zero line is raster-only.
 */
export function studyFigure(a: StudyAnalysis, x: 'epochs' | 'K', stamp: string): Figure {
  const traces: Record<string, unknown>[] = [];
  const ns = [...new Set(a.rows.map((r) => r.n))];
  for (const arm of STUDY_ARMS.filter((s) => s !== 'raster-only')) {
    ns.forEach((n, j) => {
      const rows = a.rows.filter((r) => r.arm === arm && r.n === n && r.delta).sort((p, q) => p.kImages - q.kImages);
      if (!rows.length) return;
      traces.push({
        type: 'scatter', mode: 'lines+markers', name: `${arm}, N ${n}`, x: rows.map((r) => (x === 'epochs' ? r.epochs : r.kImages)),
        y: rows.map((r) => r.delta!.mean), text: rows.map((r) => `K ${kLabel(r.k, r.kImages)}, ${r.epochs.toPrecision(3)} epochs`),
        line: { color: ARM_COLORS[arm], dash: ['solid', 'dash', 'dot', 'dashdot'][j % 4] },
        error_y: {
          type: 'data', symmetric: false, thickness: 1,
          array: rows.map((r) => r.delta!.hi - r.delta!.mean), arrayminus: rows.map((r) => r.delta!.mean - r.delta!.lo),
        },
        hovertemplate: '%{text}: Δ %{y:.3f}<extra>%{fullData.name}</extra>',
      });
    });
  }
  const lv = Math.round(a.level * 100);
  return {
    traces,
    layout: {
      title: {
        text: `Δ NLL against raster-only by ${x === 'epochs' ? 'epochs over the K images' : 'unique training images K'} ` +
          `(mean over seeds, ${lv}% interval over seeds and test images) — ${stamp}`,
        font: { size: 14 },
      },
      xaxis: { title: x === 'epochs' ? 'epochs = N · batch / K (log)' : 'unique training images K (log)', type: 'log' },
      yaxis: { title: 'Δ NLL vs raster-only (bits/token) ↓', zeroline: true, zerolinewidth: 2 },
      shapes: [{ type: 'line', xref: 'paper', x0: 0, x1: 1, y0: 0, y1: 0, line: { color: '#444', width: 1, dash: 'dot' } }],
      height: 460,
    },
  };
}

const where = (r: StudyRow) => `K ${kLabel(r.k, r.kImages)}, N ${r.n} (${r.epochs.toPrecision(3)} epochs)`;

/** The findings as records: one per (K, N) and arm, its Δ NLL against raster-only with the verdict of its interval. */
export function studyFindingRecords(a: StudyAnalysis): Finding[] {
  return a.rows.filter((r) => r.delta).map((r) => finding({
    subject: `${r.arm} at ${where(r)}`, claim: 'Δ NLL', reference: 'raster-only', estimate: r.delta!.mean, lo: r.delta!.lo, hi: r.delta!.hi,
    digits: 3, unit: 'bits/token', direction: 'lower is better',
  }));
}

/**
 * "What this run showed": per arm, where (K, epochs) it beats raster-only
 * beyond its interval, or that it does nowhere, and where its gap is
 * smallest; then the findings table the sentences were written from.
 */
export function studyFindings(a: StudyAnalysis, stamp: string): string {
  if (!a.rows.length) {
    return `In this run (**${stamp}**) no (K, N) of the study has every seed finished, so there is nothing to compare yet` +
      `${a.incomplete.length ? ` (${a.incomplete.join('; ')})` : ''}. Run the study's cells (runStudy, or \`npm run study\`) and merge again.`;
  }
  const lines = [`In this run (**${stamp}**), ${a.seeds.length} training seeds x ${a.testImages} test images per cell; ` +
    `Δ NLL = arm − raster-only, paired per test image within each seed, ${Math.round(a.level * 100)}% interval over seeds and images together:`];
  for (const arm of STUDY_ARMS.filter((s) => s !== 'raster-only')) {
    const rows = a.rows.filter((r) => r.arm === arm && r.delta);
    const wins = rows.filter((r) => r.merit === 'better');
    const best = rows.reduce((p, q) => (q.delta!.mean < p.delta!.mean ? q : p));
    const cell = (r: StudyRow) => `${where(r)}: ${signedCell(r.delta!.mean, r.delta!, 3)}`;
    const winText = wins.length
      ? `beats raster-only beyond its interval at ${wins.map(cell).join('; ')}`
      : `beats raster-only beyond its interval nowhere in the ${rows.length} (K, N) measured`;
    const worse = rows.filter((r) => r.merit === 'worse').length, even = rows.filter((r) => r.merit === 'no difference').length;
    lines.push(`- **${arm}** ${winText}; it is worse at ${worse} and not distinguishable at ${even} of them. ` +
      `Its gap to raster-only is smallest at ${cell(best)} bits/token.`);
  }
  if (a.incomplete.length) lines.push(`- Not yet compared (seeds missing): ${a.incomplete.join('; ')}.`);
  lines.push('', 'Kept random is read in random block orders and annealed-fixed in its fixed order: their Δ is the cost (or gain) of ' +
    'the order they are used in, not only of training. Every arm was selected on the validation images; the test images were read once, after selection.');
  return findingsSection(lines, studyFindingRecords(a));
}

/** The cell the main job should run in, chosen on validation (never on test): see regimeChoice. */
export interface RegimeChoice {
  k: number | 'all';
  kImages: number;
  n: number;
  epochs: number;
  /** Mean over seeds of (annealed-raster − raster-only) validation NLL of the selected checkpoints, bits/token: what chose the cell. */
  validationDelta: number;
  /** Every candidate K at this N with its validation Δ, for the table. */
  candidates: { k: number | 'all'; kImages: number; epochs: number; validationDelta: number }[];
  /** True when block-RAR annealed to raster is below raster-only on validation there (comes closest = beats). */
  beatsOnValidation: boolean;
}

/**
 * Where order-robust training comes closest to (or beats) raster-only, at the
 * main job's N: the K whose block-RAR run annealed to raster has the smallest
 * validation NLL gap to raster-only (each arm's selected checkpoint, mean over
 * seeds). Annealed to raster is the arm that measures the cost of order-robust
 * training with the same final order (RAR's recipe); the study's test NLLs
 * play no part in the choice. Undefined when no K at that N has every seed done.
 */
export function regimeChoice(a: StudyAnalysis, n: number): RegimeChoice | undefined {
  const at = (arm: StudyArm) => a.rows.filter((r) => r.n === n && r.arm === arm);
  const raster = at('raster-only');
  const candidates = at('annealed-raster').flatMap((r) => {
    const ref = raster.find((q) => q.k === r.k);
    if (!ref) return [];
    const d = r.validationBits.reduce((t, v, s) => t + v - ref.validationBits[s], 0) / r.validationBits.length;
    return [{ k: r.k, kImages: r.kImages, epochs: r.epochs, validationDelta: d }];
  });
  if (!candidates.length) return undefined;
  const best = candidates.reduce((p, q) => (q.validationDelta < p.validationDelta ? q : p));
  return { ...best, n, candidates, beatsOnValidation: best.validationDelta < 0 };
}
