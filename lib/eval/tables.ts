/**
 * The paper tables of the evaluation (METHOD.md section 7), built
 * from evaluateSetting's outcomes: rows = settings (missing ones marked
 * "missing", with the reason in a note), columns = metrics as "mean ± half
 * width" or "mean [lo, hi]". One table writes to a folder as Markdown, CSV
 * (every mean, lo and hi at full precision, for re-use) and LaTeX booktabs,
 * each atomically, and returns the HTML the notebook shows.
 *
 * Every caption states how the intervals were computed (summary.ts) and,
 * when a column comes from the feature network (FID, sFID, IS, precision,
 * recall, class accuracy, recognizability), FEATURE_NET_CAVEAT.
 *
 * The figures of the same outcomes are in figures.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as Papa from 'papaparse';
import { ensure } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { toHtmlTable } from '../report/table';
import { FEATURE_NET_CAVEAT } from './metrics';
import { INTERVAL_METHODS, IntervalMethod, MetricSummary } from './summary';
import { EvalMetric, SettingOutcome, SettingResult } from './results';
import { isMissing } from './settings';
import { OracleTotalKey, pairedTrajectoryDifference, TrajectoryResult } from './trajectory';

/** A table column: one metric. */
export interface MetricColumn {
  /** Key into the row's values (EvalMetric, TrajectoryTotalKey, or your own). */
  key: string;
  /** Plain-text header. */
  label: string;
  better?: 'lower' | 'higher';
  /** Digits after the point in Markdown, LaTeX and HTML (the CSV keeps full precision). */
  digits: number;
  /** Measured with the feature network: the caption then carries FEATURE_NET_CAVEAT. */
  featureNet?: boolean;
  description?: string;
}

/** The sample-quality and likelihood columns, in table order. */
export const EVAL_METRIC_COLUMNS: readonly MetricColumn[] = Object.freeze([
  { key: 'fid', label: 'FID', better: 'lower', digits: 2, featureNet: true, description: 'Fréchet distance of pool features to the real test images' },
  { key: 'sfid', label: 'sFID', better: 'lower', digits: 2, featureNet: true, description: 'Fréchet distance of early spatial features' },
  { key: 'is', label: 'IS', better: 'higher', digits: 2, featureNet: true, description: 'Inception Score of the feature net\'s softmax' },
  { key: 'precision', label: 'Precision', better: 'higher', digits: 3, featureNet: true, description: 'k-NN manifold precision (k = 3)' },
  { key: 'recall', label: 'Recall', better: 'higher', digits: 3, featureNet: true, description: 'k-NN manifold recall (k = 3)' },
  { key: 'accuracy', label: 'Class acc.', better: 'higher', digits: 3, featureNet: true, description: 'feature-net accuracy of samples w.r.t. their conditioning class' },
  { key: 'recognizabilityAuc', label: 'Recog. AUC', better: 'higher', digits: 3, featureNet: true, description: 'area under the progressive recognizability curve' },
  { key: 'nllBits', label: 'NLL (bits/token)', better: 'lower', digits: 3, description: 'exact NLL of held-out test images under the setting\'s order' },
]);

/**
 * The remaining-loss columns of the trajectory metrics (trajectory.ts), in
 * table order; the Δ columns are paired differences against the reference
 * setting (trajectoryResultsTable).
 */
export const TRAJECTORY_COLUMNS: readonly MetricColumn[] = Object.freeze([
  { key: 'area', label: 'Area L_rest', better: 'lower', digits: 2, description: '[Σ_{t<n} L_rest(S_t) - L_rest(∅)/2] / n: area under the remaining-loss curve against the fraction decoded, down to 0 at t = n (nats)' },
  { key: 'firstHalf', label: 'First-half drop', better: 'higher', digits: 2, description: 'L_rest(∅) - L_rest(S_⌈n/2⌉) = Σ_{t<n/2} u(a_t|S_t) (nats)' },
  { key: 'areaDiff', label: 'Δ area', better: 'lower', digits: 2, description: 'area minus the reference setting\'s, paired on the same images' },
  { key: 'firstHalfDiff', label: 'Δ first half', better: 'higher', digits: 2, description: 'first-half drop minus the reference setting\'s, paired on the same images' },
  { key: 'start', label: 'L_rest(∅)', digits: 2, description: 'loss of the whole image from nothing; Σ_t u(a_t|S_t) telescopes to it for every order' },
]);

