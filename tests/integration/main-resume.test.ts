/**
 * The resumable main job, end to end: the smoke job (scripts/run-notebooks.sh
 * --profile smoke into a temp --out) is killed with SIGKILL, its whole process
 * group, at random moments KILLS times (default 5), then run to completion. Its
 * results must equal those of an uninterrupted smoke run, and nothing torn or
 * temporary may remain anywhere under the report.
 *
 * After every kill: no notebook kernel of the report lives on (jupyter_client
 * starts kernels in a session of their own, so the group kill does not reach
 * them; the library's parent watch must end them), and every executed notebook,
 * HTML export, state file and JSON file in the report parses (temp files and
 * staging folders of the killed run are allowed until the end).
 *
 * What is compared with the uninterrupted run (smoke runs are deterministic
 * across processes; two uninterrupted runs differ only in timings, timestamps,
 * absolute paths and hashes of files that hold those):
 *   - every table the notebooks write under runs/ (.csv, .md, .tex: the
 *     evaluation tables), byte for byte;
 *   - every .json under runs/ except config.json and manifest.json (they record
 *     times, hosts, paths and a backbone fingerprint over checkpoint bytes with a
 *     time in the metadata): the stage 3-6 metrics and summaries, the
 *     evaluation outcomes and its cache, the tokenizer's evaluation, the
 *     planner-order cache and the contest summary, with the timing fields
 *     (keys ending in "seconds", savedAt, time) and the fields naming C by its
 *     file fingerprint or path (IDENTITY_KEYS) left out;
 *   - every .safetensors under runs/ (checkpoints, oracle dataset, token
 *     caches, features): the same files, with the same tensors byte for byte
 *     (the metadata holds a time and is left out).
 * Not compared: metrics.jsonl / build-log.jsonl (a time in every row, and steps
 * after the last checkpoint are logged again after a resume; tests/integration/kill-resume.test.ts
 * checks those rows), the executed notebooks and their logs (timings, progress).
 *
 * Slow (the killed job takes about one smoke run plus the re-work after each
 * kill: 310 s measured on our 2 cores with other jobs running; without a
 * reference given, one more smoke run first), so it runs only with
 * ORDERHEAD_MAIN_RESUME_TEST=1, which scripts/test.sh sets after its own
 * smoke run, passing that report as the reference in
 * ORDERHEAD_MAIN_RESUME_REFERENCE (without it the test makes its own
 * uninterrupted run first). ORDERHEAD_KILL_SEED replays a kill sequence;
 * ORDERHEAD_MAIN_RESUME_KILLS sets the number of kills.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ATOMIC_TEMP_RE } from '../../lib/runtime/atomic';
import { repoRoot } from '../../lib/runtime/paths';
import { readSafetensors } from '../../lib/runtime/safetensors';
import { rng, seedFrom } from '../../lib/runtime/seed';
import { kernelsOn, listNotebooks, readState } from '../../scripts/report-state';

const ENABLED = process.env.ORDERHEAD_MAIN_RESUME_TEST === '1';
const KILLS = Number(process.env.ORDERHEAD_MAIN_RESUME_KILLS ?? 5);
const SEED = process.env.ORDERHEAD_KILL_SEED !== undefined ? Number(process.env.ORDERHEAD_KILL_SEED) : Date.now() % 1_000_000;
const root = repoRoot();

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });

interface Attempt { code: number | null; killed: boolean; out: string; seconds: number; killedAt: string }

/**
 * Run the smoke job into `dir` in a process group of its own; with `kill`, SIGKILL
 * the group when kill(line, elapsed ms) says so (checked on every output line and
 * every 100 ms). Resolves when the job has exited.
 */
