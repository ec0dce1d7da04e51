/**
 * Plotly figure specs for notebooks 04 and 05 (no rendering here: notebooks
 * pass `traces` and `layout` to showPlot). Every title carries the caller's
 * stamp (profile and backend).
 */
import { ensure } from '../runtime/errors';
import type { MetricRow } from '../runtime/run';
import { BlockGeometry } from '../order';
import { blockGridValues, hideBlocks } from '../oracle/state-views';
import type { Figure } from '../oracle/dataset-figures';

const axisName = (k: number, letter: 'x' | 'y') => (k === 1 ? letter : `${letter}${k}`);
const axisKey = (k: number, letter: 'x' | 'y') => (k === 1 ? `${letter}axis` : `${letter}axis${k}`);
const GREY = [[0, 'black'], [1, 'white']];

/** Training and validation loss of planner runs, one colour per run (train loss smoothed over `smooth` steps). */
export function trainingCurvesFigure(runs: readonly { name: string; rows: readonly MetricRow[] }[], stamp: string, smooth = 20): Figure {
  const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];
  const traces: Record<string, unknown>[] = [];
  runs.forEach((run, i) => {
    const color = palette[i % palette.length];
    const loss = run.rows.map((r) => Number(r.loss));
    const avg = loss.map((_, j) => { const w = loss.slice(Math.max(0, j - smooth + 1), j + 1); return w.reduce((a, b) => a + b, 0) / w.length; });
    traces.push({ type: 'scatter', mode: 'lines', name: `${run.name} train`, x: run.rows.map((r) => r.step), y: avg, line: { color, width: 1 }, opacity: 0.6 });
    const val = run.rows.filter((r) => typeof r.valLoss === 'number');
    traces.push({ type: 'scatter', mode: 'lines+markers', name: `${run.name} val`, x: val.map((r) => r.step), y: val.map((r) => r.valLoss), line: { color, width: 2 } });
  });
  return {
    traces,
    layout: { title: { text: `Planner training: L_OH on training batches (thin) and on validation states (thick) (${stamp})`, font: { size: 14 } },
      xaxis: { title: 'step' }, yaxis: { title: 'cross-entropy (nats)' }, height: 380 },
  };
}

/** One example state to draw: its decoded image, visible mask, oracle utility and planner distribution. */
export interface PlannerExample {
  title: string;
  /** [height * width] decoded image in [-1, 1]. */
  image: Float32Array;
  /** [nb] 1 = visible. */
  visible: ArrayLike<number>;
  /** [nb] oracle utility (NaN on visible). */
  utility: ArrayLike<number>;
  aStar: number;
  /** [nb] planner probabilities. */
  probs: ArrayLike<number>;
}

/** Rows of: image | visible S | oracle utility (a* circled) | planner probability (its choice circled). */
export function plannerVsOracleFigure(geo: BlockGeometry, examples: readonly PlannerExample[], height: number, width: number, labelName: string, stamp: string): Figure {
  ensure(examples.length > 0, 'no examples', 'plannerVsOracleFigure(examples)', 'pass at least one state');
  const traces: Record<string, unknown>[] = [];
  const ann: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = {
    title: { text: `Planner distribution beside the oracle utility (${labelName}), held-out states (${stamp})`, font: { size: 14 } },
    grid: { rows: examples.length, columns: 4, pattern: 'independent', ygap: 0.12, xgap: 0.06 },
    height: 40 + 210 * examples.length, showlegend: false, plot_bgcolor: '#dfe6f2', annotations: ann, margin: { t: 60, l: 20, r: 20, b: 20 },
  };
  const to2d = (a: Float32Array) => Array.from({ length: height }, (_, y) => Array.from(a.subarray(y * width, (y + 1) * width), (v) => (Number.isFinite(v) ? v : null)));
  examples.forEach((ex, r) => {
    let choice = -1;
    for (let b = 0; b < geo.numBlocks; b++) if (!ex.visible[b] && (choice < 0 || ex.probs[b] > ex.probs[choice])) choice = b;
    const panels: { title: string; trace: Record<string, unknown>; mark?: number }[] = [
      { title: ex.title, trace: { type: 'heatmap', z: to2d(ex.image), zmin: -1, zmax: 1, colorscale: GREY, showscale: false } },
      { title: 'visible S', trace: { type: 'heatmap', z: to2d(hideBlocks(geo, ex.image, height, width, ex.visible, 0, NaN)), zmin: -1, zmax: 1, colorscale: GREY, showscale: false } },
      { title: `oracle ${labelName} (a* = ${ex.aStar})`, mark: ex.aStar,
        trace: { type: 'heatmap', z: blockGridValues(geo, ex.utility), colorscale: 'Viridis', showscale: false, texttemplate: '%{z:.2f}', textfont: { size: 9 } } },
      { title: `planner p (choice ${choice})`, mark: choice,
        trace: { type: 'heatmap', z: blockGridValues(geo, Array.from(ex.probs, (p, b) => (ex.visible[b] ? NaN : p))), zmin: 0, colorscale: 'Blues', showscale: false,
          texttemplate: '%{z:.2f}', textfont: { size: 9 } } },
    ];
    panels.forEach((p, c) => {
      const k = r * 4 + c + 1;
      traces.push({ ...p.trace, xaxis: axisName(k, 'x'), yaxis: axisName(k, 'y'), hoverongaps: false });
      if (p.mark !== undefined && p.mark >= 0) {
        traces.push({ type: 'scatter', mode: 'markers', x: [p.mark % geo.blocksX], y: [Math.floor(p.mark / geo.blocksX)], hoverinfo: 'skip',
          marker: { symbol: 'circle-open', size: 22, color: 'red', line: { width: 3 } }, xaxis: axisName(k, 'x'), yaxis: axisName(k, 'y') });
      }
      layout[axisKey(k, 'x')] = { showticklabels: false, showgrid: false, zeroline: false };
      layout[axisKey(k, 'y')] = { showticklabels: false, showgrid: false, zeroline: false, autorange: 'reversed', scaleanchor: axisName(k, 'x') };
      ann.push({ text: p.title, showarrow: false, xref: `${axisName(k, 'x')} domain`, yref: `${axisName(k, 'y')} domain`, x: 0.5, y: 1.0, yanchor: 'bottom', font: { size: 11 } });
    });
  });
  return { traces, layout };
}

/**
 * A generation trajectory as frames: frame t shows the image with the first
 * t blocks of `blockOrder` decoded (the rest blank, -1), so a grid of frames
 * reads as the order the planner chose. Returns [numBlocks * height * width]
 * for showImageGrid.
 */
export function trajectoryFrames(geo: BlockGeometry, image: Float32Array, height: number, width: number, blockOrder: readonly number[]): Float32Array {
  ensure(blockOrder.length === geo.numBlocks, `order of ${blockOrder.length} blocks, the grid has ${geo.numBlocks}`, 'trajectoryFrames(blockOrder)', 'pass a full block order');
  const out = new Float32Array(geo.numBlocks * height * width);
  const visible = new Uint8Array(geo.numBlocks);
  blockOrder.forEach((b, t) => {
    visible[b] = 1;
    out.set(hideBlocks(geo, image, height, width, visible, 0, -1), t * height * width);
  });
  return out;
}

/** The block order as a grid of step numbers (1 = first decoded), for a heatmap beside the frames. */
export function orderGrid(geo: BlockGeometry, blockOrder: readonly number[]): (number | null)[][] {
  const step = new Float32Array(geo.numBlocks);
  blockOrder.forEach((b, t) => { step[b] = t + 1; });
  return blockGridValues(geo, step);
}
