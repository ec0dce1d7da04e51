/**
 * Curriculum Stage 2: the oracle dataset (METHOD.md §6.2; Algorithms 1 and 2).
 *
 * For each image of a token split, sample partial contexts S (visible block
 * sets) of every size from empty to all-but-one block, score every candidate
 * block with the frozen Stage 1 backbone (`scoreStates`, lib/oracle/utility.ts)
 * and store, per state: the image, |S|, the visible mask and its reveal
 * sequence, the utility vectors u and u_extrap (NaN on visible blocks), both
 * labels a* = argmax u and a*_extrap = argmax u_extrap, L_rest(S) and the
 * token-wise losses l_j(S). The planner's inputs (backbone hidden states) are
 * not stored: they are recomputable from the image's tokens, the visible
 * sequence and the backbone, whose path and fingerprint the manifest records.
 *
 * How visible sets are drawn (deterministic, independent of sharding):
 * - state s of image i (s = 0 .. statesPerImage-1) has size
 *   |S| = (i · statesPerImage + s) mod numBlocks, so sizes cycle evenly over
 *   0 .. numBlocks-1 across the dataset (each image covers all sizes when
 *   statesPerImage is a multiple of numBlocks; otherwise consecutive images
 *   continue the cycle where the previous one stopped);
 * - S is the first |S| blocks of a uniformly random block order drawn from
 *   `rng(seedFrom(seed, 'oracle-state', i, s))`, so the visible set is a
 *   uniform random subset of that size, and its reveal sequence (the order of
 *   that prefix) is stored too.
 *
 * On-disk layout of a dataset folder:
 *   manifest.json                       config, identity (compared on reopen), backbone, geometry, counts
 *   part-<k>-of-<K>.safetensors         states of images [k·P, (k+1)·P), P = imagesPerPart, written atomically
 *   build-log.jsonl                     one line per part written: states, seconds, states/s, shard, pid
 *   oracle.safetensors                  all parts concatenated by `mergeOracleDataset`
 *
 * Parts are aligned to image indices, not to shards: `--shard i/N` takes the
 * contiguous run of parts [⌊iK/N⌋, ⌊(i+1)K/N⌋), so N processes label disjoint
 * parts, any sharding produces the same part files, and a killed run resumes
 * by skipping the parts that exist (a part file appears only when complete).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { OrderHeadError, ensure, oneOf } from '../runtime/errors';
import { appendJsonLine, readJsonLines, removeStaleTempFiles, writeFileAtomic, ATOMIC_TEMP_RE } from '../runtime/atomic';
import { decodeSafetensors, encodeSafetensors, readSafetensors, SafeTensor } from '../runtime/safetensors';
import { canonicalJson, diffConfig, formatDifferences, latestCheckpoint } from '../runtime/checkpoint';
import { activeProfile, pick, ProfileName } from '../runtime/profile';
import { Progress } from '../runtime/progress';
import { rng, seedFrom } from '../runtime/seed';
import { blockGeometry, BlockGeometry, randomBlockOrder } from '../order';
import { GPT, disposeGPT } from '../backbone/gpt';
import { GPTConfig } from '../backbone/config';
import { loadBackboneWithInfo } from '../backbone/stage1';
import { loadTokenCache, TokenCache, TokenSplit } from '../tokenizer/cache';
import { scoreStates, OracleConfig, OracleItem, Reading, READINGS, StateScore, DEFAULT_ORACLE_BATCH } from './utility';
import { WeightName, WEIGHTS } from './weights';

/** Value of `format` in manifest.json and in the metadata of every part and merged file. */
export const ORACLE_DATASET_FORMAT = 'orderhead-oracle/1';
/** The merged file of a dataset folder. */
export const ORACLE_DATASET_FILE = 'oracle.safetensors';
/** The per-part timing log of a dataset folder. */
export const ORACLE_BUILD_LOG = 'build-log.jsonl';

/** One way of labelling a state: which reading of l_j(S), and which weight w for u_extrap. */
export interface OracleLabeling {
  reading: Reading;
  weight: WeightName;
}

/**
 * Everything that shapes an oracle dataset. Build one with
 * `oracleDatasetConfig(profile, { backbone, tokens })`; defaults in
 * ORACLE_DATASET_DEFAULTS, per-profile sizes in ORACLE_DATASET_PROFILES.
 */
export interface OracleDatasetConfig {
  /** Stage 1 checkpoint file (the frozen, order-robust backbone). Recorded with its fingerprint. */
  backbone: string;
  /** Tokenizer run folder (or its tokens.safetensors) holding the token cache. */
  tokens: string;
  /** Which split of the token cache to label. Default 'train' (the planner trains on it). */
  split: 'train' | 'test';
  /** Label the first `images` images of the split. */
  images: number;
  /** States per image; |S| cycles over 0 .. numBlocks-1 (see the module comment). Default 16. */
  statesPerImage: number;
  /** Block size in tokens; must equal the backbone's Stage 1 block size. Default 2 x 2. */
  blockH: number;
  blockW: number;
  /** The primary reading of l_j(S) (METHOD.md §3). Default 'teacher-forced' (always in distribution). */
  reading: Reading;
  /** The weight w(j, a) of the primary u_extrap. Default 'no-neighbours' (zero on the 8 neighbouring blocks). */
  weight: WeightName;
  /**
   * Further labelings of a subset of states (the images with index % compareEvery == 0), for
   * the agreement figures: the other reading, other weights. Entries equal to the primary are dropped.
   */
  compare: OracleLabeling[];
  /** Images i with i % compareEvery == 0 get the `compare` labelings too. Default 4. */
  compareEvery: number;
  /** Seed of the visible-set draws. */
  seed: number;
  /** Images per part file (the unit of resume and of sharding). Default 16. */
  imagesPerPart: number;
  /**
   * States per scoreStates call (the progress bar moves per call). States of a
   * part are scored sorted by |S|, so one call holds few sizes and the scorer
   * can pack states of equal |S| into one pass. Default 32.
   */
  statesPerCall: number;
  /** Sequences per batched pass inside the scorer (OracleConfig.batch). Default 64 (DEFAULT_ORACLE_BATCH). */
  passBatch: number;
}

