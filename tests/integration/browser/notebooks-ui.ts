/**
 * The notebooks as people use them: JupyterLab 4 from this checkout's .venv/,
 * started the way a user starts it (bash scripts/notebook.sh --profile smoke,
 * with --no-browser, a random token and --expose-app-in-browser added), this
 * checkout's tslab kernel, headless Chromium, and every notebook 00..08 run in
 * order in the JupyterLab UI, one cell at a time (select the cell, Shift+Enter,
 * wait for its execute_reply and an idle kernel).
 *
 * Checks, per notebook:
 * - every code cell finished with status ok, without an error output or a
 *   traceback on stderr (tslab reports a failed cell as an error reply plus its
 *   stack on stderr);
 * - every plotly figure drew: each `.orderhead-plot` became a `.js-plotly-plot`
 *   holding an svg of non-zero size with traces, and none says plotly.js did not load;
 * - every HTML table has rows and a size; every <img> (image grids, PNG outputs)
 *   decoded (naturalWidth > 0); a notebook whose code shows figures, tables or
 *   images shows at least one;
 * - a live progress display (session.progress: a tslab display updated in place)
 *   changed its text while its cell ran and stayed one output (notebook 02's
 *   Stage 1 training must show this);
 * and writes one screenshot of the whole notebook per notebook plus report.json to the output folder.
 *
 * --reopen DIR: afterwards, every executed notebook in DIR (a headless run of
 * scripts/run-notebooks.sh, e.g. runs/test-notebooks) is opened in JupyterLab
 * without running anything: its figures must draw from the saved outputs (the
 * runner signs the notebooks it executed, so JupyterLab trusts them), its
 * tables and images show; one screenshot each (reopen-<name>.png).
 *
 * The server listens on 127.0.0.1 on a free port with a random token, with
 * ORDERHEAD_PROFILE=smoke and a fresh temporary ORDERHEAD_RUN_ROOT shared by the
 * notebooks (each reads the runs of the ones before). Saving is switched off in
 * the page and the notebook files are compared before and after, so the test
 * never leaves outputs in notebooks/. The server and its kernels are stopped on
 * every way out (errors, SIGINT, SIGTERM).
 *
 * Usage: node dist/tests/integration/browser/notebooks-ui.js [--out DIR] [--only PATTERN] [--run-root DIR] [--keep-runs] [--reopen DIR]
 *   --out       output folder (default test-output/browser), emptied of old screenshots first
 *   --only      run only notebooks whose name contains PATTERN (they still need the earlier runs:
 *               pass --run-root of a folder where those ran, e.g. one kept with --keep-runs);
 *               with --reopen, reopens only those too
 *   --run-root  use this ORDERHEAD_RUN_ROOT instead of a temporary one (kept afterwards)
 *   --reopen    also reopen the executed notebooks in DIR (see above); --only '' --reopen DIR with
 *               --skip-run checks only that
 *   --skip-run  run no notebook (with --reopen: only the reopen check)
 * Env: ORDERHEAD_CHROMIUM (default /usr/bin/chromium), ORDERHEAD_CELL_TIMEOUT_S (default 600).
 * Prints one line per notebook (`    ok in N s` / `    FAILED ...`) and ends with
 * `browser notebooks: N passed, M failed`; exits non-zero on any failure.
 */
