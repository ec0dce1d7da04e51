/**
 * The regime of the generator's training (METHOD.md §6, "The regime"): which
 * images of the train split it learns from, and which it is selected on.
 *
 *   train split, raw indices 0 .. n−1
 *   [0, P)            the planner's images: oracle states, planner training (never a backbone's training image)
 *   [P, n) shuffled   by one fixed seed (not the training seed), then cut:
 *     first V           validation: every checkpoint selection reads it, nothing trains on it
 *     the rest          the generator's pool; its first K are the K unique training images
 *
 *   epochs = N · batch / K
 *
 * Why this layout: the planner plans on images its backbone never trained on
 * (the test images at inference), so its oracle states come from images no
 * backbone of any K saw; and because K images are a prefix of one fixed
 * shuffle, a smaller K's images are a subset of a larger K's, and every arm,
 * seed and K is selected on the same validation images. The tokenizer and the
 * feature network keep the whole train split: the question is about the
 * generator.
 */
import { ensure } from '../runtime/errors';
import { rng } from '../runtime/seed';

/** How many unique images the generator trains on, and what is held out from them. */
export interface Regime {
  /** K: the generator's unique training images, or 'all' (the whole pool: n − P − V). */
  uniqueImages: number | 'all';
  /** V: the validation images, fixed for every K and seed. */
  validationImages: number;
  /** P: the first P raw images of the split, left to the planner (oracle states); the oracle's `images` must not exceed it. */
  plannerImages: number;
}

/** The regime's images as raw indices into the train split. */
export interface RegimeImages {
  /** The planner's images, [0, P). */
  planner: Int32Array;
  /** The validation images (V). */
  validation: Int32Array;
  /** The generator's K training images (a prefix of the pool). */
  train: Int32Array;
  /** K, resolved ('all' becomes the pool's size). */
  k: number;
  /** Images in the pool: the largest K this split allows. */
  pool: number;
}

/** The seed of the fixed shuffle: a constant, so K images are nested and validation is one set for every run. */
const REGIME_SHUFFLE = 'regime-shuffle-v1';

/** Split a train split of `n` images by `regime`; `batch` is the Stage 1 batch (K must hold one). Errors name `where`'s fields. */
export function regimeImages(n: number, regime: Regime, batch: number, where = 'stage1'): RegimeImages {
  const { uniqueImages: K, validationImages: V, plannerImages: P } = regime;
  ensure(Number.isInteger(P) && P >= 0, `plannerImages ${P}`, `${where}.plannerImages`, 'use a whole number of images, 0 or more');
  ensure(Number.isInteger(V) && V >= 1, `validationImages ${V}`, `${where}.validationImages`, 'use at least 1 validation image (every checkpoint selection reads them)');
  const pool = n - P - V;
  ensure(pool >= 1, `the train split has ${n} images, fewer than plannerImages ${P} + validationImages ${V} + 1`, `${where}.validationImages / plannerImages`,
    `lower them so that at least one batch of training images remains (n = ${n})`);
  const k = K === 'all' ? pool : K;
  ensure(Number.isInteger(k) && k >= 1, `uniqueImages ${String(K)}`, `${where}.uniqueImages`, "use a whole number of images or 'all'");
  ensure(k <= pool, `uniqueImages ${k} is more than the ${pool} images left for training (train split ${n} − plannerImages ${P} − validationImages ${V})`,
    `${where}.uniqueImages`, `use at most ${pool}, or 'all'`);
  ensure(k >= batch, `uniqueImages ${k} is smaller than one batch (${batch})`, `${where}.uniqueImages`,
    `use at least ${batch} images, or a smaller ${where}.batch`);
  const rest = Array.from({ length: n - P }, (_, i) => P + i);
  rng(REGIME_SHUFFLE).shuffle(rest);
  return {
    planner: Int32Array.from({ length: P }, (_, i) => i),
    validation: Int32Array.from(rest.slice(0, V)),
    train: Int32Array.from(rest.slice(V, V + k)),
    k, pool,
  };
}

/** Epochs over the K unique images: N · batch / K. */
export const regimeEpochs = (steps: number, batch: number, k: number): number => (steps * batch) / k;

/** The token grids and labels of some images of a split (raw indices), e.g. the validation images. */
export function imagesOf(data: { tokens: Int32Array; labels: Int32Array; n: number }, images: ArrayLike<number>): { tokens: Int32Array; labels: Int32Array; n: number } {
  const T = data.tokens.length / data.n, n = images.length;
  const tokens = new Int32Array(n * T), labels = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const img = images[k];
    tokens.set(data.tokens.subarray(img * T, (img + 1) * T), k * T);
    labels[k] = data.labels[img];
  }
  return { tokens, labels, n };
}

/** The validation images of a regime, as token data (what every selection reads). */
export const validationData = (train: { tokens: Int32Array; labels: Int32Array; n: number }, images: Pick<RegimeImages, 'validation'>) => imagesOf(train, images.validation);