/** Defaults of every field but the paths. */
export const ORACLE_DATASET_DEFAULTS: Omit<OracleDatasetConfig, 'backbone' | 'tokens'> = {
  split: 'train',
  images: 256,
  statesPerImage: 16,
  blockH: 2,
  blockW: 2,
  reading: 'teacher-forced',
  weight: 'no-neighbours',
  compare: [
    { reading: 'one-step', weight: 'no-neighbours' },
    { reading: 'teacher-forced', weight: 'uniform' },
    { reading: 'teacher-forced', weight: 'distance' },
  ],
  compareEvery: 4,
  seed: 0,
  imagesPerPart: 16,
  statesPerCall: 32,
  passBatch: DEFAULT_ORACLE_BATCH,
};

/**
 * Per-profile sizes. smoke: 8 images (128 states) in a few seconds (CI).
 * default: 384 images (6,144 states, plus 4,608 compare scorings), measured at
 * about 17 primary states/s (30 scored states/s) with the `small` backbone on
 * one wasm core of our 2-core machine: about 6 minutes. full: 4x default.
 */
export const ORACLE_DATASET_PROFILES: Record<ProfileName, Partial<OracleDatasetConfig>> = {
  smoke: { images: 8, statesPerImage: 16, imagesPerPart: 2, compareEvery: 2 },
  default: { images: 384, statesPerImage: 16, imagesPerPart: 16, compareEvery: 4 },
  full: { images: 1536, statesPerImage: 16, imagesPerPart: 32, compareEvery: 4 },
};

/** The config of a profile for a backbone checkpoint and a tokenizer run, with overrides on top. */
export function oracleDatasetConfig(
  profile: ProfileName = activeProfile(),
  paths: { backbone: string; tokens: string },
  overrides: Partial<OracleDatasetConfig> = {},
): OracleDatasetConfig {
  const cfg: OracleDatasetConfig = { ...ORACLE_DATASET_DEFAULTS, ...pick(ORACLE_DATASET_PROFILES, profile), ...paths, ...overrides };
  validateOracleDatasetConfig(cfg);
  return cfg;
}

/** Check every field; errors name the field (`oracle.images`) and the fix. */
export function validateOracleDatasetConfig(cfg: OracleDatasetConfig): void {
  const int = (name: keyof OracleDatasetConfig, min: number) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${JSON.stringify(v)}`, `oracle.${name}`, `set ${name} to a whole number >= ${min}`);
  };
  ensure(typeof cfg.backbone === 'string' && cfg.backbone.length > 0, 'no backbone checkpoint given', 'oracle.backbone',
    'pass the Stage 1 checkpoint file (randomPhaseCheckpoint(stage1RunDir) picks the last r = 1.00 one)');
  ensure(typeof cfg.tokens === 'string' && cfg.tokens.length > 0, 'no token cache given', 'oracle.tokens',
    'pass the tokenizer run folder (tokenizerRunDir(runRoot, profile))');
  oneOf(cfg.split, ['train', 'test'] as const, 'oracle.split');
  int('images', 1);
  int('statesPerImage', 1);
  int('blockH', 1);
  int('blockW', 1);
  oneOf(cfg.reading, READINGS, 'oracle.reading');
  oneOf(cfg.weight, WEIGHTS, 'oracle.weight');
  ensure(Array.isArray(cfg.compare), 'must be a list of { reading, weight }', 'oracle.compare', "pass [] or e.g. [{ reading: 'one-step', weight: 'uniform' }]");
  cfg.compare.forEach((c, i) => {
    oneOf(c?.reading, READINGS, `oracle.compare[${i}].reading`);
    oneOf(c?.weight, WEIGHTS, `oracle.compare[${i}].weight`);
  });
  int('compareEvery', 1);
  int('seed', 0);
  int('imagesPerPart', 1);
  int('statesPerCall', 1);
  int('passBatch', 1);
}

/** The compare labelings that differ from the primary, without repeats, in the given order. */
export function compareLabelings(cfg: Pick<OracleDatasetConfig, 'reading' | 'weight' | 'compare'>): OracleLabeling[] {
  const seen = new Set([`${cfg.reading}/${cfg.weight}`]);
  const out: OracleLabeling[] = [];
  for (const c of cfg.compare) {
    const key = `${c.reading}/${c.weight}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ reading: c.reading, weight: c.weight });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Shards and parts

/** Shard i of N (0 <= i < N). */
export interface ShardSpec {
  index: number;
  count: number;
}

/**
 * Parse `i/N` (0-based shard i of N, e.g. `0/4` ... `3/4`). Anything else
 * ("3/2", "0/0", "a/b", "-1/2") is an OrderHeadError that shows the valid form.
 */
export function parseShard(spec: string | ShardSpec | undefined): ShardSpec {
  if (spec === undefined) return { index: 0, count: 1 };
  const fix = 'write the shard as i/N with whole numbers 0 <= i < N, e.g. --shard 0/4 ... --shard 3/4 for four processes (--shard 0/1, the default, labels everything)';
  if (typeof spec === 'object') {
    const { index, count } = spec;
    ensure(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 && index < count,
      `invalid shard ${JSON.stringify(spec)}`, 'oracle shard', fix);
    return { index, count };
  }
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(String(spec));
  if (!m) throw new OrderHeadError(`invalid shard '${spec}': not of the form i/N with whole numbers`, 'oracle shard', fix);
  const index = Number(m[1]), count = Number(m[2]);
  if (count < 1) throw new OrderHeadError(`invalid shard '${spec}': N must be at least 1`, 'oracle shard', fix);
  if (index >= count) throw new OrderHeadError(`invalid shard '${spec}': shard index ${index} is not below the shard count ${count} (shards are numbered 0 .. ${count - 1})`, 'oracle shard', fix);
  return { index, count };
}

/** Number of part files of a config. */
export function partCount(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>): number {
  return Math.ceil(cfg.images / cfg.imagesPerPart);
}

/** Images [start, end) of part k. */
export function partImages(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>, k: number): { start: number; end: number } {
  const start = k * cfg.imagesPerPart;
  return { start, end: Math.min(cfg.images, start + cfg.imagesPerPart) };
}

/** The parts [first, end) shard i/N labels: a contiguous run, the same whatever else runs. */
export function shardParts(cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart'>, shard: ShardSpec): { first: number; end: number } {
  const K = partCount(cfg);
  return { first: Math.floor((shard.index * K) / shard.count), end: Math.floor(((shard.index + 1) * K) / shard.count) };
}

