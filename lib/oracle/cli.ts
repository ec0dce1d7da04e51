#!/usr/bin/env node
/**
 * Command line for the oracle dataset (curriculum Stage 2), so N processes or
 * machines can label shards in parallel:
 *
 *   node dist/lib/oracle/cli.js build --run DIR --backbone CKPT --tokens TOKDIR [--profile P] [--shard i/N] [--set field=value ...]
 *   node dist/lib/oracle/cli.js build --run DIR --config CONFIG.json [--shard i/N]
 *   node dist/lib/oracle/cli.js build --run DIR [--shard i/N]          continue a dataset with the config in its manifest
 *   node dist/lib/oracle/cli.js build --run DIR ... --workers N        N worker threads in this process (shards 0/N .. N-1/N), one core each
 *   node dist/lib/oracle/cli.js merge --run DIR                        concatenate the parts into DIR/oracle.safetensors
 *   node dist/lib/oracle/cli.js status --run DIR                       parts done / missing
 *
 * Every build resumes: parts already written are skipped. ORDERHEAD_BACKEND
 * chooses the backend (default: the fastest available), ORDERHEAD_PROFILE the
 * profile's default sizes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../runtime/backend';
import { OrderHeadError, oneOf } from '../runtime/errors';
import { activeProfile } from '../runtime/profile';
import { progress } from '../runtime/progress';
import { oracleDatasetConfig, OracleDatasetConfig, ORACLE_DATASET_DEFAULTS, validateOracleDatasetConfig } from './dataset-config';
import { parseShard, partCount, partFileName } from './layout';
import { readOracleManifest } from './manifest';
import { buildOracleDataset } from './build';
import { mergeOracleDataset } from './merge';
import { buildOracleDatasetParallel } from './parallel';

const USAGE = `usage:
  oracle build --run DIR (--config FILE.json | --backbone CKPT --tokens TOKDIR [--profile smoke|default|full] [--set field=value ...]) [--shard i/N | --workers N] [--pause-ms MS]
  oracle build --run DIR [--shard i/N]      (continue: the config comes from DIR/manifest.json)
  oracle merge --run DIR
  oracle status --run DIR`;

interface Args { command: string; flags: Record<string, string>; sets: string[] }

function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') throw new OrderHeadError('no command given', 'oracle cli', USAGE);
  const flags: Record<string, string> = {};
  const sets: string[] = [];
  const known = ['--run', '--config', '--backbone', '--tokens', '--profile', '--shard', '--workers', '--set', '--pause-ms'];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!known.includes(a)) throw new OrderHeadError(`unknown option '${a}'`, 'oracle cli', USAGE);
    const v = rest[i + 1];
    if (v === undefined) throw new OrderHeadError(`option ${a} needs a value`, 'oracle cli', USAGE);
    if (a === '--set') sets.push(v);
    else flags[a.slice(2)] = v;
    i++;
  }
  return { command, flags, sets };
}

/** `field=value`: numbers as numbers, JSON for lists/objects, else a string. */
function applySets(sets: string[]): Partial<OracleDatasetConfig> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    const key = s.slice(0, eq);
    if (eq <= 0 || !(key in ORACLE_DATASET_DEFAULTS)) {
      throw new OrderHeadError(`--set '${s}' is not field=value with a known field`, 'oracle cli --set', `use one of: ${Object.keys(ORACLE_DATASET_DEFAULTS).join(', ')}`);
    }
    const raw = s.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* plain string */
    }
    out[key] = value;
  }
  return out as Partial<OracleDatasetConfig>;
}

