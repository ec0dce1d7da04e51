/** The oracle dataset (Stage 2): shards, state sampling, determinism, kill/resume, refusals, merge, analysis. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { useWasm } from '../../helpers';
import { oracleWorld, OracleWorld, tinyOracleConfig } from '../../fixtures/oracle-world';
import { readSafetensors } from '../../../lib/runtime/safetensors';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { blockGeometry } from '../../../lib/order';
import {
  buildOracleDataset, loadOracleDataset, mergeOracleDataset, oracleDatasetConfig, parseShard, partCount,
  shardParts, stateSequence, stateSize, ORACLE_DATASET_FILE, OracleScorer, oracleSequence, labelSet, primaryLabelSet,
} from '../../../lib/oracle';
import { randomPhaseCheckpoint } from '../../../lib/backbone/checkpoints';
import { PRIMARY_WEIGHT } from '../../../lib/oracle/weights';
import { sizeBuckets } from '../../../lib/oracle/analysis';
import { labelHeatmaps } from '../../../lib/oracle/label-heatmaps';
import { distanceToVisible, localityStats, localityTable } from '../../../lib/oracle/locality';
import { agreementTable, labelAgreement, spearman, utilityAgreement } from '../../../lib/oracle/agreement';
import { ownLossStats, ownLossTable } from '../../../lib/oracle/own-loss';
import { referenceRank, referenceRankTable } from '../../../lib/oracle/reference-rank';
import { oracleFindings } from '../../../lib/oracle/findings';
import { blockGridValues, hideBlocks } from '../../../lib/oracle/state-views';
import { exampleStates, labelPositionFigure, labelSeries, localityBySizeFigure, utilityExamplesFigure, utilityScatterFigure } from '../../../lib/oracle/dataset-figures';

const CLI = path.join(__dirname, '..', '..', '..', 'lib', 'oracle', 'cli.js');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'oh-oracle-'));

function throwsOH(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (err: unknown) => {
    assert.ok(err instanceof OrderHeadError, `expected an OrderHeadError, got ${String(err)}`);
    for (const p of parts) assert.ok(err.message.includes(p), `message lacks '${p}': ${err.message}`);
    return true;
  });
}

async function rejectsOH(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof OrderHeadError, `expected an OrderHeadError, got ${String(err)}`);
    for (const q of parts) assert.ok(err.message.includes(q), `message lacks '${q}': ${err.message}`);
    return true;
  });
}

type Fixture = OracleWorld;

/** The tiny world of tests/fixtures/oracle-world.ts in a fresh temp folder. */
const fixture = (opts: { grid?: number; blockH?: number; tokenizer?: string } = {}): Fixture => oracleWorld(tmp(), opts);
const tinyConfig = tinyOracleConfig;

/** All tensors of a merged dataset, as bytes, for byte-equality. */
function mergedBytes(dir: string): Record<string, Buffer> {
  const { tensors } = readSafetensors(path.join(dir, ORACLE_DATASET_FILE));
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

function assertSameData(a: string, b: string): void {
  const x = mergedBytes(a), y = mergedBytes(b);
  assert.deepEqual(Object.keys(x).sort(), Object.keys(y).sort());
  for (const k of Object.keys(x)) assert.ok(x[k].equals(y[k]), `tensor '${k}' differs`);
}

const tempFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
const partFiles = (dir: string) => fs.readdirSync(dir).filter((f) => /^part-.*\.safetensors$/.test(f));

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ORDERHEAD_BACKEND: 'wasm' }, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// ---------------------------------------------------------------------------

test('shard specs: i/N parses; 3/2, 0/0, a/b, -1/2 and friends are refused with the valid form', () => {
  assert.deepEqual(parseShard('0/1'), { index: 0, count: 1 });
  assert.deepEqual(parseShard(' 3/4 '), { index: 3, count: 4 });
  assert.deepEqual(parseShard(undefined), { index: 0, count: 1 });
  for (const bad of ['3/2', '0/0', 'a/b', '-1/2', '1/', '/2', '', '1.5/2', '2/2']) throwsOH(() => parseShard(bad), 'i/N', '0 <= i < N');
  throwsOH(() => parseShard({ index: 2, count: 2 }), 'i/N');
  // Shards cover the parts contiguously, without overlap, whatever N.
  for (const N of [1, 2, 3, 7, 20]) {
    const covered: number[] = [];
    for (let i = 0; i < N; i++) {
      const { first, end } = shardParts({ images: 10, imagesPerPart: 3 }, { index: i, count: N });
      for (let k = first; k < end; k++) covered.push(k);
    }
    assert.deepEqual(covered, [0, 1, 2, 3]);
  }
});

