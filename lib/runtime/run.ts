/**
 * One folder per experiment run, so results are traceable and resumable:
 *
 *   <root>/<name>/config.json     the resolved config (written once, atomically)
 *   <root>/<name>/manifest.json   versions, backend, git commit, every (re)start
 *   <root>/<name>/metrics.jsonl   one JSON object per logged step
 *   <root>/<name>/checkpoints/    safetensors checkpoints (checkpoint.ts)
 *   <root>/<name>/artifacts/      figures, tables, samples
 *
 * A folder is never shared by two configs: results from different settings
 * must not be mixed in one metrics file, so reopening with another config is
 * refused with the differing fields named.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError, ensure } from './errors';
import { appendJsonLine, readJsonLines, removeStaleTempFiles, writeFileAtomic, ReadJsonLinesOptions, ATOMIC_TEMP_RE } from './atomic';
import { canonicalJson, diffConfig, formatDifferences, latestCheckpoint, listCheckpoints, CheckpointRef } from './checkpoint';
import { activeProfile, ProfileName } from './profile';

export interface OpenRunOptions<C extends object> {
  /** Parent folder of all runs; default `runs` (relative to the working directory). */
  root?: string;
  /** Stage this run trains or evaluates (`stage1`, `orderhead`); also the default checkpoint prefix. */
  stage: string;
  /**
   * Folder name; default `<stage>-<8 hex digits of the config hash>`, so the
   * same config always maps to the same folder and a changed config to a new one.
   */
  name?: string;
  /** The fully resolved config (after profile selection); stored as config.json. */
  config: C;
  /**
   * Continue an existing run with the same config (its metrics and
   * checkpoints are kept). Without it, an existing run that already has
   * metrics or checkpoints is refused rather than silently appended to.
   */
  resume?: boolean;
  /** tfjs backend name in use (`wasm`, `tensorflow`), recorded in the manifest. */
  backend?: string;
}

/** Where and with what a run (re)started; one entry per openRun call. */
export interface RunStartInfo {
  startedAt: string;
  node: string;
  tfjs: string;
  backend?: string;
  platform: string;
  profile: ProfileName;
  gitCommit?: string;
  /** True when tracked files had uncommitted changes at start. */
  gitDirty?: boolean;
  pid: number;
  resumed: boolean;
}

export interface RunManifest {
  stage: string;
  name: string;
  createdAt: string;
  starts: RunStartInfo[];
}

/** One metrics row: the step, the wall-clock time and whatever was logged. */
export interface MetricRow {
  step: number;
  time: string;
  [key: string]: number | string | boolean | null;
}

export type MetricValues = Record<string, number | string | boolean | null>;

export interface Run<C extends object = Record<string, unknown>> {
  readonly dir: string;
  readonly name: string;
  readonly stage: string;
  readonly config: C;
  /** True when this call continued an existing run. */
  readonly resumed: boolean;
  readonly checkpointDir: string;
  readonly artifactsDir: string;
  readonly metricsPath: string;
  readonly manifest: RunManifest;
  /** Append one metrics row (`{step, ...values, time}`) to metrics.jsonl. NaN is kept as "NaN". */
  logMetrics(step: number, values: MetricValues): void;
  /** All metrics rows; a torn last line (killed mid-write) is skipped and reported. */
  readMetrics(options?: ReadJsonLinesOptions): MetricRow[];
  /** Path of an artifact (`plots/loss.html` allowed); it must stay inside artifacts/. */
  artifactPath(name: string): string;
  /** Write an artifact atomically, creating sub-folders; returns its path. */
  saveArtifact(name: string, data: string | Uint8Array): string;
  /** Newest checkpoint of this run for `prefix` (default: the stage), for resume. */
  latestCheckpoint(prefix?: string): CheckpointRef | undefined;
  /** Every checkpoint of this run for `prefix` (default: the stage), oldest step first: a resumed call's earlier ones included. */
  checkpoints(prefix?: string): CheckpointRef[];
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function gitInfo(): { gitCommit?: string; gitDirty?: boolean } {
  const git = (args: string[]) =>
    execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  let gitCommit: string | undefined;
  try {
    gitCommit = git(['rev-parse', 'HEAD']);
  } catch {
    return {}; // not a git checkout, no commits yet, or git not installed
  }
  try {
    return { gitCommit, gitDirty: git(['status', '--porcelain', '--untracked-files=no']).length > 0 };
  } catch {
    return { gitCommit };
  }
}

/**
 * What produced a run: Node and tfjs versions, the backend if given, platform,
 * profile, start time and the git commit (omitted when git is unavailable).
 */
export function runManifest(backend?: string, resumed = false): RunStartInfo {
  return {
    startedAt: new Date().toISOString(),
    node: process.version,
    tfjs: tf.version.tfjs,
    ...(backend !== undefined ? { backend } : {}),
    platform: `${process.platform}-${process.arch}`,
    profile: activeProfile(),
    ...gitInfo(),
    pid: process.pid,
    resumed,
  };
}

/** Short stable hash of a config, independent of key order. */
export function configHash(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 8);
}

