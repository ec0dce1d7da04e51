/**
 * The notebooks as people use them: a Jupyter Notebook server on notebooks/ with
 * this checkout's tslab kernel, headless Chromium, and every notebook 00..08 run
 * in order in the notebook UI, one cell at a time (select the first cell, then
 * Shift+Enter per cell, waiting for each code cell's reply).
 *
 * Checks, per notebook:
 * - every code cell finished with status ok, without a traceback on stderr
 *   (tslab reports a failed cell as an error reply plus its stack on stderr);
 * - every plotly figure drew: each `.orderhead-plot` became a `.js-plotly-plot`
 *   holding an svg of non-zero size, and none says plotly.js did not load;
 * - every HTML table has rows and a size; every <img> (image grids, PNG outputs)
 *   decoded (naturalWidth > 0); a notebook whose code shows figures, tables or
 *   images shows at least one;
 * - a live progress display (session.progress: a tslab display updated in place)
 *   changed its text while its cell ran and stayed one output (notebook 02's
 *   Stage 1 training must show this);
 * and writes one full-page screenshot per notebook plus report.json to the output folder.
 *
 * The server listens on 127.0.0.1 on a free port with a random token, with
 * ORDERHEAD_PROFILE=smoke and a fresh temporary ORDERHEAD_RUN_ROOT shared by the
 * notebooks (each reads the runs of the ones before). Saving is switched off in
 * the page and the notebook files are compared before and after, so the test
 * never leaves outputs in notebooks/. The server and its kernels are stopped on
 * every way out (errors, SIGINT, SIGTERM).
 *
 * Usage: node dist/tests/integration/browser/notebooks-ui.js [--out DIR] [--only PATTERN] [--run-root DIR] [--keep-runs]
 *   --out       output folder (default test-output/browser), emptied of old screenshots first
 *   --only      run only notebooks whose name contains PATTERN (they still need the earlier runs:
 *               pass --run-root of a folder where those ran, e.g. one kept with --keep-runs)
 *   --run-root  use this ORDERHEAD_RUN_ROOT instead of a temporary one (kept afterwards)
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

interface Args { out: string; only: string; runRoot: string | null; keepRuns: boolean }

function parseArgs(argv: string[]): Args {
  const args: Args = { out: 'test-output/browser', only: '', runRoot: null, keepRuns: false };
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
    else throw new Error(`unknown option '${a}' (valid: --out, --only, --run-root, --keep-runs)`);
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
    const args = ['notebook', '--no-browser', '--ip=127.0.0.1', `--port=${port}`, '--NotebookApp.port_retries=0',
      `--NotebookApp.token=${token}`, '--NotebookApp.password=', '--notebook-dir=notebooks',
      // Checkpoint files in the temp folder, not notebooks/.ipynb_checkpoints.
      `--FileCheckpoints.checkpoint_dir=${checkpointDir}`];
    if (process.getuid?.() === 0) args.push('--allow-root');
    this.proc = spawn('jupyter', args, { cwd: root, env, detached: true, stdio: ['ignore', log, log] });
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
      if (this.exitCode !== null) throw new Error(`jupyter notebook exited (code ${this.exitCode}):\n${tail(logFile, 20)}`);
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
      if (Date.now() - start > timeoutMs) throw new Error(`jupyter notebook did not answer on ${this.url} within ${timeoutMs / 1000} s:\n${tail(logFile, 20)}`);
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

/* ---------- page-side helpers (run inside the notebook page via page.evaluate) ---------- */

declare const Jupyter: any;

/** Stop the page from ever saving, and record each code cell's execute_reply status. */
function preparePage(): number {
  const nb = Jupyter.notebook;
  nb.set_autosave_interval(0);
  nb.writable = false;
  nb.get_cells().forEach((cell: any) => {
    if (cell.cell_type !== 'code') return;
    const orig = cell._handle_execute_reply;
    cell._handle_execute_reply = function (msg: any) {
      this.__ohStatus = msg && msg.content ? msg.content.status : 'unknown';
      return orig.apply(this, arguments);
    };
  });
  nb.select(0);
  nb.command_mode();
  return nb.ncells();
}

