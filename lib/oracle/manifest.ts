/**
 * Curriculum Stage 2: the manifest of an oracle dataset folder and the checks
 * made before any state is labelled. `prepareOracleDataset` checks the config,
 * the token cache and the backbone (`checkBackboneForDataset`: its grid,
 * vocabulary, block size and tokenizer), then writes manifest.json, or
 * reopens a folder whose manifest has the same identity and refuses one with
 * another (each differing field named).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { OrderHeadError, ensure } from '../runtime/errors';
import { writeFileAtomic, ATOMIC_TEMP_RE } from '../runtime/atomic';
import { decodeSafetensors } from '../runtime/safetensors';
import { diffConfig, formatDifferences } from '../runtime/checkpoint';
import { blockGeometry, BlockGeometry } from '../order';
import { GPTConfig } from '../backbone/config';
import { loadTokenCache, TokenCache } from '../tokenizer/cache';
import { compareLabelings, OracleDatasetConfig, OracleDatasetIdentity, OracleLabeling, validateOracleDatasetConfig } from './dataset-config';
import { ORACLE_DATASET_FORMAT, partCount } from './layout';
import { explicitStatesRule, STATE_SAMPLING_RULE } from './states';
import { sha16, splitOf } from './dataset-files';

const TEMP_RE = ATOMIC_TEMP_RE;

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
  const { backbone: _b, tokens: _t, compare: _c, explicitStates, ...rest } = cfg;
  const identity: OracleDatasetIdentity = { ...rest, compare: compareLabelings(cfg), backboneFingerprint, tokensFingerprint, gridH: geo.gridH, gridW: geo.gridW };
  // Given states enter as their source and a fingerprint (the sequences themselves stay in manifest.config).
  if (explicitStates) identity.explicitStates = { source: explicitStates.source, fingerprint: sha16(JSON.stringify(explicitStates.sequences)) };
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
      stateSampling: explicitStates ? explicitStatesRule(explicitStates.source) : STATE_SAMPLING_RULE,
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
