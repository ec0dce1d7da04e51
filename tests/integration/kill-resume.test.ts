/**
 * Kill and resume: Stage 1 and tokenizer training run in a child process
 * (tests/fixtures/train-child.ts) that is killed with SIGKILL at random
 * moments (during start-up, a step or a checkpoint save), then allowed to
 * finish. After every kill, every file in the run folder must parse (config,
 * manifest, metrics rows, each checkpoint loads); at the end no temp file may
 * remain, every step has its metrics row (a step re-run after a kill logs the
 * same loss again), and the final weights equal those of an uninterrupted run
 * of the same job, byte for byte.
 *
 * The kill delays are random and printed as test diagnostics; set
 * ORDERHEAD_KILL_SEED to replay a failing sequence. The default run kills each
 * job 3 times; ORDERHEAD_HEAVY_TESTS=1 kills 10 times.
 *
 * The same for the planner (Stage 3, trainPlanner: the best planner's weights
 * byte-equal to an uninterrupted run's), the router (Stage 6, trainRouter) and
 * the evaluation (evaluateSettings with a cacheDir: after the kills, every
 * cache file parses, and the resumed outcomes equal an uninterrupted
 * evaluation's, timings aside).
 *
 * The oracle dataset CLI has its own kill test (tests/unit/oracle/dataset.test.ts).
 */
import { after, test, TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../helpers';
import { readJsonLines, ATOMIC_TEMP_RE } from '../../lib/runtime/atomic';
import { latestCheckpoint, loadCheckpoint } from '../../lib/runtime/checkpoint';
import { readSafetensors } from '../../lib/runtime/safetensors';
import { openRun } from '../../lib/runtime/run';
import { rng, seedFrom } from '../../lib/runtime/seed';
import { disposeGPT } from '../../lib/backbone/gpt';
import { trainStage1 } from '../../lib/backbone/stage1';
import { loadTokenizer, trainTokenizer } from '../../lib/tokenizer';
import { PLANNER_KILL_STEPS, ROUTER_KILL_STEPS, stage1Job, tokenizerJob } from '../fixtures/train-child';
import { evalWorld, PJ_SHAPE, plannerJob, routerJob, withoutTimings } from '../fixtures/planner-jobs';
import { bestPlannerCheckpoint, disposePlanner, disposeRouter, loadPlanner, loadRouter, trainPlanner, trainRouter } from '../../lib/planner';
import { EVAL_CACHE_FORMAT } from '../../lib/eval/cache';
import { evaluateSettings, EvalSettingEvent } from '../../lib/eval';

const CHILD = path.join(__dirname, '..', 'fixtures', 'train-child.js');
const HEAVY = process.env.ORDERHEAD_HEAVY_TESTS === '1';
const KILLS = HEAVY ? 10 : 3;
const SEED = process.env.ORDERHEAD_KILL_SEED !== undefined ? Number(process.env.ORDERHEAD_KILL_SEED) : Date.now() % 1_000_000;

const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-kill-'));
  made.push(d);
  return d;
}

interface ChildRun { killed: boolean; lastStep: number; code: number | null; stderr: string; killedAt: string }

/**
 * Start the child; kill it `delayMs` after it printed its first step (or after
 * start when `early`); resolve when it has exited. A child that finishes first is not killed.
 */
function runChild(args: string[], delayMs: number, early: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', stderr = '', lastStep = 0, timer: NodeJS.Timeout | undefined, killedAt = '';
    const arm = () => {
      timer ??= setTimeout(() => { killedAt = `step ${lastStep}`; child.kill('SIGKILL'); }, delayMs);
    };
    if (early) arm();
    child.stdout.on('data', (d) => {
      out += String(d);
      for (const m of out.matchAll(/step (\d+)\n/g)) lastStep = Number(m[1]);
      if (lastStep > 0) arm();
    });
    child.stderr.on('data', (d) => { stderr += String(d); });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ killed: signal === 'SIGKILL', lastStep, code, stderr, killedAt });
    });
  });
}

/** Every file of a run folder, relative paths. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else out.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Check that every file in the run folder parses. Temp files of a killed
 * writer are tolerated until the end (`final`), when none may remain. Returns
 * the metrics rows and how many lines were unreadable (a kill mid-append).
 */
