/** The oracle dataset on worker threads (lib/oracle/parallel.ts): same bytes as one worker, progress, resume, errors named by shard. */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { useWasm } from '../helpers';
import { oracleWorld, tinyOracleConfig } from '../fixtures/oracle-world';
import { readSafetensors } from '../../lib/runtime/safetensors';
import { OrderHeadError } from '../../lib/runtime/errors';
import { Progress } from '../../lib/runtime/progress';
import { buildOracleDataset, mergeOracleDataset, OracleDatasetConfig, partCount, partFileName, ORACLE_DATASET_FILE } from '../../lib/oracle';
import { buildOracleDatasetParallel } from '../../lib/oracle/parallel';

const CLI = path.join(__dirname, '..', '..', 'lib', 'oracle', 'cli.js');
const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });

/** The tiny world of tests/fixtures/oracle-world.ts; 7 images, so 2 workers get unequal shards. */
function fixture(): { root: string; cfg: OracleDatasetConfig } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-oracle-par-'));
  made.push(root);
  return { root, cfg: tinyOracleConfig(oracleWorld(root), { images: 7 }) };
}

function mergedBytes(dir: string): Record<string, Buffer> {
  const { tensors } = readSafetensors(path.join(dir, ORACLE_DATASET_FILE));
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
}

function assertSameBytes(a: string, b: string): void {
  const x = mergedBytes(a), y = mergedBytes(b);
  assert.deepEqual(Object.keys(x).sort(), Object.keys(y).sort());
  for (const k of Object.keys(x)) assert.ok(x[k].equals(y[k]), `tensor '${k}' differs`);
}

/** A progress bar that records what it is told. */
function recorder() {
  const log = { total: -1, label: '', ticks: 0, rates: [] as number[], done: false };
  const factory = (o: { total: number; label: string }): Progress => {
    log.total = o.total;
    log.label = o.label;
    return {
      tick(n = 1, info) { log.ticks += n; if (info && typeof info['states/s'] === 'number') log.rates.push(info['states/s'] as number); },
      done() { log.done = true; },
      get count() { return log.ticks; },
    };
  };
  return { log, factory };
}

test('2 workers build a dataset byte-identical to 1 worker (and to a plain build); progress and parts are forwarded', async () => {
  await useWasm();
  const { root, cfg } = fixture();
  const one = path.join(root, 'one'), two = path.join(root, 'two'), plain = path.join(root, 'plain');
  const r1 = await buildOracleDatasetParallel(one, cfg, { workers: 1 });
  assert.equal(r1.workers, 1);
  const { log, factory } = recorder();
  const parts: string[] = [];
  const r2 = await buildOracleDatasetParallel(two, cfg, { workers: 2, progress: factory, onPart: (p) => parts.push(`${p.shard}:${p.part}`) });
  assert.equal(r2.workers, 2);
  assert.deepEqual(r2.shards.map((s) => s.shard), ['0/2', '1/2']);
  assert.deepEqual(r2.shards.map((s) => s.written), [3, 4]); // 7 parts: shard 0 takes [0, 3), shard 1 [3, 7)
  assert.equal(r2.states, 7 * 4);
  assert.ok(r2.merged && r2.merged.states === 28);
  assert.equal(log.total, 28);
  assert.equal(log.ticks, 28, 'every primary state is ticked once');
  assert.ok(log.done && log.rates.length > 0 && log.rates.every((v) => v >= 0));
  assert.equal(log.label, 'oracle x2');
  assert.deepEqual(parts.sort(), ['0/2:0', '0/2:1', '0/2:2', '1/2:3', '1/2:4', '1/2:5', '1/2:6']);
  await buildOracleDataset(plain, cfg);
  mergeOracleDataset(plain);
  assertSameBytes(one, two);
  assertSameBytes(plain, two);
  // More workers than parts: capped, same data.
  const many = path.join(root, 'many');
  const rm = await buildOracleDatasetParallel(many, { ...cfg, images: 3 }, { workers: 5 });
  assert.equal(rm.workers, 3);
});

