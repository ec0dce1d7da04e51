/**
 * "What this run showed" for the tokenizer (notebook 01): training effort,
 * reconstruction on test and training images, codebook use and the token cache.
 */
import type { ProfileName } from '../runtime/profile';
import type { MetricRow } from '../runtime/run';
import { TokenizerConfig } from './config';
import { TokenizerMetrics } from './metrics';
import { TokenCache } from './cache';

/** The PSNR (dB, test split) the tokenizer aims for: below it, reconstructions lose visible detail. */
export const TOKENIZER_PSNR_AIM_DB = 20;

/** What notebook 01 measured in one run. */
export interface TokenizerRun {
  config: TokenizerConfig;
  /** Trainable parameters of the tokenizer. */
  numParams: number;
  /** Steps trained (over every call that trained this run). */
  steps: number;
  /** Training wall time from the metrics log, and the backend it ran on. */
  trainSeconds: number;
  backend: string;
  /** The training rows of the run's metrics log (their `restarted` fields count the dead-code restarts). */
  trainRows: readonly MetricRow[];
  /** Reconstruction and code use on the test split and on as many training images. */
  test: TokenizerMetrics;
  train: TokenizerMetrics;
  /** The code of an empty (all-background) patch. */
  backgroundCode: number;
  /** The token cache, and whether this run reused it or wrote it (in how many seconds). */
  cache: TokenCache;
  cacheBuild: { reused: boolean; seconds: number };
}

export function tokenizerFindings(run: TokenizerRun, profile: ProfileName, stamp: string): string {
  const { config: cfg, test, train, cache } = run;
  const grid = cache.grid;
  const gap = train.psnr - test.psnr;
  const byUse = Array.from(test.counts.keys()).sort((a, b) => test.counts[b] - test.counts[a]);
  const totalTokens = test.counts.reduce((s, c) => s + c, 0);
  const restarts = run.trainRows.reduce((s, r) => s + ((r.restarted as number) || 0), 0);
  const top = byUse[0];
  return [
    `In this run (**${stamp}**) the tokenizer (${run.numParams.toLocaleString()} parameters, ${grid.h}x${grid.w} tokens of ${cfg.codebookSize} codes, ` +
    `code dimension ${cfg.codeDim}) trained for **${run.steps} steps** of ${cfg.batch} images ` +
    `(${(run.steps * cfg.batch / cache.train.n).toFixed(2)} passes over ${cfg.data.train.name}) in **${run.trainSeconds.toFixed(0)} s** ` +
    `(${(run.trainSeconds / Math.max(1, run.steps)).toFixed(3)} s per step on ${run.backend}).`,
    '',
    `- **Reconstruction** on the ${test.n} test images: MSE ${test.mse.toFixed(4)} on [-1, 1] (${test.mse01.toFixed(4)} on [0, 1]), ` +
    `**PSNR ${test.psnr.toFixed(2)} dB**, ${test.psnr >= TOKENIZER_PSNR_AIM_DB ? 'above' : 'below'} the ${TOKENIZER_PSNR_AIM_DB} dB aim. ` +
    `On ${train.n} training images: ${train.psnr.toFixed(2)} dB (train − test = ${gap.toFixed(2)} dB${Math.abs(gap) < 0.5 ? ', no sign of memorisation' : ''}).`,
    `- **Codebook**: ${test.codesUsed} of ${cfg.codebookSize} codes used on the test split (${(100 * test.usage).toFixed(1)}%), ` +
    `perplexity ${test.perplexity.toFixed(1)}; ${restarts} dead-code restarts during training. ` +
    `The most used code (${top}) takes ${(100 * test.counts[top] / totalTokens).toFixed(1)}% of all tokens` +
    (top === run.backgroundCode ? ': it is the code of an empty (all-background) patch.' : `; the empty-patch code is ${run.backgroundCode}.`),
    `- **Token cache**: ${cache.train.n} train + ${cache.test.n} test images as ${grid.h}x${grid.w} grids in \`${cache.path}\` ` +
    `(${run.cacheBuild.reused ? 'reused' : `written in ${run.cacheBuild.seconds.toFixed(1)} s`}); the backbone stage loads it with \`loadTokenCache\`.`,
    '',
    profile === 'smoke'
      ? `_Smoke profile: a few dozen steps on ${cache.train.n} images. These numbers only show that the pipeline runs; the default profile gives the results._`
      : `_The PSNR is a pooled per-pixel figure on this dataset; it is not comparable with ImageNet tokenizer papers (different data, resolution and loss: no perceptual or adversarial term here)._`,
  ].join('\n');
}