function checkRunFolder(dir: string, final: boolean): { rows: Record<string, unknown>[]; skipped: number } {
  let rows: Record<string, unknown>[] = [];
  let skipped = 0;
  for (const rel of files(dir)) {
    const full = path.join(dir, rel);
    if (ATOMIC_TEMP_RE.test(path.basename(rel))) {
      assert.ok(!final, `a temp file was left behind: ${rel}`);
      continue;
    }
    if (rel.endsWith('.json')) {
      assert.doesNotThrow(() => JSON.parse(fs.readFileSync(full, 'utf8')), `${rel} does not parse`);
    } else if (rel === 'metrics.jsonl') {
      const read = readJsonLines(full, { warn: () => {} });
      rows = read.rows;
      skipped = read.skipped.length;
    } else if (rel.endsWith('.safetensors')) {
      const ck = loadCheckpoint(full); // validates structure and finiteness
      tf.dispose(Object.values(ck.weights));
    } else {
      assert.fail(`unexpected file in the run folder: ${rel}`);
    }
  }
  return { rows, skipped };
}

/** Weights of a checkpoint as bytes, by tensor name (metadata holds a time, so is left out). */
function weightBytes(file: string): Record<string, Buffer> {
  const { tensors } = readSafetensors(file);
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

/** Training rows by step: every step 1..steps present, repeats of a step (re-run after a kill) identical to the reference. */
function checkMetrics(rows: Record<string, unknown>[], reference: Record<string, unknown>[], steps: number, fields: string[]): void {
  const ref = new Map(reference.filter((r) => typeof r.loss === 'number').map((r) => [r.step as number, r]));
  const seen = new Set<number>();
  for (const row of rows) {
    if (typeof row.loss !== 'number') continue;
    const step = row.step as number;
    seen.add(step);
    for (const f of fields) assert.equal(row[f], ref.get(step)?.[f], `step ${step}: ${f} differs from the uninterrupted run`);
  }
  for (let s = 1; s <= steps; s++) assert.ok(seen.has(s), `no metrics row for step ${s}`);
}

/**
 * Kill the child KILLS times at random moments, checking the folder each time
 * (`check`, default checkRunFolder), then let it finish. `plant` is where a
 * torn temp file of a dead writer is put before the last run (relative to the
 * folder; default in checkpoints/).
 */
async function killAndFinish(t: TestContext, label: string, args: string[], runDir: string,
  opts: { check?: typeof checkRunFolder; plant?: string } = {}): Promise<{ rows: Record<string, unknown>[] }> {
  const check = opts.check ?? checkRunFolder;
  const r = rng(seedFrom(SEED, label));
  let interrupted = 0, skippedLines = 0;
  const log: string[] = [];
  // Up to 3 extra kills (after the first step) when none of the KILLS landed during training, e.g. all during start-up.
  // A job that finished before any kill landed (it outran the delay on a fast machine) starts again from an empty
  // folder with half the delay window: nothing was interrupted, so nothing is lost by starting over.
  let window = 350;
  for (let k = 0; k < KILLS || (interrupted === 0 && k < KILLS + 3); k++) {
    const early = r.next() < 0.25 && k < KILLS;
    const delay = Math.floor(early ? r.next() * 300 : r.next() * window);
    const res = await runChild(args, delay, early);
    log.push(`${res.killed ? `killed at ${res.killedAt}` : `finished (exit ${res.code})`} (${early ? 'after start' : 'after first step'} + ${delay} ms)`);
    if (!res.killed) {
      assert.equal(res.code, 0, `the child failed: ${res.stderr}`);
      if (interrupted > 0 || k + 1 >= KILLS + 3) break;
      fs.rmSync(runDir, { recursive: true, force: true });
      skippedLines = 0;
      window /= 2;
      continue;
    }
    if (res.lastStep > 0) interrupted++;
    if (fs.existsSync(runDir)) skippedLines = check(runDir, false).skipped;
  }
  t.diagnostic(`${label}: seed ${SEED}; ${log.join('; ')}`);
  assert.ok(interrupted >= 1, `no kill landed during training (${log.join('; ')}): make the job longer`);
  // What a kill in the middle of a checkpoint write leaves (rare by chance, so planted): the resumed run must clear it.
  const deadPid = 2 ** 22 + 4321; // above Linux's default pid_max (2^22): never a live process
  const plant = path.join(runDir, opts.plant ?? 'checkpoints', `x-step000099.safetensors.tmp-${deadPid}-deadbeef`);
  fs.mkdirSync(path.dirname(plant), { recursive: true });
  fs.writeFileSync(plant, 'torn');
  const fin = await runChild(args, 1e9, false);
  assert.ok(!fin.killed && fin.code === 0, `the resumed run failed: ${fin.stderr}`);
  const { rows, skipped } = check(runDir, true);
  assert.ok(skipped <= KILLS && skipped >= skippedLines, `${skipped} unreadable metrics lines`);
  return { rows };
}

test(`Stage 1 training killed (SIGKILL) ${KILLS} times at random moments resumes to the uninterrupted result, with no torn files`, async (t) => {
  await useWasm();
  const root = sandbox();
  const { cfg, model, data } = stage1Job();
  const ref = trainStage1(root, 'reference', cfg, data, model);
  disposeGPT(ref.model);
  const { rows } = await killAndFinish(t, 'stage1', ['stage1', root, 'killed'], path.join(root, 'killed'));
  const refRows = ref.run.readMetrics();
  checkMetrics(rows, refRows, cfg.steps, ['loss', 'gradNorm', 'lr', 'r', 'validationBits']);
  // The same resume checkpoints and the same one validation-selected best-step file (a kill between a best file's write and
  // the removal of the previous one leaves two; the resumed run's next improvement clears it).
  const names = (dir: string) => fs.readdirSync(path.join(dir, 'checkpoints')).sort();
  assert.deepEqual(names(path.join(root, 'killed')), names(ref.run.dir), 'the checkpoints differ from the uninterrupted run\'s');
  assert.equal(names(ref.run.dir).filter((f) => f.startsWith('best-')).length, 1);
  for (const prefix of ['stage1', 'best']) {
    const a = weightBytes(latestCheckpoint(path.join(root, 'killed', 'checkpoints'), prefix)!.path);
    const b = weightBytes(latestCheckpoint(path.join(ref.run.dir, 'checkpoints'), prefix)!.path);
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const k of Object.keys(a)) assert.ok(a[k].equals(b[k]), `${prefix}: weight ${k} differs from the uninterrupted run`);
  }
});

