/**
 * The paper figures of the evaluation (METHOD.md section 7), from
 * evaluateSetting's outcomes: metric bars with intervals, recognizability
 * curves, the remaining-loss curve and the per-step future-loss reduction.
 * Plotly specs ({ traces, layout }) for showPlot, as in
 * lib/oracle/dataset-figures.ts; nothing is rendered here. Every figure from
 * the feature network carries FEATURE_NET_CAVEAT.
 */
import { ensure } from '../runtime/errors';
import type { Figure } from '../oracle/dataset-figures';
import { FEATURE_NET_CAVEAT } from './metrics';
import { EvalMetric, SettingOutcome } from './results';
import { isMissing } from './settings';
import { TrajectoryResult } from './trajectory';
import { MetricSummary } from './summary';
import { EVAL_METRIC_COLUMNS, headerOf, MetricColumn } from './tables';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/**
 * The caveat as a small note under a plot, `below` pixels under the plot area
 * (in pixels, not a fraction of the plot's height: the tick labels above it
 * take the same room whatever the height).
 */
function caveatAnnotation(below: number): Record<string, unknown> {
  return { text: wrap(FEATURE_NET_CAVEAT, 140), showarrow: false, xref: 'paper', yref: 'paper', x: 0, y: 0, yshift: -below, xanchor: 'left', yanchor: 'top', align: 'left', font: { size: 10, color: '#555' } };
}
/** Room under a bar chart's plot area for its slanted setting names, then the caveat's three lines. */
const BAR_LABELS_PX = 120, CAVEAT_PX = 50;

function wrap(text: string, width: number): string {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(' ')) {
    if (line && line.length + w.length + 1 > width) { out.push(line); line = w; } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out.join('<br>');
}

/**
 * Bars of one metric per setting with asymmetric error bars (lo, hi); missing
 * settings keep their place on the axis, labelled "(missing)", with no bar.
 */
export function metricBarsFigure(outcomes: readonly SettingOutcome[], metric: EvalMetric | MetricColumn, stamp: string): Figure {
  const col = typeof metric === 'string' ? EVAL_METRIC_COLUMNS.find((c) => c.key === metric) : metric;
  ensure(col, `unknown metric '${String(metric)}'`, 'metricBarsFigure(metric)', `use one of: ${EVAL_METRIC_COLUMNS.map((c) => c.key).join(', ')}`);
  const x = outcomes.map((o) => (isMissing(o) ? `${o.name} (missing)` : o.name));
  const s = outcomes.map((o) => (isMissing(o) ? undefined : (o.metrics as Record<string, MetricSummary>)[col.key]));
  const y = s.map((v) => (v && Number.isFinite(v.mean) ? v.mean : null));
  const level = s.find((v) => v && Number.isFinite(v.level))?.level;
  return {
    traces: [{
      type: 'bar', x, y, name: col.label, marker: { color: outcomes.map((_, i) => PALETTE[i % PALETTE.length]) },
      error_y: { type: 'data', symmetric: false, array: s.map((v) => (v ? v.hi - v.mean : null)), arrayminus: s.map((v) => (v ? v.mean - v.lo : null)) },
      hovertemplate: '%{x}: %{y}<extra></extra>',
    }],
    layout: {
      title: { text: `${headerOf(col)} by setting (mean over seeds${level ? `, ${Math.round(level * 100)}% interval` : ''}) — ${stamp}`, font: { size: 14 } },
      yaxis: { title: headerOf(col) }, xaxis: { tickangle: -20, automargin: false }, height: 460 + (col.featureNet ? CAVEAT_PX : 0), showlegend: false,
      margin: { b: BAR_LABELS_PX + (col.featureNet ? CAVEAT_PX : 0) },
      annotations: col.featureNet ? [caveatAnnotation(BAR_LABELS_PX)] : [],
    },
  };
}

/** Recognizability curves (accuracy vs fraction of blocks decoded) per setting, with bootstrap error bars. */
export function recognizabilityCurvesFigure(outcomes: readonly SettingOutcome[], stamp: string): Figure {
  const traces: Record<string, unknown>[] = [];
  outcomes.forEach((o, i) => {
    if (isMissing(o)) return;
    const c = o.curve;
    traces.push({
      type: 'scatter', mode: 'lines+markers', name: `${o.name} (AUC ${o.metrics.recognizabilityAuc.mean.toFixed(3)})`, x: c.fractions, y: c.accuracy,
      line: { color: PALETTE[i % PALETTE.length] },
      error_y: { type: 'data', symmetric: false, array: c.hi.map((h, k) => h - c.accuracy[k]), arrayminus: c.lo.map((l, k) => c.accuracy[k] - l), thickness: 1 },
    });
  });
  const missing = outcomes.filter(isMissing).map((o) => o.name);
  return {
    traces,
    layout: {
      title: { text: `Progressive recognizability of generated samples along their own order — ${stamp}${missing.length ? ` (missing: ${missing.join(', ')})` : ''}`, font: { size: 14 } },
      xaxis: { title: 'fraction of blocks decoded', range: [0, 1] }, yaxis: { title: 'feature-net accuracy (conditioning class)', range: [0, 1.02] },
      height: 460, margin: { b: 60 + CAVEAT_PX }, annotations: [caveatAnnotation(50)],
    },
  };
}