import { spawn, ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { repoRoot } from '../../../lib/runtime/paths';

interface Args { out: string; only: string; runRoot: string | null; keepRuns: boolean; reopen: string | null; skipRun: boolean }

function parseArgs(argv: string[]): Args {
  const args: Args = { out: 'test-output/browser', only: '', runRoot: null, keepRuns: false, reopen: null, skipRun: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--out') args.out = value();
    else if (a === '--only') args.only = value();
    else if (a === '--run-root') args.runRoot = value();
    else if (a === '--keep-runs') args.keepRuns = true;
    else if (a === '--reopen') args.reopen = value();
    else if (a === '--skip-run') args.skipRun = true;
    else throw new Error(`unknown option '${a}' (valid: --out, --only, --run-root, --keep-runs, --reopen, --skip-run)`);
  }
  return args;
}

/** What the page reports about one code cell after it ran. */
interface CellResult {
  index: number;
  status: string | null;
  prompt: unknown;
  stderr: string;
  seconds: number;
  source: string;
}

/** One live progress output of a cell: its distinct texts in order, and how many of them were seen while the cell still ran. */
interface ProgressTrace { cell: number; label: string; texts: string[]; whileRunning: number; outputsAtEnd: number }

interface NotebookResult {
  notebook: string;
  ok: boolean;
  seconds: number;
  failures: string[];
  notes: string[];
  cells: number;
  codeCells: number;
  figures: number;
  tables: number;
  images: number;
  progress: ProgressTrace[];
  screenshot: string | null;
}

const root = repoRoot();
const PROGRESS_RE = /^(.*?) \[[#.]{20}\] \d+% \d+\/\d+ /;
const TRACEBACK_RE = /^\s+at .+(:\d+:\d+\)?|\(native\)|<anonymous>\)?)$|^\w*Error\b[^\n]*:|^Uncaught /m;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Every process below `pid` (children of the server: kernels run in their own sessions). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry));
      parents.set(ppid, list);
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const child of parents.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The notebook server: started in its own process group, stopped with its kernels. */
class Server {
  readonly url: string;
  private proc: ChildProcess;
  private stopped = false;
  private exitCode: number | null = null;

