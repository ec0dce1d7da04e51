/**
 * Plotly figure specs for notebook 03_stage2_oracle, built from a loaded
 * oracle dataset and the analysis functions (no rendering here: the notebook
 * passes `traces` and `layout` to showPlot). Every title carries the caller's
 * stamp (profile and backend).
 */
import { ensure } from '../runtime/errors';
import type { OracleDataset, OracleLabelSet } from './dataset';
import { bucketOf, readingLabelings, SizeBucket } from './analysis';
import { labelHeatmaps } from './label-heatmaps';
import { localityStats } from './locality';
import { blockGridValues, hideBlocks } from './state-views';
import type { LabelPositionRow } from './label-positions';
import type { BlockGeometry } from '../order';

export interface Figure {
  traces: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

const axisName = (k: number, letter: 'x' | 'y') => (k === 1 ? letter : `${letter}${k}`);
const axisKey = (k: number, letter: 'x' | 'y') => (k === 1 ? `${letter}axis` : `${letter}axis${k}`);

/**
 * One state per requested |S| (the first state of each size), preferring a
 * different image for each and states that every labeling has.
 */
export function exampleStates(ds: OracleDataset, sizes: readonly number[]): number[] {
  const out: number[] = [];
  const usedImages = new Set<number>();
  const all = (i: number) => ds.labelings.every((l) => l.has[i] === 1);
  // Prefer, in turn: a new image that every labeling has, any new image, any image.
  const tests = [(i: number) => all(i) && !usedImages.has(ds.image[i]), (i: number) => !usedImages.has(ds.image[i]), () => true];
  for (const s of sizes) {
    let pick = -1;
    for (const ok of tests) for (let i = 0; i < ds.n && pick < 0; i++) if (ds.size[i] === s && ok(i)) pick = i;
    if (pick >= 0) {
      out.push(pick);
      usedImages.add(ds.image[pick]);
    }
  }
  return out;
}

/** Which utility maps `utilityExamplesFigure` shows: labelings as column groups, and which utilities of each. */
export interface UtilityExamplesOptions {
  /** One column group per labeling, in order. Default: the primary alone. */
  labelings?: readonly OracleLabelSet[];
  /** The maps of each labeling: u (a* marked) and/or u_extrap (a*_extrap marked). Default both. */
  targets?: readonly ('u' | 'uExtrap')[];
}

/**
 * Example states, one row each: the image, its visible blocks (hidden ones
 * blank), then for each labeling its u and/or u_extrap over the block grid
 * with the label marked (by default the primary's u and u_extrap; pass every
 * reading's labeling to set the readings side by side). `images` holds the
 * decoded images of `rows`, in order ([rows.length * height * width], values
 * in [-1, 1]). Each map has its own colour scale (the readings' utilities
 * differ in scale; the values are printed on the blocks).
 */
export function utilityExamplesFigure(ds: OracleDataset, rows: readonly number[], images: Float32Array, height: number, width: number, stamp: string,
  opts: UtilityExamplesOptions = {}): Figure {
  ensure(images.length === rows.length * height * width, `${images.length} pixels for ${rows.length} images of ${height}x${width}`,
    'utilityExamplesFigure(images)', 'decode the tokens of exactly the example states\' images');
  const labelings = opts.labelings ?? [ds.labelings[0]];
  const targets = opts.targets ?? ['u', 'uExtrap'];
  ensure(labelings.length > 0 && targets.length > 0, `${labelings.length} labelings and ${targets.length} targets`, 'utilityExamplesFigure(opts)',
    "pass at least one labeling (ds.labelings) and one of 'u', 'uExtrap'");
  const { geo } = ds;
  const nb = geo.numBlocks;
  const columns = 2 + labelings.length * targets.length;
  const traces: Record<string, unknown>[] = [];
  const mapName = (l: OracleLabelSet, t: 'u' | 'uExtrap') => (t === 'u' ? `u (${l.reading})` : `u_extrap (${l.reading}, w = ${l.weight})`);
  const what = labelings.length === 1 ? `${labelings[0].reading} reading${targets.includes('uExtrap') ? `, u_extrap with w = ${labelings[0].weight}` : ''}`
    : `${targets.map((t) => (t === 'u' ? 'u' : 'u_extrap')).join(' and ')} under the ${labelings.map((l) => l.reading).join(', ')} readings`;
  const layout: Record<string, unknown> = {
    title: { text: `Utilities of example states — ${what} (${stamp})`, font: { size: 14 } },
    grid: { rows: rows.length, columns, pattern: 'independent', ygap: 0.12, xgap: 0.06 },
    height: 40 + 210 * rows.length,
    width: Math.max(700, 190 * columns),
    showlegend: false,
    plot_bgcolor: '#dfe6f2',
    annotations: [] as Record<string, unknown>[],
    margin: { t: 60, l: 20, r: 20, b: 20 },
  };
  const ann = layout.annotations as Record<string, unknown>[];
  const grey = [[0, 'black'], [1, 'white']];
  rows.forEach((i, r) => {
    const img = images.subarray(r * height * width, (r + 1) * height * width);
    const hidden = hideBlocks(geo, img, height, width, ds.visible, i * nb, NaN);
    const to2d = (a: Float32Array) => Array.from({ length: height }, (_, y) => Array.from(a.subarray(y * width, (y + 1) * width), (v) => (Number.isFinite(v) ? v : null)));
    const panels: { title: string; trace: Record<string, unknown>; label?: number }[] = [
      { title: `image ${ds.image[i]} (class ${ds.classId[i]})`, trace: { type: 'heatmap', z: to2d(img), zmin: -1, zmax: 1, colorscale: grey, showscale: false } },
      { title: `visible S, |S| = ${ds.size[i]}`, trace: { type: 'heatmap', z: to2d(hidden), zmin: -1, zmax: 1, colorscale: grey, showscale: false } },
    ];
    for (const l of labelings) {
      for (const t of targets) {
        const label = t === 'u' ? l.aStar[i] : l.aStarExtrap[i];
        panels.push({
          title: l.has[i] ? `${mapName(l, t)}, label ${label}` : `${mapName(l, t)}: not labelled`,
          trace: { type: 'heatmap', z: blockGridValues(geo, l[t], i * nb), colorscale: 'Viridis', showscale: false, texttemplate: '%{z:.2f}', textfont: { size: 9 } },
          label,
        });
      }
    }
    panels.forEach((panel, c) => {
      const k = r * columns + c + 1;
      traces.push({ ...panel.trace, xaxis: axisName(k, 'x'), yaxis: axisName(k, 'y'), hoverongaps: false });
      if (panel.label !== undefined && panel.label >= 0) {
        traces.push({ type: 'scatter', mode: 'markers', x: [panel.label % geo.blocksX], y: [Math.floor(panel.label / geo.blocksX)],
          marker: { symbol: 'circle-open', size: 22, color: 'red', line: { width: 3 } }, xaxis: axisName(k, 'x'), yaxis: axisName(k, 'y'), hoverinfo: 'skip' });
      }
      layout[axisKey(k, 'x')] = { showticklabels: false, showgrid: false, zeroline: false };
      layout[axisKey(k, 'y')] = { showticklabels: false, showgrid: false, zeroline: false, autorange: 'reversed', scaleanchor: axisName(k, 'x') };
      ann.push({ text: panel.title, showarrow: false, xref: `${axisName(k, 'x')} domain`, yref: `${axisName(k, 'y')} domain`, x: 0.5, y: 1.0, yanchor: 'bottom', font: { size: 10 } });
    });
  });
  return { traces, layout };
}

/** The label arrays a heatmap or locality figure can show, by name. */
export interface LabelSeries {
  name: string;
  labels: Int32Array;
  /** Restrict to states where this labeling exists. */
  has: Uint8Array;
}

/** u and u_extrap labels of the primary labeling, then u_extrap of every compare labeling of the same reading. */
export function labelSeries(ds: OracleDataset, reading?: string): LabelSeries[] {
  const p = ds.labelings[0];
  const r = reading ?? p.reading;
  const same = ds.labelings.filter((l) => l.reading === r);
  const out: LabelSeries[] = [];
  if (same.length > 0) out.push({ name: `a* = argmax u (${r})`, labels: same[0].aStar, has: same[0].has });
  for (const l of same) out.push({ name: `argmax u_extrap, w = ${l.weight} (${r})`, labels: l.aStarExtrap, has: l.has });
  return out;
}

/**
 * a* of every reading, then a*_extrap of every reading (readingLabelings: the
 * primary's weight), each restricted to the states all readings have, so the
 * series of a figure compare readings on the same states.
 */
export function readingSeries(ds: OracleDataset): LabelSeries[] {
  const { labelings, mask } = readingLabelings(ds);
  return [
    ...labelings.map((l) => ({ name: `a* = argmax u (${l.reading})`, labels: l.aStar, has: mask })),
    ...labelings.map((l) => ({ name: `argmax u_extrap, w = ${l.weight} (${l.reading})`, labels: l.aStarExtrap, has: mask })),
  ];
}

/** Share of a* at each block position, one heatmap per (series, |S| bucket). */
export function labelPositionFigure(ds: OracleDataset, series: readonly LabelSeries[], buckets: readonly SizeBucket[], stamp: string): Figure {
  const traces: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = {
    title: { text: `Where the oracle label falls on the ${ds.geo.blocksY}x${ds.geo.blocksX} block grid, by |S| (share of states; ${stamp})`, font: { size: 14 } },
    grid: { rows: series.length, columns: buckets.length, pattern: 'independent', ygap: 0.15, xgap: 0.04 },
    height: 60 + 190 * series.length,
    annotations: [] as Record<string, unknown>[],
    margin: { t: 70, l: 20, r: 20, b: 20 },
  };
  const all = series.map((s) => labelHeatmaps(ds, Int32Array.from(s.labels, (a, i) => (s.has[i] ? a : -1)), buckets));
  // One colour scale for every panel, so shades compare across buckets and labels.
  let zmax = 0;
  for (const maps of all) for (const m of maps) for (const row of m.counts) for (const v of row) if (m.n > 0) zmax = Math.max(zmax, v / m.n);
  series.forEach((s, r) => {
    const maps = all[r];
    maps.forEach((m, c) => {
      sharePanel(traces, layout, r * buckets.length + c + 1, m.counts.map((row) => row.map((v) => (m.n > 0 ? v / m.n : null))), zmax,
        `${c === 0 ? `${s.name}<br>` : ''}${m.bucket.label} (n=${m.n})`);
    });
  });
  return { traces, layout };
}

/** One heatmap panel k of shares over the block grid (white = 0, dark red = zmax), titled above. */
function sharePanel(traces: Record<string, unknown>[], layout: Record<string, unknown>, k: number, z: (number | null)[][], zmax: number, title: string): void {
  traces.push({ type: 'heatmap', z, zmin: 0, zmax: zmax || 1,
    colorscale: [[0, '#ffffff'], [1, '#b30000']], showscale: k === 1, colorbar: { title: 'share', len: 0.5 },
    texttemplate: '%{z:.2f}', textfont: { size: 8 },
    xaxis: axisName(k, 'x'), yaxis: axisName(k, 'y'), hovertemplate: 'row %{y}, col %{x}: %{z:.2f}<extra></extra>' });
  layout[axisKey(k, 'x')] = { showticklabels: false, showgrid: false, zeroline: false };
  layout[axisKey(k, 'y')] = { showticklabels: false, showgrid: false, zeroline: false, autorange: 'reversed', scaleanchor: axisName(k, 'x') };
  (layout.annotations as Record<string, unknown>[]).push({ text: title, showarrow: false, xref: `${axisName(k, 'x')} domain`,
    yref: `${axisName(k, 'y')} domain`, x: 0.5, y: 1.0, yanchor: 'bottom', font: { size: 10 } });
}

/**
 * The label-position rows of one weight (label-positions.ts) as heatmaps: the
 * weight's count prior in the first row, then a*_extrap of every reading
 * labelled with that weight; one column per |S|. One colour scale for all
 * panels, so a label map that looks like the prior row is the count prior
 * speaking.
 */
export function countPriorFigure(rows: readonly LabelPositionRow[], geo: BlockGeometry, weight: string, stamp: string): Figure {
  const of = rows.filter((r) => r.weight === weight);
  ensure(of.length > 0, `no label-position rows of weight '${weight}' (rows hold ${[...new Set(rows.map((r) => r.weight))].join(', ') || 'none'})`,
    'countPriorFigure(weight)', 'pass a weight the dataset labels (one of the rows\' weights)');
  const sizes = [...new Set(of.map((r) => r.size))];
  const readings = [...new Set(of.map((r) => r.reading))];
  const grid = (p: Float64Array) => Array.from({ length: geo.blocksY }, (_, y) => Array.from(p.subarray(y * geo.blocksX, (y + 1) * geo.blocksX),
    (v) => (Number.isFinite(v) ? v : null)));
  const panels: { name: string; row: LabelPositionRow; p: Float64Array }[][] = [
    // The prior depends on the weight and the states only; every reading's rows share the states (the compare subset).
    sizes.map((s) => { const row = of.find((r) => r.size === s)!; return { name: `count prior, w = ${weight}`, row, p: row.prior }; }),
    ...readings.map((rd) => sizes.map((s) => { const row = of.find((r) => r.reading === rd && r.size === s)!; return { name: `a*_extrap (${rd})`, row, p: row.labels }; })),
  ];
  let zmax = 0;
  for (const line of panels) for (const c of line) for (const v of c.p) if (Number.isFinite(v)) zmax = Math.max(zmax, v);
  const traces: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = {
    title: { text: `Where a*_extrap falls against its count prior, w = ${weight}, by |S| (share of states; ${stamp})`, font: { size: 14 } },
    grid: { rows: panels.length, columns: sizes.length, pattern: 'independent', ygap: 0.2, xgap: 0.04 },
    height: 70 + 190 * panels.length,
    annotations: [] as Record<string, unknown>[],
    margin: { t: 70, l: 20, r: 20, b: 20 },
  };
  panels.forEach((line, r) => line.forEach((c, k) => {
    const tvs = r === 0 ? '' : `, TV to prior ${c.row.tvPrior.toFixed(2)}`;
    sharePanel(traces, layout, r * sizes.length + k + 1, grid(c.p), zmax, `${k === 0 ? `${c.name}<br>` : ''}|S|=${c.row.size} (n=${c.row.states}${tvs})`);
  }));
  return { traces, layout };
}

/**
 * Share of labels touching the visible region (block distance 1) per |S|
 * bucket, for each series, with the chance level of a random hidden block
 * (dashed). Empty states (|S| = 0) have no visible region and are skipped.
 */
export function localityBySizeFigure(ds: OracleDataset, series: readonly LabelSeries[], buckets: readonly SizeBucket[], stamp: string): Figure {
  const used = buckets.filter((b) => b.hi >= 1);
  const traces: Record<string, unknown>[] = [];
  let chance: number[] | undefined;
  for (const s of series) {
    const ys = used.map((b) => localityStats(ds, s.labels, (i) => s.has[i] === 1 && bucketOf([b], ds.size[i]) === 0));
    traces.push({ type: 'scatter', mode: 'lines+markers', name: s.name, x: used.map((b) => b.label), y: ys.map((y) => y.local) });
    chance ??= ys.map((y) => y.chanceLocal);
  }
  if (chance) traces.push({ type: 'scatter', mode: 'lines', name: 'random hidden block (chance)', x: used.map((b) => b.label), y: chance, line: { dash: 'dash', color: 'grey' } });
  return {
    traces,
    layout: {
      title: { text: `How often the label touches the visible region (block distance 1), by |S| (${stamp})`, font: { size: 14 } },
      xaxis: { title: '|S| bucket' }, yaxis: { title: 'share of states', range: [0, 1.02] }, height: 380,
    },
  };
}

/** Scatter of u under two labelings (one point per (state, hidden block) both have), at most `maxPoints`. */
export function utilityScatterFigure(ds: OracleDataset, a: OracleLabelSet, b: OracleLabelSet, target: 'u' | 'uExtrap', stamp: string, maxPoints = 4000): Figure {
  const nb = ds.geo.numBlocks;
  const xs: number[] = [], ys: number[] = [];
  const A = a[target], B = b[target];
  let total = 0;
  for (let i = 0; i < ds.n; i++) if (a.has[i] && b.has[i]) for (let k = 0; k < nb; k++) if (Number.isFinite(A[i * nb + k]) && Number.isFinite(B[i * nb + k])) total++;
  const step = Math.max(1, Math.ceil(total / maxPoints));
  let seen = 0;
  for (let i = 0; i < ds.n; i++) {
    if (!a.has[i] || !b.has[i]) continue;
    for (let k = 0; k < nb; k++) {
      const x = A[i * nb + k], y = B[i * nb + k];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (seen++ % step === 0) {
        xs.push(x);
        ys.push(y);
      }
    }
  }
  const name = (l: OracleLabelSet) => (target === 'u' ? `u, ${l.reading}` : `u_extrap, ${l.reading}, w = ${l.weight}`);
  const lo = Math.min(...xs, ...ys), hi = Math.max(...xs, ...ys);
  return {
    traces: [
      { type: 'scattergl', mode: 'markers', x: xs, y: ys, marker: { size: 3, opacity: 0.4 }, name: 'candidate blocks' },
      { type: 'scatter', mode: 'lines', x: [lo, hi], y: [lo, hi], line: { dash: 'dot', color: 'grey' }, name: 'y = x' },
    ],
    layout: {
      title: { text: `${name(a)} vs ${name(b)}: ${xs.length} of ${total} (state, candidate) pairs (${stamp})`, font: { size: 14 } },
      xaxis: { title: name(a) }, yaxis: { title: name(b) }, height: 420, showlegend: false,
    },
  };
}
