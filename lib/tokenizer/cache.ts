/**
 * The token cache: the whole dataset tokenized once, stored in the tokenizer's
 * run folder as `tokens.safetensors`, and read by every later stage
 * (backbone, oracle, planner) with `loadTokenCache(runDir)`.
 *
 * Layout (safetensors, so PyTorch reads it with `safetensors.torch.load_file`):
 *   train.tokens  I32 [N_train, H*W]   row-major over the token grid
 *   train.labels  I32 [N_train]
 *   test.tokens   I32 [N_test, H*W]
 *   test.labels   I32 [N_test]
 *   __metadata__: format, grid, codebook size, the tokenizer's fingerprint,
 *                 step, checkpoint and config, and where the images came from.
 *
 * The cache is rebuilt only when the tokenizer (its fingerprint: weights plus
 * model config) or the data changed; otherwise it is reloaded as it is.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { encodeSafetensors, readSafetensors } from '../runtime/safetensors';
import { loadDataset } from '../data/dataset';
import { Progress, yieldToEventLoop } from '../runtime/progress';
import { canonicalJson } from '../runtime/checkpoint';
import { TokenizerConfig } from './config';
import { VqTokenizer } from './vq-tokenizer';

/** File name of the cache inside the tokenizer run folder. */
export const TOKEN_CACHE_FILE = 'tokens.safetensors';

/** Value of `__metadata__.format` in every token cache. */
export const TOKEN_CACHE_FORMAT = 'orderhead-tokens/1';

/** One split of the cache. */
export interface TokenSplit {
  /** n * (grid.h * grid.w) token ids, image after image, row-major over the grid. */
  tokens: Int32Array;
  /** n class labels. */
  labels: Int32Array;
  n: number;
  /** Where the images came from (dataset source text). */
  source: string;
}

/** The tokenized dataset, as later stages use it. */
export interface TokenCache {
  train: TokenSplit;
  test: TokenSplit;
  /** Token grid per image (8 x 8 for the default tokenizer). */
  grid: { h: number; w: number };
  /** Vocabulary size: token ids lie in 0 .. codebookSize-1. */
  codebookSize: number;
  /** The tokenizer that produced the tokens. */
  tokenizer: { fingerprint: string; step: number; checkpoint?: string; config: TokenizerConfig };
  /** The cache file. */
  path: string;
}

/** Labelled images to tokenize (an ImageDataset fits). */
export interface LabelledImages {
  images: Float32Array;
  labels: Int32Array;
  n: number;
  source?: string;
}

export interface TokenizeDatasetOptions {
  /** Default: loadDataset(tokenizer.config.data.train). */
  train?: LabelledImages;
  /** Default: loadDataset(tokenizer.config.data.test). */
  test?: LabelledImages;
  /** Progress bar factory (the notebook passes session.progress); counts images. */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Rebuild even when the cache matches. */
  force?: boolean;
  /** Images per forward pass; default 256. */
  batch?: number;
}

export interface TokenizeDatasetResult extends TokenCache {
  /** True when an existing, matching cache was reloaded instead of rebuilt. */
  reused: boolean;
  /** Why the cache was (re)built: 'no cache yet', 'tokenizer changed (...)', ... ; '' when reused. */
  reason: string;
  /** Seconds spent encoding (0 when reused). */
  seconds: number;
}

/** Path of the cache in a tokenizer run folder. */
export function tokenCachePath(runDir: string): string {
  return path.join(runDir, TOKEN_CACHE_FILE);
}

function dataSourceText(cfg: TokenizerConfig, split: 'train' | 'test', given?: LabelledImages): string {
  return given?.source ?? canonicalJson(cfg.data[split]);
}

/**
 * Tokenize the train and test splits with `tokenizer` and store them in
 * `<runDir>/tokens.safetensors` (atomically; await it), or reload that file when it was
 * made by the same tokenizer (same fingerprint) from the same data.
 */
