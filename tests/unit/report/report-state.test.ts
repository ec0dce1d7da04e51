/**
 * The resumable main job's bookkeeping (scripts/report-state.ts), in seconds:
 * which report a run continues, which notebooks it skips and why, when a
 * report counts as finished, and what a killed run leaves that the next start
 * clears. The end-to-end kill test of the real smoke job is tests/integration/main-resume.test.ts.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { watchParent } from '../../../lib/runtime/parent-watch';
import {
  beginNotebook, endNotebook, finishReport, isStudyNotebook, latestReportWithTokens, listNotebooks, openReport, OpenOptions, readState, STATE_FILE,
  sweepTempFiles, treeHash, whyRun,
} from '../../../scripts/report-state';

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });

/** A sandbox with three notebooks and a reports folder. */
function world(): { root: string; notebooks: string; reports: string; opts: (o?: Partial<OpenOptions>) => OpenOptions; logs: string[] } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-report-state-'));
  made.push(root);
  const notebooks = path.join(root, 'notebooks');
  fs.mkdirSync(notebooks);
  for (const n of ['00_a', '01_b', '02_c']) fs.writeFileSync(path.join(notebooks, `${n}.ipynb`), `{"cells": [], "name": "${n}"}`);
  fs.writeFileSync(path.join(notebooks, 'scratch.ipynb'), '{}'); // not NN_: not part of the curriculum
  const reports = path.join(root, 'reports');
  const logs: string[] = [];
  return { root, notebooks, reports, logs, opts: (o = {}) => ({ profile: 'smoke', data: 'subset', notebooksDir: notebooks, reportsDir: reports, log: (m) => logs.push(m), ...o }) };
}

const LIB = 'lib-hash-1';

/** Run every notebook of a report that begin says to run, ending each with `status(name)`. */
function runAll(report: string, notebooks: string, lib: string, status: (name: string) => 'ok' | 'failed' | 'kill' = () => 'ok'): { ran: string[]; skipped: string[] } {
  const ran: string[] = [], skipped: string[] = [];
  for (const f of ['00_a', '01_b', '02_c']) {
    const file = path.join(notebooks, `${f}.ipynb`);
    const b = beginNotebook(report, file, lib);
    if (!b.run) { skipped.push(f); continue; }
    ran.push(f);
    const s = status(f);
    if (s === 'kill') break; // killed mid-notebook: no end, nothing after
    endNotebook(report, file, s, 1);
  }
  return { ran, skipped };
}

test('a new report is created, continued after a kill, and skips the notebooks done with unchanged inputs', () => {
  const w = world();
  const dir = openReport(w.opts({ now: new Date(2026, 11, 2, 4, 5, 6) }));
  assert.equal(dir, path.join(w.reports, 'smoke-20261202-040506'));
  const state = readState(dir)!;
  assert.equal(state.profile, 'smoke');
  assert.equal(state.data, 'subset');
  assert.equal(state.finished, false);
  // Killed during the second notebook.
  assert.deepEqual(runAll(dir, w.notebooks, LIB, (n) => (n === '01_b' ? 'kill' : 'ok')), { ran: ['00_a', '01_b'], skipped: [] });
  assert.equal(readState(dir)!.notebooks['01_b'].status, 'running');
  assert.match(whyRun(readState(dir)!, '01_b', LIB)!, /interrupted/);
  // The rerun continues the same report: 00 skipped, 01 and 02 run.
  assert.equal(openReport(w.opts()), dir);
  assert.ok(w.logs.some((m) => m.includes(`continuing report ${dir}`)), w.logs.join('\n'));
  assert.deepEqual(runAll(dir, w.notebooks, LIB), { ran: ['01_b', '02_c'], skipped: ['00_a'] });
  assert.deepEqual(finishReport(dir, LIB), { finished: true, pending: [] });
  // A finished report is not continued: the next run starts a new one.
  const next = openReport(w.opts({ now: new Date(2026, 11, 2, 5, 0, 0) }));
  assert.notEqual(next, dir);
  assert.deepEqual(runAll(next, w.notebooks, LIB), { ran: ['00_a', '01_b', '02_c'], skipped: [] });
});