  constructor(readonly port: number, readonly token: string, env: NodeJS.ProcessEnv, logFile: string, checkpointDir: string) {
    this.url = `http://127.0.0.1:${port}`;
    const log = fs.openSync(logFile, 'w');
    // The way a user opens the notebooks (scripts/notebook.sh execs JupyterLab from .venv/), plus what a test needs.
    const args = ['scripts/notebook.sh', '--profile', 'smoke', '--port', String(port), '--',
      '--no-browser', '--ServerApp.ip=127.0.0.1', `--IdentityProvider.token=${token}`, '--ServerApp.password=',
      // window.jupyterapp, for reading the notebook's model and kernel from the page.
      '--LabApp.expose_app_in_browser=True',
      // Checkpoint files in the temp folder, not notebooks/.ipynb_checkpoints.
      `--FileCheckpoints.checkpoint_dir=${checkpointDir}`];
    this.proc = spawn('bash', args, { cwd: root, env, detached: true, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.proc.on('exit', (code) => {
      this.exitCode = code ?? -1;
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async api(method: string, route: string): Promise<Response> {
    return fetch(`${this.url}${route}`, { method, headers: { Authorization: `token ${this.token}` } });
  }

  async waitReady(logFile: string, timeoutMs = 90_000): Promise<void> {
    const start = Date.now();
    for (;;) {
      if (this.exitCode !== null) throw new Error(`scripts/notebook.sh (JupyterLab) exited (code ${this.exitCode}):\n${tail(logFile, 20)}`);
      try {
        const res = await this.api('GET', '/api/kernelspecs');
        if (res.ok) {
          const specs = (await res.json()) as { kernelspecs: Record<string, { resource_dir?: string }> };
          if (!specs.kernelspecs.tslab) throw new Error(`the server has no tslab kernel (${Object.keys(specs.kernelspecs).join(', ')}): run bash scripts/setup.sh`);
          return;
        }
      } catch (e) {
        if (e instanceof Error && e.message.includes('tslab')) throw e;
      }
      if (Date.now() - start > timeoutMs) throw new Error(`JupyterLab did not answer on ${this.url} within ${timeoutMs / 1000} s:\n${tail(logFile, 20)}`);
      await sleep(300);
    }
  }

  /** Shut every kernel down through the API (frees a finished notebook's memory). */
  async shutdownKernels(): Promise<void> {
    try {
      const res = await this.api('GET', '/api/sessions');
      if (!res.ok) return;
      for (const s of (await res.json()) as { id: string }[]) await this.api('DELETE', `/api/sessions/${s.id}`);
    } catch {
      // the server is gone: stop() takes care of the rest
    }
  }

  /** Synchronous, for signal handlers: kill the group and every descendant. */
  killNow(): void {
    if (this.stopped) return;
    this.stopped = true;
    const pids = descendants(this.pid);
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        process.kill(-this.pid, sig);
      } catch {
        // already gone
      }
      for (const p of pids) {
        try {
          process.kill(p, sig);
        } catch {
          // already gone
        }
      }
    }
  }

  /** Kernels through the API, then SIGTERM to the group, then SIGKILL to whatever is left. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    await this.shutdownKernels();
    const pids = [this.pid, ...descendants(this.pid)];
    try {
      process.kill(-this.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    for (let i = 0; i < 50 && pids.some(alive); i++) await sleep(200);
    this.killNow();
  }
}

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/* ---------- page-side helpers (installed in every page by an init script: window.__oh) ---------- */

declare const window: any;

/** What the page shows of a notebook's outputs (window.__oh.rendered()). */
interface Shown {
  figures: { id: string; plotly: boolean; svg: { w: number; h: number } | null; traces: number; title: string; failed: boolean }[];
  tables: { rows: number; w: number; h: number; caption: string }[];
  images: { natural: number; complete: boolean; w: number; h: number }[];
}

/** Plain JavaScript, run in the JupyterLab page before its own scripts. */
const PAGE_HELPERS = String.raw`
window.__oh = {
  replies: [],
  panel() {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    return w && w.content && w.sessionContext && w.context ? w : null;
  },
  kernel() {
    const w = this.panel();
    return w && w.sessionContext.session ? w.sessionContext.session.kernel : null;
  },
  ready(path) {
    const w = this.panel();
    if (!w || w.context.path !== path || !w.context.isReady || !w.content.widgets.length) return false;
    const k = this.kernel();
    return !!(k && k.name === 'tslab' && k.connectionStatus === 'connected' && k.status === 'idle');
  },
  opened(path) {
    const w = this.panel();
    return !!(w && w.context.path === path && w.context.isReady && w.content.widgets.length);
  },
  // Never save; record each execute_reply's status; select the first cell in command mode.
  prepare() {
    const w = this.panel();
    w.context.save = () => Promise.resolve();
    w.context.saveAs = () => Promise.resolve();
    this.replies = [];
    this.kernel().anyMessage.connect((_, args) => {
      if (args.direction === 'recv' && args.msg.header.msg_type === 'execute_reply') this.replies.push(args.msg.content.status);
    });
    this.select(0);
    return w.content.widgets.length;
  },
  select(i) {
    const w = this.panel();
    w.content.mode = 'command';
    w.content.activeCellIndex = i;
    w.content.node.focus();
  },
  cellInfo(i) {
    const w = this.panel();
    const cell = w.content.widgets[i];
    const model = cell.model;
    const outputs = model.type === 'code' ? model.outputs.toJSON() : [];
    const k = this.kernel();
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    return {
      type: model.type,
      selected: w.content.activeCellIndex,
      prompt: model.type === 'code' ? model.executionCount : null,
      running: !!prompt && /\*/.test(prompt.textContent || ''),
      replies: this.replies.length,
      busy: !k || k.status !== 'idle',
      kernel: k ? k.status + '/' + k.connectionStatus : 'no kernel',
      source: String(model.sharedModel.getSource()).slice(0, 200),
      stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map((o) => Array.isArray(o.text) ? o.text.join('') : o.text).join(''),
      errors: outputs.filter((o) => o.output_type === 'error').map((o) => o.ename + ': ' + o.evalue + '\n' + (o.traceback || []).join('\n')).join('\n'),
    };
  },
  reply(n) {
    return this.replies.length > n ? this.replies[n] : null;
  },
  // Text of each output of cell i (by position), for watching live displays.
  outputTexts(i) {
    const cell = this.panel().content.widgets[i];
    return Array.from(cell.node.querySelectorAll('.jp-OutputArea-output')).map((el) => String(el.innerText || ''));
  },
  rendered() {
    const root = this.panel().content.node;
    const q = (sel) => Array.from(root.querySelectorAll('.jp-OutputArea-output ' + sel));
    const size = (el) => { const r = el.getBoundingClientRect(); return { w: Math.round(r.width), h: Math.round(r.height) }; };
    const figures = q('.orderhead-plot').map((el) => {
      const svg = el.querySelector('svg.main-svg');
      const title = el.querySelector('.gtitle');
      return {
        id: el.id, plotly: el.classList.contains('js-plotly-plot'), svg: svg ? size(svg) : null,
        traces: el.querySelectorAll('.trace, .imagelayer image, .hm, .bars .point').length,
        title: title ? title.textContent : '', failed: /did not load/.test(el.textContent || ''),
      };
    });
    const tables = q('table').map((t) => Object.assign({ rows: t.querySelectorAll('tr').length, caption: (t.querySelector('caption') || {}).textContent || '' }, size(t)));
    const images = q('img').map((img) => Object.assign({ natural: img.naturalWidth, complete: img.complete }, size(img)));
    return { figures, tables, images };
  },
  // Height of the whole notebook (for a screenshot that holds all of it).
  fullHeight() {
    window.jupyterapp.shell.collapseLeft();
    const nb = this.panel().content.node;
    const outer = nb.querySelector('.jp-WindowedPanel-outer') || nb;
    const top = nb.getBoundingClientRect().top;
    return Math.ceil(top + outer.scrollHeight + 40);
  },
  scrollTop() {
    const nb = this.panel().content.node;
    const outer = nb.querySelector('.jp-WindowedPanel-outer') || nb;
    outer.scrollTop = 0;
  },
};
`;

/** One picture of the whole notebook: the window made as tall as the notebook (capped), then a screenshot. */
async function screenshot(page: Page, file: string, notes: string[]): Promise<string | null> {
  try {
    const height = Math.min(16_000, Math.max(900, await page.evaluate(() => window.__oh.fullHeight())));
    await page.setViewportSize({ width: 1280, height });
    await sleep(1500); // plotly's responsive relayout
    await page.evaluate(() => window.__oh.scrollTop());
    await sleep(300);
    await page.screenshot({ path: file, fullPage: false, timeout: 60_000 });
    return path.relative(root, file);
  } catch (e) {
    notes.push(`no screenshot: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    return null;
  }
}

/** Figures, tables and images of the open notebook as failures (empty when everything drew). */
function outputFailures(shown: Shown): string[] {
  const failures: string[] = [];
  for (const f of shown.figures) {
    if (f.failed || !f.plotly || !f.svg || f.svg.w === 0 || f.svg.h === 0) {
      failures.push(`figure ${f.id} '${f.title}' did not draw (plotly ${f.plotly}, svg ${JSON.stringify(f.svg)}${f.failed ? ', plotly.js did not load' : ''})`);
    } else if (f.traces === 0) {
      failures.push(`figure ${f.id} '${f.title}' drew axes but no traces`);
    }
  }
  shown.tables.forEach((t, k) => {
    if (t.rows < 2 || t.w === 0 || t.h === 0) failures.push(`table ${k} '${t.caption}' is empty or invisible (${t.rows} rows, ${t.w}x${t.h})`);
  });
  shown.images.forEach((img, k) => {
    if (!img.complete || img.natural === 0 || img.w === 0) failures.push(`image ${k} did not decode or is invisible (naturalWidth ${img.natural}, ${img.w}x${img.h})`);
  });
  return failures;
}

/** Open an executed notebook (saved outputs) without running it: its figures, tables and images must show. */
async function reopenNotebook(page: Page, server: Server, file: string, outDir: string): Promise<NotebookResult> {
  const start = Date.now();
  const name = path.basename(file, '.ipynb');
  const result: NotebookResult = {
    notebook: `reopen ${path.relative(root, file)}`, ok: false, seconds: 0, failures: [], notes: [], cells: 0, codeCells: 0, figures: 0, tables: 0, images: 0, progress: [], screenshot: null,
  };
  try {
    const rel = path.relative(root, file);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: { cell_type: string; outputs?: { data?: Record<string, unknown> }[] }[] };
    const html = saved.cells.flatMap((c) => c.outputs ?? []).map((o) => String((o.data?.['text/html'] as string[] | string | undefined) ?? '')).join('');
    const expectFigures = (html.match(/class="orderhead-plot"/g) ?? []).length;
    await page.goto(`${server.url}/lab/tree/${rel}?reset&token=${server.token}`, { waitUntil: 'load', timeout: 120_000 });
    await page.waitForFunction((p) => window.__oh?.opened(p), rel, { timeout: 180_000, polling: 250 });
    await page.evaluate(() => {
      const w = window.__oh.panel();
      w.context.save = () => Promise.resolve();
    });
    result.cells = await page.evaluate(() => window.__oh.panel().content.widgets.length);
    let shown = (await page.evaluate(() => window.__oh.rendered())) as Shown;
    for (let t = 0; t < 60 && (shown.figures.length < expectFigures || shown.figures.some((f) => !f.plotly || !f.svg)); t++) {
      await sleep(500);
      shown = (await page.evaluate(() => window.__oh.rendered())) as Shown;
    }
    result.figures = shown.figures.length;
    result.tables = shown.tables.length;
    result.images = shown.images.length;
    if (shown.figures.length < expectFigures) result.failures.push(`${expectFigures} figures saved, ${shown.figures.length} shown (JupyterLab does not trust the notebook?)`);
    result.failures.push(...outputFailures(shown));
  } catch (e) {
    result.failures.push(`the notebook page failed: ${e instanceof Error ? e.message.split('\n').slice(0, 8).join('\n') : String(e)}`);
  } finally {
    result.screenshot = await screenshot(page, path.join(outDir, `reopen-${name}.png`), result.notes);
    await server.shutdownKernels();
    await page.close({ runBeforeUnload: false }).catch(() => {});
  }
  result.seconds = Math.round((Date.now() - start) / 1000);
  result.ok = result.failures.length === 0;
  return result;
}

/* ---------- running one notebook ---------- */

async function runNotebook(page: Page, server: Server, name: string, source: string, outDir: string, cellTimeoutMs: number, log: (s: string) => void): Promise<NotebookResult> {
  const start = Date.now();
  const result: NotebookResult = {
    notebook: name, ok: false, seconds: 0, failures: [], notes: [], cells: 0, codeCells: 0, figures: 0, tables: 0, images: 0, progress: [], screenshot: null,
  };
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e.message || e).slice(0, 300)));
  try {
    const nbPath = `notebooks/${name}.ipynb`;
    await page.goto(`${server.url}/lab/tree/${nbPath}?reset&token=${server.token}`, { waitUntil: 'load', timeout: 120_000 });
    await page.waitForFunction((p) => window.__oh?.ready(p), nbPath, { timeout: 180_000, polling: 250 });
    result.cells = await page.evaluate(() => window.__oh.prepare());

    for (let i = 0; i < result.cells; i++) {
      await page.evaluate((k) => window.__oh.select(k), i);
      let info = await page.evaluate((k) => window.__oh.cellInfo(k), i);
      if (info.type !== 'code') {
        await page.keyboard.press('Shift+Enter');
        continue;
      }
      result.codeCells++;
      const cellStart = Date.now();
      const repliesBefore = info.replies;
      await page.keyboard.press('Shift+Enter');
      // Watch the cell until its reply came and the kernel is idle; meanwhile record live progress text.
      const seen = new Map<number, { texts: string[]; whileRunning: number }>();
      let started = false, pressedAgain = false, status: string | null = null;
      for (;;) {
        const texts = (await page.evaluate((k) => window.__oh.outputTexts(k), i)) as string[];
        info = await page.evaluate((k) => window.__oh.cellInfo(k), i);
        status = await page.evaluate((n) => window.__oh.reply(n), repliesBefore);
        const finished = status !== null && !info.busy;
        started ||= finished || info.running || info.busy;
        // A Shift+Enter the page did not take (focus moved while it loaded): not running, no busy kernel after 15 s.
        // Pressed once more, on the cell selected again, and said in the notes; a cell that then still does not start fails below.
        if (!started && !pressedAgain && Date.now() - cellStart > 15_000) {
          pressedAgain = true;
          result.notes.push(`cell ${i}: had not started 15 s after Shift+Enter (prompt ${JSON.stringify(info.prompt)}, selected ${info.selected}); pressed it again`);
          await page.evaluate((k) => window.__oh.select(k), i);
          await page.keyboard.press('Shift+Enter');
        }
        texts.forEach((t, k) => {
          const line = t.trim();
          if (!PROGRESS_RE.test(line)) return;
          const trace = seen.get(k) ?? { texts: [], whileRunning: 0 };
          if (trace.texts[trace.texts.length - 1] !== line) {
            trace.texts.push(line);
            // Read before the reply: this text was on the page while the cell ran.
            if (!finished && status === null) trace.whileRunning++;
          }
          seen.set(k, trace);
        });
        if (finished) break;
        if (Date.now() - cellStart > cellTimeoutMs) {
          result.failures.push(`cell ${i} did not finish within ${cellTimeoutMs / 1000} s: ${info.source.split('\n')[0]} ` +
            `(${started ? 'it started' : 'it never started'}; prompt ${JSON.stringify(info.prompt)}, kernel ${info.kernel}, reply ${status}` +
            `${info.stderr.trim() ? `; stderr: ${info.stderr.trim().split('\n').slice(-3).join(' | ')}` : ''})`);
          break;
        }
        await sleep(250);
      }
      const finalTexts = (await page.evaluate((k) => window.__oh.outputTexts(k), i)) as string[];
      for (const { texts, whileRunning } of seen.values()) {
        const label = PROGRESS_RE.exec(texts[0])![1];
        result.progress.push({ cell: i, label, texts, whileRunning, outputsAtEnd: finalTexts.filter((t) => t.trim().startsWith(`${label} [`)).length });
      }
      const seconds = (Date.now() - cellStart) / 1000;
      const cell: CellResult = { index: i, status, prompt: info.prompt, stderr: info.stderr, seconds, source: info.source };
      if (result.failures.length) break;
      if (status !== 'ok' || info.errors || TRACEBACK_RE.test(info.stderr)) {
        const text = (info.errors || info.stderr || '(no output)').trim().split('\n').slice(0, 25).join('\n');
        result.failures.push(`cell ${i} (code cell ${result.codeCells}, status ${status}) failed: ${info.source.split('\n')[0]}\n${text}`);
        break;
      }
      if (cell.stderr.trim()) result.notes.push(`cell ${i} wrote to stderr: ${cell.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
      log(`    cell ${i} ok in ${seconds.toFixed(1)} s`);
    }

    // Figures draw asynchronously (plotly's own polling): give them time, then check everything shown.
    let shown = (await page.evaluate(() => window.__oh.rendered())) as Shown;
    for (let t = 0; t < 60 && shown.figures.some((f) => !f.plotly || !f.svg); t++) {
      await sleep(500);
      shown = (await page.evaluate(() => window.__oh.rendered())) as Shown;
    }
    result.figures = shown.figures.length;
    result.tables = shown.tables.length;
    result.images = shown.images.length;
    if (!result.failures.length) {
      result.failures.push(...outputFailures(shown));
      const expect = (what: string, re: RegExp, n: number) => {
        if (re.test(source) && n === 0) result.failures.push(`the notebook's code shows ${what} but none rendered`);
      };
      expect('plotly figures', /\bshowPlot\(|\.plot\(/, shown.figures.length);
      expect('tables', /\bshowTable\(|toHtmlTable\(/, shown.tables.length);
      expect('images', /\bshowImageGrid\(|\bshowImage\(/, shown.images.length);
      for (const p of result.progress) {
        if (p.outputsAtEnd > 1) result.failures.push(`progress '${p.label}' (cell ${p.cell}) appended ${p.outputsAtEnd} outputs instead of updating one`);
      }
      // Stage 1 training (notebook 02): each arm's bar must have been on the page while
      // the training cell ran and then changed in place (smoke trains a few seconds, so
      // with the 2 s redraw throttle that is often first step -> done).
      if (name.startsWith('02_') && /session\.progress\(/.test(source) && /trainStage1/.test(source)) {
        const stage1 = result.progress.filter((p) => p.label.startsWith('stage1 '));
        const live = stage1.filter((p) => p.whileRunning >= 1 && p.texts.length >= 2 && p.outputsAtEnd === 1);
        if (stage1.length < 2 || live.length < stage1.length) {
          result.failures.push(`the Stage 1 progress displays did not update in place while training ran (seen: ${result.progress.map((p) => `${p.label}: ${p.texts.length} texts, ${p.whileRunning} while running`).join('; ') || 'none'})`);
        }
      }
    }
    if (pageErrors.length) result.notes.push(`page errors: ${pageErrors.slice(0, 5).join(' | ')}`);
  } catch (e) {
    result.failures.push(`the notebook page failed: ${e instanceof Error ? e.message.split('\n').slice(0, 8).join('\n') : String(e)}`);
  } finally {
    result.screenshot = await screenshot(page, path.join(outDir, `${name}.png`), result.notes);
    await server.shutdownKernels();
    await page.close({ runBeforeUnload: false }).catch(() => {});
  }
  result.seconds = Math.round((Date.now() - start) / 1000);
  result.ok = result.failures.length === 0;
  return result;
}

/* ---------- main ---------- */

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const chromiumPath = process.env.ORDERHEAD_CHROMIUM || '/usr/bin/chromium';
  const cellTimeoutMs = 1000 * Number(process.env.ORDERHEAD_CELL_TIMEOUT_S || 600);
  if (!fs.existsSync(chromiumPath)) {
    console.error(`browser test: no Chromium at ${chromiumPath}: install it (apt-get install chromium; scripts/setup.sh does) or set ORDERHEAD_CHROMIUM`);
    return 1;
  }
  if (!fs.existsSync(path.join(root, '.jupyter/share/jupyter/kernels/tslab/kernel.json'))) {
    console.error('browser test: this checkout\'s tslab kernel is not registered (.jupyter/): run bash scripts/setup.sh');
    return 1;
  }
  const outDir = path.resolve(root, args.out);
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of fs.readdirSync(outDir)) if (/\.(png|json|log)$/.test(f)) fs.rmSync(path.join(outDir, f));

  const notebooks = fs.readdirSync(path.join(root, 'notebooks')).filter((f) => /^\d\d_.*\.ipynb$/.test(f)).sort()
    .filter((f) => !args.only || f.includes(args.only));
  if (!notebooks.length) {
    console.error(`browser test: no notebook matches '${args.only}'`);
    return 1;
  }
  const before = new Map(notebooks.map((f) => [f, fs.readFileSync(path.join(root, 'notebooks', f))]));

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-browser-'));
  const runRoot = args.runRoot ? path.resolve(args.runRoot) : path.join(tmp, 'runs');
  fs.mkdirSync(runRoot, { recursive: true });
  const jupyterHome = path.join(tmp, 'jupyter');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // A clean config (no user password or extensions) and runtime files in the temp folder.
    JUPYTER_CONFIG_DIR: path.join(jupyterHome, 'config'),
    JUPYTER_RUNTIME_DIR: path.join(jupyterHome, 'runtime'),
    ORDERHEAD_PROFILE: 'smoke',
    ORDERHEAD_RUN_ROOT: runRoot,
  };
  const port = await freePort();
  const token = crypto.randomBytes(24).toString('hex');
  const serverLog = path.join(outDir, 'jupyter.log');
  console.log(`==> browser test: JupyterLab (scripts/notebook.sh, .venv/) on 127.0.0.1:${port}, profile smoke, run root ${runRoot}, chromium ${chromiumPath}`);
  const suiteStart = Date.now();
  const server = new Server(port, token, env, serverLog, path.join(jupyterHome, 'checkpoints'));
  let browser: Browser | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`browser test: ${sig}: stopping JupyterLab`);
    server.killNow();
    if (!args.runRoot && !args.keepRuns) fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results: NotebookResult[] = [];
  let setupError: string | null = null;
  try {
    await server.waitReady(serverLog);
    const { chromium } = await import('playwright-core');
    const flags = ['--headless=new', '--disable-gpu', '--disable-dev-shm-usage'];
    if (process.getuid?.() === 0) flags.push('--no-sandbox');
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: flags });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript(PAGE_HELPERS);
    for (const f of args.skipRun ? [] : notebooks) {
      const name = f.replace(/\.ipynb$/, '');
      console.log(`==> ${name} (browser, profile smoke)`);
      const page = await context.newPage();
      const source = (JSON.parse(before.get(f)!.toString('utf8')).cells as { cell_type: string; source: string[] | string }[])
        .filter((c) => c.cell_type === 'code').map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source)).join('\n');
      const r = await runNotebook(page, server, name, source, outDir, cellTimeoutMs, (s) => console.log(s));
      results.push(r);
      const summary = `${r.codeCells} code cells, ${r.figures} figures, ${r.tables} tables, ${r.images} images` +
        (r.progress.length ? `, live progress: ${r.progress.map((p) => `${p.label} ${p.texts.length} states`).join(', ')}` : '') +
        (r.screenshot ? `; screenshot ${r.screenshot}` : '');
      for (const n of r.notes) console.log(`    note: ${n}`);
      if (r.ok) {
        console.log(`    ok in ${r.seconds} s (${summary})`);
      } else {
        console.error(`    FAILED after ${r.seconds} s (${summary}):`);
        for (const msg of r.failures) console.error(msg.replace(/^/gm, '      '));
        const rest = notebooks.slice(notebooks.indexOf(f) + 1);
        if (rest.length) console.error(`    not run (they read this notebook's runs): ${rest.join(', ')}`);
        break;
      }
    }
    if (args.reopen && results.every((r) => r.ok)) {
      const dir = path.resolve(root, args.reopen);
      const saved = notebooks.map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));
      if (!saved.length) throw new Error(`--reopen ${args.reopen}: no executed notebook there (run bash scripts/run-notebooks.sh --profile smoke --out ${args.reopen} first)`);
      if (path.relative(root, dir).startsWith('..')) throw new Error(`--reopen ${args.reopen}: must be inside this checkout (JupyterLab's root)`);
      for (const f of saved) {
        console.log(`==> reopen ${path.relative(root, f)} (saved outputs, nothing run)`);
        const r = await reopenNotebook(await context.newPage(), server, f, outDir);
        results.push(r);
        for (const n of r.notes) console.log(`    note: ${n}`);
        const summary = `${r.figures} figures, ${r.tables} tables, ${r.images} images${r.screenshot ? `; screenshot ${r.screenshot}` : ''}`;
        if (r.ok) console.log(`    ok in ${r.seconds} s (${summary})`);
        else {
          console.error(`    FAILED after ${r.seconds} s (${summary}):`);
          for (const msg of r.failures) console.error(msg.replace(/^/gm, '      '));
        }
      }
    }
  } catch (e) {
    setupError = e instanceof Error ? e.message : String(e);
    console.error(`browser test: ${setupError}`);
  } finally {
    await browser?.close().catch(() => {});
    await server.stop();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    // The page never saves; should a notebook file have changed anyway, put it back and fail.
    for (const [f, bytes] of before) {
      const file = path.join(root, 'notebooks', f);
      if (!fs.readFileSync(file).equals(bytes)) {
        fs.writeFileSync(file, bytes);
        setupError = `${setupError ? `${setupError}; ` : ''}notebooks/${f} was modified during the test (restored)`;
        console.error(`browser test: notebooks/${f} was modified during the test; restored`);
      }
    }
    if (!args.runRoot && !args.keepRuns) fs.rmSync(tmp, { recursive: true, force: true });
    else console.log(`run root kept: ${runRoot}`);
  }
  const seconds = Math.round((Date.now() - suiteStart) / 1000);
  // Somewhere in the suite a display must have changed more than once mid-cell (the tokenizer's
  // training bar in 01, the evaluation bars in 08): in place, not only first -> done.
  if (!setupError && !args.only && !args.skipRun && results.every((r) => r.ok) && !results.some((r) => r.progress.some((p) => p.whileRunning >= 3 && p.outputsAtEnd === 1))) {
    setupError = 'no progress display updated in place more than once while its cell ran';
    console.error(`browser test: ${setupError}`);
  }
  fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify({ seconds, port, runRoot, setupError, results }, null, 2));
  const passed = results.filter((r) => r.ok).length;
  const expected = (args.skipRun ? 0 : notebooks.length) + results.filter((r) => r.notebook.startsWith('reopen ')).length;
  const failed = Math.max(0, expected - passed) + (setupError ? 1 : 0);
  console.log(`browser test took ${seconds} s; screenshots and report.json in ${path.relative(root, outDir)}/`);
  console.log(`browser notebooks: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
