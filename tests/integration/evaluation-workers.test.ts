/**
 * Notebook 08 on two worker threads gives the outcomes of one thread: on the
 * smoke report the test suite has just made (scripts/test.sh passes its run
 * root in ORDERHEAD_EVAL_WORKERS_RUNS; skipped without one), three settings
 * (two without a planner, one with the planner reading C over another
 * backbone) are evaluated by evaluateSettingsOnWorkers into a fresh cache and
 * by evaluateSettings in this thread without one, and compared field by field
 * (timings aside). Also: a second call starts no worker, and a worker's error
 * names the worker and the setting.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasm } from '../helpers';
import { curriculumRuns } from '../../lib/curriculum';
import { contestSettings, evaluateSettingsOnWorkers } from '../../lib/evaluation';
import { loadDataset, padTo } from '../../lib/data/dataset';
import { loadTokenizer, loadTokenCache } from '../../lib/tokenizer';
import { loadOracleDataset } from '../../lib/oracle';
import { evalConfig, evaluateSettings, featureNetOutputs, isMissing, realFeatureStats, SettingOutcome, SettingResult } from '../../lib/eval';
import { loadFeatureNet } from '../../lib/eval/feature-net-train';
import { profileDataset } from '../../lib/data/profile-data';
import { OrderHeadError } from '../../lib/runtime/errors';

const RUNS = process.env.ORDERHEAD_EVAL_WORKERS_RUNS;
const NAMES = ['raster baseline', 'block-RAR + random order', 'OrderHead R=0'];

/** An outcome without its timings (the only field that depends on where it ran). */
const untimed = (o: SettingOutcome) => JSON.parse(JSON.stringify(o, (k, v) => (k === 'seconds' ? undefined : v instanceof Int32Array || v instanceof Float32Array ? Array.from(v) : v)));

test('evaluateSettingsOnWorkers equals evaluateSettings in one thread on the smoke report; a failing setting is named', { skip: RUNS ? false : 'set ORDERHEAD_EVAL_WORKERS_RUNS to a smoke run root (scripts/test.sh does)' }, async () => {
  await useWasm();
  const runs = curriculumRuns(RUNS!, 'smoke');
  const ds = loadOracleDataset(runs.oracle.dir);
  const inputs = { checkpointC: ds.manifest.backbone.path, backboneFingerprint: ds.manifest.backbone.fingerprint, geo: ds.geo };
  const tokenizer = loadTokenizer(runs.tokenizer.dir), cache = loadTokenCache(runs.tokenizer.dir);
  const featureNet = loadFeatureNet(runs.featureNet.dir);
  const test = loadDataset(profileDataset('test', 'smoke'));
  const ctx = {
    tokenizer, featureNet, realStats: realFeatureStats(featureNetOutputs(featureNet, padTo(test, tokenizer.config.imageSize).images), { prRows: 1000 }),
    testTokens: cache.test.tokens, testLabels: cache.test.labels, geo: ds.geo, tokenizerDir: runs.tokenizer.dir, featureNetDir: runs.featureNet.dir,
  };
  const cfg = evalConfig('smoke');
  const only = (n: string) => NAMES.includes(n);
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-eval-workers-'));
  const events: string[] = [];
  const onWorkers = await evaluateSettingsOnWorkers(contestSettings(runs, inputs, only), ctx, cfg, undefined,
    { cacheDir, runs: { runRoot: RUNS!, profile: 'smoke', inputs }, onSetting: (e) => events.push(`${e.name}: ${e.source}`) });
  assert.deepEqual(events, NAMES.map((n) => `${n}: computed`));
  const inThread = await evaluateSettings(contestSettings(runs, inputs, only), ctx, cfg);
  assert.equal(onWorkers.length, NAMES.length);
  onWorkers.forEach((o, i) => {
    assert.ok(!isMissing(o), `${o.name} is missing`);
    assert.equal(o.name, NAMES[i]);
    assert.deepEqual(untimed(o), untimed(inThread[i]), `${o.name}: workers and one thread differ`);
  });
  assert.ok((onWorkers[2] as SettingResult).seeds[0].blockOrders.length > 0);
  // A second call finds everything cached and starts no worker.
  const againEvents: string[] = [];
  const again = await evaluateSettingsOnWorkers(contestSettings(runs, inputs, only), ctx, cfg, undefined,
    { cacheDir, runs: { runRoot: RUNS!, profile: 'smoke', inputs }, onSetting: (e) => againEvents.push(`${e.name}: ${e.source}`) });
  assert.deepEqual(againEvents, NAMES.map((n) => `${n}: cached`), 'a worker computed a setting that was already cached');
  assert.deepEqual(again.map(untimed), onWorkers.map(untimed));
  // A worker whose setting cannot be built stops the evaluation with an error naming the worker, the setting and the fix.
  const broken = { ...inputs, checkpointC: path.join(cacheDir, 'no-such-C.safetensors') };
  await assert.rejects(evaluateSettingsOnWorkers(contestSettings(runs, inputs, (n) => n === 'OrderHead R=0' || n === 'block-RAR + raster order'), ctx, cfg, undefined,
    { cacheDir: fs.mkdtempSync(path.join(os.tmpdir(), 'oh-eval-workers-')), runs: { runRoot: RUNS!, profile: 'smoke', inputs: broken } }),
  (e: unknown) => e instanceof OrderHeadError && /evaluation worker/.test(e.where) && /OrderHead R=0/.test(`${e.where} ${e.problem}`));
});
