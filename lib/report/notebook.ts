/**
 * Rich output for tslab notebooks: HTML, PNG images, offline plotly figures,
 * and a live display that updates one output in place.
 *
 * The same library code also runs from plain scripts and tests, where there is
 * no notebook to draw into: every helper then does nothing (inNotebook() says which),
 * so callers never branch on where they run.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Display } from 'tslab';
import { OrderHeadError } from '../runtime/errors';

/** The part of tslab's public module we use. */
interface TslabPublic {
  display: Display;
  newDisplay(): Display;
}

/** The kernel's tslab modules, once found (the kernel never unloads them). */
let kernelModules: { jupyter: { lastWriteDisplayData?: unknown }; api: TslabPublic } | undefined;

/**
 * tslab's display API, or null outside a running tslab kernel.
 *
 * tslab's display functions throw "Not ready" unless the kernel has started
 * executing a cell, and a second copy of tslab (e.g. a global kernel plus the
 * project's node_modules) would never be ready. So rather than a bare
 * `require('tslab')` we look for the kernel's own `tslab/dist/jupyter.js`
 * among the loaded modules, check it is executing cells, and load the
 * `public.js` next to it. Outside a kernel this loads nothing (tslab pulls in
 * a whole TypeScript compiler).
 */
function kernelTslab(): TslabPublic | null {
  if (!kernelModules) {
    for (const [file, mod] of Object.entries(require.cache)) {
      if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file) || !mod) continue;
      const jupyter = mod.exports as { lastWriteDisplayData?: unknown };
      if (jupyter.lastWriteDisplayData == null) continue;
      kernelModules = { jupyter, api: require(path.join(path.dirname(file), 'public.js')) as TslabPublic };
      break;
    }
  }
  return kernelModules && kernelModules.jupyter.lastWriteDisplayData != null ? kernelModules.api : null;
}

/** True inside a tslab notebook kernel that can show rich output. */
export function inNotebook(): boolean {
  return kernelTslab() !== null;
}

/**
 * The stamp of the notebook session this kernel runs ("profile smoke, Fashion-MNIST
 * subset, backend wasm"), set by startNotebook: every table caption, figure title and
 * note a notebook shows carries it, so a saved output always says what produced it,
 * without each cell writing it by hand.
 */
let outputStamp: string | undefined;

/** Stamp every later caption, title and note with `stamp` (startNotebook does this). */
export function stampOutputs(stamp: string | undefined): void {
  outputStamp = stamp;
}

/**
 * `text (stamp)`; the text unchanged when no session has started, or when it already
 * carries the stamp (the figure builders, e.g. trainingCurvesFigure, put it in their titles).
 */
export function stamped(text: string): string {
  return outputStamp === undefined || text.includes(outputStamp) ? text : `${text} (${outputStamp})`;
}

/** A line of text under an output (what an image grid shows, what a cell did), stamped: `text; stamp`. */
export function showNote(text: string): void {
  console.log(outputStamp === undefined || text.includes(outputStamp) ? text : `${text}; ${outputStamp}`);
}

/*
 * The show* helpers return nothing on purpose: tslab prints a cell's last
 * value, and a stray `true` under every figure is noise. Use inNotebook() to
 * ask whether anything will be shown.
 */

/** Show HTML as a cell output (nothing outside a notebook). */
export function showHtml(html: string): void {
  kernelTslab()?.display.html(html);
}

/** Show Markdown as a cell output (nothing outside a notebook). */
export function showMarkdown(markdown: string): void {
  kernelTslab()?.display.markdown(markdown);
}

/** Show PNG bytes inline, see encodePng (nothing outside a notebook). */
export function showImage(png: Uint8Array): void {
  kernelTslab()?.display.png(png);
}

/** A plotly trace or layout: plain JSON-able objects (typed arrays are converted). */
export type PlotSpec = Record<string, unknown>;

let plotlySource: string | undefined;
let plotlyShown = false;

/**
 * plotly.js-dist-min's bundle (minified, about 4.6 MB; the unminified
 * plotly.js-dist is 10.8 MB and made every executed notebook 14 MB), read from
 * node_modules once per process.
 */
function plotlyBundle(): string {
  if (plotlySource !== undefined) return plotlySource;
  let file: string;
  try {
    file = require.resolve('plotly.js-dist-min');
  } catch {
    throw new OrderHeadError('the package plotly.js-dist-min is not installed', 'node_modules/plotly.js-dist-min', 'run `npm ci` in the project root');
  }
  // `</script` inside the bundle would end the script element early; `<\/` means the same in JS.
  plotlySource = fs.readFileSync(file, 'utf8').replace(/<\/(script)/gi, '<\\/$1');
  return plotlySource;
}

/**
 * Script tags that load plotly.js from inline source (no CDN). Jupyter pages
 * and nbconvert HTML exports carry require.js; with AMD `define` visible,
 * plotly's UMD wrapper registers an anonymous AMD module instead of setting
 * `window.Plotly` (and require.js complains). So `define` is hidden while the
 * bundle runs and restored afterwards, in separate tags so it is restored
 * even if the bundle throws.
 */