/**
 * The per-step oracle comparison columns (trajectory.ts), in table order; on
 * the oracle images only. Regret and top-1 come once per target, and the
 * target is in the label and the CSV key: 'trained' (the planner's trained
 * target, argmax u_extrap under the oracle dataset's primary weight; the
 * caption names the weight) and 'argmax u'.
 */
export const ORACLE_COMPARISON_COLUMNS: readonly MetricColumn[] = Object.freeze([
  { key: 'regretTrained', label: 'Regret vs trained target', better: 'lower', digits: 3, description: 'Σ_t [max_a u_T(a|S_t) - u_T(a_t|S_t)], u_T the trained target\'s utility (u_extrap, primary weight)' },
  { key: 'agreementTrained', label: 'Top-1 vs trained target', better: 'higher', digits: 3, description: 'share of steps where a_t is argmax u_T, the planner\'s trained target' },
  { key: 'regretU', label: 'Regret vs argmax u', better: 'lower', digits: 3, description: 'Σ_t [max_a u(a|S_t) - u(a_t|S_t)]' },
  { key: 'agreementU', label: 'Top-1 vs argmax u', better: 'higher', digits: 3, description: 'share of steps where a_t is a* = argmax u' },
  { key: 'oracle', label: 'Σ max u', better: 'higher', digits: 3, description: 'Σ_t max_a u(a|S_t) at the same states (the argmax-u target\'s utility)' },
  { key: 'random', label: 'Σu random', better: 'higher', digits: 3, description: 'Σ_t mean_a u(a|S_t) (a random choice)' },
  { key: 'raster', label: 'Σu raster-next', better: 'higher', digits: 3, description: 'Σ_t u(raster-next|S_t)' },
  { key: 'farRealized', label: 'Σu far', better: 'higher', digits: 3, description: 'Σ_t u_extrap(a_t|S_t), the far-context weight (no-neighbours)' },
  { key: 'farShare', label: 'Far share', better: 'higher', digits: 3, description: 'Σ u_extrap(a_t) / Σ u(a_t)' },
]);

/**
 * The default reference of the paired trajectory differences: raster block
 * order on the block-RAR backbone, the backbone of the random-order and
 * OrderHead settings, so their difference to it is the order's alone.
 */
export const TRAJECTORY_REFERENCE = 'block-RAR + raster order';

type WithTrajectory = SettingResult & { trajectory: TrajectoryResult };

/** The evaluated settings that have trajectory metrics. */
export function withTrajectory(outcomes: readonly SettingOutcome[]): WithTrajectory[] {
  return outcomes.filter((o): o is WithTrajectory => !isMissing(o) && o.trajectory !== undefined);
}

/** The reference setting `name` among the outcomes, if it was evaluated with trajectory metrics. */
export function trajectoryReference(outcomes: readonly SettingOutcome[], name = TRAJECTORY_REFERENCE): WithTrajectory | undefined {
  return withTrajectory(outcomes).find((o) => o.name === name);
}

/** One row: a setting's summaries, or why it is missing. */
export interface TableRowInput {
  name: string;
  values?: Record<string, MetricSummary | undefined>;
  missing?: string;
}

/** "mean ± (hi - lo)/2" or "mean [lo, hi]". */
export type IntervalStyle = 'pm' | 'interval';

export interface ResultTable {
  title: string;
  /** The caption written with every format (intervals, caveat). */
  caption: string;
  columns: MetricColumn[];
  rows: TableRowInput[];
  style: IntervalStyle;
}

export interface TableOptions {
  title?: string;
  /** Column keys to keep, in order; default all of the table's. */
  columns?: readonly string[];
  style?: IntervalStyle;
  /** Extra caption text (e.g. the sample counts), placed after the title. */
  note?: string;
  /** What the cell means average over, for the caption; default 'seeds'. */
  meanOver?: string;
}