test(`tokenizer training killed (SIGKILL) ${KILLS} times at random moments resumes to the uninterrupted result, with no torn files`, async (t) => {
  await useWasm();
  const root = sandbox();
  const job = tokenizerJob();
  const ref = await trainTokenizer({ ...job, runDir: path.join(root, 'reference') });
  const refPrint = ref.tokenizer.fingerprint();
  ref.tokenizer.dispose();
  const dir = path.join(root, 'killed');
  const { rows } = await killAndFinish(t, 'tokenizer', ['tokenizer', dir], dir);
  checkMetrics(rows, ref.run.readMetrics(), job.config.steps, ['loss', 'rec_mse', 'grad_norm', 'codes_used']);
  const a = weightBytes(latestCheckpoint(path.join(dir, 'checkpoints'), 'tokenizer')!.path);
  const b = weightBytes(ref.checkpoint);
  for (const k of Object.keys(b)) assert.ok(a[k]?.equals(b[k]), `tensor ${k} differs from the uninterrupted run`);
  const resumed = loadTokenizer(dir);
  assert.equal(resumed.fingerprint(), refPrint);
  resumed.dispose();
});

/** The names of a checkpoints folder and the weight bytes of its newest `<prefix>` checkpoint, for two run folders. */
function sameCheckpoints(a: string, b: string, prefixes: string[]): void {
  const names = (dir: string) => fs.readdirSync(path.join(dir, 'checkpoints')).sort();
  assert.deepEqual(names(a), names(b), 'the checkpoints differ from the uninterrupted run\'s');
  for (const prefix of prefixes) {
    const x = weightBytes(latestCheckpoint(path.join(a, 'checkpoints'), prefix)!.path);
    const y = weightBytes(latestCheckpoint(path.join(b, 'checkpoints'), prefix)!.path);
    assert.deepEqual(Object.keys(x).sort(), Object.keys(y).sort(), `${prefix}: tensor names`);
    for (const k of Object.keys(y)) assert.ok(x[k].equals(y[k]), `${prefix}: tensor ${k} differs from the uninterrupted run`);
  }
}

test(`planner training (Stage 3) killed (SIGKILL) ${KILLS} times at random moments resumes to the uninterrupted best planner, with no torn files`, async (t) => {
  await useWasm();
  const root = sandbox();
  const { cfg, data, grid } = plannerJob(PLANNER_KILL_STEPS);
  const ref = trainPlanner(root, 'reference', cfg, data, grid);
  disposePlanner(ref.planner);
  const dir = path.join(root, 'killed');
  const { rows } = await killAndFinish(t, 'planner', ['planner', root, 'killed'], dir);
  checkMetrics(rows, ref.run.readMetrics(), cfg.steps, ['loss', 'lr', 'valLoss', 'valTop1']);
  // best-step<N> (what later stages load) and the last planner-step checkpoint (weights, AdamW state): bytes equal.
  sameCheckpoints(dir, ref.run.dir, ['best', 'planner']);
  const best = bestPlannerCheckpoint(dir, 'the kill test');
  assert.equal(path.basename(best), path.basename(ref.bestPath));
  const loaded = loadPlanner(best, { shape: PJ_SHAPE, backboneFingerprint: data.backboneFingerprint });
  assert.equal(loaded.step, ref.bestStep);
  disposePlanner(loaded.planner);
});