/** File name of part k of K. */
export function partFileName(k: number, K: number): string {
  return `part-${String(k).padStart(5, '0')}-of-${String(K).padStart(5, '0')}.safetensors`;
}

const PART_RE = /^part-(\d+)-of-(\d+)\.safetensors$/;
const TEMP_RE = ATOMIC_TEMP_RE;

// Lives in runtime/atomic.ts now (run folders clear temp files of killed writers too); re-exported for existing callers.
export { removeStaleTempFiles };

// ---------------------------------------------------------------------------
// States

/** |S| of state s of image i: cycles over 0 .. numBlocks-1 across the dataset. */
export function stateSize(cfg: Pick<OracleDatasetConfig, 'statesPerImage'>, numBlocks: number, image: number, s: number): number {
  return (image * cfg.statesPerImage + s) % numBlocks;
}

/** The reveal sequence (visible blocks in reveal order) of state s of image i; deterministic. */
export function stateSequence(cfg: Pick<OracleDatasetConfig, 'statesPerImage' | 'seed'>, geo: BlockGeometry, image: number, s: number): number[] {
  const size = stateSize(cfg, geo.numBlocks, image, s);
  return randomBlockOrder(geo, rng(seedFrom(cfg.seed, 'oracle-state', image, s))).slice(0, size);
}

// ---------------------------------------------------------------------------
// Identity, manifest, backbone checks

/** What makes two datasets the same: the config without paths, plus the content fingerprints. */
export interface OracleDatasetIdentity extends Omit<OracleDatasetConfig, 'backbone' | 'tokens' | 'compare'> {
  compare: OracleLabeling[];
  /** sha256 (16 hex) of the backbone checkpoint file. */
  backboneFingerprint: string;
  /** sha256 (16 hex) of the labelled split's tokens and labels. */
  tokensFingerprint: string;
  gridH: number;
  gridW: number;
}

export interface OracleManifest {
  format: string;
  /** Compared field by field when the folder is reopened: a different one is refused. */
  identity: OracleDatasetIdentity;
  /** The config as first given (paths as written then). */
  config: OracleDatasetConfig;
  backbone: { path: string; fingerprint: string; step: number; r: number; model: GPTConfig; blockSize: string };
  tokens: { path: string; tokenizerFingerprint: string; tokensFingerprint: string; split: string; splitImages: number };
  geometry: { gridH: number; gridW: number; blockH: number; blockW: number; blocksY: number; blocksX: number; numBlocks: number; numTokens: number };
  labelings: { primary: OracleLabeling; compare: OracleLabeling[]; compareEvery: number };
  counts: { images: number; statesPerImage: number; states: number; parts: number; imagesPerPart: number };
  /** How the visible sets are drawn, in words. */
  stateSampling: string;
  createdAt: string;
}

export const STATE_SAMPLING_RULE =
  "state s of image i: |S| = (i * statesPerImage + s) mod numBlocks; S = the first |S| blocks of randomBlockOrder(geo, rng(seedFrom(seed, 'oracle-state', i, s))), stored in that reveal order";

const sha16 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex').slice(0, 16);

function splitOf(cache: TokenCache, split: 'train' | 'test'): TokenSplit {
  return split === 'train' ? cache.train : cache.test;
}

/**
 * Read a Stage 1 checkpoint's config without building the model, and check it
 * against the token grid and the dataset's block size. Returns its GPT config
 * and where the block size came from.
 */
export function checkBackboneForDataset(file: string, cache: TokenCache, cfg: OracleDatasetConfig, bytes?: Uint8Array):
  { model: GPTConfig; step: number; r: number; blockSize: string } {
  const buf = bytes ?? readBytes(file, 'backbone checkpoint', 'pass a Stage 1 checkpoint file (notebooks/02_stage1_backbone.ipynb writes them)');
  const { metadata } = decodeSafetensors(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength), file);
  let model: GPTConfig;
  let extra: Record<string, unknown> = {};
  try {
    model = JSON.parse(metadata.config ?? 'null');
    extra = JSON.parse(metadata.extra ?? '{}');
  } catch {
    throw new OrderHeadError('the checkpoint metadata is not valid JSON', file, 'pass a checkpoint written by trainStage1');
  }
  ensure(model && typeof model === 'object' && Number.isInteger(model.gridH), 'not a backbone checkpoint (no model config in its metadata)', file,
    'pass a stage1-step*.safetensors file from a Stage 1 run');
  ensure(metadata.kind === 'stage1', `is a '${metadata.kind ?? 'unknown'}' checkpoint, not a Stage 1 backbone`, file, 'pass a stage1-step*.safetensors file from a Stage 1 run');
  const fixGrid = 'use a backbone trained on this token cache (same tokenizer and profile), or point oracle.tokens at the tokenizer run the backbone was trained on';
  ensure(model.gridH === cache.grid.h && model.gridW === cache.grid.w,
    `the backbone's token grid is ${model.gridH}x${model.gridW} but the dataset's token cache (${cache.path}) has ${cache.grid.h}x${cache.grid.w} tokens per image`, file, fixGrid);
  ensure(model.vocabSize === cache.codebookSize,
    `the backbone's vocabulary has ${model.vocabSize} tokens but the tokenizer's codebook has ${cache.codebookSize} codes`, file, fixGrid);
  // The block size lives in the Stage 1 run's config.json, beside checkpoints/.
  const runConfig = path.join(path.dirname(path.dirname(file)), 'config.json');
  let blockSize = `unknown (no Stage 1 config.json at ${runConfig})`;
  if (fs.existsSync(runConfig)) {
    let rc: { stage1?: { blockH?: number; blockW?: number }; data?: { tokenizer?: string } };
    try {
      rc = JSON.parse(fs.readFileSync(runConfig, 'utf8'));
    } catch (err) {
      throw new OrderHeadError(`cannot read the Stage 1 run config (${(err as Error).message})`, runConfig, 'fix or restore the run folder of the backbone');
    }
    const bh = rc.stage1?.blockH, bw = rc.stage1?.blockW;
    if (bh !== undefined && bw !== undefined) {
      ensure(bh === cfg.blockH && bw === cfg.blockW,
        `the backbone was trained on ${bh}x${bw}-token blocks (${runConfig}) but the dataset uses ${cfg.blockH}x${cfg.blockW} blocks`, 'oracle.blockH / oracle.blockW',
        `set blockH: ${bh}, blockW: ${bw} (the backbone's block size), or use a backbone trained with ${cfg.blockH}x${cfg.blockW} blocks`);
      blockSize = `${bh}x${bw} (from ${runConfig})`;
    }
    const tok = rc.data?.tokenizer;
    if (tok && tok !== 'unknown' && cache.tokenizer.fingerprint && tok !== cache.tokenizer.fingerprint) {
      throw new OrderHeadError(
        `the backbone was trained on tokens of tokenizer ${tok} but the token cache ${cache.path} was made by tokenizer ${cache.tokenizer.fingerprint}`,
        file, fixGrid);
    }
  }
  return { model, step: Number(metadata.step), r: Number(extra.r ?? NaN), blockSize };
}