/** The text shown for a missing setting in every format. */
export const MISSING_CELL = 'missing';
/** The text of a metric that was not computed (precision/recall switched off). */
export const NOT_AVAILABLE_CELL = 'n/a';

/** A column's header: its label with ↓ / ↑ for the better direction (also the figures' axis titles). */
export function headerOf(c: MetricColumn): string {
  return c.better === 'lower' ? `${c.label} ↓` : c.better === 'higher' ? `${c.label} ↑` : c.label;
}

/** A cell's text: "12.34 ± 0.56", "12.34 [11.80, 12.92]", 'missing' or 'n/a'. */
export function formatCell(s: MetricSummary | undefined, digits: number, style: IntervalStyle, pm = '±'): string {
  if (!s || !Number.isFinite(s.mean)) return NOT_AVAILABLE_CELL;
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(digits) : String(v));
  if (style === 'interval') return `${f(s.mean)} [${f(s.lo)}, ${f(s.hi)}]`;
  return `${f(s.mean)} ${pm} ${f((s.hi - s.lo) / 2)}`;
}

/**
 * A table from rows and columns; the caption says what the cells are, how
 * each column's interval was computed, what "missing" means, and carries
 * FEATURE_NET_CAVEAT when a feature-net column is present.
 */
export function resultTable(rows: readonly TableRowInput[], columns: readonly MetricColumn[], opts: TableOptions = {}): ResultTable {
  ensure(rows.length > 0, 'has no rows', 'resultTable(rows)', 'pass at least one setting (missing ones count)');
  let cols = [...columns];
  if (opts.columns) {
    cols = opts.columns.map((k) => {
      const c = columns.find((x) => x.key === k);
      ensure(c, `unknown column '${k}'`, 'resultTable(opts.columns)', `use some of: ${columns.map((x) => x.key).join(', ')}`);
      return c;
    });
  }
  ensure(cols.length > 0, 'no columns', 'resultTable(columns)', 'pass at least one metric column');
  const style = opts.style ?? 'pm';
  ensure(style === 'pm' || style === 'interval', `unknown style '${style}'`, 'resultTable(opts.style)', "use 'pm' or 'interval'");
  const title = opts.title ?? 'Evaluation';
  // Which interval method each column used (from the rows that have it).
  const methods = new Map<IntervalMethod, string[]>();
  let level = NaN;
  for (const c of cols) {
    const used = new Set<IntervalMethod>();
    for (const r of rows) {
      const s = r.values?.[c.key];
      if (!s || r.missing) continue;
      used.add(s.interval);
      if (Number.isFinite(s.level)) level = s.level;
    }
    for (const m of used) methods.set(m, [...(methods.get(m) ?? []), c.label]);
  }
  const parts = [`${title}.`];
  if (opts.note) parts.push(opts.note.trim().replace(/\.?$/, '.'));
  const over = opts.meanOver ?? 'seeds';
  parts.push(style === 'pm'
    ? `Cells: mean over ${over} ± half the interval width ((hi - lo) / 2; intervals can be asymmetric, the CSV holds lo and hi).`
    : `Cells: mean over ${over} [interval lo, hi].`);
  if (methods.size) {
    const lv = Number.isFinite(level) ? `${Math.round(level * 100)}% ` : '';
    parts.push(`Intervals (${lv}where bootstrapped): ${[...methods].map(([m, labels]) => `${labels.join(', ')}: ${INTERVAL_METHODS[m]}`).join('; ')}.`);
  }
  if (rows.some((r) => r.missing)) parts.push(`"${MISSING_CELL}": the setting's inputs do not exist yet (see the notes).`);
  if (cols.some((c) => c.featureNet)) parts.push(FEATURE_NET_CAVEAT);
  return { title, caption: parts.join(' '), columns: cols, rows: rows.map((r) => ({ ...r })), style };
}

