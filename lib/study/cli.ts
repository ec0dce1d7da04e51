#!/usr/bin/env node
/**
 * Command line of the crossover study (lib/study), so its cells run as
 * separate processes (one per core: the wasm backend is single-threaded) or
 * on separate machines:
 *
 *   node dist/lib/study/cli.js run   [--profile P] [--root RUNROOT] [--shard i/n]
 *   node dist/lib/study/cli.js merge [--profile P] [--root RUNROOT] [--from STUDYDIR ...]
 *
 * RUNROOT is the runs folder holding notebook 01's token cache
 * (`tokenizer-<profile>`; default ORDERHEAD_RUN_ROOT, else <repo>/runs); the
 * study writes `<RUNROOT>/study-<profile>`. `run` trains, selects and scores
 * the shard's cells (finished ones are skipped, unfinished arms resume);
 * `merge` reads the study folder and any `--from` folders (shards copied from
 * other machines) and writes the tables next to the cells. The profile is
 * --profile, else ORDERHEAD_PROFILE (default 'default').
 */
import * as path from 'node:path';
import { initBackend } from '../runtime/backend';
import { OrderHeadError, oneOf } from '../runtime/errors';
import { activeProfile, PROFILES, PROFILE_ENV, ProfileName } from '../runtime/profile';
import { runRoot } from '../runtime/paths';
import { progress } from '../runtime/progress';
import { studyConfig, studyRoot } from './config';
import { mergeStudy } from './merge';
import { parseShard, runStudy, studyData } from './run';
import { analyseStudy, studyFindings, writeStudyTables } from './analysis';

const USAGE = `usage:
  study run   [--profile smoke|default|full] [--root RUNROOT] [--shard i/n]
  study merge [--profile smoke|default|full] [--root RUNROOT] [--from STUDYDIR ...]`;

interface Args { command: string; flags: Record<string, string>; from: string[] }

function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') throw new OrderHeadError('no command given', 'study cli', USAGE);
  if (command !== 'run' && command !== 'merge') throw new OrderHeadError(`unknown command '${command}'`, 'study cli', USAGE);
  const flags: Record<string, string> = {};
  const from: string[] = [];
  const known = command === 'run' ? ['--profile', '--root', '--shard'] : ['--profile', '--root', '--from'];
  for (let i = 0; i < rest.length; i += 2) {
    const a = rest[i], v = rest[i + 1];
    if (!known.includes(a)) throw new OrderHeadError(`unknown option '${a}' for ${command}`, 'study cli', USAGE);
    if (v === undefined) throw new OrderHeadError(`option ${a} needs a value`, 'study cli', USAGE);
    if (a === '--from') from.push(v);
    else flags[a.slice(2)] = v;
  }
  return { command, flags, from };
}

/** --profile, else ORDERHEAD_PROFILE; set into the environment so every layer (run manifests, the dataset) reads the same one. */
function chooseProfile(flag: string | undefined): ProfileName {
  const profile = flag === undefined ? activeProfile() : oneOf(flag.trim().toLowerCase(), PROFILES, `--profile '${flag}'`);
  process.env[PROFILE_ENV] = profile;
  return profile;
}

async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const profile = chooseProfile(args.flags.profile);
  const root = path.resolve(args.flags.root ?? runRoot());
  const dir = studyRoot(root, profile);
  const config = studyConfig(profile);
  if (args.command === 'run') {
    const shard = args.flags.shard === undefined ? { index: 0, count: 1 } : parseShard(args.flags.shard);
    await initBackend({ quiet: true, threads: 1 }); // one shard per core
    const data = studyData(root, profile);
    const tag = `study shard ${shard.index}/${shard.count}`;
    let bar: ReturnType<typeof progress> | undefined;
    const t0 = Date.now();
    const res = runStudy({
      root: dir, profile, config, data, shard,
      onProgress: (p) => {
        if (p.kind === 'cell') bar = progress({ total: p.cellSteps!, label: `${tag} ${p.cell.name}` });
        else if (p.kind === 'step') bar?.tick(1, { arm: p.arm! });
        else if (p.kind === 'done') bar?.done();
      },
    });
    const minutes = ((Date.now() - t0) / 60000).toFixed(1);
    console.log(`${tag}: ${res.trained} cell(s) trained, ${res.skipped} finished before, in ${minutes} min; study folder ${dir}`);
    return;
  }
  const merged = mergeStudy([dir, ...args.from], config);
  const analysis = analyseStudy(merged);
  const written = writeStudyTables(analysis, dir);
  console.log(`merged ${merged.cells.length} cell(s) of study ${merged.fingerprint} (${merged.missing.length} not finished) from ${merged.roots.join(', ')}`);
  console.log(`tables: ${written.md}, ${written.csv}, ${written.tex}${analysis.cells.length ? `, ${written.cellsCsv}` : ''}`);
  console.log(studyFindings(analysis, `profile ${profile}`));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err instanceof OrderHeadError ? err.message : err instanceof Error ? err.stack : String(err));
    process.exitCode = 2;
  });
}
