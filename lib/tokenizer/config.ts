/**
 * The VQ tokenizer's configuration (curriculum Stage 0: images -> tokens).
 *
 * One typed object holds everything that shapes the tokenizer or its training,
 * so a run folder and a checkpoint carry the complete recipe, and a checkpoint
 * from another recipe is refused field by field (see checkpoint.ts).
 *
 * Geometry: a `imageSize` x `imageSize` single-channel image is cut into
 * `patchSize` x `patchSize` patches; each patch position becomes one token, so
 * 32 x 32 images with 4 x 4 patches give an 8 x 8 token grid (64 tokens).
 */
import * as path from 'node:path';
import { ensure } from '../runtime/errors';
import { activeProfile, profileConfig, ProfileName } from '../runtime/profile';
import { OPTIM_CONFIG_DOCS, OptimConfig, validateOptimConfig } from '../runtime/optim';
import { DatasetOptions } from '../data/dataset';
import { profileDataPair } from '../data/profile-data';

/** Which images a tokenizer run trains and evaluates on (recorded in its config). */
export interface TokenizerDataConfig {
  train: DatasetOptions;
  test: DatasetOptions;
}

export interface TokenizerConfig extends OptimConfig {
  /** Side of the (padded) square input images in pixels. Default 32 (Fashion-MNIST 28 padded). */
  imageSize: number;
  /** Side of one patch in pixels; one patch = one token. Default 4, so the grid is imageSize/patchSize = 8. */
  patchSize: number;
  /** Number of codes K in the codebook (vocabulary of the backbone). Default 512. */
  codebookSize: number;
  /** Dimension of a code; codes and encoder outputs are L2-normalised (LlamaGen uses 8). Default 16. */
  codeDim: number;
  /** Width of the per-patch features inside encoder and decoder. Default 128. */
  width: number;
  /** Residual mixer blocks in the encoder and, mirrored, in the decoder. Default 2. */
  depth: number;
  /** Hidden width of each block's per-patch MLP, as a multiple of `width`. Default 1. */
  mlpRatio: number;
  /**
   * Reach of the cross-patch mixing in grid cells (Chebyshev distance): 1 lets a
   * patch see its 8 neighbours per block, so `depth` blocks see (2*depth+1)^2
   * patches. Default 1, which keeps each token about its own region (with
   * depth 2 a token's encoder sees 5x5 cells; radius 2 would let it see the
   * whole grid, for about +0.2 dB PSNR).
   */
  mixRadius: number;
  /** Commitment weight beta in ||z - sg(q)||^2. Default 0.25 (VQ-VAE, LlamaGen). */
  beta: number;
  /** Weight of the codebook term ||sg(z) - q||^2. Default 1. */
  codebookWeight: number;
  /** At most this many images per forward/backward pass (gradient accumulation); `batch` must split into equal passes. */
  microBatch: number;
  /** A code not chosen for this many steps counts as dead and is restarted. */
  deadAfter: number;
  /** Look for dead codes every this many steps (0 = never restart). */
  restartEvery: number;
  /** Append a training metrics row every this many steps. */
  logEvery: number;
  /** Test images used by the periodic evaluation during training. */
  evalImages: number;
  /** Save a checkpoint every this many steps (and always at the last step). */
  checkpointEvery: number;
  /** The data the run uses (the profile's dataset). */
  data: TokenizerDataConfig;
}

/** Token grid of a config: `imageSize / patchSize` in each direction. */
export function tokenGrid(cfg: Pick<TokenizerConfig, 'imageSize' | 'patchSize'>): { h: number; w: number } {
  const side = cfg.imageSize / cfg.patchSize;
  return { h: side, w: side };
}

/** Tokens per image (64 for the default geometry). */
export function tokensPerImage(cfg: Pick<TokenizerConfig, 'imageSize' | 'patchSize'>): number {
  const g = tokenGrid(cfg);
  return g.h * g.w;
}

/** Pixels per patch (16 for 4 x 4 patches). */
export function patchPixels(cfg: Pick<TokenizerConfig, 'patchSize'>): number {
  return cfg.patchSize * cfg.patchSize;
}

/**
 * The tokenizer config of a profile, with `overrides` applied on top.
 *
 * - smoke: 40 steps of 32 images on the 512-image subset (seconds);
 * - default: Fashion-MNIST train (60,000), 1,800 steps of 32 images (about one
 *   epoch), a few minutes on the single-threaded wasm backend;
 * the data is the profile's dataset (ORDERHEAD_DATA, profileDataset);
 * - full: the same model trained four times longer.
 *
 * The defaults were chosen by measurement on wasm (2-core machine, ~3 minutes
 * of training each, PSNR on 2,000 test images): at a fixed time budget, more
 * steps on smaller batches won (batch 128 x 230 steps 21.5 dB; 64 x 500
 * 22.8 dB; 32 x 1,400 23.3 dB), and a per-patch MLP of 1x width beat 2x
 * (23.1 vs 22.8 dB at batch 64) because it allows more steps. Mixing radius 2
 * gained about 0.2-0.3 dB over radius 1 but lets every token see the whole
 * 8x8 grid; radius 1 keeps a token's receptive field at 5x5 cells (see mixRadius).
 * codeDim 8 (LlamaGen's) and 16 were within 0.1 dB; lr 1e-3 was 0.3 dB worse than 2e-3.
 */
