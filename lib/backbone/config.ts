/**
 * GPT backbone configuration and the registry of model sizes (LlamaGen style).
 *
 * `tiny` is for tests, `small` is the default for our 2-core CPUs, `bench` is
 * the reference model that shared/PLATFORM.md measures PyTorch against, and
 * `gpt-b/l/xl` are LlamaGen's shapes for GPU users (METHOD.md section 8).
 */
import { OrderHeadError } from '../runtime/errors';

export interface GPTConfig {
  /** VQ codebook size: tokens are integers in [0, vocabSize). */
  vocabSize: number;
  /** Token grid height (rows of VQ tokens). 8 for 32x32 images. */
  gridH: number;
  /** Token grid width. */
  gridW: number;
  /** Number of classes; class id `numClasses` is the "null" class used by CFG. */
  numClasses: number;
  /** Transformer blocks. */
  nLayer: number;
  /** Attention heads; dModel / nHead must be even (2D rotary pairs). */
  nHead: number;
  /** Residual width. */
  dModel: number;
  /** SwiGLU hidden width. */
  dFF: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /** Rotary base frequency. */
  ropeBase: number;
  /** Std of the normal init of every weight matrix (GPT-2 / LlamaGen: 0.02). */
  initStd: number;
}

const GRID_8x8 = { vocabSize: 512, gridH: 8, gridW: 8, numClasses: 10 };
const COMMON = { normEps: 1e-5, ropeBase: 10000, initStd: 0.02 };

/**
 * LlamaGen's SwiGLU hidden width (FeedForward in its autoregressive/models/gpt.py,
 * ffn_dim_multiplier None): find_multiple(int(2 * 4 * dim / 3), multiple_of 256).
 * 768 -> 2048, 1024 -> 2816, 1280 -> 3584.
 */
export function llamaGenFF(dim: number, multipleOf = 256): number {
  const hidden = Math.floor((2 * 4 * dim) / 3);
  return Math.ceil(hidden / multipleOf) * multipleOf;
}

/** A LlamaGen class-conditional shape: ImageNet 256px as 16x16 tokens of a 16384-code VQ, 1000 classes, dFF by its formula. */
const llamaGen = (nLayer: number, nHead: number, dModel: number) => ({
  ...COMMON, vocabSize: 16384, gridH: 16, gridW: 16, numClasses: 1000, nLayer, nHead, dModel, dFF: llamaGenFF(dModel),
});

/**
 * Model sizes by name. Parameter counts are pinned in tests/unit/backbone/gpt-registry.test.ts;
 * a LlamaGen size has LlamaGen's count plus our target-position table (T x dModel).
 */
export const GPT_SIZES = {
  /** Unit tests: 6,032 parameters, runs in milliseconds. */
  tiny: { ...COMMON, vocabSize: 16, gridH: 4, gridW: 4, numClasses: 3, nLayer: 2, nHead: 2, dModel: 16, dFF: 32 },
  /** Default on our CPUs (0.99M parameters): trains in minutes on the embedded Fashion-MNIST default. */
  small: { ...COMMON, ...GRID_8x8, nLayer: 4, nHead: 4, dModel: 128, dFF: 384 },
  /** PLATFORM.md's reference model (5.40M parameters), used by `npm run bench`. */
  bench: { ...COMMON, ...GRID_8x8, nLayer: 6, nHead: 8, dModel: 256, dFF: 768 },
  /** LlamaGen GPT-B ("111M"): 12 layers, 12 heads, dim 768, dFF 2048. 111.09M parameters (LlamaGen's 110.89M + 0.20M target positions). For GPU users. */
  'gpt-b': llamaGen(12, 12, 768),
  /** LlamaGen GPT-L ("343M"): 24 layers, 16 heads, dim 1024, dFF 2816. 343.17M parameters (LlamaGen's 342.91M + 0.26M). */
  'gpt-l': llamaGen(24, 16, 1024),
  /** LlamaGen GPT-XL ("775M"): 36 layers, 20 heads, dim 1280, dFF 3584. 775.03M parameters (LlamaGen's 774.70M + 0.33M). */
  'gpt-xl': llamaGen(36, 20, 1280),
} satisfies Record<string, GPTConfig>;

export type GPTSize = keyof typeof GPT_SIZES;

/** A named size with optional overrides, validated. */
export function gptConfig(size: GPTSize | string, overrides: Partial<GPTConfig> = {}): GPTConfig {
  if (!(size in GPT_SIZES)) {
    throw new OrderHeadError(`unknown model size '${size}'`, 'backbone.size', `use one of: ${Object.keys(GPT_SIZES).join(', ')}`);
  }
  const cfg = { ...GPT_SIZES[size as GPTSize], ...overrides };
  validateGPTConfig(cfg);
  return cfg;
}

export function validateGPTConfig(cfg: GPTConfig): void {
  const headDim = cfg.dModel / cfg.nHead;
  if (!Number.isInteger(headDim) || headDim % 4 !== 0) {
    throw new OrderHeadError(`dModel ${cfg.dModel} / nHead ${cfg.nHead} = ${headDim} is not a multiple of 4`,
      'backbone.dModel', 'choose dModel and nHead so the head width splits into row and column rotary pairs');
  }
  for (const k of ['vocabSize', 'gridH', 'gridW', 'numClasses', 'nLayer', 'dFF'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) {
      throw new OrderHeadError(`${k} must be a positive integer, got ${cfg[k]}`, `backbone.${k}`, 'fix the config value');
    }
  }
}

/** Number of tokens in one image. */
export const seqLen = (cfg: GPTConfig): number => cfg.gridH * cfg.gridW;

/**
 * Check token ids and class ids against a model config before they reach a
 * tfjs gather, whose own error ("GatherV2: the index value 20 is not in
 * [0, 15]") names neither the data nor the fix. `allowNullClass` also accepts
 * the null class id `numClasses` (classifier-free guidance, unconditional NLL).
 */
export function checkTokenIds(cfg: GPTConfig, tokens: ArrayLike<number>, classes: ArrayLike<number>, where: string, allowNullClass = false): void {
  const T = seqLen(cfg), V = cfg.vocabSize;
  for (let i = 0; i < tokens.length; i++) {
    const v = tokens[i];
    if (!(v >= 0 && v < V && Number.isInteger(v))) {
      throw new OrderHeadError(
        `token ${v} of image ${Math.floor(i / T)} (cell ${i % T}) is outside the vocabulary 0 .. ${V - 1} (backbone.vocabSize ${V})`,
        where,
        'use tokens of the tokenizer whose codebook size equals backbone.vocabSize (the token cache of the same tokenizer run and profile)',
      );
    }
  }
  const C = allowNullClass ? cfg.numClasses + 1 : cfg.numClasses;
  for (let i = 0; i < classes.length; i++) {
    const c = classes[i];
    if (!(c >= 0 && c < C && Number.isInteger(c))) {
      throw new OrderHeadError(
        `class ${c} of image ${i} is outside 0 .. ${C - 1} (backbone.numClasses ${cfg.numClasses}${allowNullClass ? `; ${cfg.numClasses} is the null class` : ''})`,
        where,
        'pass the labels that belong to these tokens, and a backbone built with the dataset\'s number of classes',
      );
    }
  }
}
