/**
 * The curriculum's run-folder table and stage inputs (lib/curriculum.ts): the
 * folders agree with the stages' own folder helpers, every "missing" error
 * names the notebook that produces the input, and the findings functions of
 * notebooks 02 and 07 speak the run's numbers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  curriculumRunRows, curriculumRuns, loadRunRouter, plannerCheckpoint, routerCheckpoint, stage1SelectedCheckpoint, STAGE_NOTEBOOKS, STAGE_READS, stageInputs, StageName,
} from '../../../lib/curriculum';
import { tokenizerRunDir } from '../../../lib/tokenizer/config';
import { plannerRoot, PRIMARY_STAGE3_RUN, STAGE3_RUNS, stage3RunName, stage4RunName, MetricsRow, OrderNllComparisonRow } from '../../../lib/planner/stages';
import { featureNetRunDir } from '../../../lib/eval/feature-net-config';
import { evalReportDir } from '../../../lib/eval/context';
import { classificationAccuracy } from '../../../lib/eval/class-accuracy';
import { stage1Findings } from '../../../lib/backbone/findings';
import { CheckpointNllRow } from '../../../lib/backbone/order-nll';
import { trainingSeeds } from '../../../lib/backbone/stage1';
import { stage5Findings, stage6Findings } from '../../../lib/planner/findings';
import { jointTuningConfig } from '../../../lib/planner/joint';
import { onPolicyConfig, onPolicyRoundDir } from '../../../lib/planner/on-policy';
import { repoRoot } from '../../../lib/runtime/paths';
import { throwsOH } from '../../helpers';

const sandbox = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-curriculum-'));

test('curriculumRuns: every folder is the one its stage writes, and names a notebook that exists', () => {
  const root = '/runs';
  const runs = curriculumRuns(root, 'smoke');
  assert.equal(runs.tokenizer.dir, tokenizerRunDir(root, 'smoke'));
  assert.equal(runs.planner, plannerRoot(root, 'smoke'));
  assert.equal(runs.featureNet.dir, featureNetRunDir(root, 'smoke'));
  assert.equal(runs.eval.dir, evalReportDir(root, 'smoke'));
  assert.equal(runs.stage1['block-rar'].dir, path.join(runs.stage1Root, 'seed0', 'block-rar'));
  // Every training seed of the profile has its own arms; seed 0's are runs.stage1 (its C is the oracle's backbone).
  assert.deepEqual(runs.stage1Seeds.map((s) => s.seed), trainingSeeds('smoke'));
  assert.equal(runs.stage1Seeds[0].arms, runs.stage1);
  assert.equal(runs.stage1Seeds[1].arms['annealed-fixed'].dir, path.join(runs.stage1Root, 'seed1', 'annealed-fixed'));
  for (const r of STAGE3_RUNS) assert.equal(runs.stage3[r.key].dir, path.join(runs.planner, stage3RunName(r.key)));
  for (const R of [1, 2, 4] as const) assert.equal(runs.stage4[R].dir, path.join(runs.planner, stage4RunName(PRIMARY_STAGE3_RUN, R)));
  // The on-policy rounds: one planner run per round of the profile (smoke 1, default 2), inside the on-policy folder.
  assert.equal(runs.onPolicyRounds.length, onPolicyConfig('smoke').rounds);
  assert.equal(curriculumRuns(root, 'default').onPolicyRounds.length, 2);
  for (const [k, f] of runs.onPolicyRounds.entries()) assert.equal(f.dir, path.join(onPolicyRoundDir(runs.onPolicy.dir, k + 1), 'planner'));
  assert.equal(runs.files.evalCache, path.join(runs.eval.dir, 'cache'));
  const folders = [runs.tokenizer, ...runs.stage1Seeds.flatMap((s) => Object.values(s.arms)),
    runs.oracle, ...Object.values(runs.stage3), runs.onPolicy, ...runs.onPolicyRounds, ...Object.values(runs.stage4), runs.joint, runs.jointRaster, runs.router,
    runs.featureNet, runs.eval];
  for (const f of folders) {
    assert.equal(f.dir, path.join(f.root, f.name));
    for (const nb of f.producedBy.split(' or ')) assert.ok(fs.existsSync(path.join(repoRoot(), nb)), `${f.dir}: ${nb} does not exist`);
  }
  assert.equal(curriculumRunRows(runs).length, folders.length);
  assert.notEqual(curriculumRuns(root, 'default').oracle.dir, runs.oracle.dir, 'profiles share a folder');
});

test('stageInputs: on an empty run root every stage names its reader and the notebook that makes its first input', () => {
  const root = sandbox();
  try {
    const readers: Record<StageName, string> = { stage1: '02_stage1_backbone', stage2: '03_stage2_oracle', stage3: '04_stage3_orderhead', stage4: '05_stage4_latent_planner',
      stage5: '06_stage5_joint_tuning', stage6: '07_stage6_adaptive_budget', eval: '08_evaluation' };
    for (const stage of Object.keys(STAGE_READS) as StageName[]) {
      throwsOH(() => stageInputs({ runRoot: root, profile: 'smoke' }, stage), 'tokens.safetensors', 'no token cache here', `the token cache that ${readers[stage]} reads`,
        STAGE_NOTEBOOKS.tokenizer);
    }
    assert.deepEqual(fs.readdirSync(root), [], 'a failed load wrote something');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('run-folder loaders: a planner, router or Stage 1 folder without a checkpoint names the folder and the notebook that trains it', () => {
  const root = sandbox();
  try {
    const runs = curriculumRuns(root, 'smoke');
    throwsOH(() => plannerCheckpoint(runs.stage4[2]), runs.stage4[2].dir, 'no trained planner here', '05_stage4_latent_planner');
    throwsOH(() => routerCheckpoint(runs.router), runs.router.dir, 'no trained router here', '07_stage6_adaptive_budget');
    throwsOH(() => loadRunRouter(runs.router), 'no trained router here', '07_stage6_adaptive_budget');
    const ckDir = path.join(runs.stage1.raster.dir, 'checkpoints');
    fs.mkdirSync(ckDir, { recursive: true });
    throwsOH(() => stage1SelectedCheckpoint(runs.stage1.raster), runs.stage1.raster.dir, 'no validation-selected checkpoint here', 'best-step', '02_stage1_backbone');
    // Resume checkpoints are not the selection: the arm's reported backbone is its best-step file, even when a later step exists.
    fs.writeFileSync(path.join(ckDir, 'stage1-step000008-r0.00.safetensors'), '');
    throwsOH(() => stage1SelectedCheckpoint(runs.stage1.raster), 'no validation-selected checkpoint here');
    fs.writeFileSync(path.join(ckDir, 'best-step000004-r0.00.safetensors'), '');
    assert.equal(stage1SelectedCheckpoint(runs.stage1.raster), path.join(ckDir, 'best-step000004-r0.00.safetensors'));
    // A continuation arm's error names the notebook that trains it.
    throwsOH(() => stage1SelectedCheckpoint(runs.stage1['kept-random']), runs.stage1['kept-random'].dir, runs.stage1['kept-random'].producedBy);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('classificationAccuracy: argmax per row against the labels, lowest class on ties', () => {
  const probs = Float32Array.from([0.1, 0.7, 0.2, /**/ 0.5, 0.5, 0, /**/ 0.2, 0.3, 0.5]);
  assert.equal(classificationAccuracy(probs, [1, 0, 2], 3), 1);
  assert.equal(classificationAccuracy(probs, [1, 1, 0], 3), 1 / 3);
  throwsOH(() => classificationAccuracy(probs, [1, 0], 3), 'classificationAccuracy(labels)');
});

