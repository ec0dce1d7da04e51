/**
 * The resumable main job's bookkeeping: which report folder a run of
 * scripts/run-notebooks.sh works in, and which of its notebooks are done.
 *
 * A report folder holds `report-state.json` (written atomically: temp file +
 * rename), with the profile and dataset of the report and, per notebook, its
 * status (running, ok, failed) and the inputs it ran with:
 *
 *   - the notebook file's content hash,
 *   - the hash of the built library dist/lib (every file, by path and content),
 *   - the profile and the dataset,
 *   - the completion of the notebooks before it (the keys of those that were ok).
 *
 * A notebook is skipped when it is ok and those inputs are unchanged; a
 * notebook found `running` was interrupted (the runner was killed) and runs
 * again, its stages resuming from their checkpoints under <report>/runs. When
 * every notebook is ok and up to date the report is marked finished and is not
 * continued any more: the next run starts a new report.
 *
 * CLI (used by scripts/run-notebooks.sh; messages on stderr, answers on stdout):
 *   data   --profile P [--data D]  -> the dataset key (D or the profile's default; idx:DIR with DIR absolute)
 *   open   --profile P --data D --notebooks DIR --reports DIR [--out DIR] [--fresh] [--studies] [--pid N]
 *          -> the report folder (created, or the one continued; --studies: a finished one too, for its study notebooks)
 *   begin  REPORT NOTEBOOK.ipynb  -> "run <why>" (recorded as running) or "skip <why>"
 *   end    REPORT NOTEBOOK.ipynb ok|failed SECONDS
 *   finish REPORT [--studies]     -> "finished ..." or "unfinished ..."
 *   latest --profile P --data D --reports DIR  -> the newest report (finished or not) whose runs hold the profile's
 *          token cache (notebook 01's), or nothing: where `npm run study` runs the crossover study
 *
 * Study notebooks (`NN_*_study.ipynb`, isStudyNotebook) are not part of the
 * main job: listed only with --studies, they never keep a report unfinished.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ATOMIC_TEMP_RE, pidAlive as pidOnMachine, writeFileAtomic } from '../lib/runtime/atomic';
import { OrderHeadError } from '../lib/runtime/errors';
import { checkoutCommit } from '../lib/runtime/paths';
import { ProfileName } from '../lib/runtime/profile';
import { PROFILE_DEFAULT_DATA, parseData } from '../lib/data/profile-data';
import { tokenizerRunDir } from '../lib/tokenizer/config';
import { TOKEN_CACHE_FILE } from '../lib/tokenizer/cache';

export const STATE_FILE = 'report-state.json';
export const STATE_FORMAT = 'orderhead-report-state/1';

export type NotebookStatus = 'running' | 'ok' | 'failed';

/** What a notebook ran with; its hash is the notebook's key. */
export interface NotebookInputs {
  notebook: string;
  lib: string;
  profile: string;
  data: string;
  /** Hash of the [name, key] pairs of the earlier notebooks that were ok when it started. */
  before: string;
}

export interface NotebookEntry {
  status: NotebookStatus;
  key: string;
  inputs: NotebookInputs;
  /** The earlier notebooks that were ok when it started (names), for the messages. */
  beforeNames: string[];
  startedAt: string;
  finishedAt?: string;
  seconds?: number;
  /** The checkout's commit when it started (checkoutCommit: "+changes" when tracked files differed). */
  commit?: string;
}

export interface ReportState {
  format: string;
  profile: string;
  data: string;
  created: string;
  finished: boolean;
  finishedAt?: string;
  /** The runner (a shell pid) working on the report now, or last. */
  pid?: number;
  /** Where the notebooks come from (absolute), so begin/end/finish need no option. */
  notebooksDir: string;
  notebooks: Record<string, NotebookEntry>;
}

const sha256 = (data: string | Uint8Array) => crypto.createHash('sha256').update(data).digest('hex');