function readJsonFile(file: string, what: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new OrderHeadError(
      `cannot read the ${what} (${(err as Error).message})`,
      file,
      `fix or delete the file; if the run folder is damaged, start a new run under another name`,
    );
  }
}

/** Number of checkpoint files and of non-empty metrics lines already in a run folder. */
function existingWork(dir: string): { checkpoints: number; metricLines: number } {
  let checkpoints = 0;
  try {
    checkpoints = fs.readdirSync(path.join(dir, 'checkpoints')).filter((f) => f.endsWith('.safetensors')).length;
  } catch {
    /* no checkpoints folder */
  }
  let metricLines = 0;
  try {
    metricLines = fs
      .readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '').length;
  } catch {
    /* no metrics yet */
  }
  return { checkpoints, metricLines };
}

/**
 * True when `dir` holds only what an openRun killed before writing config.json
 * leaves: checkpoints/ and artifacts/ folders and temp files, nothing else. Such a
 * folder is taken over rather than refused, so a kill at any moment resumes.
 */
function interruptedCreation(dir: string): boolean {
  return fs.readdirSync(dir).every((f) => {
    if (ATOMIC_TEMP_RE.test(f)) return true;
    if (f !== 'checkpoints' && f !== 'artifacts') return false;
    try {
      return fs.readdirSync(path.join(dir, f)).every((g) => ATOMIC_TEMP_RE.test(g));
    } catch {
      return false;
    }
  });
}

/**
 * Create or reopen the run folder `<root>/<name>`.
 *
 * - New folder: writes config.json and manifest.json, creates metrics.jsonl,
 *   checkpoints/ and artifacts/.
 * - Existing folder with a different config.json: refused, naming each
 *   differing field, whether or not `resume` is set.
 * - Existing folder, same config: with `resume`, continued (a start is added
 *   to the manifest); without it, refused if it already holds metrics or
 *   checkpoints, reused if it is still empty.
 */