export async function tokenizeDataset(tokenizer: VqTokenizer, runDir: string, opts: TokenizeDatasetOptions = {}): Promise<TokenizeDatasetResult> {
  const file = tokenCachePath(runDir);
  const cfg = tokenizer.config;
  const fingerprint = tokenizer.fingerprint();
  const sources = { train: dataSourceText(cfg, 'train', opts.train), test: dataSourceText(cfg, 'test', opts.test) };

  let reason = 'no cache yet';
  if (opts.force) reason = 'rebuild forced';
  else if (fs.existsSync(file)) {
    let cached: TokenCache | undefined;
    try {
      cached = loadTokenCache(file);
    } catch (err) {
      reason = `the existing cache is unreadable (${(err as Error).message})`;
    }
    if (cached) {
      if (cached.tokenizer.fingerprint !== fingerprint) {
        reason = `tokenizer changed (cache made by ${cached.tokenizer.fingerprint} at step ${cached.tokenizer.step}, current ${fingerprint} at step ${tokenizer.source.step})`;
      } else if (cached.train.source !== sources.train || cached.test.source !== sources.test) {
        reason = `data changed (cache: ${cached.train.source} / ${cached.test.source}; now: ${sources.train} / ${sources.test})`;
      } else if ((opts.train && opts.train.n !== cached.train.n) || (opts.test && opts.test.n !== cached.test.n)) {
        reason = 'image counts changed';
      } else {
        return { ...cached, reused: true, reason: '', seconds: 0 };
      }
    }
  }

  const load = (split: 'train' | 'test', given?: LabelledImages): LabelledImages => {
    if (given) return given;
    const ds = loadDataset({ ...cfg.data[split], pad: cfg.imageSize });
    return { images: ds.images, labels: ds.labels, n: ds.n };
  };
  const train = load('train', opts.train);
  const test = load('test', opts.test);
  for (const [split, d] of [['train', train], ['test', test]] as const) {
    ensure(d.labels.length === d.n, `has ${d.labels.length} labels for ${d.n} images`, `tokenizeDataset(${split})`, 'pass images and labels of the same split');
  }
  const T = tokenizer.tokensPerImage;
  const t0 = Date.now();
  const bar = opts.progress?.({ total: train.n + test.n, label: 'tokenize dataset' });
  // Encode in chunks, yielding between them so the notebook's progress display updates live.
  const chunk = 4096;
  const encode = async (d: LabelledImages): Promise<Int32Array> => {
    const px = tokenizer.config.imageSize * tokenizer.config.imageSize;
    const tokens = new Int32Array(d.n * T);
    for (let s = 0; s < d.n; s += chunk) {
      const m = Math.min(chunk, d.n - s);
      tokens.set(tokenizer.encode(d.images.subarray(s * px, (s + m) * px), { batch: opts.batch }), s * T);
      bar?.tick(m);
      await yieldToEventLoop();
    }
    return tokens;
  };
  const trainTokens = await encode(train);
  const testTokens = await encode(test);
  bar?.done();
  const seconds = (Date.now() - t0) / 1000;

  const grid = tokenizer.grid;
  const metadata: Record<string, string> = {
    format: TOKEN_CACHE_FORMAT,
    grid: JSON.stringify(grid),
    codebook_size: String(cfg.codebookSize),
    tokenizer_fingerprint: fingerprint,
    tokenizer_step: String(tokenizer.source.step),
    tokenizer_checkpoint: tokenizer.source.checkpoint ?? '',
    tokenizer_config: JSON.stringify(cfg),
    train_source: sources.train,
    test_source: sources.test,
    created_at: new Date().toISOString(),
  };
  fs.mkdirSync(runDir, { recursive: true });
  writeFileAtomic(file, encodeSafetensors({
    'train.tokens': { dtype: 'I32', shape: [train.n, T], data: trainTokens },
    'train.labels': { dtype: 'I32', shape: [train.n], data: Int32Array.from(train.labels) },
    'test.tokens': { dtype: 'I32', shape: [test.n, T], data: testTokens },
    'test.labels': { dtype: 'I32', shape: [test.n], data: Int32Array.from(test.labels) },
  }, metadata));
  return {
    train: { tokens: trainTokens, labels: Int32Array.from(train.labels), n: train.n, source: sources.train },
    test: { tokens: testTokens, labels: Int32Array.from(test.labels), n: test.n, source: sources.test },
    grid,
    codebookSize: cfg.codebookSize,
    tokenizer: { fingerprint, step: tokenizer.source.step, checkpoint: tokenizer.source.checkpoint, config: cfg },
    path: file,
    reused: false,
    reason,
    seconds,
  };
}