test('stage1Findings: the random-phase checkpoint, the final ones and the verdict come from the rows', () => {
  const row = (model: string, step: number, r: number, raster: number, random: number): CheckpointNllRow =>
    ({ model, step, r, bits: { raster, 'block-raster': raster, 'random-blocks': random }, gap: random - raster, checkpoint: `${model}-${step}` });
  const rows = [row('block-rar', 2, 1, 3, 3.1), row('block-rar', 4, 0.5, 2.9, 3.2), row('raster', 4, 0, 2.5, 4)];
  const md = stage1Findings(rows, { images: 32, trainMinutes: 1.25 }, 'default', 'STAMP');
  assert.match(md, /STAMP\*\*, 32 validation images, seed 0, 1\.3 min/);
  assert.match(md, /random-phase checkpoint \(step 2, r = 1\.00\)\*\*: raster 3\.000, random blocks 3\.100/);
  assert.match(md, /block-RAR, final \(step 4, r = 0\.50\)/);
  assert.match(md, /pays 15\.0x more for a random order/);
});

test('stage5Findings and stage6Findings: drift, kept step, paired planner differences; calls and NLL against k = 1', () => {
  const metrics = (correct: number[], regret: number[], top1: number): MetricsRow =>
    ({ setting: 's', summary: { top1, regret: regret.reduce((a, b) => a + b, 0) / regret.length }, perState: { correct: Uint8Array.from(correct), regret: Float64Array.from(regret) } }) as unknown as MetricsRow;
  const cfg = jointTuningConfig('smoke');
  const log = { steps: 8, lAR: [], lOH: [], evals: [], before: { raster: 3, random: 3.2 }, after: { raster: 3.01, random: 3.5 }, stoppedEarly: true, stopReason: 'drift' };
  const md5 = stage5Findings({ log, bestStep: 4 }, cfg, { before: metrics([0, 0, 1, 0], [1, 1, 0, 1], 0.25), after: metrics([1, 1, 1, 0], [0, 0, 0, 1], 0.75) }, 'smoke', 'STAMP');
  assert.match(md5, /raster NLL 3\.0000 → 3\.0100 bits\/token \(\+0\.0100\)/);
  assert.match(md5, /exceeded\. The guard stopped the run \(drift\)/);
  assert.match(md5, /step 4 of 8: the lowest held-out objective/);
  assert.match(md5, /top-1 0\.250 → 0\.750 \(paired Δ \+0\.500 \[\+0\.000, \+1\.000\]: no clear difference\)/, 'four states: the interval touches 0');
  assert.match(md5, /Smoke profile/);
  const nll = (order: string, bits: number, diff: number): OrderNllComparisonRow =>
    ({ order, bitsPerToken: bits, ci: [bits, bits], vsReference: { diff, lo: diff - 0.1, hi: diff + 0.1 }, perImage: new Float64Array(1), n: 1 });
  const rows = [nll('token raster', 3, 0), nll('planner, k = 1', 2.5, 0), nll('planner, k = 2', 2.6, 0.1)];
  const quality = [{ policy: 'planner, k = 1', samples: 20, 'planner calls / image': 16, 'classified as their class': 0.5 },
    { policy: 'planner, k = 2', samples: 20, 'planner calls / image': 8, 'classified as their class': 0.45 }];
  const md6 = stage6Findings(rows, { 'planner, k = 1': 16, 'planner, k = 2': 8 }, quality, 'default', 'STAMP');
  assert.equal(md6.split('\n').filter((l) => l.startsWith('- **')).length, 1, md6);
  assert.match(md6, /\*\*planner, k = 2\*\*: 8\.00 planner calls per image against 16\.00 \(50% fewer\); NLL 2\.600 bits\/token, \+0\.100 \[\+0\.000, \+0\.200\] against k = 1 \(no difference\); samples classified as their class: 0\.450 \(k = 1: 0\.500\)\./);
});
