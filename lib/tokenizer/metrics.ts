/**
 * The tokenizer's quality numbers: reconstruction PSNR from an MSE on
 * [-1, 1] pixels, and how much of the codebook is used (codes used, share,
 * perplexity).
 */

/** PSNR in dB of an MSE measured on [-1, 1] pixels, after mapping them to [0, 1] (MSE / 4). */
export function psnrFromMse(mseSigned: number): number {
  const mse01 = mseSigned / 4;
  return mse01 > 0 ? 10 * Math.log10(1 / mse01) : Infinity;
}

/** Usage of a code histogram: codes used, their share of the codebook, and the perplexity exp(H). */
export function codeUsageStats(counts: ArrayLike<number>): { used: number; usage: number; perplexity: number; total: number } {
  let total = 0, used = 0;
  for (let k = 0; k < counts.length; k++) { total += counts[k]; if (counts[k] > 0) used++; }
  let h = 0;
  if (total > 0) {
    for (let k = 0; k < counts.length; k++) {
      if (counts[k] > 0) { const pk = counts[k] / total; h -= pk * Math.log(pk); }
    }
  }
  return { used, usage: counts.length > 0 ? used / counts.length : 0, perplexity: Math.exp(h), total };
}

/** Reconstruction and codebook metrics of a set of images. */
export interface TokenizerMetrics {
  /** Images evaluated. */
  n: number;
  /** Mean squared error per pixel on the [-1, 1] scale. */
  mse: number;
  /** The same on the [0, 1] scale (mse / 4). */
  mse01: number;
  /** 10 log10(1 / mse01), from the pooled MSE over all pixels. */
  psnr: number;
  /** Codes used at least once. */
  codesUsed: number;
  /** codesUsed / codebookSize. */
  usage: number;
  /** exp(entropy) of the code distribution; codebookSize when all codes are equally used. */
  perplexity: number;
  /** How often each code was chosen. */
  counts: Int32Array;
}