/**
 * Read the token cache of a tokenizer run folder (or a cache file path).
 * Missing, foreign or inconsistent files fail with an OrderHeadError naming
 * the file and the fix (usually: run notebooks/01_tokenizer.ipynb in this profile).
 */
export function loadTokenCache(runDirOrFile: string): TokenCache {
  const file = runDirOrFile.endsWith('.safetensors') ? runDirOrFile : tokenCachePath(runDirOrFile);
  if (!fs.existsSync(file)) {
    throw new OrderHeadError(
      'no token cache here',
      file,
      'run notebooks/01_tokenizer.ipynb in this profile first (it trains the tokenizer and writes the cache), or call tokenizeDataset(tokenizer, runDir)',
    );
  }
  const rebuild = 'delete the file and rebuild it with tokenizeDataset (notebook 01_tokenizer)';
  let decoded: ReturnType<typeof readSafetensors>;
  try {
    decoded = readSafetensors(file);
  } catch (err) {
    // The reader's generic fix speaks of checkpoints; a cache is rebuilt, not restored.
    if (err instanceof OrderHeadError) throw new OrderHeadError(err.problem, file, rebuild);
    throw err;
  }
  const { tensors, metadata } = decoded;
  const bad = (problem: string) => new OrderHeadError(problem, file, rebuild);
  if (metadata.format !== TOKEN_CACHE_FORMAT) throw bad(`not a token cache (format '${metadata.format ?? '(none)'}', expected '${TOKEN_CACHE_FORMAT}')`);
  let grid: { h: number; w: number };
  let config: TokenizerConfig;
  try {
    grid = JSON.parse(metadata.grid);
    config = JSON.parse(metadata.tokenizer_config);
  } catch {
    throw bad('the grid or tokenizer config metadata is not valid JSON');
  }
  const K = Number(metadata.codebook_size);
  if (!(Number.isInteger(grid?.h) && Number.isInteger(grid?.w) && Number.isInteger(K) && K > 0)) throw bad('the grid or codebook size metadata is invalid');
  const T = grid.h * grid.w;
  const split = (name: 'train' | 'test'): TokenSplit => {
    const tok = tensors[`${name}.tokens`];
    const lab = tensors[`${name}.labels`];
    if (!tok || !lab || tok.dtype !== 'I32' || lab.dtype !== 'I32') throw bad(`'${name}.tokens' / '${name}.labels' are missing or not I32`);
    const n = lab.shape[0];
    if (tok.shape.length !== 2 || tok.shape[0] !== n || tok.shape[1] !== T) throw bad(`'${name}.tokens' has shape [${tok.shape}], expected [${n}, ${T}]`);
    const tokens = tok.data as Int32Array;
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i] < 0 || tokens[i] >= K) throw bad(`'${name}.tokens' holds ${tokens[i]} at index ${i}, outside 0 .. ${K - 1}`);
    }
    return { tokens, labels: lab.data as Int32Array, n, source: metadata[`${name}_source`] ?? '' };
  };
  return {
    train: split('train'),
    test: split('test'),
    grid,
    codebookSize: K,
    tokenizer: {
      fingerprint: metadata.tokenizer_fingerprint ?? '',
      step: Number(metadata.tokenizer_step),
      checkpoint: metadata.tokenizer_checkpoint || undefined,
      config,
    },
    path: file,
  };
}