test('a parallel build continues a partial one; a finished one writes nothing', async () => {
  await useWasm();
  const { root, cfg } = fixture();
  const dir = path.join(root, 'ds'), ref = path.join(root, 'ref');
  await buildOracleDataset(dir, cfg, { maxParts: 2, shard: '1/2' }); // parts 3 and 4
  const res = await buildOracleDatasetParallel(dir, cfg, { workers: 2 });
  assert.deepEqual(res.shards.map((s) => [s.written, s.skipped]), [[3, 0], [2, 2]]);
  await buildOracleDatasetParallel(ref, cfg, { workers: 1 });
  assertSameBytes(dir, ref);
  const again = await buildOracleDatasetParallel(dir, cfg, { workers: 2, merge: false });
  assert.equal(again.states, 0);
  assert.deepEqual(again.shards.map((s) => s.written), [0, 0]);
});

test('the CLI builds with --workers N (shards in threads), refuses --workers with --shard, and merges to the same bytes', async () => {
  await useWasm();
  const { root, cfg } = fixture();
  const cfgFile = path.join(root, 'cfg.json');
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const cliDir = path.join(root, 'cli'), apiDir = path.join(root, 'api');
  const env = { ...process.env, ORDERHEAD_BACKEND: 'wasm' };
  const build = spawnSync(process.execPath, [CLI, 'build', '--run', cliDir, '--config', cfgFile, '--workers', '2'], { encoding: 'utf8', env, timeout: 120_000 });
  assert.equal(build.status, 0, build.stderr);
  const summary = JSON.parse(build.stdout.trim().split('\n').pop()!);
  assert.equal(summary.workers, 2);
  assert.equal(summary.states, 28);
  assert.equal(spawnSync(process.execPath, [CLI, 'merge', '--run', cliDir], { encoding: 'utf8', env }).status, 0);
  await buildOracleDatasetParallel(apiDir, cfg, { workers: 1 });
  assertSameBytes(cliDir, apiDir);
  const both = spawnSync(process.execPath, [CLI, 'build', '--run', cliDir, '--workers', '2', '--shard', '0/2'], { encoding: 'utf8', env });
  assert.equal(both.status, 2);
  assert.match(both.stderr, /--workers and --shard/);
  const bad = spawnSync(process.execPath, [CLI, 'build', '--run', cliDir, '--workers', 'two'], { encoding: 'utf8', env });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--workers 'two'/);
});

test('a worker error rejects with an OrderHeadError naming the shard; bad worker counts are refused', async () => {
  await useWasm();
  const { root, cfg } = fixture();
  const dir = path.join(root, 'ds');
  await buildOracleDatasetParallel(dir, cfg, { workers: 1, merge: false });
  // Damage a part of shard 1/2 (parts 3..6) and remove one part of each shard so both have work left.
  const K = partCount(cfg);
  fs.writeFileSync(path.join(dir, partFileName(5, K)), 'not a safetensors file');
  fs.rmSync(path.join(dir, partFileName(0, K)));
  fs.rmSync(path.join(dir, partFileName(6, K)));
  await assert.rejects(buildOracleDatasetParallel(dir, cfg, { workers: 2 }), (err: unknown) => {
    assert.ok(err instanceof OrderHeadError, `expected an OrderHeadError, got ${String(err)}`);
    assert.match(err.message, /oracle shard 1\/2/);
    assert.match(err.message, new RegExp(partFileName(5, K)));
    assert.match(err.message, /delete this part file/);
    return true;
  });
  for (const workers of [0, 1.5, -1, NaN]) {
    await assert.rejects(buildOracleDatasetParallel(dir, cfg, { workers }), (err: unknown) => err instanceof OrderHeadError && /workers/.test(err.message));
  }
});