function readBytes(file: string, what: string, fix: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new OrderHeadError(code === 'ENOENT' ? `the ${what} does not exist` : `cannot read the ${what} (${(err as Error).message})`, file, fix);
  }
}

function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new OrderHeadError(`cannot read the ${what} (${(err as Error).message})`, file, 'restore it, or delete the dataset folder and build again');
  }
}

/** What `prepareOracleDataset` hands the builder. */
export interface PreparedOracleDataset {
  dir: string;
  manifest: OracleManifest;
  cache: TokenCache;
  geo: BlockGeometry;
  config: OracleDatasetConfig;
  /** True when the folder already held this dataset's manifest. */
  existed: boolean;
}

/**
 * Check the config, the token cache and the backbone, and create the dataset
 * folder with its manifest, or reopen it. Refuses (OrderHeadError) a folder
 * whose manifest has a different identity (each differing field named), and a
 * non-empty folder without a manifest.
 */
export function prepareOracleDataset(dir: string, cfg: OracleDatasetConfig): PreparedOracleDataset {
  validateOracleDatasetConfig(cfg);
  const cache = loadTokenCache(cfg.tokens);
  const split = splitOf(cache, cfg.split);
  ensure(cfg.images <= split.n, `asks for ${cfg.images} images but the ${cfg.split} split has ${split.n}`, 'oracle.images',
    `set images to at most ${split.n}`);
  const geo = blockGeometry({ gridH: cache.grid.h, gridW: cache.grid.w, blockH: cfg.blockH, blockW: cfg.blockW });
  const bytes = readBytes(cfg.backbone, 'backbone checkpoint', 'pass a Stage 1 checkpoint file (notebooks/02_stage1_backbone.ipynb writes them)');
  const bb = checkBackboneForDataset(cfg.backbone, cache, cfg, bytes);
  const T = geo.numTokens;
  const tokHash = createHash('sha256');
  // The whole split, so that changing `images` is reported as that field alone.
  tokHash.update(Buffer.from(split.tokens.buffer, split.tokens.byteOffset, split.n * T * 4));
  tokHash.update(Buffer.from(split.labels.buffer, split.labels.byteOffset, split.n * 4));
  const tokensFingerprint = tokHash.digest('hex').slice(0, 16);
  const backboneFingerprint = sha16(bytes);
  const { backbone: _b, tokens: _t, compare: _c, ...rest } = cfg;
  const identity: OracleDatasetIdentity = { ...rest, compare: compareLabelings(cfg), backboneFingerprint, tokensFingerprint, gridH: geo.gridH, gridW: geo.gridW };
  const manifestPath = path.join(dir, 'manifest.json');
  let existed = false;
  let manifest: OracleManifest;
  if (fs.existsSync(manifestPath)) {
    manifest = readJson<OracleManifest>(manifestPath, 'dataset manifest');
    ensure(manifest.format === ORACLE_DATASET_FORMAT, `not an oracle dataset manifest (format '${manifest.format}')`, manifestPath,
      'choose another folder for the dataset');
    const diffs = diffConfig(manifest.identity, identity);
    if (diffs.length > 0) {
      throw new OrderHeadError(
        `this dataset folder was built with a different config: ${formatDifferences(diffs, 'dataset', 'current')}`,
        dir,
        'build into another folder (datasets with different configs are never mixed), set those fields back to the dataset\'s values to continue it, or delete the folder to start over',
      );
    }
    existed = true;
  } else {
    if (fs.existsSync(dir)) {
      const other = fs.readdirSync(dir).filter((f) => !TEMP_RE.test(f));
      ensure(other.length === 0, `the folder exists and holds ${other.length} file(s) (${other.slice(0, 3).join(', ')}) but no manifest.json, so it is not an oracle dataset`,
        dir, 'choose another folder, or delete this one');
    }
    manifest = {
      format: ORACLE_DATASET_FORMAT,
      identity,
      config: { ...cfg, backbone: path.resolve(cfg.backbone), tokens: path.resolve(cfg.tokens) },
      backbone: { path: path.resolve(cfg.backbone), fingerprint: backboneFingerprint, step: bb.step, r: bb.r, model: bb.model, blockSize: bb.blockSize },
      tokens: { path: cache.path, tokenizerFingerprint: cache.tokenizer.fingerprint, tokensFingerprint, split: cfg.split, splitImages: split.n },
      geometry: { gridH: geo.gridH, gridW: geo.gridW, blockH: geo.blockH, blockW: geo.blockW, blocksY: geo.blocksY, blocksX: geo.blocksX, numBlocks: geo.numBlocks, numTokens: geo.numTokens },
      labelings: { primary: { reading: cfg.reading, weight: cfg.weight }, compare: compareLabelings(cfg), compareEvery: cfg.compareEvery },
      counts: { images: cfg.images, statesPerImage: cfg.statesPerImage, states: cfg.images * cfg.statesPerImage, parts: partCount(cfg), imagesPerPart: cfg.imagesPerPart },
      stateSampling: STATE_SAMPLING_RULE,
      createdAt: new Date().toISOString(),
    };
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new OrderHeadError(`cannot create the dataset folder (${(err as Error).message})`, dir, 'choose a writable folder');
    }
    writeFileAtomic(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  }
  return { dir, manifest, cache, geo, config: cfg, existed };
}

/** Read a dataset folder's manifest (OrderHeadError when there is none). */
export function readOracleManifest(dir: string): OracleManifest {
  const file = path.join(dir, 'manifest.json');
  ensure(fs.existsSync(file), 'no oracle dataset here (no manifest.json)', dir, 'build it first: buildOracleDataset(dir, config) or `node dist/lib/oracle/cli.js build --run DIR ...`');
  const m = readJson<OracleManifest>(file, 'dataset manifest');
  ensure(m.format === ORACLE_DATASET_FORMAT, `not an oracle dataset manifest (format '${m.format}')`, file, 'point at a folder written by buildOracleDataset');
  return m;
}

