/**
 * The evaluation config (METHOD.md section 7): sample counts and seeds, the
 * sampling settings shared by every setting, NLL images, recognizability
 * fractions, metric options, bootstrap replicates and the oracle trajectory
 * metrics; per-profile sizes in `evalConfig`.
 */
import { ensure } from '../runtime/errors';
import { activeProfile, profileConfig, ProfileName } from '../runtime/profile';
import { BACKGROUND_FILL } from './recognizability';
import { DEFAULT_TRAJECTORY_CONFIG, TrajectoryConfig, validateTrajectorySizes } from './trajectory';

export interface EvalConfig {
  /** Samples generated per seed and setting (FID is biased by the count: compare at equal counts only). */
  samplesPerSeed: number;
  /** Evaluation seeds (>= 2, for intervals); the same for every setting. */
  seeds: number[];
  /** Images per sampleImages call (memory; the numbers do not depend on it except through the sampling stream). */
  sampleBatch: number;
  /** Sampling: softmax temperature (same for every setting). */
  temperature: number;
  /** Sampling: top-k (0 = off). */
  topK: number;
  /** Sampling: top-p (1 = off). */
  topP: number;
  /** Sampling: classifier-free guidance scale (1 = off). */
  cfgScale: number;
  /** Held-out test images scored for exact NLL: the first nllImages of the test split, the same for every setting (paired differences). */
  nllImages: number;
  /** Images per NLL pass. */
  nllBatch: number;
  /**
   * Fractions of blocks decoded at which the recognizability curve is measured,
   * ascending from 0 to 1. Default (undefined): every fraction that is a whole
   * number of blocks both in the context geometry and in token rows (the raster
   * baseline's blocks), e.g. k/8 for 16 blocks and 8 rows, so all settings are
   * compared at the same token counts.
   */
  recognizabilityFractions?: number[];
  /** Fill of undecoded pixels in partial images; default BACKGROUND_FILL (-1, the background). */
  fill: number;
  /**
   * Inception Score splits. improved-GAN and the ADM evaluator use 10 splits
   * of 5,000 (of 50,000 samples); 10 splits of 50 here score lower than
   * large splits would, so IS compares settings at equal counts only.
   */
  isSplits: number;
  /** Compute k-NN precision and recall (O(N^2) per seed). */
  precisionRecall: boolean;
  /** k of precision / recall. */
  prK: number;
  /** Bootstrap replicates for per-sample metrics (accuracy, recognizability, NLL). */
  bootstrapReps: number;
  /** Bootstrap replicates per seed for FID / sFID / IS (each costs one Fréchet distance per feature set); 0 = seed range. */
  setBootstrapReps: number;
  /** Interval level. */
  level: number;
  /** Images per feature-network pass. */
  featureBatch: number;
  /** Oracle trajectory metrics on test images (images 0 = skip). */
  trajectory: TrajectoryConfig;
}

/** One line per field, for a notebook's config table. */
export const EVAL_CONFIG_DOCS: Readonly<Record<keyof EvalConfig, string>> = Object.freeze({
  samplesPerSeed: 'generated samples per seed and setting',
  seeds: 'evaluation seeds (same for every setting)',
  sampleBatch: 'images per sampling call',
  temperature: 'sampling temperature',
  topK: 'top-k (0 = off)',
  topP: 'top-p (1 = off)',
  cfgScale: 'classifier-free guidance scale (1 = off)',
  nllImages: 'test images for exact NLL (the same for every setting)',
  nllBatch: 'images per NLL pass',
  recognizabilityFractions: 'fractions of blocks decoded for the recognizability curve',
  fill: 'pixel value of undecoded regions',
  isSplits: 'Inception Score splits',
  precisionRecall: 'compute k-NN precision / recall',
  prK: 'k of precision / recall',
  bootstrapReps: 'bootstrap replicates, per-sample metrics',
  setBootstrapReps: 'bootstrap replicates per seed, FID / sFID / IS',
  level: 'interval level',
  featureBatch: 'images per feature-network pass',
  trajectory: 'oracle trajectory metrics (curve images, oracle-comparison images and steps, reading, weight)',
});

/**
 * The evaluation config of a profile, with `overrides` on top
 * (`trajectory` overrides merge into the profile's).
 *
 * - smoke: 16 samples x 2 seeds, 16 NLL images, remaining-loss curves on 4
 *   test images, the per-step oracle comparison on 2 of them: seconds, for
 *   CI; the numbers mean nothing.
 * - default: 1,000 samples x 3 seeds per setting (FID / sFID / IS / P&R,
 *   paired by seed in the headline), exact NLL on the same 1,000 test images
 *   for every setting (paired per image, headline.ts), remaining-loss curves
 *   on 64 test images, the oracle comparison on the first 6, 5 bootstrap
 *   replicates per seed. What bounds it is the planner: a planner-driven
 *   sample costs about 5x a raster one on our cores (one query per unseen
 *   block at every step, lib/planner/features.ts, and the second KV cache of
 *   the backbone C it reads), and 9 of the 18 settings of the default main
 *   job query the backbone this way (the 2 entropy-first settings on their
 *   own backbone, without the planner): 70% of notebook 08's worker time
 *   (README, Quick start).
 * - full: 5,000 samples x 3 seeds, NLL on the whole test split (10,000),
 *   remaining-loss curves on 256 test images and the oracle comparison on
 *   128, 20 replicates per seed.
 */