export function plotlyScript(): string {
  return [
    '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};',
    'window.__orderheadDefine = window.define; window.define = undefined;</script>',
    `<script type="text/javascript">${plotlyBundle()}</script>`,
    '<script type="text/javascript">window.define = window.__orderheadDefine; delete window.__orderheadDefine;</script>',
  ].join('\n');
}

/** JSON that is safe inside a <script>: typed arrays become arrays, `<` is escaped. */
function scriptJson(value: unknown): string {
  const json = JSON.stringify(value, (_key, v: unknown) =>
    ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v,
  );
  return json.replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export interface PlotHtmlOptions {
  /** plotly config (default: responsive, no logo). */
  config?: PlotSpec;
  /** Prepend the plotly.js bundle (about 4.6 MB, plotly.js-dist-min) for a self-contained page. Default false. */
  includePlotlyJs?: boolean;
}

/**
 * A div with a unique id plus the script that draws the figure into it.
 *
 * The script polls briefly for both the div and `window.Plotly`: JupyterLab
 * may run output scripts before the output is attached to the page, and the
 * library arrives in an earlier output.
 */
export function plotHtml(traces: PlotSpec[], layout: PlotSpec = {}, opts: PlotHtmlOptions = {}): string {
  // Random, not a counter: ids must stay unique across kernel restarts within one saved notebook.
  const id = `orderhead-plot-${crypto.randomBytes(8).toString('hex')}`;
  const height = typeof layout.height === 'number' ? layout.height : 450;
  const config = { responsive: true, displaylogo: false, ...opts.config };
  const draw = `<div id="${id}" class="orderhead-plot" style="width:100%;height:${height}px;"></div>
<script type="text/javascript">
(function () {
  var id = ${scriptJson(id)}, data = ${scriptJson(traces)}, layout = ${scriptJson(layout)}, config = ${scriptJson(config)};
  var tries = 0;
  function draw() {
    var el = document.getElementById(id);
    if (el && window.Plotly) { window.Plotly.newPlot(el, data, layout, config); return; }
    if (++tries < 200) { setTimeout(draw, 50); return; }
    if (el) el.textContent = 'plotly.js did not load: run the notebook from the top (the first figure output carries the library), and trust the notebook.';
  }
  draw();
})();
</script>`;
  return opts.includePlotlyJs ? `${plotlyScript()}\n${draw}` : draw;
}

/** Emit the plotly bundle as its own output, once per kernel process. */
function ensurePlotlyShown(): void {
  if (plotlyShown || !inNotebook()) return;
  showHtml(plotlyScript());
  plotlyShown = true;
}

/** The layout with its title stamped (a plain string title, or plotly's `{ text }` form). */
function stampedLayout(layout: PlotSpec): PlotSpec {
  const title = layout.title;
  if (typeof title === 'string') return { ...layout, title: stamped(title) };
  if (title && typeof title === 'object' && typeof (title as { text?: unknown }).text === 'string') {
    return { ...layout, title: { ...title, text: stamped((title as { text: string }).text) } };
  }
  return layout;
}

/**
 * Show a plotly figure inline, offline, its title stamped (see stamped). The
 * first call in a kernel emits the plotly.js bundle as a separate output
 * (reused by later figures and by nbconvert HTML exports). Nothing outside a notebook.
 */
export function showPlot(traces: PlotSpec[], layout: PlotSpec = {}, config?: PlotSpec): void {
  if (!inNotebook()) return;
  ensurePlotlyShown();
  showHtml(plotHtml(traces, stampedLayout(layout), { config }));
}

/** One output that each call replaces (progress text, a live loss curve). */
export interface LiveDisplay {
  /** False outside a notebook, where every method does nothing. */
  readonly active: boolean;
  html(html: string): void;
  text(text: string): void;
  markdown(markdown: string): void;
  png(png: Uint8Array): void;
  /** Redraw a plotly figure in place (the bundle is emitted once, outside this output). */
  plot(traces: PlotSpec[], layout?: PlotSpec, config?: PlotSpec): void;
}

/** A display that updates one output in place; a no-op outside notebooks. */
export function liveDisplay(): LiveDisplay {
  const tslab = kernelTslab();
  if (!tslab) {
    const nothing = () => {};
    return { active: false, html: nothing, text: nothing, markdown: nothing, png: nothing, plot: nothing };
  }
  const display = tslab.newDisplay();
  return {
    active: true,
    html: (html) => display.html(html),
    text: (text) => display.text(text),
    markdown: (markdown) => display.markdown(markdown),
    png: (png) => display.png(png),
    plot: (traces, layout = {}, config) => {
      // The bundle must live in an output that is never replaced, or saved notebooks lose it.
      ensurePlotlyShown();
      display.html(plotHtml(traces, layout, { config }));
    },
  };
}