test(`router training (Stage 6) killed (SIGKILL) ${KILLS} times at random moments resumes to the uninterrupted best router, with no torn files`, async (t) => {
  await useWasm();
  const root = sandbox();
  const { cfg, data, planner } = routerJob(ROUTER_KILL_STEPS);
  const ref = trainRouter(root, 'reference', cfg, data, planner);
  disposeRouter(ref.router);
  disposePlanner(planner);
  const dir = path.join(root, 'killed');
  const { rows } = await killAndFinish(t, 'router', ['router', root, 'killed'], dir);
  checkMetrics(rows, ref.run.readMetrics(), cfg.steps, ['loss', 'lr', 'valLoss', 'valAcc']);
  sameCheckpoints(dir, ref.run.dir, ['best', 'router']);
  disposeRouter(loadRouter(latestCheckpoint(path.join(dir, 'checkpoints'), 'best')!.path, { shape: { numBlocks: 4 } }));
});

/** Every file of an evaluation cache folder parses as a cache file; temp files of a killed writer only before the end. */
function checkCacheFolder(dir: string, final: boolean): { rows: Record<string, unknown>[]; skipped: number } {
  for (const rel of files(dir)) {
    if (ATOMIC_TEMP_RE.test(path.basename(rel))) {
      assert.ok(!final, `a temp file was left behind: ${rel}`);
      continue;
    }
    assert.ok(rel.endsWith('.json') && !rel.includes(path.sep), `unexpected file in the cache folder: ${rel}`);
    const doc = JSON.parse(fs.readFileSync(path.join(dir, rel), 'utf8')) as { format: string; outcome: { name: string } };
    assert.equal(doc.format, EVAL_CACHE_FORMAT, rel);
  }
  return { rows: [], skipped: 0 };
}

test(`evaluation killed (SIGKILL) ${KILLS} times at random moments resumes from its cache to the uninterrupted outcomes, with no torn files`, async (t) => {
  await useWasm();
  const world = evalWorld();
  try {
    const ref = await evaluateSettings(world.settings(), world.ctx, world.cfg);
    const dir = path.join(sandbox(), 'eval-cache');
    await killAndFinish(t, 'eval', ['eval', dir], dir, { check: checkCacheFolder, plant: '.' });
    assert.equal(files(dir).length, 4, `one file per evaluated setting: ${files(dir)}`);
    // The finished cache answers every setting; the outcomes are the uninterrupted ones.
    const events: EvalSettingEvent[] = [];
    const resumed = await evaluateSettings(world.settings(), world.ctx, world.cfg, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
    assert.deepEqual(events.map((e) => e.source), ['cached', 'cached', 'cached', 'missing', 'cached']);
    assert.deepStrictEqual(resumed.map(withoutTimings), ref.map(withoutTimings));
  } finally {
    world.dispose();
  }
});

test('a run folder left by a kill during its creation (empty subfolders, a temp config) is taken over, not refused', () => {
  const root = sandbox();
  const dir = path.join(root, 'run');
  fs.mkdirSync(path.join(dir, 'checkpoints'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'artifacts'));
  const deadPid = 2 ** 22 + 12345; // above Linux's pid_max default of 2^22: never a live process
  fs.writeFileSync(path.join(dir, `config.json.tmp-${deadPid}-0badc0de`), '{"a"');
  fs.writeFileSync(path.join(dir, 'checkpoints', `stage1-step000002-r1.00.safetensors.tmp-${deadPid}-0badc0de`), 'torn');
  const run = openRun({ root, stage: 'stage1', name: 'run', config: { a: 1 } });
  assert.deepEqual(files(dir), ['config.json', 'manifest.json', 'metrics.jsonl']);
  assert.deepEqual(run.config, { a: 1 });
  // A folder with anything else in it is still not taken over.
  const other = path.join(root, 'other');
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
  assert.throws(() => openRun({ root, stage: 'stage1', name: 'other', config: { a: 1 } }), /not a run folder/);
});