function cellInfo(i: number) {
  const nb = Jupyter.notebook;
  const cell = nb.get_cell(i);
  const outputs = cell.output_area ? cell.output_area.outputs : [];
  return {
    type: cell.cell_type as string,
    selected: nb.get_selected_index() as number,
    prompt: cell.input_prompt_number as unknown,
    status: (cell.__ohStatus ?? null) as string | null,
    busy: !!nb.kernel_busy,
    source: String(cell.get_text()).slice(0, 200),
    stderr: outputs.filter((o: any) => o.output_type === 'stream' && o.name === 'stderr').map((o: any) => o.text).join(''),
    errors: outputs.filter((o: any) => o.output_type === 'error').map((o: any) => `${o.ename}: ${o.evalue}\n${(o.traceback || []).join('\n')}`).join('\n'),
  };
}

/** Text of each output of cell i (by position), for watching live displays. */
function outputTexts(i: number): string[] {
  const cell = Jupyter.notebook.get_cell(i);
  return Array.from(cell.element[0].querySelectorAll('.output_area .output_subarea')).map((el: any) => String(el.innerText || ''));
}

/** What the rendered notebook shows. */
function renderedOutputs() {
  const q = (sel: string) => Array.from(document.querySelectorAll(`#notebook-container .output_area ${sel}`)) as HTMLElement[];
  const size = (el: Element) => {
    const r = el.getBoundingClientRect();
    return { w: Math.round(r.width), h: Math.round(r.height) };
  };
  const figures = q('.orderhead-plot').map((el) => {
    const svg = el.querySelector('svg.main-svg');
    const title = el.querySelector('.gtitle');
    return {
      id: el.id, plotly: el.classList.contains('js-plotly-plot'), svg: svg ? size(svg) : null,
      traces: el.querySelectorAll('.trace, .imagelayer image, .hm, .bars .point').length,
      title: title ? title.textContent : '', failed: /did not load/.test(el.textContent || ''),
    };
  });
  const tables = q('table').map((t) => ({ rows: t.querySelectorAll('tr').length, ...size(t), caption: t.querySelector('caption')?.textContent ?? '' }));
  const images = q('img').map((img) => ({ natural: (img as HTMLImageElement).naturalWidth, complete: (img as HTMLImageElement).complete, ...size(img) }));
  return { figures, tables, images };
}