/**
 * The remaining-loss curve L_rest(S_t) of each setting, one line per
 * setting with its bootstrap interval over images, ending at L_rest = 0 once
 * every block is visible. x is the fraction of blocks visible (t /
 * numBlocks), so settings with other block geometries (the raster
 * baseline's token rows) share the axis; the area under a line is the
 * table's area.
 */
export function remainingLossFigure(items: readonly (SettingOutcome | { name: string; trajectory: TrajectoryResult })[], stamp: string): Figure {
  const traces: Record<string, unknown>[] = [];
  let reading = '', images = 0;
  items.forEach((o, i) => {
    if (isMissing(o) || !o.trajectory) return;
    const t = o.trajectory, c = t.restLoss, nb = t.numBlocks;
    reading = t.reading;
    images = t.images;
    traces.push({
      type: 'scatter', mode: 'lines+markers', name: `${o.name} (area ${t.totals.area.mean.toFixed(2)})`,
      x: [...Array.from({ length: nb }, (_, k) => k / nb), 1], y: [...c.mean, 0], line: { color: PALETTE[i % PALETTE.length] },
      error_y: { type: 'data', symmetric: false, array: [...c.hi.map((h, k) => h - c.mean[k]), 0], arrayminus: [...c.lo.map((l, k) => c.mean[k] - l), 0], thickness: 1 },
    });
  });
  return {
    traces,
    layout: {
      title: { text: `Remaining loss L_rest(S_t) along each setting's order (${reading || 'oracle'} reading, mean over ${images} test images) — ${stamp}`, font: { size: 14 } },
      xaxis: { title: 'fraction of blocks already visible (t / numBlocks)', range: [0, 1] }, yaxis: { title: 'L_rest(S_t): loss still ahead, whole image (nats)', rangemode: 'tozero' }, height: 460,
    },
  };
}

/**
 * Future-loss reduction per step, on the oracle-comparison images: for each
 * setting its realized u(a_t | S_t) (solid), with the oracle maximum
 * max_a u, the utility of the 'argmax u' target (dashed; not the planner's
 * trained target, whose utility u_extrap is on another scale: the oracle
 * comparison table has both), and the random-choice mean (dotted) at the same states, in the
 * setting's colour. x is the fraction of blocks already visible
 * (t / numBlocks) and y is u per token of the chosen block
 * (u / tokensPerBlock), so settings with other block geometries (the raster
 * baseline's token rows) share the axes.
 */
export function futureLossFigure(items: readonly (SettingOutcome | { name: string; trajectory: TrajectoryResult })[], stamp: string): Figure {
  const traces: Record<string, unknown>[] = [];
  let reading = '', images = 0;
  items.forEach((o, i) => {
    if (isMissing(o) || !o.trajectory?.oracle) return;
    const t = o.trajectory, c = t.oracle!, color = PALETTE[i % PALETTE.length], x = c.perStep.map((s) => s.step / t.numBlocks);
    const per = (v: number) => v / t.tokensPerBlock;
    reading = t.reading;
    images = c.images;
    traces.push({ type: 'scatter', mode: 'lines+markers', name: `${o.name}: realized`, legendgroup: o.name, x, y: c.perStep.map((s) => per(s.realized)), line: { color } });
    traces.push({ type: 'scatter', mode: 'lines', name: `${o.name}: max u (argmax-u target)`, legendgroup: o.name, x, y: c.perStep.map((s) => per(s.oracle)), line: { color, dash: 'dash' } });
    traces.push({ type: 'scatter', mode: 'lines', name: `${o.name}: random`, legendgroup: o.name, x, y: c.perStep.map((s) => per(s.random)), line: { color, dash: 'dot' } });
  });
  return {
    traces,
    layout: {
      title: { text: `Future-loss reduction u(a_t | S_t) per step, against the argmax-u target (${reading || 'oracle'} reading, mean over the first ${images} test images) — ${stamp}`, font: { size: 14 } },
      xaxis: { title: 'fraction of blocks already visible (t / numBlocks)', range: [0, 1] }, yaxis: { title: 'u per token of the chosen block (nats)' }, height: 460,
    },
  };
}