export function tokenizerConfig(profile: ProfileName = activeProfile(), overrides: Partial<TokenizerConfig> = {}): TokenizerConfig {
  return profileConfig<TokenizerConfig>(TOKENIZER_DEFAULTS, {
    smoke: { steps: 40, warmup: 5, logEvery: 5, evalEvery: 20, evalImages: 128, checkpointEvery: 20, deadAfter: 10, restartEvery: 10 },
    default: {},
    full: { steps: 7200, warmup: 100, logEvery: 50, evalEvery: 600, evalImages: 2000, checkpointEvery: 600, deadAfter: 100, restartEvery: 50 },
  }, profile, { data: profileDataPair(profile), ...overrides }, validateTokenizerConfig);
}

/** The default profile's tokenizer (see tokenizerConfig for how it was chosen). */
export const TOKENIZER_DEFAULTS: TokenizerConfig = {
  imageSize: 32, patchSize: 4, codebookSize: 512, codeDim: 16, width: 128, depth: 2, mlpRatio: 1, mixRadius: 1, beta: 0.25, codebookWeight: 1,
  steps: 1800, batch: 32, microBatch: 32, lr: 2e-3, warmup: 50, minLrRatio: 0.1, weightDecay: 1e-4, betas: [0.9, 0.95], clipNorm: 1, seed: 0,
  evalEvery: 200, evalImages: 1000, logEvery: 20, checkpointEvery: 300, deadAfter: 50, restartEvery: 25,
  data: { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } },
};

/** Check a config's fields; each problem names the field (`tokenizer.patchSize`) and the fix. */
export function validateTokenizerConfig(cfg: TokenizerConfig): void {
  const int = (name: keyof TokenizerConfig, min: number) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${v}`, `tokenizer.${name}`, `set ${name} to a whole number >= ${min}`);
  };
  const pos = (name: keyof TokenizerConfig, allowZero = false) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isFinite(v) && (allowZero ? v >= 0 : v > 0), `must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`, `tokenizer.${name}`, `set ${name} to a ${allowZero ? 'non-negative' : 'positive'} number`);
  };
  int('imageSize', 1);
  int('patchSize', 1);
  ensure(
    cfg.imageSize % cfg.patchSize === 0,
    `imageSize ${cfg.imageSize} is not a multiple of patchSize ${cfg.patchSize}`,
    'tokenizer.patchSize',
    'choose a patch size that divides the image size (4 for 32x32 images gives an 8x8 grid)',
  );
  int('codebookSize', 2);
  int('codeDim', 2);
  int('width', 1);
  int('depth', 0);
  pos('mlpRatio');
  int('mixRadius', 0);
  pos('beta', true);
  pos('codebookWeight', true);
  validateOptimConfig(cfg, 'tokenizer');
  int('microBatch', 1);
  ensure(cfg.microBatch >= cfg.batch || cfg.batch % cfg.microBatch === 0, `batch ${cfg.batch} does not split into equal micro-batches of ${cfg.microBatch}`,
    'tokenizer.microBatch', 'choose a micro-batch size that divides the batch (or the batch itself)');
  int('deadAfter', 1);
  int('restartEvery', 0);
  int('logEvery', 1);
  int('evalImages', 1);
  int('checkpointEvery', 1);
  ensure(
    typeof cfg.data === 'object' && cfg.data !== null && typeof cfg.data.train === 'object' && typeof cfg.data.test === 'object',
    'must give the train and test dataset options',
    'tokenizer.data',
    "pass { train: profileDataset('train'), test: profileDataset('test') }",
  );
  ensure(
    cfg.data.train.pad === undefined || cfg.data.train.pad === cfg.imageSize,
    `pads images to ${cfg.data.train.pad} but the tokenizer expects ${cfg.imageSize}x${cfg.imageSize}`,
    'tokenizer.data.train.pad',
    `pad to imageSize (${cfg.imageSize})`,
  );
}

/**
 * The tokenizer's run folder for a profile: `<runRoot>/tokenizer-<profile>`.
 * Notebook 01 trains there and writes the token cache there; the backbone
 * notebooks read the cache from the same place (`loadTokenCache`).
 */
export function tokenizerRunDir(runRoot: string, profile: ProfileName = activeProfile()): string {
  return path.join(runRoot, `tokenizer-${profile}`);
}

/** One line per config field, for the notebook's config table. */
export const TOKENIZER_CONFIG_DOCS: Record<keyof TokenizerConfig, string> = {
  imageSize: 'side of the padded input images (pixels)',
  patchSize: 'side of one patch = one token (pixels)',
  codebookSize: 'codes K = vocabulary of the backbone',
  codeDim: 'dimension of a code (codes and encoder outputs are L2-normalised)',
  width: 'features per patch inside encoder and decoder',
  depth: 'mixer blocks in the encoder and in the decoder',
  mlpRatio: 'hidden width of the per-patch MLP / width',
  mixRadius: 'cross-patch mixing reach per block (grid cells)',
  beta: 'commitment weight β',
  codebookWeight: 'weight of the codebook term',
  ...OPTIM_CONFIG_DOCS,
  batch: 'images per step',
  microBatch: 'images per forward/backward pass (gradient accumulation)',
  deadAfter: 'a code unused this many steps is dead',
  restartEvery: 'look for dead codes every N steps',
  logEvery: 'metrics row every N steps',
  evalImages: 'test images in the periodic evaluation',
  checkpointEvery: 'checkpoint every N steps',
  data: 'train and test datasets (profile)',
};