/** Let the whole notebook flow into the page so a full-page screenshot holds all of it. */
function unclipPage(): void {
  // Tall outputs sit in a scroll box (Notebook 6's auto-scroll); open them so every figure is in the picture.
  Jupyter.notebook.get_cells().forEach((c: any) => c.output_area && c.output_area.unscroll_area());
  const style = document.createElement('style');
  style.textContent = 'html, body { height: auto !important; overflow: visible !important; } ' +
    '.output_scroll { height: auto !important; max-height: none !important; } ' +
    '#site { height: auto !important; overflow: visible !important; } #ipython_notebook, #header { position: static !important; }';
  document.head.appendChild(style);
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
    await page.goto(`${server.url}/notebooks/${name}.ipynb?token=${server.token}`, { waitUntil: 'load', timeout: 120_000 });
    await page.waitForFunction(() => {
      const nb = (window as any).Jupyter?.notebook;
      return !!(nb && nb._fully_loaded && nb.kernel && nb.kernel.is_connected() && nb.kernel.name === 'tslab' && !nb.kernel_busy);
    }, undefined, { timeout: 120_000, polling: 250 });
    result.cells = await page.evaluate(preparePage);
    await page.locator('#notebook-container .cell').first().click({ position: { x: 5, y: 5 } }); // focus the notebook, first cell selected
    await page.evaluate(() => { Jupyter.notebook.select(0); Jupyter.notebook.command_mode(); });

    for (let i = 0; i < result.cells; i++) {
      let info = await page.evaluate(cellInfo, i);
      if (info.selected !== i) {
        result.notes.push(`cell ${i}: selection was at ${info.selected} after Shift+Enter; selected it`);
        await page.evaluate((k) => { Jupyter.notebook.select(k); Jupyter.notebook.command_mode(); }, i);
      }
      if (info.type !== 'code') {
        await page.keyboard.press('Shift+Enter');
        continue;
      }
      result.codeCells++;
      const cellStart = Date.now();
      await page.keyboard.press('Shift+Enter');
      // Watch the cell until its reply came and the kernel is idle; meanwhile record live progress text.
      const seen = new Map<number, { texts: string[]; whileRunning: number }>();
      let started = false, pressedAgain = false;
      for (;;) {
        const texts = await page.evaluate(outputTexts, i);
        info = await page.evaluate(cellInfo, i);
        const finished = typeof info.prompt === 'number' && info.status !== null && !info.busy;
        started ||= finished || info.prompt === '*' || info.busy;
        // A Shift+Enter the page did not take (focus moved while it loaded): no prompt '*', no busy kernel after 15 s.
        // Pressed once more, on the cell selected again, and said in the notes; a cell that then still does not start fails below.
        if (!started && !pressedAgain && Date.now() - cellStart > 15_000) {
          pressedAgain = true;
          result.notes.push(`cell ${i}: had not started 15 s after Shift+Enter (prompt ${JSON.stringify(info.prompt)}, selected ${info.selected}); pressed it again`);
          await page.evaluate((k) => { Jupyter.notebook.select(k); Jupyter.notebook.command_mode(); }, i);
          await page.keyboard.press('Shift+Enter');
        }
        texts.forEach((t, k) => {
          const line = t.trim();
          if (!PROGRESS_RE.test(line)) return;
          const trace = seen.get(k) ?? { texts: [], whileRunning: 0 };
          if (trace.texts[trace.texts.length - 1] !== line) {
            trace.texts.push(line);
            // Read before the reply: this text was on the page while the cell ran.
            if (!finished && info.prompt === '*') trace.whileRunning++;
          }
          seen.set(k, trace);
        });
        if (finished) break;
        if (Date.now() - cellStart > cellTimeoutMs) {
          const state = await page.evaluate(() => ({ kernel: Jupyter.notebook.kernel?.is_connected?.() ? 'connected' : 'not connected', status: String(document.querySelector('#kernel_indicator_icon')?.getAttribute('title') ?? '') }));
          result.failures.push(`cell ${i} did not finish within ${cellTimeoutMs / 1000} s: ${info.source.split('\n')[0]} ` +
            `(${started ? 'it started' : 'it never started'}; prompt ${JSON.stringify(info.prompt)}, kernel ${state.kernel}, busy ${info.busy}, indicator '${state.status}'` +
            `${info.stderr.trim() ? `; stderr: ${info.stderr.trim().split('\n').slice(-3).join(' | ')}` : ''})`);
          break;
        }
        await sleep(250);
      }
      const finalTexts = await page.evaluate(outputTexts, i);
      for (const { texts, whileRunning } of seen.values()) {
        const label = PROGRESS_RE.exec(texts[0])![1];
        result.progress.push({ cell: i, label, texts, whileRunning, outputsAtEnd: finalTexts.filter((t) => t.trim().startsWith(`${label} [`)).length });
      }
      const seconds = (Date.now() - cellStart) / 1000;
      const cell: CellResult = { index: i, status: info.status, prompt: info.prompt, stderr: info.stderr, seconds, source: info.source };
      if (result.failures.length) break;
      if (info.status !== 'ok' || info.errors || TRACEBACK_RE.test(info.stderr)) {
        const text = (info.errors || info.stderr || '(no output)').trim().split('\n').slice(0, 25).join('\n');
        result.failures.push(`cell ${i} (code cell ${result.codeCells}, status ${info.status}) failed: ${info.source.split('\n')[0]}\n${text}`);
        break;
      }
      if (cell.stderr.trim()) result.notes.push(`cell ${i} wrote to stderr: ${cell.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
      log(`    cell ${i} ok in ${seconds.toFixed(1)} s`);
    }

    // Figures draw asynchronously (plotly's own polling): give them time, then check everything shown.
    let shown = await page.evaluate(renderedOutputs);
    for (let t = 0; t < 60 && shown.figures.some((f) => !f.plotly || !f.svg); t++) {
      await sleep(500);
      shown = await page.evaluate(renderedOutputs);
    }
    result.figures = shown.figures.length;
    result.tables = shown.tables.length;
    result.images = shown.images.length;
    if (!result.failures.length) {
      for (const f of shown.figures) {
        if (f.failed || !f.plotly || !f.svg || f.svg.w === 0 || f.svg.h === 0) {
          result.failures.push(`figure ${f.id} '${f.title}' did not draw (plotly ${f.plotly}, svg ${JSON.stringify(f.svg)}${f.failed ? ', plotly.js did not load' : ''})`);
        } else if (f.traces === 0) {
          result.failures.push(`figure ${f.id} '${f.title}' drew axes but no traces`);
        }
      }
      shown.tables.forEach((t, k) => {
        if (t.rows < 2 || t.w === 0 || t.h === 0) result.failures.push(`table ${k} '${t.caption}' is empty or invisible (${t.rows} rows, ${t.w}x${t.h})`);
      });
      shown.images.forEach((img, k) => {
        if (!img.complete || img.natural === 0 || img.w === 0) result.failures.push(`image ${k} did not decode or is invisible (naturalWidth ${img.natural}, ${img.w}x${img.h})`);
      });
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
    try {
      await page.evaluate(unclipPage);
      await sleep(500);
      const file = path.join(outDir, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true, timeout: 60_000 });
      result.screenshot = path.relative(root, file);
    } catch (e) {
      result.notes.push(`no screenshot: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    }
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
    JUPYTER_PATH: `${path.join(root, '.jupyter/share/jupyter')}${process.env.JUPYTER_PATH ? `:${process.env.JUPYTER_PATH}` : ''}`,
    // A clean config (no user password or extensions) and runtime files in the temp folder.
    JUPYTER_CONFIG_DIR: path.join(jupyterHome, 'config'),
    JUPYTER_RUNTIME_DIR: path.join(jupyterHome, 'runtime'),
    ORDERHEAD_PROFILE: 'smoke',
    ORDERHEAD_RUN_ROOT: runRoot,
  };
  const port = await freePort();
  const token = crypto.randomBytes(24).toString('hex');
  const serverLog = path.join(outDir, 'jupyter.log');
  console.log(`==> browser test: Jupyter Notebook on 127.0.0.1:${port}, profile smoke, run root ${runRoot}, chromium ${chromiumPath}`);
  const suiteStart = Date.now();
  const server = new Server(port, token, env, serverLog, path.join(jupyterHome, 'checkpoints'));
  let browser: Browser | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`browser test: ${sig}: stopping the notebook server`);
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
    for (const f of notebooks) {
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
  if (!setupError && !args.only && results.every((r) => r.ok) && !results.some((r) => r.progress.some((p) => p.whileRunning >= 3 && p.outputsAtEnd === 1))) {
    setupError = 'no progress display updated in place more than once while its cell ran';
    console.error(`browser test: ${setupError}`);
  }
  fs.writeFileSync(path.join(outDir, 'report.json'), JSON.stringify({ seconds, port, runRoot, setupError, results }, null, 2));
  const passed = results.filter((r) => r.ok).length;
  const failed = notebooks.length - passed + (setupError ? 1 : 0);
  console.log(`browser test took ${seconds} s; screenshots and report.json in ${path.relative(root, outDir)}/`);
  console.log(`browser notebooks: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