// ---------------------------------------------------------------------------
// Building

/** The scorer's signature (lib/oracle/utility.ts `scoreStates`); tests inject fakes. */
export type OracleScorer = (m: GPT, geo: BlockGeometry, items: OracleItem[], cfg: OracleConfig) => StateScore[];

export interface BuildOracleOptions {
  /** `i/N` or {index, count}: label only this shard's parts. Default: everything. */
  shard?: string | ShardSpec;
  /** Progress bar factory (the notebook passes session.progress); counts states. */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Called after each part file is written. */
  onPart?: (info: OraclePartInfo) => void;
  /** Replace the scorer (tests). */
  scorer?: OracleScorer;
  /** The backbone, if already loaded (it must be the config's checkpoint); otherwise loaded and disposed here. */
  model?: GPT;
  /** Stop after writing this many parts (tests). */
  maxParts?: number;
  /** Sleep this long after each part (lets tests kill a run between parts; leaves CPU to others). */
  pauseMs?: number;
}

export interface OraclePartInfo {
  part: number;
  parts: number;
  images: { start: number; end: number };
  states: number;
  seconds: number;
  statesPerSecond: number;
}

export interface BuildOracleResult {
  dir: string;
  shard: ShardSpec;
  /** Parts of this shard: written now, found complete, and in total. */
  written: number;
  skipped: number;
  shardParts: number;
  /** States scored now (primary labeling; compare labelings not counted). */
  states: number;
  /** Scoring calls of compare labelings, in states. */
  compareStates: number;
  seconds: number;
  /** Primary states per second of wall time (compare labelings included in the time). */
  statesPerSecond: number;
  /** Temp files of dead processes removed before starting. */
  removedTempFiles: string[];
  manifest: OracleManifest;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Check a scorer's answer for one state: lengths, labels in range and not visible. */
function checkScore(sc: StateScore | undefined, geo: BlockGeometry, visible: readonly number[], what: string): StateScore {
  const where = `oracle scorer (${what})`;
  ensure(sc && sc.u instanceof Float32Array && sc.u.length === geo.numBlocks && sc.uExtrap instanceof Float32Array && sc.uExtrap.length === geo.numBlocks,
    `returned utility vectors of the wrong type or length (expected Float32Array(${geo.numBlocks}))`, where, 'return one StateScore per item, u and uExtrap of length numBlocks');
  ensure(sc.tokenLoss instanceof Float32Array && sc.tokenLoss.length === geo.numTokens,
    `returned tokenLoss of length ${sc.tokenLoss?.length} (expected ${geo.numTokens})`, where, 'return l_j(S) for every cell, NaN on visible cells');
  const vis = new Set(visible);
  for (const [name, a] of [['aStar', sc.aStar], ['aStarExtrap', sc.aStarExtrap]] as const) {
    ensure(Number.isInteger(a) && a >= 0 && a < geo.numBlocks && !vis.has(a), `returned ${name} = ${a}, which is not a hidden block`, where,
      'return the argmax over the blocks not in the visible set');
  }
  return sc;
}

interface StateRef { image: number; s: number; sequence: number[] }

/**
 * Label the states of one range of images with one labeling. Returns one
 * StateScore per ref, in order. Progress is ticked per scored chunk.
 */
async function scoreRefs(scorer: OracleScorer, m: GPT, geo: BlockGeometry, split: TokenSplit, refs: StateRef[], labeling: OracleLabeling,
  perCall: number, passBatch: number, onChunk: (n: number) => void): Promise<StateScore[]> {
  const T = geo.numTokens;
  const out: StateScore[] = new Array(refs.length);
  // Score in order of |S| (stable), so that a call holds few sizes and the scorer packs equal sizes into one pass.
  const order = refs.map((_, i) => i).sort((x, y) => refs[x].sequence.length - refs[y].sequence.length || x - y);
  for (let i = 0; i < order.length; i += perCall) {
    const idx = order.slice(i, i + perCall);
    const chunk = idx.map((j) => refs[j]);
    const items: OracleItem[] = chunk.map((r) => ({
      tokens: split.tokens.slice(r.image * T, (r.image + 1) * T),
      classId: split.labels[r.image],
      visible: r.sequence.slice(),
    }));
    const scores = scorer(m, geo, items, { reading: labeling.reading, weight: labeling.weight, batch: passBatch });
    ensure(Array.isArray(scores) && scores.length === items.length, `returned ${Array.isArray(scores) ? scores.length : typeof scores} scores for ${items.length} states`,
      'oracle scorer', 'return one StateScore per item, in order');
    chunk.forEach((r, j) => { out[idx[j]] = checkScore(scores[j], geo, r.sequence, `${labeling.reading}/${labeling.weight}, image ${r.image}, state ${r.s}`); });
    onChunk(chunk.length);
    await yieldToEventLoop();
  }
  return out;
}

/** The tensors of one labeling, `prefix` '' for the primary, `cmp<k>.` for compare k. */
function labelTensors(prefix: string, scores: (StateScore | undefined)[], nb: number, T: number, withTokenLoss: boolean): Record<string, SafeTensor> {
  const n = scores.length;
  const u = new Float32Array(n * nb).fill(NaN), ux = new Float32Array(n * nb).fill(NaN);
  const a = new Int32Array(n).fill(-1), ax = new Int32Array(n).fill(-1), lRest = new Float32Array(n).fill(NaN);
  const has = new Uint8Array(n);
  const tl = withTokenLoss ? new Float32Array(n * T).fill(NaN) : undefined;
  scores.forEach((sc, i) => {
    if (!sc) return;
    has[i] = 1;
    u.set(sc.u, i * nb);
    ux.set(sc.uExtrap, i * nb);
    a[i] = sc.aStar;
    ax[i] = sc.aStarExtrap;
    lRest[i] = sc.lRest;
    tl?.set(sc.tokenLoss, i * T);
  });
  const t: Record<string, SafeTensor> = {
    [`${prefix}u`]: { dtype: 'F32', shape: [n, nb], data: u },
    [`${prefix}uExtrap`]: { dtype: 'F32', shape: [n, nb], data: ux },
    [`${prefix}aStar`]: { dtype: 'I32', shape: [n], data: a },
    [`${prefix}aStarExtrap`]: { dtype: 'I32', shape: [n], data: ax },
    [`${prefix}lRest`]: { dtype: 'F32', shape: [n], data: lRest },
  };
  if (tl) t[`${prefix}tokenLoss`] = { dtype: 'F32', shape: [n, T], data: tl };
  if (prefix) t[`${prefix}has`] = { dtype: 'U8', shape: [n], data: has };
  return t;
}

/** Hash of the identity, stamped into every part so a stray part from another dataset is caught. */
function identityHash(identity: OracleDatasetIdentity): string {
  return sha16(canonicalJson(identity));
}

/**
 * Build (or continue) the oracle dataset in `dir`: label every part of this
 * shard that is not written yet, each part written atomically when complete.
 * A killed build continues where it stopped when called again with the same
 * config; a different config is refused. Call `mergeOracleDataset(dir)` once
 * every shard is done.
 */
export async function buildOracleDataset(dir: string, cfg: OracleDatasetConfig, opts: BuildOracleOptions = {}): Promise<BuildOracleResult> {
  const shard = parseShard(opts.shard);
  const prep = prepareOracleDataset(dir, cfg);
  const { manifest, cache, geo } = prep;
  const split = splitOf(cache, cfg.split);
  const K = partCount(cfg);
  const { first, end } = shardParts(cfg, shard);
  const myParts = new Set(Array.from({ length: end - first }, (_, j) => partFileName(first + j, K)));
  const removedTempFiles = removeStaleTempFiles(dir, { mine: (target) => myParts.has(target) });
  const idHash = identityHash(manifest.identity);
  const compare = compareLabelings(cfg);
  const primary: OracleLabeling = { reading: cfg.reading, weight: cfg.weight };
  const nb = geo.numBlocks, T = geo.numTokens, S = cfg.statesPerImage;

  const todo: number[] = [];
  let skipped = 0;
  for (let k = first; k < end; k++) {
    const file = path.join(dir, partFileName(k, K));
    if (fs.existsSync(file)) {
      checkPart(file, idHash, k, cfg);
      skipped++;
    } else todo.push(k);
  }
  const parts = opts.maxParts !== undefined ? todo.slice(0, opts.maxParts) : todo;
  const statesTodo = parts.reduce((acc, k) => { const r = partImages(cfg, k); return acc + (r.end - r.start) * S; }, 0);
  const bar = opts.progress?.({ total: statesTodo, label: `oracle ${shard.index}/${shard.count}` });
  const t0 = Date.now();
  let states = 0, compareStates = 0, written = 0;
  let model = opts.model;
  const ownModel = !model && parts.length > 0;
  if (ownModel) model = loadBackboneWithInfo(cfg.backbone, { gridH: geo.gridH, gridW: geo.gridW }).model;
  const scorer = opts.scorer ?? scoreStates;
  try {
    for (const k of parts) {
      const tp = Date.now();
      const range = partImages(cfg, k);
      const refs: StateRef[] = [];
      for (let i = range.start; i < range.end; i++) for (let s = 0; s < S; s++) refs.push({ image: i, s, sequence: stateSequence(cfg, geo, i, s) });
      const n = refs.length;
      const main = await scoreRefs(scorer, model!, geo, split, refs, primary, cfg.statesPerCall, cfg.passBatch, (c) => {
        states += c;
        const sec = (Date.now() - t0) / 1000;
        bar?.tick(c, { 'states/s': sec > 0 ? Number((states / sec).toPrecision(3)) : 0 });
      });
      const tensors: Record<string, SafeTensor> = labelTensors('', main, nb, T, true);
      const cmpRefs = refs.filter((r) => r.image % cfg.compareEvery === 0);
      for (let c = 0; c < compare.length; c++) {
        const scored = await scoreRefs(scorer, model!, geo, split, cmpRefs, compare[c], cfg.statesPerCall, cfg.passBatch, (x) => { compareStates += x; });
        const byRef = new Map(cmpRefs.map((r, j) => [r, scored[j]]));
        Object.assign(tensors, labelTensors(`cmp${c}.`, refs.map((r) => byRef.get(r)), nb, T, false));
      }
      const image = new Int32Array(n), state = new Int32Array(n), size = new Int32Array(n), classId = new Int32Array(n);
      const sequence = new Int32Array(n * nb).fill(-1), visible = new Uint8Array(n * nb);
      refs.forEach((r, i) => {
        image[i] = r.image;
        state[i] = r.s;
        size[i] = r.sequence.length;
        classId[i] = split.labels[r.image];
        r.sequence.forEach((b, j) => { sequence[i * nb + j] = b; visible[i * nb + b] = 1; });
      });
      Object.assign(tensors, {
        image: { dtype: 'I32', shape: [n], data: image },
        state: { dtype: 'I32', shape: [n], data: state },
        size: { dtype: 'I32', shape: [n], data: size },
        classId: { dtype: 'I32', shape: [n], data: classId },
        sequence: { dtype: 'I32', shape: [n, nb], data: sequence },
        visible: { dtype: 'U8', shape: [n, nb], data: visible },
      } satisfies Record<string, SafeTensor>);
      const file = path.join(dir, partFileName(k, K));
      writeFileAtomic(file, encodeSafetensors(tensors, {
        format: ORACLE_DATASET_FORMAT, kind: 'part', identity: idHash, part: String(k), parts: String(K),
        image_start: String(range.start), image_end: String(range.end), states: String(n),
      }));
      written++;
      const seconds = (Date.now() - tp) / 1000;
      const info: OraclePartInfo = { part: k, parts: K, images: range, states: n, seconds, statesPerSecond: seconds > 0 ? n / seconds : NaN };
      appendJsonLine(path.join(dir, ORACLE_BUILD_LOG), { ...info, compareStates: cmpRefs.length * compare.length, shard: `${shard.index}/${shard.count}`, pid: process.pid, time: new Date().toISOString() });
      opts.onPart?.(info);
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  } finally {
    if (ownModel && model) disposeGPT(model);
  }
  const seconds = (Date.now() - t0) / 1000;
  bar?.done({ 'states/s': seconds > 0 ? Number((states / seconds).toPrecision(3)) : 0 });
  return {
    dir, shard, written, skipped, shardParts: end - first, states, compareStates, seconds,
    statesPerSecond: seconds > 0 ? states / seconds : NaN, removedTempFiles, manifest,
  };
}

/** Check an existing part file belongs to this dataset and covers the right images. */
function checkPart(file: string, idHash: string, k: number, cfg: Pick<OracleDatasetConfig, 'images' | 'imagesPerPart' | 'statesPerImage'>): Record<string, SafeTensor> {
  const bad = (problem: string) => new OrderHeadError(problem, file, 'delete this part file: the next build run labels its images again');
  let decoded: ReturnType<typeof readSafetensors>;
  try {
    decoded = readSafetensors(file);
  } catch (err) {
    // The reader's generic fix speaks of checkpoints; a damaged part is simply labelled again.
    if (err instanceof OrderHeadError) throw bad(err.problem);
    throw err;
  }
  const { tensors, metadata } = decoded;
  const range = partImages(cfg, k);
  if (metadata.format !== ORACLE_DATASET_FORMAT || metadata.kind !== 'part') throw bad('not an oracle dataset part');
  if (metadata.identity !== idHash) throw bad(`the part belongs to another dataset (identity ${metadata.identity}, this dataset ${idHash})`);
  if (Number(metadata.part) !== k || Number(metadata.image_start) !== range.start || Number(metadata.image_end) !== range.end) {
    throw bad(`the part says it is part ${metadata.part} with images [${metadata.image_start}, ${metadata.image_end}), expected part ${k} with [${range.start}, ${range.end})`);
  }
  const n = (range.end - range.start) * cfg.statesPerImage;
  if (!tensors.image || tensors.image.shape[0] !== n) throw bad(`the part holds ${tensors.image?.shape[0] ?? 0} states, expected ${n}`);
  return tensors;
}

// ---------------------------------------------------------------------------
// Merge and load

export interface MergeOracleResult {
  file: string;
  states: number;
  parts: number;
  removedTempFiles: string[];
}

/**
 * Concatenate every part into `<dir>/oracle.safetensors` (atomically), after
 * checking that all parts exist, belong to this dataset, and hold every
 * (image, state) pair exactly once. Missing parts are listed with the command
 * that fills them.
 */
export function mergeOracleDataset(dir: string): MergeOracleResult {
  const manifest = readOracleManifest(dir);
  const cfg = manifest.config;
  const K = partCount(cfg);
  const present = new Set<number>();
  const foreign: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    const m = PART_RE.exec(f);
    if (!m) continue;
    if (Number(m[2]) !== K || Number(m[1]) >= K) foreign.push(f);
    else present.add(Number(m[1]));
  }
  ensure(foreign.length === 0, `holds part files of another partition (${foreign.slice(0, 3).join(', ')}): this dataset has ${K} parts`, dir,
    'delete those files (they do not belong to this manifest)');
  const missing: number[] = [];
  for (let k = 0; k < K; k++) if (!present.has(k)) missing.push(k);
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, ... (${missing.length - 10} more)` : '');
    throw new OrderHeadError(`the dataset is incomplete: ${missing.length} of ${K} parts are missing (parts ${shown})`, dir,
      `finish the build first: buildOracleDataset(dir, config) or \`node dist/lib/oracle/cli.js build --run ${dir}\` (with the --shard of each unfinished process); it resumes where it stopped`);
  }
  // Complete: no shard is still writing, so every temp file left is stale.
  const removedTempFiles = removeStaleTempFiles(dir);
  const idHash = identityHash(manifest.identity);
  const S = cfg.statesPerImage;
  const seen = new Uint8Array(cfg.images * S);
  const chunks: Record<string, SafeTensor[]> = {};
  for (let k = 0; k < K; k++) {
    const file = path.join(dir, partFileName(k, K));
    const tensors = checkPart(file, idHash, k, cfg);
    const img = tensors.image.data as Int32Array, st = tensors.state.data as Int32Array;
    for (let i = 0; i < img.length; i++) {
      const key = img[i] * S + st[i];
      ensure(img[i] >= 0 && img[i] < cfg.images && st[i] >= 0 && st[i] < S, `holds state (image ${img[i]}, state ${st[i]}) outside the dataset`, file, 'delete this part and build again');
      ensure(seen[key] === 0, `holds state (image ${img[i]}, state ${st[i]}) that another part also holds (duplicate)`, file, 'delete this part and build again');
      seen[key] = 1;
    }
    for (const [name, t] of Object.entries(tensors)) (chunks[name] ??= []).push(t);
  }
  const first = seen.indexOf(0);
  ensure(first < 0, `state (image ${Math.floor(first / S)}, state ${first % S}) is in no part`, dir, 'delete the part of that image and build again');
  const merged: Record<string, SafeTensor> = {};
  for (const [name, list] of Object.entries(chunks)) {
    ensure(list.length === K, `tensor '${name}' is in ${list.length} of ${K} parts`, dir, 'delete the parts that lack it and build again');
    const rows = list.reduce((a, t) => a + t.shape[0], 0);
    const inner = list[0].shape.slice(1);
    const width = inner.reduce((a, b) => a * b, 1);
    const Ctor = list[0].data.constructor as Float32ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor;
    const data = new Ctor(rows * width);
    let off = 0;
    for (const t of list) {
      data.set(t.data as never, off);
      off += t.data.length;
    }
    merged[name] = { dtype: list[0].dtype, shape: [rows, ...inner], data };
  }
  const file = path.join(dir, ORACLE_DATASET_FILE);
  writeFileAtomic(file, encodeSafetensors(merged, { format: ORACLE_DATASET_FORMAT, kind: 'merged', identity: idHash, manifest: JSON.stringify(manifest) }));
  return { file, states: cfg.images * S, parts: K, removedTempFiles };
}

