/** Evaluation settings, trajectory metrics and tables on a tiny random backbone, a fake decoder and a tiny feature net. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { throwsOH, useWasm, randArray } from '../../helpers';
import { fakeDecode, tinyFeatureNet } from '../../fixtures/planner-jobs';
import { gptConfig } from '../../../lib/backbone/config';
import { createGPT, GPT } from '../../../lib/backbone/gpt';
import { blockGeometry } from '../../../lib/order';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { rng } from '../../../lib/runtime/seed';
import { PRIMARY_READING } from '../../../lib/oracle/utility';
import { featureNetOutputs } from '../../../lib/eval';
import { FEATURE_NET_CAVEAT } from '../../../lib/eval/metrics';
import { fid, featureStats, frechetToReference, referenceStats } from '../../../lib/eval/frechet';
import { BACKGROUND_FILL } from '../../../lib/eval/recognizability';
import {
  EvalConfig, EvalContext, SettingOutcome, SettingResult, balancedClasses, blockRarRandomSetting, blockRarRasterSetting, evalConfig, evaluateSetting,
  EVAL_METRICS, isMissing, missingSetting, rasterBaselineSetting, realFeatureStats, settingOrMissing,
} from '../../../lib/eval';
import {
  evalResultsTable, formatCell, oracleComparisonTable, parseCsv, readTableCsv, tableCsv, tableLatex,
  tableMarkdown, trajectoryResultsTable, writeOutcomesJson, writeResultTable,
} from '../../../lib/eval/tables';
import { futureLossFigure, metricBarsFigure, recognizabilityCurvesFigure, remainingLossFigure } from '../../../lib/eval/figures';

const CFG = gptConfig('tiny', { initStd: 0.5 }); // 4x4 tokens, vocab 16, 3 classes
const GEO = blockGeometry({ gridH: 4, gridW: 4, blockH: 2, blockW: 2 }); // 4 blocks
const SIDE = 16; // 4x4 pixels per token


let fixture: { model: GPT; ctx: EvalContext; cfg: EvalConfig } | undefined;
async function setup() {
  await useWasm();
  if (fixture) return fixture;
  const model = createGPT(CFG, 3);
  const net = tinyFeatureNet();
  const r = rng('eval-settings-test');
  const nTest = 48;
  const testTokens = Int32Array.from({ length: nTest * 16 }, () => r.int(16));
  const testLabels = Int32Array.from({ length: nTest }, (_, i) => i % 3);
  const realStats = realFeatureStats(featureNetOutputs(net, fakeDecode(testTokens)));
  const cfg = evalConfig('smoke', {
    samplesPerSeed: 10, seeds: [0, 1], sampleBatch: 4, nllImages: 6, isSplits: 2, bootstrapReps: 50, setBootstrapReps: 3,
    trajectory: { images: 2, bootstrapReps: 20 },
  });
  fixture = { model, ctx: { tokenizer: { decode: fakeDecode }, featureNet: net, realStats, testTokens, testLabels, geo: GEO }, cfg };
  return fixture;
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-evalsuite-'));

let outcomes: SettingOutcome[] | undefined;
async function evaluated(): Promise<SettingOutcome[]> {
  if (outcomes) return outcomes;
  const { model, ctx, cfg } = await setup();
  const settings = [rasterBaselineSetting(model), blockRarRandomSetting(model, GEO, 7)];
  outcomes = [];
  for (const s of settings) outcomes.push(await evaluateSetting(s, ctx, cfg));
  return outcomes;
}

test('frechetToReference equals fid with the reference statistics precomputed', () => {
  const d = 6, a = randArray(200 * d, 'ref-a'), b = randArray(150 * d, 'ref-b').map((v) => 0.7 * v + 0.3);
  const direct = fid(b, a, d);
  const fast = frechetToReference(referenceStats(a, d), featureStats(b, d));
  assert.ok(Math.abs(fast - direct) < 1e-9 * Math.max(1, direct), `${fast} vs ${direct}`);
});

test('parseCsv: quoted fields with commas, doubled quotes and line breaks, empty cells, CRLF or LF, strings kept as written', () => {
  const rows = [['setting', 'fid_mean', 'note'], ['a, "b"', '12.5000000000000001', 'two\r\nlines'], ['', '', ''], ['c', '-0', 'NaN']];
  const crlf = 'setting,fid_mean,note\r\n"a, ""b""",12.5000000000000001,"two\r\nlines"\r\n,,\r\nc,-0,NaN\r\n';
  assert.deepEqual(parseCsv(crlf), rows);
  const lf = 'setting,fid_mean,note\n"a, ""b""",12.5000000000000001,"two\r\nlines"\n,,\nc,-0,NaN';
  assert.deepEqual(parseCsv(lf), rows, 'LF, no final newline');
  assert.deepEqual(parseCsv(''), []);
  throwsOH(() => parseCsv('a,"b\r\nc,d\r\n'), 'parseCsv(text)', 'not valid CSV');
});

test('evalConfig: profile sizes, shared sampling settings, and field-named errors', () => {
  const smoke = evalConfig('smoke'), def = evalConfig('default'), full = evalConfig('full');
  assert.ok(smoke.samplesPerSeed < def.samplesPerSeed && def.samplesPerSeed < full.samplesPerSeed, 'profiles grow smoke < default < full');
  for (const c of [smoke, def, full]) {
    assert.ok(c.seeds.length >= 2);
    assert.deepEqual([c.temperature, c.topK, c.topP, c.cfgScale], [1, 0, 1, 1]);
    assert.equal(c.fill, BACKGROUND_FILL);
  }
  // Remaining-loss curves on many images, the per-step oracle comparison on a few; the primary reading.
  assert.ok(def.trajectory.images >= 64 && full.trajectory.images >= 256 && smoke.trajectory.images <= def.trajectory.images);
  for (const c of [smoke, def, full]) assert.ok(c.trajectory.oracleImages >= 1 && c.trajectory.oracleImages <= c.trajectory.images);
  assert.equal(evalConfig('default', { trajectory: { images: 8 } }).trajectory.reading, PRIMARY_READING);
  throwsOH(() => evalConfig('default', { trajectory: { images: 3 } }), 'eval.trajectory.oracleImages');
  assert.equal(evalConfig('default', { trajectory: { images: 0 } }).trajectory.images, 0, 'images 0 skips the trajectory metrics');
  throwsOH(() => evalConfig('smoke', { seeds: [0] }), 'eval.seeds');
  throwsOH(() => evalConfig('smoke', { samplesPerSeed: 4, isSplits: 10 }), 'eval.isSplits');
  throwsOH(() => evalConfig('smoke', { recognizabilityFractions: [0.1, 1] }), 'eval.recognizabilityFractions');
  const counts = new Int32Array(3);
  for (const c of balancedClasses(10, 3, 5)) counts[c]++;
  assert.deepEqual(Array.from(counts).sort(), [3, 3, 4]);
});

test('evaluateSetting: 2 settings x 2 seeds end to end, finite numbers with lo <= mean <= hi, no leaked tensors', async () => {
  const { model, ctx, cfg } = await setup();
  const before = tf.memory().numTensors;
  const res = await evaluated();
  assert.equal(tf.memory().numTensors, before, 'evaluateSetting leaked tensors');
  for (const o of res) {
    assert.ok(!isMissing(o));
    const r = o as SettingResult;
    for (const k of EVAL_METRICS) {
      const s = r.metrics[k];
      assert.ok(Number.isFinite(s.mean) && Number.isFinite(s.lo) && Number.isFinite(s.hi), `${r.name} ${k}: ${JSON.stringify(s)}`);
      assert.ok(s.lo <= s.mean && s.mean <= s.hi, `${r.name} ${k}: ${s.lo} <= ${s.mean} <= ${s.hi}`);
      assert.equal(s.perSeed.length, k === 'nllBits' ? 1 : 2, `${k}: NLL is scored once, on the shared images`);
    }
    assert.equal(r.metrics.fid.interval, 'bootstrap-recentred');
    assert.equal(r.metrics.precision.interval, 'seed-range');
    assert.equal(r.metrics.nllBits.interval, 'bootstrap-samples');
    assert.ok(r.metrics.fid.mean >= 0 && r.metrics.is.mean >= 1 - 1e-9 && r.metrics.nllBits.mean > 0);
    // Random init with large weights: confidently wrong, so above log2(16) = 4 bits per token, but finite.
    assert.ok(r.metrics.nllBits.mean > 2 && r.metrics.nllBits.mean < 30, `NLL ${r.metrics.nllBits.mean}`);
    assert.deepEqual(r.curve.fractions, [0, 0.25, 0.5, 0.75, 1]);
    assert.equal(r.seeds.length, 2);
    for (const s of r.seeds) {
      assert.equal(s.tokens.length, 10 * 16);
      assert.equal(s.blockOrders.length, 10);
      assert.equal(s.perSample.nllBits.length, s === r.seeds[0] ? 6 : 0, 'the shared NLL images are scored by the first seed only');
      // Frame t shows exactly the first t + 1 blocks of the order: frame 0 keeps only the first block's pixels.
      const ex = s.example;
      assert.equal(ex.frames.length, 4 * SIDE * SIDE);
      const first = fakeDecode(s.tokens.subarray(0, 16));
      const f0 = ex.frames.subarray(0, SIDE * SIDE), fLast = ex.frames.subarray(3 * SIDE * SIDE);
      assert.deepEqual(Array.from(fLast), Array.from(first));
      const kept = f0.filter((v, p) => v === first[p] && v !== BACKGROUND_FILL).length;
      assert.ok(kept > 0 && f0.filter((v) => v === BACKGROUND_FILL).length >= (SIDE * SIDE * 3) / 4);
    }
    // Balanced classes; the seeds draw different samples.
    assert.notDeepEqual(r.seeds[0].tokens, r.seeds[1].tokens);
    assert.ok(r.trajectory && r.trajectory.images === 2 && r.trajectory.restLoss.mean.length === r.geometry.numBlocks && r.trajectory.oracle?.perStep.length === r.geometry.numBlocks);
  }
  const raster = res[0] as SettingResult, random = res[1] as SettingResult;
  assert.equal(raster.geometry.blockW, 4, 'the raster baseline decodes token rows');
  assert.deepEqual(raster.seeds[0].blockOrders[0], [0, 1, 2, 3]);
  assert.equal(random.policy, 'random');
  // Random orders differ between seeds (policyFor), and between sampling batches of one seed.
  const orders = random.seeds[0].blockOrders.map((o) => o.join());
  assert.ok(new Set(orders).size > 2, `orders ${orders}`);
  assert.notDeepEqual(random.seeds[0].blockOrders, random.seeds[1].blockOrders);
  // The same seeds give identical results.
  const again = (await evaluateSetting(blockRarRandomSetting(model, GEO, 7), ctx, cfg)) as SettingResult;
  assert.deepEqual(again.metrics, random.metrics);
  assert.deepEqual(again.seeds.map((s) => s.tokens), random.seeds.map((s) => s.tokens));
  assert.deepEqual(again.curve, random.curve);
  assert.deepEqual(again.trajectory!.totals, random.trajectory!.totals);
  assert.deepEqual(again.trajectory!.oracle!.totals, random.trajectory!.oracle!.totals);
  assert.equal(tf.memory().numTensors, before);
});

test('missing settings: settingOrMissing catches OrderHeadError only, and every table format marks them', async () => {
  const { ctx, cfg } = await setup();
  const res = await evaluated();
  const m = settingOrMissing('OrderHead R=0', () => { throw new OrderHeadError('no trained planner here', 'runs/planner-smoke/r0', 'train it'); });
  assert.ok(isMissing(m));
  assert.match(m.missing, /runs\/planner-smoke\/r0: no trained planner here/);
  assert.match(m.missing, /Stage 3/);
  assert.match(m.missing, /04_stage3_orderhead/);
  const custom = settingOrMissing('my setting', () => { throw new OrderHeadError('gone', 'x.safetensors', 'make it'); });
  assert.ok(isMissing(custom) && custom.missing.includes('Fix: make it'));
  assert.throws(() => settingOrMissing('OrderHead R=1', () => { throw new TypeError('a bug'); }), TypeError);
  const asyncMissing = await settingOrMissing('OrderHead R=2', async () => { throw new OrderHeadError('nope', 'somewhere', 'fix'); });
  assert.ok(isMissing(asyncMissing));
  const ok = settingOrMissing('block-RAR + raster order', () => blockRarRasterSetting(fixture!.model, GEO));
  assert.ok(!isMissing(ok));
  assert.equal(await evaluateSetting(m, ctx, cfg), m, 'a missing setting passes through evaluateSetting');
  // Inputs that cannot work are refused before any sampling, naming the field.
  await assert.rejects(evaluateSetting(blockRarRasterSetting(fixture!.model, GEO), ctx, { ...cfg, nllImages: 60 }), /eval\.nllImages/);
  await assert.rejects(evaluateSetting(blockRarRasterSetting(fixture!.model, GEO), ctx, { ...cfg, recognizabilityFractions: [0, 0.1, 1] }), /eval\.recognizabilityFractions/);
  assert.equal(formatCell(undefined, 2, 'pm'), 'n/a');
  assert.equal(formatCell({ mean: 1.5, lo: 1, hi: 2.5, level: 0.95, interval: 'bootstrap-samples', perSeed: [1.5], n: 4 }, 2, 'interval'), '1.50 [1.00, 2.50]');

  // A renamed result checks escaping; the adaptive budget is missing with an explicit message.
  const renamed = { ...(res[1] as SettingResult), name: 'rar_random 100% & co' };
  const all: SettingOutcome[] = [res[0], renamed, m, missingSetting('adaptive budget', 'Stage 6 router not implemented (lib/planner has no adaptive policy)')];
  const table = evalResultsTable(all);
  assert.ok(table.caption.includes(FEATURE_NET_CAVEAT));
  assert.ok(table.caption.includes('2 seeds x 10 samples'));
  const md = tableMarkdown(table), csv = tableCsv(table), tex = tableLatex(table);
  for (const text of [md, tex]) {
    assert.ok(text.includes('OrderHead R=0') && text.includes('adaptive budget'));
    assert.equal((text.match(/missing/g) ?? []).length >= 2 * table.columns.length, true, 'missing cells');
  }
  assert.match(md, /\| OrderHead R=0 \| missing \| missing \|/);
  assert.match(md, /- OrderHead R=0: runs\/planner-smoke\/r0/);
  // LaTeX: booktabs rules, escaped specials.
  for (const rule of ['\\toprule', '\\midrule', '\\bottomrule', '\\begin{tabular}', '\\caption{']) assert.ok(tex.includes(rule), rule);
  assert.ok(tex.includes('rar\\_random 100\\% \\& co'), 'escaped setting name');
  assert.ok(tex.includes('04\\_stage3\\_orderhead'), 'escaped note');
  assert.ok(!/[^\\]_/.test(tex.replace(/\\_/g, '')), 'an unescaped underscore');
  assert.ok(tex.includes('$\\pm$') && tex.includes('\\emph{missing}'));
  // CSV: parses back to the same numbers (full precision); missing rows have status and note.
  const back = readTableCsv(csv);
  assert.equal(back.length, 4);
  assert.equal(back[1].setting, 'rar_random 100% & co');
  for (const [i, o] of [[0, res[0]], [1, renamed]] as const) {
    for (const k of EVAL_METRICS) {
      const s = (o as SettingResult).metrics[k];
      assert.deepEqual(back[i].values[k], { mean: s.mean, lo: s.lo, hi: s.hi }, `${k} round trip`);
    }
  }
  assert.equal(back[2].status, 'missing');
  assert.ok(back[2].note.includes('no trained planner'));
  assert.deepEqual(back[3].values, {});
  // Written atomically to a folder; the HTML comes back.
  const dir = path.join(tmp(), 'tables');
  const w = writeResultTable(table, dir, 'eval-main');
  assert.equal(fs.readFileSync(w.csv, 'utf8'), csv);
  assert.equal(fs.readFileSync(w.md, 'utf8'), md);
  assert.ok(fs.readFileSync(w.tex, 'utf8').includes('\\label{tab:eval-main}'));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['eval-main.csv', 'eval-main.md', 'eval-main.tex'], 'three files, no temp files left');
  assert.ok(w.html.includes('<table') && w.html.includes('missing') && w.html.includes('rar_random 100% &amp; co'));
  // The interval style.
  assert.match(tableMarkdown(evalResultsTable(all, { style: 'interval', columns: ['fid', 'nllBits'] })), /\| raster baseline \| [\d.]+ \[[\d.]+, [\d.]+\] \|/);
  // Trajectory table: no feature-net caveat needed, missing rows still marked.
  const tt = trajectoryResultsTable(all);
  assert.ok(!tt.caption.includes(FEATURE_NET_CAVEAT) && tt.caption.includes(PRIMARY_READING) && tt.caption.includes('telescopes'));
  assert.ok(!tt.columns.some((c) => c.key === 'realized'), 'the telescoping total is not a column');
  assert.ok(!tt.columns.some((c) => c.key === 'areaDiff'), 'no reference setting here: no paired columns');
  assert.match(tableMarkdown(tt), /\| adaptive budget \| missing/);
  const ot = oracleComparisonTable(all);
  assert.ok(ot.caption.includes('first 2 of the 2 test images'), ot.caption);
  // Figures.
  const bars = metricBarsFigure(all, 'fid', 'test');
  assert.deepEqual((bars.traces[0] as { x: string[] }).x.slice(2), ['OrderHead R=0 (missing)', 'adaptive budget (missing)']);
  assert.equal(recognizabilityCurvesFigure(all, 'test').traces.length, 2);
  const fl = futureLossFigure(all, 'test');
  assert.equal(fl.traces.length, 6);
  assert.deepEqual((fl.traces[0] as { x: number[] }).x, [0, 0.25, 0.5, 0.75]);
  const rl = remainingLossFigure(all, 'test');
  assert.equal(rl.traces.length, 2, 'one line per setting with trajectory metrics');
  const line = rl.traces[1] as { x: number[]; y: number[] };
  assert.deepEqual(line.x, [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(line.y[4], 0, 'nothing left once every block is visible');
  assert.equal(line.y[0], renamed.trajectory!.totals.start.mean);
  // The JSON summary drops the heavy arrays but keeps every number and the missing markers.
  const json = path.join(dir, 'outcomes.json');
  writeOutcomesJson(json, all);
  const read = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(read[2].missing, m.missing);
  assert.equal(read[0].metrics.fid.mean, (res[0] as SettingResult).metrics.fid.mean);
  assert.equal(read[0].seeds[0].tokens, undefined);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { sandbox, untouched } from '../../helpers';
import { evalWorld, PJ_GEO, plannerRun } from '../../fixtures/planner-jobs';
import { bestPlannerCheckpoint, loadJointPair, loadPlanner, plannerPolicy } from '../../../lib/planner';
import { evaluateSettings, MissingSetting, orderHeadSetting } from '../../../lib/eval';

describe('bad input', () => {
  test('an evaluation setting whose stage has not run becomes a missing marker naming the folder and the notebook; evaluation passes it through', async () => {
    await useWasm();
    const root = sandbox();
    const plannerDir = path.join(root, 'planner-smoke');
    fs.mkdirSync(path.join(plannerDir, 'stage3-u_extrap-hard', 'checkpoints'), { recursive: true });
    const p = plannerRun(plannerDir, 'stage4-u_extrap-hard-R1');
    const world = evalWorld();
    const before = tf.memory().numTensors;
    const outcomes = await untouched(root, async () => {
      // As notebooks/08_evaluation.ipynb builds them.
      const settings = [
        settingOrMissing('OrderHead R=0', () => {
          const pl = loadPlanner(bestPlannerCheckpoint(path.join(plannerDir, 'stage3-u_extrap-hard'), 'notebooks/04_stage3_orderhead.ipynb')).planner;
          return orderHeadSetting(world.backbone, pl, PJ_GEO, 0);
        }),
        settingOrMissing('OrderHead R=2', () => {
          const pl = loadPlanner(bestPlannerCheckpoint(path.join(plannerDir, 'stage4-u_extrap-hard-R2'), 'notebooks/05_stage4_latent_planner.ipynb')).planner;
          return orderHeadSetting(world.backbone, pl, PJ_GEO, 2);
        }),
        // A planner that exists but was trained on another backbone.
        settingOrMissing('OrderHead R=1', () => {
          const pl = loadPlanner(p.best, { backboneFingerprint: 'the-evaluated-backbone' }).planner;
          return orderHeadSetting(world.backbone, pl, PJ_GEO, 1);
        }),
        settingOrMissing('adaptive budget', () => {
          const pair = loadJointPair(path.join(plannerDir, 'stage5-joint'));
          return { name: 'adaptive budget', backbone: pair.backbone, geo: PJ_GEO, policy: plannerPolicy(pair.planner, pair.backbone, PJ_GEO) };
        }),
      ];
      const [r0, r2, r1, budget] = settings;
      for (const s of settings) assert.ok(isMissing(s), `${s.name} is not missing`);
      const missing = (s: (typeof settings)[number]) => (s as MissingSetting).missing;
      assert.ok(missing(r0).includes(path.join(plannerDir, 'stage3-u_extrap-hard')) && missing(r0).includes('no trained planner here'), missing(r0));
      assert.match(missing(r0), /notebooks\/04_stage3_orderhead\.ipynb\); run it in this profile first/);
      assert.ok(missing(r2).includes('stage4-u_extrap-hard-R2') && missing(r2).includes('05_stage4_latent_planner'), missing(r2));
      assert.ok(missing(r1).includes(`${p.best} (backboneFingerprint)`) && missing(r1).includes('05_stage4_latent_planner'), missing(r1));
      assert.ok(missing(budget).includes(path.join(plannerDir, 'stage5-joint')) && missing(budget).includes('06_stage5_joint_tuning')
        && missing(budget).includes('07_stage6_adaptive_budget'), missing(budget));
      const events: string[] = [];
      const out = await evaluateSettings(settings, world.ctx, world.cfg, undefined, { onSetting: (e) => events.push(e.source) });
      assert.deepEqual(events, ['missing', 'missing', 'missing', 'missing']);
      return out;
    });
    assert.deepEqual(outcomes.map((o) => isMissing(o)), [true, true, true, true]);
    assert.match(tableMarkdown(evalResultsTable(outcomes)), /\| OrderHead R=0 \| missing/);
    assert.equal(tf.memory().numTensors, before, 'a failed setting leaked tensors');
    world.dispose();
  });
});