test('visible sets: |S| cycles evenly over 0..numBlocks-1, S is a seeded random prefix', () => {
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 });
  for (const statesPerImage of [16, 5, 3]) {
    const cfg = { statesPerImage, seed: 0 };
    const counts = new Array(geo.numBlocks).fill(0);
    const images = 32;
    for (let i = 0; i < images; i++) {
      for (let s = 0; s < statesPerImage; s++) {
        const seq = stateSequence(cfg, geo, i, s);
        assert.equal(seq.length, stateSize(cfg, geo.numBlocks, i, s));
        assert.equal(new Set(seq).size, seq.length, 'a block is repeated');
        assert.ok(seq.every((b) => b >= 0 && b < geo.numBlocks));
        assert.deepEqual(seq, stateSequence(cfg, geo, i, s), 'not deterministic');
        counts[seq.length]++;
      }
    }
    assert.ok(counts.every((c) => c > 0), `sizes not covered: ${counts}`);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `sizes not even: ${counts}`);
  }
  // With 16 states per image, every image covers every size.
  const sizes = Array.from({ length: 16 }, (_, s) => stateSize({ statesPerImage: 16 }, 16, 5, s)).sort((a, b) => a - b);
  assert.deepEqual(sizes, Array.from({ length: 16 }, (_, i) => i));
  // Another seed draws other sets.
  const a = Array.from({ length: 16 }, (_, s) => stateSequence({ statesPerImage: 16, seed: 0 }, geo, 0, s).join(','));
  const b = Array.from({ length: 16 }, (_, s) => stateSequence({ statesPerImage: 16, seed: 1 }, geo, 0, s).join(','));
  assert.notDeepEqual(a, b);
});

test('determinism: the same config builds the same states and labels; arrays are consistent', async () => {
  await useWasm();
  const f = fixture();
  const cfg = tinyConfig(f);
  const d1 = path.join(f.root, 'd1'), d2 = path.join(f.root, 'd2'), d3 = path.join(f.root, 'd3');
  const seen: number[] = [];
  const res = await buildOracleDataset(d1, cfg, { onPart: (p) => seen.push(p.part) });
  assert.equal(res.written, 6);
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  mergeOracleDataset(d1);
  await buildOracleDataset(d2, cfg);
  mergeOracleDataset(d2);
  assertSameData(d1, d2);
  const ds = loadOracleDataset(d1);
  assert.equal(ds.n, 24);
  const nb = ds.geo.numBlocks;
  assert.equal(nb, 4);
  for (let i = 0; i < ds.n; i++) {
    const seq = oracleSequence(ds, i);
    assert.deepEqual(seq, stateSequence(cfg, ds.geo, ds.image[i], ds.state[i]));
    for (let b = 0; b < nb; b++) {
      assert.equal(ds.visible[i * nb + b], seq.includes(b) ? 1 : 0);
      for (const l of ds.labelings) if (l.has[i] && ds.visible[i * nb + b]) assert.ok(Number.isNaN(l.u[i * nb + b]), 'u is not NaN on a visible block');
    }
    const p = ds.labelings[0];
    assert.ok(p.aStar[i] >= 0 && !seq.includes(p.aStar[i]));
    // a* is the argmax of u over hidden blocks.
    let best = -1;
    for (let b = 0; b < nb; b++) if (!seq.includes(b) && (best < 0 || p.u[i * nb + b] > p.u[i * nb + best])) best = b;
    assert.equal(p.u[i * nb + p.aStar[i]], p.u[i * nb + best]);
    // compare labelings exist exactly on images with index % compareEvery == 0.
    for (const l of ds.labelings.slice(1)) assert.equal(l.has[i], ds.image[i] % 2 === 0 ? 1 : 0);
  }
  assert.deepEqual(ds.labelings.map((l) => `${l.reading}/${l.weight}`),
    [`block-marginal/${PRIMARY_WEIGHT}`, 'teacher-forced/no-neighbours', 'one-step/no-neighbours', 'block-marginal/distance']);
  // Readings a stage asks for: the primary must be the configured one; a compare labeling must exist.
  throwsOH(() => primaryLabelSet(ds, 'teacher-forced', 'planner.reading'), 'block-marginal reading', 'planner.reading', 'manifest.json', "oracle.reading = 'teacher-forced'");
  throwsOH(() => primaryLabelSet(ds, 'fancy' as never, 'planner.reading'), 'planner.reading', 'block-marginal', 'teacher-forced', 'one-step');
  assert.equal(primaryLabelSet(ds, 'block-marginal', 'planner.reading'), ds.labelings[0]);
  assert.equal(labelSet(ds, 'one-step'), ds.labelings[2]);
  assert.equal(labelSet(ds, 'block-marginal', 'distance'), ds.labelings[3]);
  throwsOH(() => labelSet(ds, 'one-step', 'uniform'), 'not one-step/uniform', 'manifest.json', 'oracle.compare');
  // Another seed: other states.
  await buildOracleDataset(d3, { ...cfg, seed: 9 });
  mergeOracleDataset(d3);
  assert.ok(!Buffer.from(loadOracleDataset(d3).sequence.buffer).equals(Buffer.from(ds.sequence.buffer)));
});