/** One labeling of the dataset's states (the primary labels every state, compare ones a subset). */
export interface OracleLabelSet extends OracleLabeling {
  /** True for the config's reading/weight (every state labelled). */
  primary: boolean;
  /** [n]: 1 where this labeling was computed. */
  has: Uint8Array;
  /** [n, numBlocks]: u(a|S), NaN on visible blocks (and where `has` is 0). */
  u: Float32Array;
  /** [n, numBlocks]: u_extrap(a|S) under this labeling's weight, NaN on visible blocks. */
  uExtrap: Float32Array;
  /** [n]: argmax u, -1 where not computed. */
  aStar: Int32Array;
  /** [n]: argmax u_extrap, -1 where not computed. */
  aStarExtrap: Int32Array;
  /** [n]: L_rest(S). */
  lRest: Float32Array;
}

/** A merged oracle dataset as typed arrays (row i = state i; images in order, states in order within). */
export interface OracleDataset {
  dir: string;
  manifest: OracleManifest;
  geo: BlockGeometry;
  /** Number of states. */
  n: number;
  image: Int32Array;
  state: Int32Array;
  /** |S| per state. */
  size: Int32Array;
  classId: Int32Array;
  /** [n, numBlocks]: the visible blocks in reveal order, then -1. */
  sequence: Int32Array;
  /** [n, numBlocks]: 1 = visible. */
  visible: Uint8Array;
  /** [n, numTokens]: l_j(S) of the primary reading, NaN on visible cells. */
  tokenLoss: Float32Array;
  /** labelings[0] is the primary; the rest are the compare labelings, in manifest order. */
  labelings: OracleLabelSet[];
}

