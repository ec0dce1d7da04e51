/**
 * Resumable evaluation (evaluateSettings with a cacheDir, lib/eval/cache.ts):
 * a crash part-way (simulated by a progress callback that throws) and a rerun
 * give outcomes equal to an uninterrupted evaluation; a cache written for
 * another config, planner or backbone is ignored (recomputed), never mixed;
 * an unreadable cache file is recomputed and replaced; the exact JSON
 * encoding round-trips bit for bit. The SIGKILL variant is in
 * tests/integration/kill-resume.test.ts; a cacheDir that is a file is in the
 * 'bad input' tests at the end of this file.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { useWasm } from '../../helpers';
import { createGPT, disposeGPT } from '../../../lib/backbone/gpt';
import { createPlanner, disposePlanner } from '../../../lib/planner';
import { decodeExact, encodeExact, evalCacheFile, evalCacheIdentity } from '../../../lib/eval/cache';
import { blockRarRasterSetting, EvalSetting, evaluateSettings, EvalSettingEvent, orderHeadSetting, SettingOutcome } from '../../../lib/eval';
import { Progress } from '../../../lib/runtime/progress';
import { evalWorld, EvalWorld, PJ_GEO, PJ_PLANNER, PJ_SHAPE, withoutTimings } from '../../fixtures/planner-jobs';

const made: string[] = [];
let world: EvalWorld | undefined;
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  world?.dispose();
});
function sandbox(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-evalcache-'));
  made.push(d);
  return d;
}

let reference: SettingOutcome[] | undefined;
/** The world and its uninterrupted, uncached outcomes (computed once). */
async function setup(): Promise<{ w: EvalWorld; ref: SettingOutcome[] }> {
  await useWasm();
  world ??= evalWorld();
  reference ??= await evaluateSettings(world.settings(), world.ctx, world.cfg);
  return { w: world, ref: reference };
}

const sources = (events: EvalSettingEvent[]) => events.map((e) => `${e.name}: ${e.source}`);