test('a build killed after its first part resumes to the same dataset, with no temp files left (CLI in a child process)', async () => {
  const f = fixture();
  const cfg = tinyConfig(f, { images: 10 });
  const cfgFile = path.join(f.root, 'cfg.json');
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const killed = path.join(f.root, 'killed'), clean = path.join(f.root, 'clean');

  const child = spawn(process.execPath, [CLI, 'build', '--run', killed, '--config', cfgFile, '--pause-ms', '400'],
    { env: { ...process.env, ORDERHEAD_BACKEND: 'wasm' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!(fs.existsSync(killed) && partFiles(killed).length > 0)) {
    assert.ok(Date.now() < deadline, `no part file appeared within 60 s; child stderr: ${stderr}`);
    assert.equal(child.exitCode, null, `the child exited early: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  await exited;
  const after = partFiles(killed).length;
  assert.ok(after >= 1 && after < partCount(cfg), `expected a partial build, found ${after} of ${partCount(cfg)} parts`);
  throwsOH(() => mergeOracleDataset(killed), 'incomplete', 'missing');
  // Simulate a kill in the middle of a write too: a stale temp file of a dead process.
  fs.writeFileSync(path.join(killed, `part-00009-of-00010.safetensors.tmp-${child.pid}-deadbeef`), 'torn');

  const rerun = runCli(['build', '--run', killed]); // the config comes from the manifest
  assert.equal(rerun.status, 0, rerun.stderr);
  const summary = JSON.parse(rerun.stdout.trim().split('\n').pop()!);
  assert.equal(summary.skipped, after);
  assert.equal(summary.written, partCount(cfg) - after);
  assert.ok(summary.removedTempFiles >= 1, 'the stale temp file was not removed');
  assert.equal(runCli(['merge', '--run', killed]).status, 0);

  const full = runCli(['build', '--run', clean, '--config', cfgFile]);
  assert.equal(full.status, 0, full.stderr);
  assert.equal(runCli(['merge', '--run', clean]).status, 0);
  assertSameData(killed, clean);
  assert.deepEqual(tempFiles(killed), []);
  assert.deepEqual(tempFiles(clean), []);
});

test('two shards merged equal one unsharded build; merge refuses an incomplete dataset', async () => {
  await useWasm();
  const f = fixture();
  const cfg = tinyConfig(f, { images: 5, imagesPerPart: 2 });
  const one = path.join(f.root, 'one'), two = path.join(f.root, 'two');
  await buildOracleDataset(one, cfg);
  mergeOracleDataset(one);
  // A temp file a dead process left for part 0 (shard 0/2's): shard 1/2 leaves it alone, shard 0/2 removes it.
  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
  fs.mkdirSync(two);
  const stale = `part-00000-of-00003.safetensors.tmp-${deadPid}-abcd1234`;
  fs.writeFileSync(path.join(two, stale), 'torn');
  const s1 = await buildOracleDataset(two, cfg, { shard: '1/2' });
  assert.deepEqual([s1.written, s1.shardParts, s1.removedTempFiles.length], [2, 2, 0]);
  assert.ok(fs.existsSync(path.join(two, stale)));
  throwsOH(() => mergeOracleDataset(two), 'incomplete', '1 of 3 parts are missing', 'parts 0');
  assert.throws(() => loadOracleDataset(two), /not merged yet/);
  const s0 = await buildOracleDataset(two, cfg, { shard: '0/2' });
  assert.equal(s0.written, 1);
  assert.deepEqual(s0.removedTempFiles, [stale]);
  // Rerunning a finished shard writes nothing.
  assert.equal((await buildOracleDataset(two, cfg, { shard: '0/2' })).written, 0);
  mergeOracleDataset(two);
  assertSameData(one, two);
});

test('refusals: a different config, a foreign backbone grid or block size, and too many images', async () => {
  await useWasm();
  const f = fixture();
  const cfg = tinyConfig(f, { images: 2 });
  const dir = path.join(f.root, 'ds');
  await buildOracleDataset(dir, cfg, { maxParts: 1 });
  await rejectsOH(buildOracleDataset(dir, { ...cfg, images: 3, seed: 5 }), 'different config', 'images: dataset 2, current 3', 'seed: dataset 0, current 5', 'never mixed');
  await rejectsOH(buildOracleDataset(dir, { ...cfg, weight: 'uniform' }), 'weight');
  // Same content under another path is the same dataset: it continues.
  const copy = path.join(f.root, 'copy.safetensors');
  fs.copyFileSync(cfg.backbone, copy);
  assert.equal((await buildOracleDataset(dir, { ...cfg, backbone: copy })).written, 1);
  // Another checkpoint (other weights) is another dataset.
  const other = path.join(path.dirname(cfg.backbone), 'stage1-step000006-r0.50.safetensors');
  await rejectsOH(buildOracleDataset(dir, { ...cfg, backbone: other }), 'backboneFingerprint');
  // A non-dataset folder is refused.
  const junk = path.join(f.root, 'junk');
  fs.mkdirSync(junk);
  fs.writeFileSync(path.join(junk, 'notes.txt'), 'x');
  await rejectsOH(buildOracleDataset(junk, cfg), 'no manifest.json');
  // Backbone grid differs from the token cache's.
  const big = fixture({ grid: 8 });
  await rejectsOH(buildOracleDataset(path.join(f.root, 'g'), { ...cfg, backbone: big.backbone }), "backbone's token grid is 8x8", '4x4');
  // Block size differs from the backbone's.
  const wide = fixture({ blockH: 1 });
  await rejectsOH(buildOracleDataset(path.join(f.root, 'b'), tinyConfig(wide)), 'trained on 1x2-token blocks', 'uses 2x2 blocks', 'blockH');
  // Tokens from another tokenizer.
  const foreign = fixture({ tokenizer: 'other' });
  await rejectsOH(buildOracleDataset(path.join(f.root, 't'), tinyConfig(foreign)), 'tokenizer other', 'tok0');
  await rejectsOH(buildOracleDataset(path.join(f.root, 'n'), { ...cfg, images: 99 }), 'images', 'has 12');
  throwsOH(() => oracleDatasetConfig('smoke', { backbone: f.backbone, tokens: f.tokens }, { reading: 'two-step' as never }), 'oracle.reading', 'one-step');
  // A scorer that returns a visible block as a* is caught.
  const liar: OracleScorer = (_m, geo, items, c) => c.weights.map(() => items.map((it) => ({
    lRest: 0, tokenLoss: new Float32Array(geo.numTokens), u: new Float32Array(geo.numBlocks), uExtrap: new Float32Array(geo.numBlocks),
    aStar: it.visible[0] ?? 0, aStarExtrap: 0,
  })));
  await rejectsOH(buildOracleDataset(path.join(f.root, 'liar'), { ...cfg, statesPerImage: 4 }, { scorer: liar }), 'not a hidden block');
  // The CLI reports bad shards with the valid form.
  const cli = runCli(['build', '--run', path.join(f.root, 'cli'), '--backbone', f.backbone, '--tokens', f.tokens, '--shard', '3/2']);
  assert.equal(cli.status, 2);
  assert.match(cli.stderr, /i\/N/);
});

test('randomPhaseCheckpoint picks the last r = 1.00 checkpoint and names notebook 02 when there is none', () => {
  const f = fixture();
  assert.equal(path.basename(randomPhaseCheckpoint(path.join(f.root, 'stage1', 'block-rar'))), 'stage1-step000004-r1.00.safetensors');
  throwsOH(() => randomPhaseCheckpoint(path.join(f.root, 'nowhere')), '02_stage1_backbone');
});

test('analysis: buckets, distances, locality against chance, agreement, Spearman, grids, findings', async () => {
  assert.deepEqual(sizeBuckets(16, 4).map((b) => [b.lo, b.hi]), [[0, 0], [1, 5], [6, 10], [11, 15]]);
  assert.deepEqual(sizeBuckets(4, 4).map((b) => b.label), ['|S|=0', '|S|=1', '|S|=2', '|S|=3']);
  const geo = blockGeometry({ gridH: 8, gridW: 8, blockH: 2, blockW: 2 }); // 4x4 blocks
  const vis = new Uint8Array(16);
  vis[0] = 1; // top-left corner visible
  assert.equal(distanceToVisible(geo, vis, 5), 1);
  assert.equal(distanceToVisible(geo, vis, 15), 3);
  assert.equal(distanceToVisible(geo, new Uint8Array(16), 3), Infinity);
  // Two states with block 0 visible: labels 5 (local) and 15 (far); one empty state (ignored).
  const states = { geo, n: 3, visible: new Uint8Array([...vis, ...vis, ...new Uint8Array(16)]), size: new Int32Array([1, 1, 0]) };
  const st = localityStats(states, new Int32Array([5, 15, 3]));
  assert.equal(st.n, 2);
  assert.equal(st.local, 0.5);
  assert.equal(st.far, 0.5);
  assert.equal(st.meanDistance, 2);
  assert.ok(Math.abs(st.chanceLocal - 3 / 15) < 1e-12, `chance ${st.chanceLocal}`); // blocks 1, 4, 5 of 15 hidden
  assert.deepEqual(st.byDistance, [0.5, 0, 0.5]);
  const maps = labelHeatmaps(states, new Int32Array([5, 15, 3]), sizeBuckets(16, 4));
  assert.equal(maps[0].n, 1);
  assert.equal(maps[0].counts[0][3], 1);
  assert.equal(maps[1].counts[1][1], 1);
  assert.equal(maps[1].counts[3][3], 1);
  assert.deepEqual(labelAgreement(new Int32Array([1, 2, -1, 4]), new Int32Array([1, 3, 5, 4])), { n: 3, agree: 2 / 3 });
  assert.ok(Math.abs(spearman([1, 2, 3, 4], [10, 20, 30, 40]) - 1) < 1e-12);
  assert.ok(Math.abs(spearman([1, 2, 3, 4], [4, 3, 2, 1]) + 1) < 1e-12);
  assert.ok(Number.isNaN(spearman([1, 1, 1], [1, 2, 3])));
  const u = new Float32Array([NaN, 1, 2, 3, NaN, 3, 2, 1]), v = new Float32Array([NaN, 1, 2, 3, NaN, 1, 2, 3]);
  const ua = utilityAgreement(u, v, 4, undefined, 1);
  assert.equal(ua.n, 2);
  assert.ok(Math.abs(ua.meanSpearman) < 1e-12); // +1 and -1
  assert.equal(ua.topK, 0.5);
  assert.deepEqual(blockGridValues(blockGeometry({ gridH: 2, gridW: 4, blockH: 1, blockW: 2 }), [1, NaN, 3, 4]), [[1, null], [3, 4]]);
  const img = new Float32Array(32 * 32).fill(1);
  const hidden = hideBlocks(geo, img, 32, 32, vis);
  assert.equal(hidden[0], 1);
  assert.equal(hidden[8], -1); // pixel column 8 is block 1
  assert.equal(hidden[7 * 32 + 7], 1);
  assert.equal(hidden[8 * 32], -1);

  // Tables and findings on a real (tiny) dataset.
  await useWasm();
  const f = fixture();
  const dir = path.join(f.root, 'ds');
  await buildOracleDataset(dir, tinyConfig(f));
  mergeOracleDataset(dir);
  const ds = loadOracleDataset(dir);
  const loc = localityTable(ds);
  assert.deepEqual(loc.map((r) => `${r.target}:${r.reading}:${r.weight}`),
    ['u:block-marginal:(none: u)', `u_extrap:block-marginal:${PRIMARY_WEIGHT}`, 'u:teacher-forced:(none: u)', 'u_extrap:teacher-forced:no-neighbours', 'u:one-step:(none: u)', 'u_extrap:one-step:no-neighbours', 'u_extrap:block-marginal:distance']);
  for (const r of loc) assert.ok(r.n > 0 && r.local + r.far > 0.999 && r.local + r.far < 1.001);
  const agr = agreementTable(ds);
  assert.ok(agr.some((a) => a.what === 'reading vs reading') && agr.some((a) => a.what === 'weight vs weight'));
  for (const a of agr) assert.ok(a.agree >= 0 && a.agree <= 1 && a.chance > 0 && a.chance <= 1);
  const early = localityTable(ds, (i) => ds.size[i] === 1);
  const text = oracleFindings({ locality: loc, agreement: agr, early: { label: '|S| = 1', rows: early } }).join('\n');
  assert.match(text, /\|S\| = 1: \d+% against \d+%/);
  assert.match(text, /touches the visible region/);
  assert.match(text, /How w changes it/);
  assert.ok(!/NaN/.test(text), text);

  const own = ownLossStats(ds);
  assert.ok(own.n > 0 && own.aStarIsMaxOwnLoss >= 0 && own.aStarIsMaxOwnLoss <= 1 && own.chance > 0);
  assert.match(oracleFindings({ locality: loc, agreement: agr, own: ownLossTable(ds) }).join('\n'), /What drives u/);
  // A hand-made state: 4 one-token blocks, none visible; own losses 1, 5, 2, 0.
  const g1 = blockGeometry({ gridH: 2, gridW: 2, blockH: 1, blockW: 1 });
  const fake = {
    geo: g1, n: 2, size: new Int32Array([0, 0]), visible: new Uint8Array(8), tokenLoss: new Float32Array([1, 5, 2, 0, 1, 5, 2, 0]),
    labelings: [{ aStar: new Int32Array([1, 2]), aStarExtrap: new Int32Array([0, 1]), u: new Float32Array([0, 10, 0, 0, 0, 0, 4, 0]) }],
  } as unknown as Parameters<typeof ownLossStats>[0];
  assert.deepEqual(ownLossStats(fake), { n: 2, aStarIsMaxOwnLoss: 0.5, aStarExtrapIsMaxOwnLoss: 0.5, ownShareOfU: (5 / 10 + 2 / 4) / 2, chance: 0.25 });

  // Reference-order rank: hidden blocks in raster order, label rank scaled to [0, 1].
  const rr = referenceRank({ geo: g1, n: 3, size: new Int32Array([0, 1, 3]), visible: new Uint8Array([0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0]) }, new Int32Array([3, 2, 3]));
  assert.deepEqual(rr, { n: 2, meanRank: (1 + 0.5) / 2 }); // the third state has one candidate: skipped
  const rt = referenceRankTable(ds);
  assert.equal(rt.length, loc.length);
  assert.match(oracleFindings({ locality: loc, agreement: agr, ranks: rt }).join('\n'), /Reference-order check/);

  // Figure specs: every panel present, every title stamped.
  const rows = exampleStates(ds, [1, 2, 3]);
  assert.deepEqual(rows.map((i) => ds.size[i]), [1, 2, 3]);
  const ex = utilityExamplesFigure(ds, rows, new Float32Array(rows.length * 16 * 16), 16, 16, 'STAMP');
  assert.equal(ex.traces.filter((t) => t.type === 'heatmap').length, 12);
  assert.equal(ex.traces.filter((t) => t.type === 'scatter').length, 6);
  const series = labelSeries(ds);
  assert.equal(series.length, 3); // u, u_extrap (no-neighbours), u_extrap (distance), teacher-forced
  const pos = labelPositionFigure(ds, series, sizeBuckets(4, 4), 'STAMP');
  assert.equal(pos.traces.length, 3 * 4);
  const locFig = localityBySizeFigure(ds, series, sizeBuckets(4, 4), 'STAMP');
  assert.equal(locFig.traces.length, 4);
  const sc = utilityScatterFigure(ds, ds.labelings[0], ds.labelings[1], 'u', 'STAMP');
  for (const fig of [ex, pos, locFig, sc]) assert.match(JSON.stringify(fig.layout.title), /STAMP/);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { describe } from 'node:test';
import { expectOH, rejectsOH as rejectsOHNaming, sandbox, untouched } from '../../helpers';
import { saveCheckpoint } from '../../../lib/runtime/checkpoint';
import { OracleDatasetConfig } from '../../../lib/oracle';

/** The oracle world of tests/fixtures/oracle-world.ts, with a 2-image dataset config and no comparison labelings. */
function badInputWorld(root: string): { cfg: OracleDatasetConfig; runDir: string } {
  const w = oracleWorld(root);
  const cfg = oracleDatasetConfig('smoke', { backbone: w.backbone, tokens: w.tokens }, { images: 2, statesPerImage: 4, imagesPerPart: 1, statesPerCall: 4, compare: [] });
  return { cfg, runDir: path.dirname(path.dirname(w.backbone)) };
}

describe('bad input', () => {
  // Shadows this file's rejectsOH (a promise, no file or field to name) with the one of tests/helpers.ts.
  const rejectsOH = rejectsOHNaming;

  test('an invalid shard spec is refused with the valid form, before the dataset folder is made', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg } = badInputWorld(root);
    await untouched(root, async () => {
      for (const bad of ['2/2', '0/0', 'a/b', '-1/2', '1.5/2']) {
        await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), cfg, { shard: bad }), 'oracle shard', `invalid shard '${bad}'`, 'i/N');
      }
    });
  });

  test('an oracle build without a Stage 1 checkpoint (empty run folder, only annealed ones, a missing file) names notebook 02', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg, runDir } = badInputWorld(root);
    const empty = path.join(root, 'stage1', 'not-trained');
    fs.mkdirSync(empty);
    const annealed = path.join(root, 'stage1', 'annealed');
    fs.mkdirSync(path.join(annealed, 'checkpoints'), { recursive: true });
    fs.copyFileSync(cfg.backbone, path.join(annealed, 'checkpoints', 'stage1-step000010-r0.00.safetensors'));
    await untouched(root, async () => {
      expectOH(() => randomPhaseCheckpoint(empty), path.join(empty, 'checkpoints'), 'no Stage 1 checkpoints here', '02_stage1_backbone');
      expectOH(() => randomPhaseCheckpoint(annealed), path.join(annealed, 'checkpoints'), 'no random-phase (r = 1.00) checkpoint', 'newest: stage1-step000010-r0.00');
      const missing = path.join(runDir, 'checkpoints', 'stage1-step000099-r1.00.safetensors');
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, backbone: missing }), missing, 'does not exist', '02_stage1_backbone');
    });
  });

  test('an oracle build from a folder without a token cache names notebook 01', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg } = badInputWorld(root);
    const noTokens = path.join(root, 'tokenizer-default');
    fs.mkdirSync(noTokens);
    await untouched(root, async () => {
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, tokens: noTokens }), path.join(noTokens, 'tokens.safetensors'), 'no token cache', '01_tokenizer');
    });
  });

  test('an oracle build given a tokenizer checkpoint as its backbone, or a block size the backbone was not trained on', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg } = badInputWorld(root);
    const tokCk = saveCheckpoint(path.join(root, 'tok'), 'tokenizer-step000001', { weights: { w: new Float32Array(2) }, config: { imageSize: 32 }, step: 1 });
    await untouched(root, async () => {
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, backbone: tokCk }), tokCk, 'not a backbone checkpoint', 'stage1-step*');
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, blockH: 1 }), 'oracle.blockH', 'trained on 2x2-token blocks', 'set blockH: 2');
      await rejectsOH(() => buildOracleDataset(path.join(root, 'ds'), { ...cfg, blockH: 3 }), 'order.blockSize', 'does not tile');
    });
  });

  test('a damaged part file met on resume names the part and says to delete it (not "use an earlier checkpoint")', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg } = badInputWorld(root);
    const ds = path.join(root, 'ds');
    await buildOracleDataset(ds, cfg, { maxParts: 1 });
    const part = path.join(ds, fs.readdirSync(ds).find((f) => f.startsWith('part-'))!);
    const bytes = fs.readFileSync(part);
    fs.writeFileSync(part, bytes.subarray(0, bytes.length - 7));
    await untouched(root, async () => {
      const e = await rejectsOH(() => buildOracleDataset(ds, cfg), part, 'truncated', 'delete this part file');
      assert.ok(!e.fix.includes('checkpoint'), e.fix);
    });
  });

  test('an oracle dataset folder reopened with another config names each differing field', async () => {
    await useWasm();
    const root = sandbox();
    const { cfg } = badInputWorld(root);
    const ds = path.join(root, 'ds');
    await buildOracleDataset(ds, cfg, { maxParts: 1 });
    await untouched(root, async () => {
      await rejectsOH(() => buildOracleDataset(ds, { ...cfg, seed: 3, statesPerImage: 8 }), ds, 'seed: dataset 0, current 3', 'statesPerImage: dataset 4, current 8', 'never mixed');
    });
  });
});