/**
 * A study notebook (`NN_name_study.ipynb`, e.g. 09_regime_study): run on a
 * report's runs after the main job, never part of it (a report is finished
 * without it); scripts/run-notebooks.sh runs it with --studies (npm run
 * study, and the test suite's smoke run).
 */
export const isStudyNotebook = (file: string): boolean => /_study(\.ipynb)?$/.test(file);

/** The notebooks of the curriculum (the main job), in order: `NN_name.ipynb`; with `studies`, the study notebooks too. */
export function listNotebooks(dir: string, studies = false): string[] {
  return fs.readdirSync(dir).filter((f) => /^\d\d_.*\.ipynb$/.test(f) && (studies || !isStudyNotebook(f))).sort();
}

/** Hash of a folder tree: every file's relative path and content, in sorted order. */
export function treeHash(dir: string): string {
  if (!fs.existsSync(dir)) {
    throw new OrderHeadError('the built library is missing', dir, 'run `npm run build` first (scripts/setup.sh does)');
  }
  const h = crypto.createHash('sha256');
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) h.update(`${r}\0${sha256(fs.readFileSync(path.join(dir, r)))}\n`);
    }
  };
  walk('');
  return h.digest('hex');
}

/** The built library the notebooks load: <checkout>/dist/lib (this file is dist/scripts/report-state.js). */
export function libDir(): string {
  return path.resolve(__dirname, '..', 'lib');
}

export function statePath(report: string): string {
  return path.join(report, STATE_FILE);
}

/** The state of a report folder, or null when it has none (or it does not parse: then it is not ours). */
export function readState(report: string): ReportState | null {
  let text: string;
  try {
    text = fs.readFileSync(statePath(report), 'utf8');
  } catch {
    return null;
  }
  try {
    const s = JSON.parse(text) as ReportState;
    return s && s.format === STATE_FORMAT ? s : null;
  } catch {
    return null;
  }
}

export function writeState(report: string, state: ReportState): void {
  writeFileAtomic(statePath(report), `${JSON.stringify(state, null, 1)}\n`);
}

const pidAlive = (pid: number | undefined): boolean => !!pid && pidOnMachine(pid);

/** A process's environment (Linux /proc; null when unreadable: another user's, gone, or not Linux). */
function procEnv(pid: number): Record<string, string> | null {
  try {
    const env: Record<string, string> = {};
    for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    return env;
  } catch {
    return null;
  }
}