function runJob(dir: string, kill?: (lines: string[], ms: number) => string | null): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const k of ['ORDERHEAD_RUN_ROOT', 'ORDERHEAD_PROFILE', 'JPY_PARENT_PID']) delete env[k];
    const child = spawn('bash', ['scripts/run-notebooks.sh', '--profile', 'smoke', '--out', dir], {
      cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const t0 = Date.now();
    let out = '', killedAt = '', killed = false;
    const lines = () => out.split('\n').filter(Boolean);
    const check = () => {
      if (!kill || killed) return;
      const why = kill(lines(), Date.now() - t0);
      if (why === null) return;
      killed = true;
      killedAt = `${why} (${((Date.now() - t0) / 1000).toFixed(1)} s; last line: ${lines().at(-1) ?? '-'})`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* exited just now */
      }
    };
    const timer = setInterval(check, 100);
    child.stdout.on('data', (d) => { out += String(d); check(); });
    child.stderr.on('data', (d) => { out += String(d); });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      resolve({ code, killed: killed && signal === 'SIGKILL', out, seconds: (Date.now() - t0) / 1000, killedAt });
    });
  });
}

/** Every path under `dir` (files and folders), relative. */
function walk(dir: string): { files: string[]; dirs: string[] } {
  const files: string[] = [], dirs: string[] = [];
  const go = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? path.join(rel, e.name) : e.name;
      if (e.isDirectory()) { dirs.push(r); go(r); } else files.push(r);
    }
  };
  go('');
  return { files: files.sort(), dirs: dirs.sort() };
}

const isTemp = (rel: string) => rel.split(path.sep).some((part) => ATOMIC_TEMP_RE.test(part) || /\.tmp\b|partial/i.test(part));

/** Everything in the report parses; temp files and staging folders only before the end. */
function checkReport(dir: string, final: boolean): void {
  if (!fs.existsSync(dir)) return;
  const { files, dirs } = walk(dir);
  for (const rel of [...dirs, ...files]) {
    if (isTemp(rel)) {
      assert.ok(!final, `a temp file or staging folder was left behind: ${rel}`);
      continue;
    }
    const full = path.join(dir, rel);
    if (rel.endsWith('.ipynb')) {
      const nb = JSON.parse(fs.readFileSync(full, 'utf8')) as { cells?: unknown[] };
      assert.ok(Array.isArray(nb.cells) && nb.cells.length > 0, `${rel}: no cells`);
    } else if (rel.endsWith('.html')) {
      assert.match(fs.readFileSync(full, 'utf8').slice(-200), /<\/html>\s*$/, `${rel} is cut short`);
    } else if (rel.endsWith('.json')) {
      assert.doesNotThrow(() => JSON.parse(fs.readFileSync(full, 'utf8')), `${rel} does not parse`);
    } else if (rel.endsWith('.safetensors')) {
      assert.doesNotThrow(() => readSafetensors(full), `${rel} does not load`);
    }
  }
}

/** Per file: keys that name a checkpoint by its file fingerprint or path (planner-order cache, contest summary), left out like manifest.json's. */
const IDENTITY_KEYS: Record<string, string[]> = { 'planner-orders.json': ['backbone'], 'contest.json': ['checkpointC', 'checkpointCBySeed', 'plannerOrders'] };

/** Timing fields: left out of the comparison. */
const TIMING_KEY = /seconds$|^savedAt$|^time$/i;
function withoutTimings(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutTimings);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => !TIMING_KEY.test(k)).map(([k, x]) => [k, withoutTimings(x)]));
  return v;
}