export function evalConfig(profile: ProfileName = activeProfile(), overrides: Partial<Omit<EvalConfig, 'trajectory'>> & { trajectory?: Partial<TrajectoryConfig> } = {}): EvalConfig {
  // The trajectory's bootstrap follows the evaluation's, unless set.
  const withTrajectoryReps = (cfg: EvalConfig) => {
    cfg.trajectory = { ...cfg.trajectory, bootstrapReps: overrides.trajectory?.bootstrapReps ?? cfg.bootstrapReps };
    validateEvalConfig(cfg);
  };
  return profileConfig(EVAL_DEFAULTS, {
    smoke: { samplesPerSeed: 16, seeds: [0, 1], sampleBatch: 16, nllImages: 16, isSplits: 2, bootstrapReps: 200, setBootstrapReps: 2, trajectory: { images: 4, oracleImages: 2 } },
    default: {},
    full: { samplesPerSeed: 5000, sampleBatch: 250, nllImages: 10000, bootstrapReps: 1000, setBootstrapReps: 20, trajectory: { images: 256, oracleImages: 128 } },
  }, profile, overrides, withTrajectoryReps);
}

/** The default profile's evaluation (see evalConfig for the sizes). */
export const EVAL_DEFAULTS: EvalConfig = {
  samplesPerSeed: 1000, seeds: [0, 1, 2], sampleBatch: 200, nllImages: 1000, isSplits: 10, bootstrapReps: 500, setBootstrapReps: 5,
  temperature: 1, topK: 0, topP: 1, cfgScale: 1,
  nllBatch: 64, fill: BACKGROUND_FILL, precisionRecall: true, prK: 3, level: 0.95, featureBatch: 256,
  trajectory: { ...DEFAULT_TRAJECTORY_CONFIG, images: 64, oracleImages: 6, bootstrapReps: 500 },
};

/** Check a config; each problem names the field (`eval.seeds`) and the fix. */
export function validateEvalConfig(cfg: EvalConfig): void {
  const int = (k: keyof EvalConfig, min: number) => {
    const v = cfg[k] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${v}`, `eval.${k}`, `set ${k} to a whole number >= ${min}`);
  };
  int('samplesPerSeed', 2);
  ensure(Array.isArray(cfg.seeds) && cfg.seeds.length >= 2 && cfg.seeds.every((s) => Number.isInteger(s)) && new Set(cfg.seeds).size === cfg.seeds.length,
    `must be at least 2 distinct whole numbers (intervals need them), got ${JSON.stringify(cfg.seeds)}`, 'eval.seeds', 'use e.g. [0, 1]');
  int('sampleBatch', 1);
  ensure(Number.isFinite(cfg.temperature) && cfg.temperature >= 0, `must be >= 0, got ${cfg.temperature}`, 'eval.temperature', 'use 1 (0 = greedy)');
  int('topK', 0);
  ensure(cfg.topP > 0 && cfg.topP <= 1, `must lie in (0, 1], got ${cfg.topP}`, 'eval.topP', 'use 1 (off) or e.g. 0.95');
  ensure(Number.isFinite(cfg.cfgScale) && cfg.cfgScale >= 0, `must be a number >= 0, got ${cfg.cfgScale}`, 'eval.cfgScale', 'use 1 (off) or e.g. 1.5');
  int('nllImages', 1);
  int('nllBatch', 1);
  if (cfg.recognizabilityFractions !== undefined) {
    const f = cfg.recognizabilityFractions;
    ensure(Array.isArray(f) && f.length >= 2 && f[0] === 0 && f[f.length - 1] === 1 && f.every((x, i) => i === 0 || x > f[i - 1]),
      `must increase from exactly 0 to exactly 1, got ${JSON.stringify(f)}`, 'eval.recognizabilityFractions', 'pass e.g. [0, 0.25, 0.5, 0.75, 1], or leave it out');
  }
  ensure(Number.isFinite(cfg.fill), `must be a number, got ${cfg.fill}`, 'eval.fill', `use BACKGROUND_FILL (${BACKGROUND_FILL})`);
  int('isSplits', 1);
  ensure(cfg.samplesPerSeed >= cfg.isSplits, `samplesPerSeed ${cfg.samplesPerSeed} is fewer than the ${cfg.isSplits} IS splits`, 'eval.isSplits', 'use fewer splits or more samples');
  int('prK', 1);
  ensure(!cfg.precisionRecall || cfg.samplesPerSeed > cfg.prK, `precision/recall need more than k = ${cfg.prK} samples`, 'eval.samplesPerSeed', 'generate more samples or set precisionRecall false');
  int('bootstrapReps', 2);
  int('setBootstrapReps', 0);
  ensure(cfg.setBootstrapReps !== 1, 'one replicate per seed gives no spread', 'eval.setBootstrapReps', 'use 0 (seed range) or >= 2');
  ensure(cfg.level > 0 && cfg.level < 1, `must lie strictly between 0 and 1, got ${cfg.level}`, 'eval.level', 'use 0.95');
  int('featureBatch', 1);
  ensure(cfg.trajectory && Number.isInteger(cfg.trajectory.images) && cfg.trajectory.images >= 0, `trajectory.images must be a whole number >= 0, got ${cfg.trajectory?.images}`, 'eval.trajectory.images', 'use 0 to skip, or e.g. 64');
  if (cfg.trajectory.images > 0) validateTrajectorySizes(cfg.trajectory);
}