test('a study notebook is not part of the main job: a finished report stays finished, and --studies runs only it there', () => {
  const w = world();
  const study = path.join(w.notebooks, '03_d_study.ipynb');
  fs.writeFileSync(study, '{"cells": []}');
  assert.ok(isStudyNotebook('03_d_study.ipynb') && !isStudyNotebook('02_c.ipynb'));
  assert.deepEqual(listNotebooks(w.notebooks), ['00_a.ipynb', '01_b.ipynb', '02_c.ipynb']);
  assert.deepEqual(listNotebooks(w.notebooks, true), ['00_a.ipynb', '01_b.ipynb', '02_c.ipynb', '03_d_study.ipynb']);
  const dir = openReport(w.opts());
  runAll(dir, w.notebooks, LIB);
  assert.deepEqual(finishReport(dir, LIB), { finished: true, pending: [] }, 'the study notebook held the main job back');
  // No report holds a token cache yet; this one does once runs/tokenizer-smoke/tokens.safetensors exists.
  assert.equal(latestReportWithTokens('smoke', 'subset', w.reports), '');
  fs.mkdirSync(path.join(dir, 'runs', 'tokenizer-smoke'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'runs', 'tokenizer-smoke', 'tokens.safetensors'), '');
  assert.equal(latestReportWithTokens('smoke', 'subset', w.reports), dir);
  // Without --studies a finished report is left alone; with it, it opens, and (the library changed since) only the study runs.
  assert.equal(openReport(w.opts({ out: dir })), '');
  assert.equal(openReport(w.opts({ out: dir, studies: true })), dir);
  for (const f of ['00_a', '01_b', '02_c']) assert.match(beginNotebook(dir, path.join(w.notebooks, `${f}.ipynb`), 'lib-hash-2').why, /report is finished/);
  assert.equal(beginNotebook(dir, study, 'lib-hash-2').run, true);
  assert.equal(readState(dir)!.finished, true, 'beginning a study notebook reopened the report');
  endNotebook(dir, study, 'failed', 1);
  assert.deepEqual(finishReport(dir, 'lib-hash-2', new Date(), true), { finished: true, pending: ['03_d_study'] });
  assert.equal(beginNotebook(dir, study, 'lib-hash-2').run, true);
  endNotebook(dir, study, 'ok', 1);
  assert.deepEqual(finishReport(dir, 'lib-hash-2', new Date(), true), { finished: true, pending: [] });
});

test('changed inputs run a notebook again, and every notebook after it', () => {
  const w = world();
  const dir = openReport(w.opts());
  runAll(dir, w.notebooks, LIB);
  // The library changed: all run again.
  assert.match(whyRun(readState(dir)!, '00_a', 'lib-hash-2')!, /dist\/lib changed/);
  // Notebook 01 changed: 00 skipped, 01 runs, 02 runs because an earlier notebook ran again.
  fs.appendFileSync(path.join(w.notebooks, '01_b.ipynb'), ' ');
  assert.match(whyRun(readState(dir)!, '01_b', LIB)!, /notebook file changed/);
  const r = runAll(dir, w.notebooks, LIB, () => 'ok');
  assert.deepEqual(r, { ran: ['01_b', '02_c'], skipped: ['00_a'] });
  // A failed notebook runs again, and so does every later one that ran while it was not done.
  runAll(dir, w.notebooks, 'lib-hash-3', (n) => (n === '00_a' ? 'failed' : 'ok'));
  assert.match(whyRun(readState(dir)!, '00_a', 'lib-hash-3')!, /failed last time/);
  assert.equal(finishReport(dir, 'lib-hash-3').finished, false);
  assert.deepEqual(runAll(dir, w.notebooks, 'lib-hash-3'), { ran: ['00_a', '01_b', '02_c'], skipped: [] });
  assert.equal(finishReport(dir, 'lib-hash-3').finished, true);
});

test('--fresh starts a new report; the newest unfinished report of the same profile and dataset is the one continued', () => {
  const w = world();
  const a = openReport(w.opts({ now: new Date(2026, 0, 1, 0, 0, 0) }));
  const b = openReport(w.opts({ fresh: true, now: new Date(2026, 0, 2, 0, 0, 0) }));
  assert.notEqual(a, b);
  const other = openReport(w.opts({ profile: 'default', now: new Date(2026, 0, 3, 0, 0, 0) }));
  const otherData = openReport(w.opts({ data: 'idx:/data/my set', now: new Date(2026, 0, 4, 0, 0, 0) }));
  assert.equal(path.basename(otherData), 'smoke-idx-my_set-20260104-000000');
  assert.equal(readState(otherData)!.data, 'idx:/data/my set', 'the key names the folder');
  assert.equal(openReport(w.opts()), b, 'newest smoke / subset report');
  assert.equal(openReport(w.opts({ profile: 'default' })), other);
  assert.equal(openReport(w.opts({ data: 'idx:/data/my set' })), otherData);
  // Unset: the profile's own dataset (smoke: the shipped subset), whose reports have no dataset in their folder name.
  assert.equal(openReport(w.opts({ data: '' })), b);
  assert.equal(path.basename(b), 'smoke-20260102-000000');
  assert.equal(readState(b)!.data, 'subset');
  assert.throws(() => openReport(w.opts({ data: '../x' })), /ORDERHEAD_DATA/);
  // Same second: a suffix, not the same folder.
  const t = new Date(2026, 0, 5, 0, 0, 0);
  assert.notEqual(openReport(w.opts({ fresh: true, now: t })), openReport(w.opts({ fresh: true, now: t })));
});