/** Load `<dir>/oracle.safetensors` (after `mergeOracleDataset`) with its manifest. */
export function loadOracleDataset(dir: string): OracleDataset {
  const manifest = readOracleManifest(dir);
  const file = path.join(dir, ORACLE_DATASET_FILE);
  ensure(fs.existsSync(file), 'the dataset is not merged yet (no oracle.safetensors)', dir,
    `merge it: mergeOracleDataset(dir) or \`node dist/lib/oracle/cli.js merge --run ${dir}\` (after every shard finished)`);
  const { tensors, metadata } = readSafetensors(file);
  const bad = (problem: string) => new OrderHeadError(problem, file, 'merge again (mergeOracleDataset) or rebuild the dataset');
  if (metadata.format !== ORACLE_DATASET_FORMAT || metadata.kind !== 'merged') throw bad('not a merged oracle dataset');
  if (metadata.identity !== identityHash(manifest.identity)) throw bad('the merged file does not match manifest.json (another dataset)');
  const g = manifest.geometry;
  const geo = blockGeometry({ gridH: g.gridH, gridW: g.gridW, blockH: g.blockH, blockW: g.blockW });
  const n = manifest.counts.states;
  const get = <A>(name: string, dtype: string, width: number): A => {
    const t = tensors[name];
    if (!t || t.dtype !== dtype || t.data.length !== n * width) throw bad(`tensor '${name}' is missing or not ${dtype} [${n}${width > 1 ? `, ${width}` : ''}]`);
    return t.data as unknown as A;
  };
  const nb = geo.numBlocks;
  const label = (prefix: string, l: OracleLabeling, primary: boolean): OracleLabelSet => ({
    ...l, primary,
    has: primary ? new Uint8Array(n).fill(1) : get<Uint8Array>(`${prefix}has`, 'U8', 1),
    u: get<Float32Array>(`${prefix}u`, 'F32', nb),
    uExtrap: get<Float32Array>(`${prefix}uExtrap`, 'F32', nb),
    aStar: get<Int32Array>(`${prefix}aStar`, 'I32', 1),
    aStarExtrap: get<Int32Array>(`${prefix}aStarExtrap`, 'I32', 1),
    lRest: get<Float32Array>(`${prefix}lRest`, 'F32', 1),
  });
  return {
    dir, manifest, geo, n,
    image: get('image', 'I32', 1), state: get('state', 'I32', 1), size: get('size', 'I32', 1), classId: get('classId', 'I32', 1),
    sequence: get('sequence', 'I32', nb), visible: get('visible', 'U8', nb), tokenLoss: get('tokenLoss', 'F32', geo.numTokens),
    labelings: [label('', manifest.labelings.primary, true), ...manifest.labelings.compare.map((c, k) => label(`cmp${k}.`, c, false))],
  };
}