/** The sample-quality / NLL table of evaluated settings. */
export function evalResultsTable(outcomes: readonly SettingOutcome[], opts: TableOptions = {}): ResultTable {
  const results = outcomes.filter((o): o is SettingResult => !isMissing(o));
  let note = opts.note;
  if (note === undefined && results.length) {
    const r = results[0];
    const s = r.sampling;
    note = `${r.seeds.length} seeds x ${r.samplesPerSeed} samples per setting; sampling temperature ${s.temperature}, top-k ${s.topK || 'off'}, top-p ${s.topP === 1 ? 'off' : s.topP}, CFG ${s.cfgScale === 1 ? 'off' : s.cfgScale}; ` +
      `NLL on the same ${r.seeds[0].perSample.nllBits.length} held-out test images for every setting`;
  }
  return resultTable(outcomes.map((o) => (isMissing(o) ? { name: o.name, missing: o.missing } : { name: o.name, values: o.metrics as Record<EvalMetric, MetricSummary> })),
    EVAL_METRIC_COLUMNS, { title: 'Sample quality and exact likelihood by setting', ...opts, note });
}

const NO_TRAJECTORY = 'trajectory metrics were not computed (eval.trajectory.images = 0)';

/** The caption text a table always carries, then the caller's note. */
function joinNotes(...notes: (string | undefined)[]): string | undefined {
  const kept = notes.filter((n): n is string => !!n && n.trim() !== '').map((n) => n.trim().replace(/[.;]$/, ''));
  return kept.length ? kept.join('; ') : undefined;
}

/**
 * The headline trajectory table: per setting the area under its
 * remaining-loss curve and its first-half drop (trajectory.ts), and both as
 * paired differences against `reference` (default TRAJECTORY_REFERENCE; the
 * Δ columns are left out when it was not evaluated). Settings without
 * trajectory metrics are marked missing.
 */
export function trajectoryResultsTable(outcomes: readonly SettingOutcome[], opts: TableOptions & { reference?: string } = {}): ResultTable {
  const t = withTrajectory(outcomes)[0]?.trajectory;
  const ref = trajectoryReference(outcomes, opts.reference);
  const refName = opts.reference ?? TRAJECTORY_REFERENCE;
  const about = t && `Remaining loss L_rest(S_t) of each setting's own backbone along its own block orders (${t.reading} reading, nats) on the first ${t.images} held-out test images, ` +
    'the same images for every setting; area = area under the curve against the fraction decoded t/n, down to 0 at t = n, [Σ_{t<n} L_rest(S_t) - L_rest(∅)/2] / n ' +
    '(lower: the order front-loads the information; the trapezoids put settings with other block counts on one scale), ' +
    'first-half drop = L_rest(∅) - L_rest(S_⌈n/2⌉) (higher: front-loaded); ' +
    (ref ? `Δ = setting minus ${refName}, paired image by image (bootstrap of the per-image differences; an interval containing 0 is no difference); `
      : `no Δ columns: the reference ${refName} has no trajectory metrics in this run; `) +
    'the realized Σ_t u(a_t|S_t) telescopes to L_rest(∅) for every order, so it is not a result';
  const rows = outcomes.map((o): TableRowInput => {
    if (isMissing(o)) return { name: o.name, missing: o.missing };
    if (!o.trajectory) return { name: o.name, missing: NO_TRAJECTORY };
    const values: Record<string, MetricSummary | undefined> = { ...o.trajectory.totals };
    if (ref && o.name !== ref.name) {
      values.areaDiff = pairedTrajectoryDifference(o.trajectory, ref.trajectory, 'area');
      values.firstHalfDiff = pairedTrajectoryDifference(o.trajectory, ref.trajectory, 'firstHalf');
    }
    return { name: o.name, values };
  });
  const columns = ref ? TRAJECTORY_COLUMNS : TRAJECTORY_COLUMNS.filter((c) => !c.key.endsWith('Diff'));
  return resultTable(rows, columns, { title: 'How fast the remaining loss falls along the generation order', meanOver: 'test images', ...opts, note: joinNotes(about, opts.note) });
}

/**
 * The per-step oracle comparison (trajectory.ts: regret, agreement,
 * far-context gain), on the first `oracleImages` test images; settings
 * without it are marked missing.
 */