test('--out: an unfinished folder is continued, a finished one is left alone, --fresh clears only a report folder', () => {
  const w = world();
  const out = path.join(w.root, 'out');
  assert.equal(openReport(w.opts({ out })), out);
  runAll(out, w.notebooks, LIB, (n) => (n === '00_a' ? 'ok' : 'kill'));
  assert.equal(openReport(w.opts({ out })), out);
  assert.throws(() => openReport(w.opts({ out, profile: 'default' })), /profile smoke/);
  runAll(out, w.notebooks, LIB);
  finishReport(out, LIB);
  assert.equal(openReport(w.opts({ out })), '', 'finished: nothing to continue');
  assert.ok(w.logs.some((m) => m.includes('is finished')));
  fs.writeFileSync(path.join(out, '00_a.ipynb'), '{}');
  assert.equal(openReport(w.opts({ out, fresh: true })), out);
  assert.deepEqual(fs.readdirSync(out), [STATE_FILE], '--fresh cleared the old report');
  // A folder that is not a report: continued as one (old behaviour), but never cleared.
  const mine = path.join(w.root, 'mine');
  fs.mkdirSync(mine);
  fs.writeFileSync(path.join(mine, 'notes.txt'), 'keep');
  assert.throws(() => openReport(w.opts({ out: mine, fresh: true })), /not a report/);
  assert.equal(openReport(w.opts({ out: mine })), mine);
  assert.ok(fs.existsSync(path.join(mine, 'notes.txt')));
});

test('a report a live runner works on is refused; temp files and staging folders of dead writers are swept', () => {
  const w = world();
  const out = path.join(w.root, 'out');
  const runner = spawn('sleep', ['60'], { stdio: 'ignore' }); // stands in for a live runner shell
  try {
    openReport(w.opts({ out, pid: runner.pid }));
    assert.throws(() => openReport(w.opts({ out })), /another runner/);
  } finally {
    runner.kill('SIGKILL');
  }
  const dead = 2 ** 22 + 4321; // above Linux's pid_max default: never a live process
  fs.mkdirSync(path.join(out, 'runs', 'x', 'checkpoints'), { recursive: true });
  fs.writeFileSync(path.join(out, 'runs', 'x', 'checkpoints', `a.safetensors.tmp-${dead}-deadbeef`), 'torn');
  fs.mkdirSync(path.join(out, `00_a.tmp-${dead}-0badc0de`));
  fs.writeFileSync(path.join(out, `00_a.tmp-${dead}-0badc0de`, '00_a.ipynb'), '{"cel');
  fs.writeFileSync(path.join(out, `live.json.tmp-${process.pid}-00000000`), 'mine, still writing');
  assert.deepEqual(sweepTempFiles(out), [`00_a.tmp-${dead}-0badc0de`, path.join('runs', 'x', 'checkpoints', `a.safetensors.tmp-${dead}-deadbeef`)]);
  assert.ok(fs.existsSync(path.join(out, `live.json.tmp-${process.pid}-00000000`)), 'a live writer\'s temp file stays');
});

test('the library hash covers every file by path and content', () => {
  const w = world();
  const lib = path.join(w.root, 'lib');
  fs.mkdirSync(path.join(lib, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(lib, 'a.js'), 'a');
  fs.writeFileSync(path.join(lib, 'sub', 'b.js'), 'b');
  const h = treeHash(lib);
  assert.equal(treeHash(lib), h);
  fs.writeFileSync(path.join(lib, 'sub', 'b.js'), 'c');
  assert.notEqual(treeHash(lib), h);
  fs.writeFileSync(path.join(lib, 'sub', 'b.js'), 'b');
  fs.renameSync(path.join(lib, 'sub', 'b.js'), path.join(lib, 'sub', 'c.js'));
  assert.notEqual(treeHash(lib), h);
  assert.throws(() => treeHash(path.join(w.root, 'missing')), /npm run build/);
});

/** Whether a process is gone (or a zombie nobody reaps: it runs nothing any more). */
function ended(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
}

test('a kernel whose starter is killed ends itself, even while its main thread is busy (parent watch)', { skip: process.platform !== 'linux' && 'Linux only' }, async () => {
  assert.equal(watchParent({}), false, 'no JPY_PARENT_PID: no watch');
  const watch = JSON.stringify(path.join(__dirname, '..', '..', '..', 'lib', 'runtime', 'parent-watch.js'));
  // middle stands in for nbconvert: it starts the "kernel" with JPY_PARENT_PID set to itself, as jupyter_client does.
  const kernel = `require(${watch}).watchParent(process.env, 100); const t = Date.now(); while (Date.now() - t < 20000) {}`;
  const middle = `const c = require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(kernel)}],
    { env: { ...process.env, JPY_PARENT_PID: String(process.pid) }, stdio: 'ignore', detached: true });
    console.log(c.pid); setInterval(() => {}, 1000);`;
  const m = spawn(process.execPath, ['-e', middle], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => m.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(ended(pid), false, 'the kernel runs while its starter does');
  m.kill('SIGKILL');
  const t0 = Date.now();
  while (!ended(pid) && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 50));
  const gone = ended(pid);
  if (!gone) process.kill(pid, 'SIGKILL');
  assert.ok(gone, 'the kernel outlived its starter by 3 s');
});