test('a crash mid-evaluation (the progress callback throws in the third setting), then a rerun: finished settings load, the rest compute, outcomes equal the uninterrupted ones', async () => {
  const { w, ref } = await setup();
  const dir = path.join(sandbox(), 'cache');
  const before = tf.memory().numTensors;
  let ticks = 0;
  const crashing = (o: { total: number; label: string }): Progress => ({
    tick: () => { if (o.label === 'eval OrderHead R=0' && ++ticks === 3) throw new Error('simulated crash'); },
    done: () => {},
    count: 0,
  });
  await assert.rejects(evaluateSettings(w.settings(), w.ctx, w.cfg, crashing, { cacheDir: dir }), /simulated crash/);
  assert.equal(tf.memory().numTensors, before, 'the crashed evaluation leaked tensors');
  assert.equal(fs.readdirSync(dir).length, 2, `two finished settings stored: ${fs.readdirSync(dir)}`);
  const events: EvalSettingEvent[] = [];
  const resumed = await evaluateSettings(w.settings(), w.ctx, w.cfg, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.deepEqual(sources(events), [
    'block-RAR + raster order: cached', 'block-RAR + random order: cached', 'OrderHead R=0: computed', 'adaptive budget: missing', 'OrderHead R=1: computed',
  ]);
  assert.deepStrictEqual(resumed.map(withoutTimings), ref.map(withoutTimings));
  assert.equal(fs.readdirSync(dir).length, 4);
  assert.equal(tf.memory().numTensors, before);
});

test('a cache written with another config, planner or backbone is ignored and recomputed, never mixed; the old files stay and are used again', async () => {
  const { w, ref } = await setup();
  const dir = path.join(sandbox(), 'cache');
  const pick = (all: ReturnType<EvalWorld['settings']>) => [all[0], all[2]]; // block-RAR raster, OrderHead R=0
  await evaluateSettings(pick(w.settings()), w.ctx, w.cfg, undefined, { cacheDir: dir });
  // Another config (eval seeds): every setting recomputes, into its own files; the outcome is that of an uncached run.
  const other = { ...w.cfg, seeds: [2, 3] };
  const events: EvalSettingEvent[] = [];
  const b = await evaluateSettings(pick(w.settings()), w.ctx, other, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.deepEqual(events.map((e) => e.source), ['computed', 'computed']);
  assert.equal(fs.readdirSync(dir).length, 4, 'the first config\'s files are kept beside the new ones');
  const bRef = await evaluateSettings(pick(w.settings()), w.ctx, other);
  assert.deepStrictEqual(b.map(withoutTimings), bRef.map(withoutTimings));
  assert.notDeepStrictEqual(b.map(withoutTimings), [ref[0], ref[2]].map(withoutTimings));
  // Back to the first config: loaded, equal to the uninterrupted reference.
  events.length = 0;
  const a = await evaluateSettings(pick(w.settings()), w.ctx, w.cfg, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.deepEqual(events.map((e) => e.source), ['cached', 'cached']);
  assert.deepStrictEqual(a.map(withoutTimings), [ref[0], ref[2]].map(withoutTimings));
  // A retrained planner (other weights, same name and R): only the planner setting is recomputed.
  const retrained = createPlanner({ ...PJ_PLANNER, seed: 99 }, PJ_SHAPE);
  events.length = 0;
  await evaluateSettings([blockRarRasterSetting(w.backbone, PJ_GEO), orderHeadSetting(w.backbone, retrained, PJ_GEO, 0)], w.ctx, w.cfg, undefined,
    { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.deepEqual(events.map((e) => e.source), ['cached', 'computed']);
  // Another backbone: its keys differ, whatever the names.
  const otherBackbone = createGPT(w.backbone.cfg, 11);
  const k1 = evalCacheIdentity(blockRarRasterSetting(w.backbone, PJ_GEO), w.ctx, w.cfg).key;
  const k2 = evalCacheIdentity(blockRarRasterSetting(otherBackbone, PJ_GEO), w.ctx, w.cfg).key;
  assert.notEqual(k1, k2);
  // And another context (test split): also another key.
  const k3 = evalCacheIdentity(blockRarRasterSetting(w.backbone, PJ_GEO), { ...w.ctx, testLabels: w.ctx.testLabels.map((c) => (c + 1) % 3) }, w.cfg).key;
  assert.notEqual(k1, k3);
  disposePlanner(retrained);
  disposeGPT(otherBackbone);
});

test('an unreadable cache file (truncated, or another setting\'s copied over it) is recomputed and atomically replaced', async () => {
  const { w, ref } = await setup();
  const dir = path.join(sandbox(), 'cache');
  const raster = () => [w.settings()[0]];
  await evaluateSettings(raster(), w.ctx, w.cfg, undefined, { cacheDir: dir });
  const file = evalCacheFile(dir, 'block-RAR + raster order', evalCacheIdentity(w.settings()[0] as EvalSetting, w.ctx, w.cfg).key);
  const good = fs.readFileSync(file);
  fs.writeFileSync(file, good.subarray(0, good.length >> 1));
  const events: EvalSettingEvent[] = [];
  const again = await evaluateSettings(raster(), w.ctx, w.cfg, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.equal(events[0].source, 'computed');
  assert.match(events[0].ignored!, /does not parse/);
  assert.deepStrictEqual(again.map(withoutTimings), [ref[0]].map(withoutTimings));
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).outcome.metrics, JSON.parse(good.toString('utf8')).outcome.metrics);
  assert.deepEqual(fs.readdirSync(dir), [path.basename(file)], 'no temp file left');
  // Another file's content under this name (its key and identity do not match the name's): not used either.
  const r0 = w.settings()[2];
  await evaluateSettings([r0], w.ctx, w.cfg, undefined, { cacheDir: dir });
  fs.copyFileSync(evalCacheFile(dir, 'OrderHead R=0', evalCacheIdentity(r0 as EvalSetting, w.ctx, w.cfg).key), file);
  events.length = 0;
  const third = await evaluateSettings(raster(), w.ctx, w.cfg, undefined, { cacheDir: dir, onSetting: (e) => events.push(e) });
  assert.match(events[0].ignored!, /another setting/);
  assert.deepStrictEqual(third.map(withoutTimings), [ref[0]].map(withoutTimings));
});

test('the exact JSON encoding round-trips typed arrays bit for bit, NaN, ±Infinity, -0 and undefined fields', () => {
  const value = {
    f64: Float64Array.from([1 / 3, NaN, -0, 1e-300]), f32: Float32Array.from([0.1, -Infinity]), i32: Int32Array.from([-1, 2 ** 31 - 1]), u8: Uint8Array.from([0, 255]),
    nums: [NaN, Infinity, -Infinity, -0, 0, 0.1 + 0.2, Number.MAX_VALUE], nested: { a: undefined, b: [{ c: null }] },
    sub: new Float64Array(new Float64Array([9, 8, 7]).buffer, 8, 2), // a view with an offset
  };
  const back = decodeExact(JSON.parse(JSON.stringify(encodeExact(value)))) as typeof value;
  assert.deepStrictEqual(back, { ...value, sub: Float64Array.from([8, 7]) });
  assert.ok(Object.is(back.nums[3], -0) && Object.is(back.f64[2], -0));
  assert.ok('a' in back.nested);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { rejectsOH, untouched } from '../../helpers';

describe('bad input', () => {
  test('an evaluation cacheDir that is a file, or an invalid eval config with a cacheDir, is refused before anything is written', async () => {
    await useWasm();
    const root = sandbox();
    const file = path.join(root, 'eval-cache');
    fs.writeFileSync(file, 'a file, not a folder');
    const world = evalWorld();
    await untouched(root, async () => {
      await rejectsOH(() => evaluateSettings(world.settings(), world.ctx, world.cfg, undefined, { cacheDir: file }), `${file} (cacheDir)`,
        'cannot create the evaluation cache folder', 'writable folder');
      await rejectsOH(() => evaluateSettings(world.settings(), world.ctx, { ...world.cfg, seeds: [0] }, undefined, { cacheDir: path.join(root, 'cache') }),
        'eval.seeds', 'at least 2 distinct');
    });
    world.dispose();
  });
});