/** The visible blocks of state i in reveal order. */
export function oracleSequence(ds: OracleDataset, i: number): number[] {
  const nb = ds.geo.numBlocks;
  return Array.from(ds.sequence.subarray(i * nb, i * nb + ds.size[i]));
}

/** The scorer input of state i (its image's tokens from the token cache): recompute labels or backbone hidden states. */
export function oracleItem(ds: OracleDataset, i: number, cache: TokenCache): OracleItem {
  const split = splitOf(cache, ds.manifest.config.split);
  const T = ds.geo.numTokens;
  const img = ds.image[i];
  return { tokens: split.tokens.slice(img * T, (img + 1) * T), classId: ds.classId[i], visible: oracleSequence(ds, i) };
}

/** The per-part timing lines of a dataset's builds (states, seconds, states/s, shard). */
export function readOracleBuildLog(dir: string): (OraclePartInfo & { shard: string; pid: number; time: string; compareStates: number })[] {
  const file = path.join(dir, ORACLE_BUILD_LOG);
  if (!fs.existsSync(file)) return [];
  return readJsonLines<OraclePartInfo & { shard: string; pid: number; time: string; compareStates: number }>(file, { warn: () => {} }).rows;
}

/**
 * The last random-phase (r = 1.00) checkpoint of a Stage 1 run folder: the
 * order-robust backbone the oracle and the planner use (METHOD.md §6.1).
 */
export function randomPhaseCheckpoint(stage1RunDir: string): string {
  const dir = path.join(stage1RunDir, 'checkpoints');
  const fix = 'run notebooks/02_stage1_backbone.ipynb in this profile first (it trains the block-RAR backbone and saves random-phase checkpoints)';
  ensure(fs.existsSync(dir), 'no Stage 1 checkpoints here', dir, fix);
  const re = /^stage1-step(\d+)-r(\d+\.\d+)\.safetensors$/;
  let best: { step: number; file: string } | undefined;
  for (const f of fs.readdirSync(dir)) {
    const m = re.exec(f);
    if (!m || Number(m[2]) < 1) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { step, file: path.join(dir, f) };
  }
  if (!best) {
    const any = latestCheckpoint(dir, 'stage1');
    throw new OrderHeadError(`no random-phase (r = 1.00) checkpoint among the Stage 1 checkpoints${any ? ` (newest: ${any.name})` : ''}`, dir,
      `${fix}; a block-rar run with checkpointEvery below annealStart · steps saves some`);
  }
  return best.file;
}

// Figure specs for notebook 03 (plotly traces and layouts).
export * from './dataset-figures';