export function openRun<C extends object>(options: OpenRunOptions<C>): Run<C> {
  const { root = 'runs', stage, config, resume = false, backend } = options;
  // A bad ORDERHEAD_PROFILE is refused before anything is created (the manifest records the profile).
  activeProfile();
  ensure(SAFE_NAME.test(stage), `stage '${stage}' may contain only letters, digits, '.', '_' and '-'`, 'openRun(stage)', "use a name such as 'stage1'");
  ensure(
    typeof config === 'object' && config !== null && !Array.isArray(config),
    'config is not a plain object',
    'openRun(config)',
    'pass the resolved config object',
  );
  const name = options.name ?? `${stage}-${configHash(config)}`;
  ensure(SAFE_NAME.test(name), `run name '${name}' may contain only letters, digits, '.', '_' and '-'`, 'openRun(name)', "use a name such as 'stage1-baseline'");
  const dir = path.join(root, name);
  const configPath = path.join(dir, 'config.json');
  const manifestPath = path.join(dir, 'manifest.json');
  const checkpointDir = path.join(dir, 'checkpoints');
  const artifactsDir = path.join(dir, 'artifacts');
  const metricsPath = path.join(dir, 'metrics.jsonl');

  let resumed = false;
  if (fs.existsSync(configPath)) {
    const stored = readJsonFile(configPath, 'run config');
    const diffs = diffConfig(stored, config);
    if (diffs.length > 0) {
      throw new OrderHeadError(
        `this run folder was created with a different config${resume ? ', so it cannot be resumed' : ''}: ${formatDifferences(diffs, 'run', 'current')}`,
        dir,
        `use another run name (or omit name: the default name follows the config hash), or restore those config values to continue this run; runs with different configs are never mixed`,
      );
    }
    const work = existingWork(dir);
    if (!resume && (work.checkpoints > 0 || work.metricLines > 0)) {
      throw new OrderHeadError(
        `the run already has ${work.metricLines} metrics row(s) and ${work.checkpoints} checkpoint(s)`,
        dir,
        'pass resume: true to continue it, choose another run name, or delete the folder to start over',
      );
    }
    resumed = resume;
  } else if (fs.existsSync(dir) && !interruptedCreation(dir)) {
    throw new OrderHeadError(
      'the folder exists and is not empty but has no config.json, so it is not a run folder (or its creation was interrupted)',
      dir,
      'choose another run name or root, or delete the folder',
    );
  }

  try {
    fs.mkdirSync(checkpointDir, { recursive: true });
    fs.mkdirSync(artifactsDir, { recursive: true });
    if (!fs.existsSync(configPath)) writeFileAtomic(configPath, `${JSON.stringify(config, null, 2)}\n`);
    fs.closeSync(fs.openSync(metricsPath, 'a'));
  } catch (err) {
    if (err instanceof OrderHeadError) throw err;
    throw new OrderHeadError(`cannot create the run folder (${(err as Error).message})`, dir, 'choose a writable run root with free space');
  }

  // A writer killed mid-save leaves `<file>.tmp-<pid>-<hex>` behind; one run folder has one writer at a time.
  for (const d of [dir, checkpointDir, artifactsDir]) removeStaleTempFiles(d, { mine: () => true });

  const start = runManifest(backend, resumed);
  let manifest: RunManifest;
  if (fs.existsSync(manifestPath)) {
    const old = readJsonFile(manifestPath, 'run manifest') as Partial<RunManifest>;
    manifest = {
      stage: old.stage ?? stage,
      name: old.name ?? name,
      createdAt: old.createdAt ?? start.startedAt,
      starts: [...(Array.isArray(old.starts) ? old.starts : []), start],
    };
  } else {
    manifest = { stage, name, createdAt: start.startedAt, starts: [start] };
  }
  writeFileAtomic(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  const artifactPath = (artifact: string): string => {
    const full = path.resolve(artifactsDir, artifact);
    const base = path.resolve(artifactsDir);
    ensure(
      artifact.length > 0 && !path.isAbsolute(artifact) && full.startsWith(base + path.sep),
      `artifact name '${artifact}' points outside the run's artifacts folder`,
      `${dir} artifactPath(name)`,
      "use a relative name such as 'loss.html' or 'samples/step500.png'",
    );
    return path.join(artifactsDir, artifact);
  };

  return {
    dir,
    name,
    stage,
    config,
    resumed,
    checkpointDir,
    artifactsDir,
    metricsPath,
    manifest,
    logMetrics(step: number, values: MetricValues): void {
      ensure(Number.isSafeInteger(step) && step >= 0, `step ${step} is not a non-negative integer`, `${metricsPath} logMetrics(step)`, 'pass the optimizer step count');
      const row: Record<string, unknown> = { step, ...values, time: new Date().toISOString() };
      row.step = step;
      appendJsonLine(metricsPath, row);
    },
    readMetrics(opts?: ReadJsonLinesOptions): MetricRow[] {
      return readJsonLines<MetricRow>(metricsPath, opts).rows;
    },
    artifactPath,
    saveArtifact(artifact: string, data: string | Uint8Array): string {
      const file = artifactPath(artifact);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeFileAtomic(file, data);
      return file;
    },
    latestCheckpoint(prefix: string = stage): CheckpointRef | undefined {
      return latestCheckpoint(checkpointDir, prefix);
    },
    checkpoints(prefix: string = stage): CheckpointRef[] {
      return listCheckpoints(checkpointDir, prefix);
    },
  };
}