export function oracleComparisonTable(outcomes: readonly SettingOutcome[], opts: TableOptions = {}): ResultTable {
  const t = withTrajectory(outcomes).find((o) => o.trajectory.oracle)?.trajectory;
  const c = t?.oracle;
  const about = t && c && `Oracle utilities of each setting's backbone (${t.reading} reading) at the states of its own block orders, ` +
    `on the first ${c.images} of the ${t.images} test images of the remaining-loss table (scoreStates at every state is ~|R| times the cost of L_rest alone); ` +
    `two targets, each in its own columns: "vs trained target" = the planner's trained target, ${c.targetLabels.trained} ` +
    '(the Stage 3 label under the oracle dataset\'s primary weight), regret in that utility; ' +
    `"vs argmax u" = ${c.targetLabels['argmax u']}, regret in u; Σu far and far share use u_extrap with the ${c.weight} weight; ` +
    `sums over ${c.steps.length === t.numBlocks ? 'all' : c.steps.length} steps, nats; the realized Σu is left out: over all steps it telescopes to L_rest(∅), ` +
    'so regret vs argmax u = Σ max u - L_rest(∅)';
  return resultTable(outcomes.map((o): TableRowInput => {
    if (isMissing(o)) return { name: o.name, missing: o.missing };
    if (!o.trajectory) return { name: o.name, missing: NO_TRAJECTORY };
    if (!o.trajectory.oracle) return { name: o.name, missing: 'no oracle comparison (eval.trajectory.oracleImages = 0)' };
    return { name: o.name, values: o.trajectory.oracle.totals as Record<OracleTotalKey, MetricSummary> };
  }), ORACLE_COMPARISON_COLUMNS, { title: 'Per-step choices against the oracle (two targets), and far-context gain', meanOver: 'test images', ...opts, note: joinNotes(about, opts.note) });
}

// ---------------------------------------------------------------- formats

function cellsOf(t: ResultTable, pm: string): string[][] {
  return t.rows.map((r) => t.columns.map((c) => (r.missing ? MISSING_CELL : formatCell(r.values?.[c.key], c.digits, t.style, pm))));
}

function missingNotes(t: ResultTable): { name: string; why: string }[] {
  return t.rows.filter((r) => r.missing).map((r) => ({ name: r.name, why: r.missing! }));
}

const mdEscape = (s: string) => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');