/** The deterministic results of a report (see the header), by path under runs/. */
function results(report: string): Map<string, string> {
  const runs = path.join(report, 'runs');
  const out = new Map<string, string>();
  for (const rel of walk(runs).files) {
    // The crossover study (notebook 09, study-<profile>/) is not part of the main job: the reference run may hold it.
    if (rel.split(path.sep)[0].startsWith('study-')) continue;
    const full = path.join(runs, rel);
    const base = path.basename(rel);
    if (/\.(csv|md|tex)$/.test(base)) out.set(rel, fs.readFileSync(full, 'utf8'));
    else if (base.endsWith('.json') && base !== 'config.json' && base !== 'manifest.json') {
      const doc = withoutTimings(JSON.parse(fs.readFileSync(full, 'utf8'))) as Record<string, unknown>;
      // Identities over checkpoint bytes (a time in their metadata) or absolute paths: the orders and budgets they describe are compared.
      for (const k of IDENTITY_KEYS[base] ?? []) delete doc[k];
      // Paths inside the report (the on-policy rounds' planner files) name the report's own folder: compared relative to it.
      out.set(rel, JSON.stringify(doc).split(runs).join('<runs>'));
    } else if (base.endsWith('.safetensors')) {
      const { tensors } = readSafetensors(full);
      const h = crypto.createHash('sha256');
      for (const name of Object.keys(tensors).sort()) {
        const t = tensors[name];
        h.update(`${name}:${t.dtype}:${t.shape.join('x')}:`).update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
      out.set(rel, `tensors ${h.digest('hex')}`);
    }
  }
  return out;
}

const NOTEBOOKS = listNotebooks(path.join(root, 'notebooks')).map((f) => f.replace(/\.ipynb$/, ''));

test(`the smoke main job killed (SIGKILL, whole process group) ${KILLS} times at random moments resumes to the uninterrupted results, with nothing torn left`, {
  skip: ENABLED ? false : 'slow (two smoke runs): set ORDERHEAD_MAIN_RESUME_TEST=1 (scripts/test.sh does)',
  timeout: 30 * 60_000,
}, async (t) => {
  const sandbox = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-main-resume-'));
  made.push(sandbox);

  // The uninterrupted reference: the test suite's own smoke run when it is given and finished, else one made here.
  let reference = process.env.ORDERHEAD_MAIN_RESUME_REFERENCE ? path.resolve(root, process.env.ORDERHEAD_MAIN_RESUME_REFERENCE) : '';
  const refState = reference ? readState(reference) : null;
  if (!refState || !refState.finished || refState.profile !== 'smoke') {
    if (reference) t.diagnostic(`${reference} is not a finished smoke report: making a reference run`);
    reference = path.join(sandbox, 'reference');
    const ref = await runJob(reference);
    assert.equal(ref.code, 0, `the uninterrupted smoke run failed:\n${ref.out}`);
    t.diagnostic(`reference run: ${ref.seconds.toFixed(0)} s`);
  } else {
    t.diagnostic(`reference: ${reference} (the test suite's smoke run)`);
  }
  const expected = results(reference);
  for (const must of ['eval-smoke/eval-main.csv', 'eval-smoke/eval-outcomes.json', 'planner-smoke/stage6-summary.json', 'tokenizer-smoke/tokens.safetensors']) {
    assert.ok(expected.has(must), `the reference lacks runs/${must}: the comparison would miss it`);
  }

  // The killed job. The kills are spread over the whole job: kill k comes when the job's time so
  // far (all attempts together) reaches the k-th of KILLS sorted random points of the reference's
  // duration (or a few seconds into the attempt when that point has passed already, re-work after
  // a kill costs time). Some kills instead come shortly after the job printed the start or the end
  // of a notebook, so they also land in the state bookkeeping, the kernel start and the staging /
  // rename of the outputs.
  const dir = path.join(sandbox, 'killed');
  const r = rng(seedFrom(SEED, 'main-resume'));
  const refSeconds = Object.values(readState(reference)!.notebooks).reduce((s, e) => s + (e.seconds ?? 0), 0);
  // 0.7: the reference may have run on a busier machine than this run (then the job finishes before
  // the last kills; the diagnostics say so).
  const targets = Array.from({ length: KILLS }, () => r.next() * 0.7 * refSeconds * 1000).sort((x, y) => x - y);
  const log: string[] = [];
  let kills = 0;
  let total = 0;
  let fin: Attempt | undefined;
  for (let k = 0; k < KILLS; k++) {
    const byEvent = r.next() < 0.3;
    const delay = byEvent ? Math.floor(r.next() * 2500) : Math.max(targets[k] - total * 1000, 2000 + r.next() * 6000);
    const nth = 1 + Math.floor(r.next() * 3);
    let armedAt = -1;
    const a = await runJob(dir, (lines, ms) => {
      if (!byEvent) return ms >= delay ? `at ${(delay / 1000).toFixed(1)} s into the attempt` : null;
      if (armedAt < 0 && lines.filter((l) => /^    (running:|ok in )/.test(l)).length >= nth) armedAt = ms;
      return armedAt >= 0 && ms >= armedAt + delay ? `${delay} ms after progress line ${nth}` : null;
    });
    total += a.seconds;
    if (!a.killed) {
      // The job outran the kill (a fast machine): nothing left to interrupt.
      assert.equal(a.code, 0, `the job failed:\n${a.out}`);
      log.push(`attempt ${k + 1}: finished before the kill`);
      fin = a;
      break;
    }
    kills++;
    // No kernel may go on working on the report (the library's parent watch ends them within a second).
    const runs = path.join(dir, 'runs');
    const deadline = Date.now() + 5000;
    let left = kernelsOn(runs);
    while ((left.live.length || left.orphans.length) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 100));
      left = kernelsOn(runs);
    }
    assert.deepEqual(left, { orphans: [], live: [] }, `notebook kernels outlived the killed job by 5 s: ${JSON.stringify(left)} (seed ${SEED}; ${log.join('; ')}; attempt ${k + 1}: killed ${a.killedAt})`);
    try {
      checkReport(dir, false);
    } catch (err) {
      throw new Error(`after attempt ${k + 1} (killed ${a.killedAt}; seed ${SEED}): ${(err as Error).message}`);
    }
    const state = readState(dir);
    const ok = state ? NOTEBOOKS.filter((n) => state.notebooks[n]?.status === 'ok').length : 0;
    log.push(`attempt ${k + 1}: killed ${a.killedAt}; ${ok} of ${NOTEBOOKS.length} notebooks ok`);
  }
  if (!fin) {
    fin = await runJob(dir);
    total += fin.seconds;
    log.push(`final run: ${fin.seconds.toFixed(0)} s`);
  }
  t.diagnostic(`seed ${SEED}; ${log.join('; ')}; killed job in all ${total.toFixed(0)} s`);
  assert.equal(fin.code, 0, `the resumed job failed:\n${fin.out}`);
  assert.ok(kills >= 1, `no kill landed (${log.join('; ')})`);
  assert.match(fin.out, /report finished/);
  if (kills > 0) assert.match(fin.out, new RegExp(`continuing report ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

  // Nothing torn or temporary anywhere; every notebook ok with its executed notebook and HTML export.
  checkReport(dir, true);
  const state = readState(dir)!;
  assert.equal(state.finished, true);
  for (const n of NOTEBOOKS) {
    assert.equal(state.notebooks[n]?.status, 'ok', `${n} is not ok`);
    for (const ext of ['ipynb', 'html', 'log']) assert.ok(fs.existsSync(path.join(dir, `${n}.${ext}`)), `${n}.${ext} is missing`);
  }

  // The results equal the uninterrupted run's.
  const got = results(dir);
  assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), 'the files under runs/ differ from the uninterrupted run\'s');
  const differ = [...expected.keys()].filter((k) => got.get(k) !== expected.get(k));
  assert.deepEqual(differ, [], `these differ from the uninterrupted run: ${differ.join(', ')}`);

  // A finished report is not continued: with --out it is left alone.
  const again = await runJob(dir);
  assert.equal(again.code, 0);
  assert.match(again.out, /nothing to do/);
  assert.doesNotMatch(again.out, /==> /);
});