function resolveConfig(args: Args, dir: string): OracleDatasetConfig {
  const { flags } = args;
  if (flags.config) {
    let cfg: OracleDatasetConfig;
    try {
      cfg = JSON.parse(fs.readFileSync(flags.config, 'utf8'));
    } catch (err) {
      throw new OrderHeadError(`cannot read the config (${(err as Error).message})`, flags.config, 'pass a JSON file with an OracleDatasetConfig');
    }
    cfg = { ...cfg, ...applySets(args.sets) };
    validateOracleDatasetConfig(cfg);
    return cfg;
  }
  if (flags.backbone || flags.tokens) {
    if (!flags.backbone || !flags.tokens) throw new OrderHeadError('--backbone and --tokens go together', 'oracle cli', USAGE);
    const profile = flags.profile ? oneOf(flags.profile, ['smoke', 'default', 'full'] as const, '--profile') : activeProfile();
    return oracleDatasetConfig(profile, { backbone: flags.backbone, tokens: flags.tokens }, applySets(args.sets));
  }
  if (fs.existsSync(path.join(dir, 'manifest.json'))) {
    const cfg = { ...readOracleManifest(dir).config, ...applySets(args.sets) };
    validateOracleDatasetConfig(cfg);
    return cfg;
  }
  throw new OrderHeadError('no config: the folder has no manifest.json yet', dir, `pass --config FILE.json, or --backbone CKPT --tokens TOKDIR\n${USAGE}`);
}

async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const dir = args.flags.run;
  if (!dir) throw new OrderHeadError('--run DIR is required', 'oracle cli', USAGE);
  switch (args.command) {
    case 'build': {
      const shard = parseShard(args.flags.shard);
      const cfg = resolveConfig(args, dir);
      const pauseMs = args.flags['pause-ms'] !== undefined ? Number(args.flags['pause-ms']) : undefined;
      if (pauseMs !== undefined && !(Number.isFinite(pauseMs) && pauseMs >= 0)) throw new OrderHeadError(`--pause-ms '${args.flags['pause-ms']}' is not a number of milliseconds`, 'oracle cli', USAGE);
      const backend = await initBackend({ quiet: true });
      if (args.flags.workers !== undefined) {
        const workers = Number(args.flags.workers);
        if (!(Number.isInteger(workers) && workers >= 1)) throw new OrderHeadError(`--workers '${args.flags.workers}' is not a whole number >= 1`, 'oracle cli', USAGE);
        if (args.flags.shard !== undefined) throw new OrderHeadError('--workers and --shard go separately: --workers N runs shards 0/N .. N-1/N itself', 'oracle cli', USAGE);
        console.error(`oracle build: ${dir}, backend ${backend.kind}, ${workers} worker thread(s)`);
        const res = await buildOracleDatasetParallel(dir, cfg, { workers, pauseMs, merge: false, progress: (o) => progress({ ...o, stream: process.stderr }) });
        console.log(JSON.stringify({
          dir, workers: res.workers, shards: res.shards.map((s) => ({ shard: s.shard, written: s.written, skipped: s.skipped, states: s.states })),
          states: res.states, seconds: Number(res.seconds.toFixed(2)), statesPerSecond: Number(res.statesPerSecond.toFixed(2)),
        }));
        return;
      }
      console.error(`oracle build: ${dir}, backend ${backend.kind}, shard ${shard.index}/${shard.count}`);
      const res = await buildOracleDataset(dir, cfg, {
        shard,
        pauseMs,
        progress: (o) => progress({ ...o, stream: process.stderr }),
      });
      console.log(JSON.stringify({
        dir, shard: `${res.shard.index}/${res.shard.count}`, written: res.written, skipped: res.skipped, shardParts: res.shardParts,
        states: res.states, seconds: Number(res.seconds.toFixed(2)), statesPerSecond: Number(res.statesPerSecond.toFixed(2)),
        removedTempFiles: res.removedTempFiles.length,
      }));
      return;
    }
    case 'merge': {
      const res = mergeOracleDataset(dir);
      console.log(JSON.stringify(res));
      return;
    }
    case 'status': {
      const m = readOracleManifest(dir);
      const K = partCount(m.config);
      const missing: number[] = [];
      for (let k = 0; k < K; k++) if (!fs.existsSync(path.join(dir, partFileName(k, K)))) missing.push(k);
      console.log(JSON.stringify({ dir, parts: K, done: K - missing.length, missing, merged: fs.existsSync(path.join(dir, 'oracle.safetensors')) }));
      return;
    }
    default:
      throw new OrderHeadError(`unknown command '${args.command}'`, 'oracle cli', USAGE);
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof OrderHeadError ? `error: ${err.message}` : err);
  process.exit(err instanceof OrderHeadError ? 2 : 1);
});