function procParent(pid: number): number | null {
  try {
    // "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after the last ')'.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/**
 * Notebook kernels working on run root `runs` (their ORDERHEAD_RUN_ROOT),
 * split into orphans (the runner that started them is gone: JPY_PARENT_PID is
 * dead or no longer their parent) and live ones. Linux only (empty elsewhere).
 */
export function kernelsOn(runs: string): { orphans: number[]; live: number[] } {
  const orphans: number[] = [], live: number[] = [];
  let pids: number[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return { orphans, live };
  }
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const env = procEnv(pid);
    if (!env || !env.JPY_PARENT_PID || !env.ORDERHEAD_RUN_ROOT || path.resolve(env.ORDERHEAD_RUN_ROOT) !== runs) continue;
    const parent = Number(env.JPY_PARENT_PID);
    (procParent(pid) === parent && pidAlive(parent) ? live : orphans).push(pid);
  }
  return { orphans, live };
}

/**
 * Before a report is continued: SIGKILL the kernels a killed runner left behind
 * (they would keep training into the report's runs; the library's parent watch
 * ends them within a second, this does not wait for it), and refuse while a
 * live runner's kernel works on it.
 */
function endLeftoverKernels(report: string, runs: string, log: (m: string) => void): void {
  const { orphans, live } = kernelsOn(runs);
  if (live.length) {
    throw new OrderHeadError(`a notebook kernel (pid ${live.join(', ')}) of another run is working on this report`, report, 'wait for that run to finish or stop it, or pass --fresh / another --out');
  }
  if (!orphans.length) return;
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && orphans.some((p) => fs.existsSync(`/proc/${p}`) && procParent(p) !== null && !isZombie(p))) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
  log(`ended ${orphans.length} notebook kernel(s) left running by the killed run (pid ${orphans.join(', ')})`);
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * Remove temp files (`<name>.tmp-<pid>-<hex>`, writeFileAtomic's) and staging folders (the same
 * name, the runner's nbconvert output) of dead writers anywhere under `dir`; returns their relative paths.
 */
export function sweepTempFiles(dir: string): string[] {
  const removed: string[] = [];
  const walk = (rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? path.join(rel, e.name) : e.name;
      const m = ATOMIC_TEMP_RE.exec(e.name);
      if (!m || pidAlive(Number(m[2]))) {
        if (e.isDirectory()) walk(r);
        continue;
      }
      try {
        fs.rmSync(path.join(dir, r), { recursive: true, force: true });
        removed.push(r);
      } catch {
        /* gone already */
      }
    }
  };
  walk('');
  return removed.sort();
}

/** The inputs notebook `name` would run with now, given the state of the notebooks before it. */
export function currentInputs(state: ReportState, name: string, lib: string): { inputs: NotebookInputs; key: string; beforeNames: string[] } {
  const order = listNotebooks(state.notebooksDir).map((f) => f.replace(/\.ipynb$/, ''));
  const before: [string, string][] = [];
  for (const n of order) {
    if (n === name) break;
    const e = state.notebooks[n];
    if (e?.status === 'ok') before.push([n, e.key]);
  }
  const inputs: NotebookInputs = {
    notebook: sha256(fs.readFileSync(path.join(state.notebooksDir, `${name}.ipynb`))),
    lib,
    profile: state.profile,
    data: state.data,
    before: sha256(JSON.stringify(before)),
  };
  return { inputs, key: sha256(JSON.stringify(inputs)), beforeNames: before.map(([n]) => n) };
}

/** Why notebook `name` must run (null: it is done with unchanged inputs). */
export function whyRun(state: ReportState, name: string, lib: string): string | null {
  const e = state.notebooks[name];
  if (!e) return 'not run yet in this report';
  if (e.status === 'running') return 'interrupted last time (its stages resume from their checkpoints)';
  if (e.status === 'failed') return 'failed last time';
  const now = currentInputs(state, name, lib);
  if (now.key === e.key) return null;
  const changed: string[] = [];
  if (now.inputs.notebook !== e.inputs.notebook) changed.push('the notebook file changed');
  if (now.inputs.lib !== e.inputs.lib) changed.push('the built library dist/lib changed');
  if (now.inputs.profile !== e.inputs.profile || now.inputs.data !== e.inputs.data) changed.push('the profile or dataset changed');
  if (now.inputs.before !== e.inputs.before) changed.push('an earlier notebook was run again or is not done since');
  return changed.join('; ') || 'its inputs changed';
}

export interface OpenOptions {
  profile: string;
  data: string;
  notebooksDir: string;
  reportsDir: string;
  out?: string;
  fresh?: boolean;
  /** Open a finished report too: its study notebooks run on its runs (the main-job notebooks stay as they are). */
  studies?: boolean;
  pid?: number;
  now?: Date;
  log?: (message: string) => void;
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Summary of a state: "3 of 9 notebooks ok". */
function progress(state: ReportState): string {
  const names = listNotebooks(state.notebooksDir);
  const ok = names.filter((f) => state.notebooks[f.replace(/\.ipynb$/, '')]?.status === 'ok').length;
  return `${ok} of ${names.length} notebooks ok`;
}

/**
 * Choose the report folder: an explicit `out` (continued when it holds an
 * unfinished report of this profile and dataset), else the newest unfinished
 * report of this profile and dataset under `reportsDir`, else a new
 * `<reportsDir>/<profile>[-<data>]-<time>`. `fresh` always starts a new report
 * (with `out`: clears that folder, if it is a report folder or empty). Stale temp
 * files of killed writers anywhere in a continued report are removed.
 * Returns the absolute folder, with the state recorded (and the runner's pid).
 */
export function openReport(o: OpenOptions): string {
  const log = o.log ?? ((m: string) => console.error(m));
  const now = o.now ?? new Date();
  const notebooksDir = path.resolve(o.notebooksDir);
  // The dataset's key (fashion-mnist, subset, idx:<absolute DIR>) is what a report is continued by.
  const data = dataKey(o.profile, o.data);
  const fresh = (): ReportState => ({
    format: STATE_FORMAT, profile: o.profile, data: data, created: now.toISOString(), finished: false, notebooksDir, notebooks: {},
  });
  const claim = (dir: string, state: ReportState): string => {
    // The runner shell calling us (our parent) may have claimed it already; any other live one has it.
    if (state.pid !== o.pid && state.pid !== process.ppid && pidAlive(state.pid)) {
      throw new OrderHeadError(`another runner (pid ${state.pid}) is working on this report`, dir, 'wait for it to finish, or stop it first; or pass --fresh / another --out');
    }
    endLeftoverKernels(dir, path.resolve(process.env.ORDERHEAD_RUN_ROOT || path.join(dir, 'runs')), log);
    state.pid = o.pid;
    state.notebooksDir = notebooksDir;
    const removed = sweepTempFiles(dir);
    if (removed.length) log(`removed ${removed.length} temp file(s) of the killed run: ${removed.join(', ')}`);
    writeState(dir, state);
    return dir;
  };
  const create = (dir: string): string => {
    fs.mkdirSync(dir, { recursive: true });
    log(`new report: ${dir} (profile ${o.profile}, dataset ${data})`);
    return claim(dir, fresh());
  };

  if (o.out) {
    const dir = path.resolve(o.out);
    const exists = fs.existsSync(dir);
    const entries = exists ? fs.readdirSync(dir) : [];
    const state = exists ? readState(dir) : null;
    if (!exists || entries.length === 0) return create(dir);
    if (!state) {
      if (o.fresh) {
        throw new OrderHeadError('--fresh would delete a folder that is not a report of this runner (it has no readable report-state.json)', dir, 'remove it yourself, or choose another --out');
      }
      log(`continuing folder ${dir}: no ${STATE_FILE} in it, so every notebook runs (their stages resume from checkpoints under runs/)`);
      return claim(dir, fresh());
    }
    if (state.profile !== o.profile || state.data !== data) {
      throw new OrderHeadError(`the report there is for profile ${state.profile} and dataset ${state.data}, not ${o.profile} and ${data}`, dir, 'choose another --out, or the matching profile and dataset');
    }
    if (o.fresh) {
      if (state.pid !== o.pid && state.pid !== process.ppid && pidAlive(state.pid)) {
        throw new OrderHeadError(`another runner (pid ${state.pid}) is working on this report`, dir, 'stop it first');
      }
      log(`--fresh: clearing ${dir} for a new report`);
      for (const e of entries) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
      return create(dir);
    }
    if (state.finished && !o.studies) {
      log(`report ${dir} is finished (${progress(state)}); nothing to continue`);
      return '';
    }
    if (state.finished) {
      log(`report ${dir} is finished (${progress(state)}); running its study notebooks on its runs`);
      return claim(dir, state);
    }
    log(`continuing report ${dir} (${progress(state)}; --fresh starts it again)`);
    return claim(dir, state);
  }

  const reportsDir = path.resolve(o.reportsDir);
  if (!o.fresh && fs.existsSync(reportsDir)) {
    const candidates = fs.readdirSync(reportsDir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => ({ dir: path.join(reportsDir, e.name), state: readState(path.join(reportsDir, e.name)) }))
      .filter((c): c is { dir: string; state: ReportState } => !!c.state && c.state.profile === o.profile && c.state.data === data && !c.state.finished)
      .sort((a, b) => (a.state.created < b.state.created ? 1 : a.state.created > b.state.created ? -1 : a.dir < b.dir ? 1 : -1));
    if (candidates.length) {
      const { dir, state } = candidates[0];
      log(`continuing report ${dir} (the newest unfinished ${o.profile} report on ${data}: ${progress(state)}; --fresh starts a new one)`);
      return claim(dir, state);
    }
  }
  const base = `${o.profile}${data === PROFILE_DEFAULT_DATA[o.profile as ProfileName] ? '' : `-${dataSlug(data)}`}-${stamp(now)}`;
  let dir = path.join(reportsDir, base);
  for (let i = 2; fs.existsSync(dir); i++) dir = path.join(reportsDir, `${base}-${i}`);
  return create(dir);
}

/**
 * The newest report of `profile` and dataset `data` under `reportsDir`, finished or not, whose runs hold the
 * profile's token cache (notebook 01's): where a study runs, next to the main job that made its tokens. '' when none.
 */
export function latestReportWithTokens(profile: string, data: string, reportsDir: string): string {
  const dir = path.resolve(reportsDir);
  if (!fs.existsSync(dir)) return '';
  const key = dataKey(profile, data);
  const found = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory())
    .map((e) => ({ dir: path.join(dir, e.name), state: readState(path.join(dir, e.name)) }))
    .filter((c): c is { dir: string; state: ReportState } => !!c.state && c.state.profile === profile && c.state.data === key &&
      fs.existsSync(path.join(tokenizerRunDir(path.join(c.dir, 'runs'), profile as ProfileName), TOKEN_CACHE_FILE)))
    .sort((a, b) => (a.state.created < b.state.created ? 1 : a.state.created > b.state.created ? -1 : a.dir < b.dir ? 1 : -1));
  return found.length ? found[0].dir : '';
}

/** The key of dataset value `value` (empty: the profile's default) for `profile`; an unknown value is refused, naming ORDERHEAD_DATA. */
export function dataKey(profile: string, value: string | undefined): string {
  return parseData(value, profile as ProfileName, 'ORDERHEAD_DATA (or --data)').key;
}

/** A dataset key as part of a folder name: idx:/x/my-set -> idx-my-set. */
function dataSlug(key: string): string {
  return key.startsWith('idx:') ? `idx-${path.basename(key.slice(4)).replace(/[^A-Za-z0-9._-]+/g, '_')}` : key;
}

function mustState(report: string): ReportState {
  const s = readState(report);
  if (!s) throw new OrderHeadError(`no readable ${STATE_FILE}`, report, 'open the report first (scripts/run-notebooks.sh does)');
  return s;
}

/** Decide whether notebook `file` runs; when it does, record it as running with its inputs. */
export function beginNotebook(report: string, file: string, lib = treeHash(libDir()), now = new Date()): { run: boolean; why: string } {
  const state = mustState(report);
  const name = path.basename(file).replace(/\.ipynb$/, '');
  // A finished report's main job stays as it ran (a study run opens it for its study notebooks only).
  if (state.finished && !isStudyNotebook(name)) {
    return { run: false, why: 'the report is finished: its main-job notebooks are not run again (--fresh starts a new report)' };
  }
  const why = whyRun(state, name, lib);
  if (why === null) {
    const e = state.notebooks[name];
    return { run: false, why: `done${e.finishedAt ? ` at ${e.finishedAt}` : ''}, inputs unchanged (notebook, dist/lib, profile, dataset, earlier notebooks)` };
  }
  const cur = currentInputs(state, name, lib);
  state.notebooks[name] = { status: 'running', key: cur.key, inputs: cur.inputs, beforeNames: cur.beforeNames, startedAt: now.toISOString(), commit: checkoutCommit() };
  if (!isStudyNotebook(name)) state.finished = false;
  writeState(report, state);
  return { run: true, why };
}

/** Record how notebook `file` ended. */
export function endNotebook(report: string, file: string, status: 'ok' | 'failed', seconds: number, now = new Date()): void {
  const state = mustState(report);
  const name = path.basename(file).replace(/\.ipynb$/, '');
  const e = state.notebooks[name];
  if (!e) throw new OrderHeadError(`notebook ${name} was never begun`, statePath(report), 'call begin first');
  e.status = status;
  e.finishedAt = now.toISOString();
  e.seconds = seconds;
  writeState(report, state);
}

/**
 * Mark the report finished when every main-job notebook is ok with current
 * inputs; says which are not (with `studies`, the study notebooks not ok too,
 * which never hold a report back). A report finished before stays finished:
 * only a study notebook can have run on it since.
 */
export function finishReport(report: string, lib = treeHash(libDir()), now = new Date(), studies = false): { finished: boolean; pending: string[] } {
  const state = mustState(report);
  const wasFinished = state.finished;
  const pending: string[] = [];
  for (const f of listNotebooks(state.notebooksDir, studies)) {
    const name = f.replace(/\.ipynb$/, '');
    if (!isStudyNotebook(name) && wasFinished) continue; // a finished main job is as it ran (beginNotebook never reruns it)
    const why = isStudyNotebook(name) ? (state.notebooks[name]?.status === 'ok' ? null : 'not ok') : whyRun(state, name, lib);
    if (why !== null) pending.push(name);
  }
  state.finished = wasFinished || pending.every(isStudyNotebook);
  if (state.finished && !wasFinished) state.finishedAt = now.toISOString();
  state.pid = undefined;
  writeState(report, state);
  return { finished: state.finished, pending };
}

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  const flags: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--fresh') flags.fresh = true;
    else if (a === '--studies') flags.studies = true;
    else if (a.startsWith('--')) flags[a.slice(2)] = rest[++i];
    else positional.push(a);
  }
  const str = (k: string) => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  switch (cmd) {
    case 'data':
      process.stdout.write(`${dataKey(str('profile') ?? 'default', str('data'))}\n`);
      return 0;
    case 'open': {
      const dir = openReport({
        profile: str('profile') ?? 'default', data: str('data') ?? '', notebooksDir: str('notebooks') ?? 'notebooks',
        reportsDir: str('reports') ?? 'reports', out: str('out') || undefined, fresh: flags.fresh === true, studies: flags.studies === true,
        pid: str('pid') ? Number(str('pid')) : undefined,
      });
      process.stdout.write(`${dir}\n`);
      return 0;
    }
    case 'begin': {
      const r = beginNotebook(positional[0], positional[1]);
      process.stdout.write(`${r.run ? 'run' : 'skip'} ${r.why}\n`);
      return 0;
    }
    case 'end':
      endNotebook(positional[0], positional[1], positional[2] === 'ok' ? 'ok' : 'failed', Number(positional[3] ?? 0));
      return 0;
    case 'finish': {
      const r = finishReport(positional[0], undefined, undefined, flags.studies === true);
      const studies = r.pending.filter(isStudyNotebook), main = r.pending.filter((n) => !isStudyNotebook(n));
      process.stdout.write(r.finished ? `finished: every main-job notebook ok${studies.length ? ` (study notebook(s) not ok: ${studies.join(', ')})` : ''}\n`
        : `unfinished (${main.length} notebook(s) to run: ${main.join(', ')}; run again to continue)\n`);
      return 0;
    }
    case 'latest':
      process.stdout.write(`${latestReportWithTokens(str('profile') ?? 'default', str('data') ?? '', str('reports') ?? 'reports')}\n`);
      return 0;
    default:
      console.error(`report-state: unknown command '${cmd}' (data, open, begin, end, finish, latest)`);
      return 2;
  }
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 2;
  }
}