/** Markdown: bold title, a pipe table, the caption, and the missing notes. */
export function tableMarkdown(t: ResultTable): string {
  const head = ['Setting', ...t.columns.map(headerOf)];
  const lines = [`**${mdEscape(t.title)}**`, '', `| ${head.map(mdEscape).join(' | ')} |`, `|:--|${t.columns.map(() => '--:').join('|')}|`];
  const cells = cellsOf(t, '±');
  t.rows.forEach((r, i) => lines.push(`| ${[r.name, ...cells[i]].map(mdEscape).join(' | ')} |`));
  lines.push('', mdEscape(t.caption));
  const notes = missingNotes(t);
  if (notes.length) {
    lines.push('', 'Missing:');
    for (const n of notes) lines.push(`- ${mdEscape(n.name)}: ${mdEscape(n.why)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** CSV header: setting, status, then `<key>_mean`, `<key>_lo`, `<key>_hi` per column, then note. */
export function tableCsvHeader(t: ResultTable): string[] {
  return ['setting', 'status', ...t.columns.flatMap((c) => [`${c.key}_mean`, `${c.key}_lo`, `${c.key}_hi`]), 'note'];
}

function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/**
 * CSV (RFC 4180): one row per setting, every number at full precision
 * (String(x) round-trips exactly), empty cells for a missing setting
 * (status 'missing', the reason in `note`), 'NaN' for a metric not computed.
 */
export function tableCsv(t: ResultTable): string {
  const lines = [tableCsvHeader(t).map(csvField).join(',')];
  for (const r of t.rows) {
    const vals = t.columns.flatMap((c) => {
      if (r.missing) return ['', '', ''];
      const s = r.values?.[c.key];
      return s ? [String(s.mean), String(s.lo), String(s.hi)] : ['NaN', 'NaN', 'NaN'];
    });
    lines.push([r.name, r.missing ? MISSING_CELL : 'ok', ...vals, r.missing ?? ''].map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * Plain records as CSV (RFC 4180), the header from the first record's keys:
 * for long-form data (one row per cell, seed and arm) beside a ResultTable.
 * Numbers at full precision, as tableCsv writes them.
 */
export function recordsCsv(rows: readonly Record<string, string | number | boolean>[]): string {
  ensure(rows.length > 0, 'has no rows', 'recordsCsv(rows)', 'pass at least one record');
  const keys = Object.keys(rows[0]);
  const lines = [keys.map(csvField).join(','), ...rows.map((r) => keys.map((k) => csvField(String(r[k] ?? ''))).join(','))];
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * Parse RFC 4180 CSV text into rows of string fields (quoted fields, doubled
 * quotes, CRLF or LF; blank lines are skipped): papaparse, with a malformed
 * quote an OrderHeadError instead of a silently odd row.
 */
export function parseCsv(text: string): string[][] {
  const { data, errors } = Papa.parse<string[]>(text, { delimiter: ',', skipEmptyLines: true });
  ensure(errors.length === 0, `is not valid CSV: ${errors.slice(0, 3).map((e) => `${e.message} (row ${e.row})`).join('; ')}`, 'parseCsv(text)', 'pass the text of a .csv file as written (RFC 4180)');
  return data;
}

/** A table CSV read back: per setting, its status, note and each column's mean / lo / hi as numbers. */
export function readTableCsv(text: string): { setting: string; status: string; note: string; values: Record<string, { mean: number; lo: number; hi: number }> }[] {
  const [head, ...rows] = parseCsv(text);
  ensure(head && head[0] === 'setting' && head[1] === 'status', 'is not an evaluation table CSV (no setting,status header)', 'readTableCsv(text)', 'pass the text of a .csv written by writeResultTable');
  const keys = head.filter((h) => h.endsWith('_mean')).map((h) => h.slice(0, -'_mean'.length));
  return rows.map((r) => {
    const get = (name: string) => r[head.indexOf(name)];
    const values: Record<string, { mean: number; lo: number; hi: number }> = {};
    if (get('status') !== MISSING_CELL) for (const k of keys) values[k] = { mean: Number(get(`${k}_mean`)), lo: Number(get(`${k}_lo`)), hi: Number(get(`${k}_hi`)) };
    return { setting: get('setting'), status: get('status'), note: get('note') ?? '', values };
  });
}

const LATEX_ESCAPES: Record<string, string> = {
  '\\': '\\textbackslash{}', '&': '\\&', '%': '\\%', $: '\\$', '#': '\\#', _: '\\_', '{': '\\{', '}': '\\}', '~': '\\textasciitilde{}', '^': '\\textasciicircum{}',
  '±': '$\\pm$', '↓': '$\\downarrow$', '↑': '$\\uparrow$', 'Σ': '$\\Sigma$', '∅': '$\\emptyset$', '≤': '$\\le$', '≥': '$\\ge$', 'é': "\\'e", 'ä': '\\"a', '–': '--', '—': '---',
};

/** Escape text for LaTeX (specials, and the few non-ASCII symbols the tables use). */
export function escapeLatex(s: string): string {
  return s.replace(/[\\&%$#_{}~^±↓↑Σ∅≤≥éä–—]/g, (ch) => LATEX_ESCAPES[ch]);
}

/** A label-safe slug. */
function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'table';
}

/** LaTeX booktabs: a table float with caption, label, \toprule / \midrule / \bottomrule, and the missing notes below. */
export function tableLatex(t: ResultTable, label = `tab:${slug(t.title)}`): string {
  const cells = cellsOf(t, '±');
  const lines = [
    '% Needs \\usepackage{booktabs}.',
    '\\begin{table}[t]',
    '\\centering',
    `\\caption{${escapeLatex(t.caption)}}`,
    `\\label{${label}}`,
    `\\begin{tabular}{l${'r'.repeat(t.columns.length)}}`,
    '\\toprule',
    `${['Setting', ...t.columns.map(headerOf)].map(escapeLatex).join(' & ')} \\\\`,
    '\\midrule',
    ...t.rows.map((r, i) => `${[r.name, ...cells[i]].map((c) => (c === MISSING_CELL ? `\\emph{${MISSING_CELL}}` : escapeLatex(c))).join(' & ')} \\\\`),
    '\\bottomrule',
    '\\end{tabular}',
  ];
  const notes = missingNotes(t);
  if (notes.length) {
    lines.push('\\par\\smallskip{\\footnotesize Missing: ' + notes.map((n) => `${escapeLatex(n.name)}: ${escapeLatex(n.why)}`).join('; ') + '}');
  }
  lines.push('\\end{table}');
  return `${lines.join('\n')}\n`;
}

/** The HTML table for the notebook (lib/report toHtmlTable), caption and missing notes included. */
export function tableHtml(t: ResultTable): string {
  const head = ['Setting', ...t.columns.map(headerOf)];
  const cells = cellsOf(t, '±');
  const rows = t.rows.map((r, i) => Object.fromEntries([['Setting', r.name], ...t.columns.map((c, j) => [headerOf(c), cells[i][j]])]));
  const notes = missingNotes(t);
  const caption = notes.length ? `${t.caption} Missing: ${notes.map((n) => `${n.name}: ${n.why}`).join('; ')}` : t.caption;
  return toHtmlTable(rows, { caption, columns: head });
}

/** Paths written by writeResultTable, and the HTML. */
export interface WrittenTable {
  md: string;
  csv: string;
  tex: string;
  html: string;
}

/** Write `<dir>/<base>.md`, `.csv` and `.tex` (each atomically; the folder is created) and return the HTML. */
export function writeResultTable(t: ResultTable, dir: string, base: string): WrittenTable {
  ensure(/^[A-Za-z0-9._-]+$/.test(base), `'${base}' is not a plain file name`, 'writeResultTable(base)', 'use letters, digits, dots, dashes and underscores, e.g. "eval-main"');
  fs.mkdirSync(dir, { recursive: true });
  const md = path.join(dir, `${base}.md`), csv = path.join(dir, `${base}.csv`), tex = path.join(dir, `${base}.tex`);
  writeFileAtomic(md, tableMarkdown(t));
  writeFileAtomic(csv, tableCsv(t));
  writeFileAtomic(tex, tableLatex(t, `tab:${slug(base)}`));
  return { md, csv, tex, html: tableHtml(t) };
}

// ---------------------------------------------------------------- JSON summary

/** The outcomes without the per-sample arrays (tokens, frames, replicates): small, JSON-safe, for a results file. */
export function outcomesSummary(outcomes: readonly SettingOutcome[]): Record<string, unknown>[] {
  return outcomes.map((o) => {
    if (isMissing(o)) return { name: o.name, missing: o.missing };
    return {
      name: o.name, notes: o.notes, policy: o.policy, geometry: o.geometry, samplesPerSeed: o.samplesPerSeed, sampling: o.sampling,
      metrics: o.metrics, curve: o.curve, seeds: o.seeds.map((s) => ({ seed: s.seed, n: s.n, metrics: s.metrics, curve: s.curve })),
      trajectory: o.trajectory && {
        policy: o.trajectory.policy, reading: o.trajectory.reading, images: o.trajectory.images, numBlocks: o.trajectory.numBlocks, restLoss: o.trajectory.restLoss,
        totals: o.trajectory.totals, seconds: o.trajectory.seconds,
        oracle: o.trajectory.oracle && {
          images: o.trajectory.oracle.images, weight: o.trajectory.oracle.weight, trainedTarget: o.trajectory.oracle.trainedTarget,
          targetLabels: o.trajectory.oracle.targetLabels, steps: o.trajectory.oracle.steps, perStep: o.trajectory.oracle.perStep, totals: o.trajectory.oracle.totals,
        },
      },
      seconds: o.seconds,
    };
  });
}

/** Write outcomesSummary as JSON (atomically; NaN and ±Infinity as strings). */
export function writeOutcomesJson(file: string, outcomes: readonly SettingOutcome[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(outcomesSummary(outcomes), (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1)}\n`);
}
