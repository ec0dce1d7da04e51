/** The feature network's config (lib/eval/feature-net.ts): architecture, schedule and data, per profile. */
import * as path from 'node:path';
import { ensure } from '../runtime/errors';
import { activeProfile, profileConfig, ProfileName } from '../runtime/profile';
import { OPTIM_CONFIG_DOCS, OptimConfig, validateOptimConfig } from '../runtime/optim';
import { DatasetOptions, datasetClasses } from '../data/dataset';
import { profileDataPair } from '../data/profile-data';

/** Checkpoint prefix and run stage of feature-network runs. */
export const FEATURE_NET_STAGE = 'featurenet';

/** Which images the feature network trains and is tested on (recorded in its config). */
export interface FeatureNetDataConfig {
  train: DatasetOptions;
  test: DatasetOptions;
}

export interface FeatureNetConfig extends OptimConfig {
  /** Side of the square single-channel input images. Default 32 (Fashion-MNIST padded, as the tokenizer sees it). */
  imageSize: number;
  /** Number of classes. Default: the profile's dataset's (10 for Fashion-MNIST). */
  classes: number;
  /** Output channels of each conv stage; each stage halves the resolution. Default [16, 32] (32x32 -> 16x16 -> 8x8). */
  channels: number[];
  /** Side of the conv kernels (odd, 'same' padding). Default 3. */
  kernelSize: number;
  /** Width of the penultimate dense layer = dimension of the FID ('pool') features. Default 128. */
  hidden: number;
  /**
   * Stage whose pooled output gives the sFID ('spatial') features. Default 0:
   * the first conv block, the earliest map, 16x16 for 32x32 input.
   */
  spatialStage: number;
  /** Extra average pooling of that map before flattening (1 = none). Default 2: 16x16 -> 8x8. */
  spatialPool: number;
  /**
   * Channels of that map kept (the first ones, as ADM keeps 7 of mixed_6/conv).
   * Default 8, so the spatial features have 8 * 8 * 8 = 512 values: the
   * Fréchet distance costs O(dim^3), about 2 s at 512, and each covariance
   * about 0.5 s per 1,000 images (measured in JS).
   */
  spatialChannels: number;
  /** Append a training metrics row every this many steps. */
  logEvery: number;
  /** Save a checkpoint every this many steps (and always at the last step of a call). */
  checkpointEvery: number;
  /** Images per forward pass when evaluating the test set. Default 500. */
  evalBatch: number;
  /** The data the run uses (the profile's dataset). */
  data: FeatureNetDataConfig;
}

/** The config fields that shape the weights and the outputs: a net must match these to be used in place of another. */
export const FEATURE_NET_MODEL_KEYS = ['imageSize', 'classes', 'channels', 'kernelSize', 'hidden', 'spatialStage', 'spatialPool', 'spatialChannels'] as const;

/** One line per config field, for a notebook's config table. */
export const FEATURE_NET_CONFIG_DOCS: Record<keyof FeatureNetConfig, string> = {
  imageSize: 'side of the padded input images (pixels)',
  classes: 'number of classes',
  channels: 'channels of each conv stage (each halves the resolution)',
  kernelSize: 'conv kernel side (odd)',
  hidden: 'penultimate width = FID feature dimension',
  spatialStage: 'stage whose output gives the sFID features',
  spatialPool: 'extra average pooling of that map',
  spatialChannels: 'channels of that map kept for sFID',
  ...OPTIM_CONFIG_DOCS,
  batch: 'images per step',
  evalEvery: 'test evaluation every N steps (0 = at the end of each call)',
  logEvery: 'metrics row every N steps',
  checkpointEvery: 'checkpoint every N steps',
  evalBatch: 'images per forward pass in evaluation',
  data: 'train and test datasets (profile)',
};

/**
 * The feature-network config of a profile, with `overrides` on top.
 *
 * - smoke: 30 steps of 32 images on the 512-image subset: seconds, for CI;
 *   its accuracy means nothing.
 * - default: Fashion-MNIST train (60,000 images), 780 steps of 128 (about 1.7
 *   epochs). Measured once on the 2-core machine (one wasm core, while other
 *   jobs shared the machine): 89.7% test accuracy on the 10,000 test images,
 *   94 s of training (121 ms/step on average; 89 ms/step in quiet stretches,
 *   so about 70 s on an idle core), plus ~2 s to load the data and evaluate.
 *   Prototype runs chose the size: batch 64 x 1,200 steps 89.3% in 92 s;
 *   batch 128 x 650 steps 89.3% in 71 s; a third stage [16, 32, 64] reached
 *   only 88.4% in 70 s. Batch 128 costs 0.85 ms per image against 1.2 ms at 64.
 * - full: the same net trained four times longer (not measured; expect
 *   about 91%).
 * The data and the class count are the profile's dataset's (ORDERHEAD_DATA, profileDataset).
 */
export function featureNetConfig(profile: ProfileName = activeProfile(), overrides: Partial<FeatureNetConfig> = {}): FeatureNetConfig {
  const data = overrides.data ?? profileDataPair(profile);
  return profileConfig<FeatureNetConfig>(FEATURE_NET_DEFAULTS, {
    smoke: { steps: 30, batch: 32, warmup: 5, logEvery: 5, checkpointEvery: 15 },
    default: {},
    full: { steps: 3120, warmup: 100, logEvery: 50, checkpointEvery: 500 },
  }, profile, { data, classes: datasetClasses(data.train).length, ...overrides }, validateFeatureNetConfig);
}

/** The default profile's feature network (see featureNetConfig for how it was sized). β2 = 0.999: the measured runs used it. */
export const FEATURE_NET_DEFAULTS: FeatureNetConfig = {
  imageSize: 32, classes: 10, channels: [16, 32], kernelSize: 3, hidden: 128, spatialStage: 0, spatialPool: 2, spatialChannels: 8,
  steps: 780, batch: 128, lr: 3e-3, warmup: 30, minLrRatio: 0.02, weightDecay: 1e-4, betas: [0.9, 0.999], clipNorm: 0, seed: 0, evalEvery: 0,
  logEvery: 20, checkpointEvery: 200, evalBatch: 500,
  data: { train: { name: 'fashion-mnist', split: 'train', pad: 32 }, test: { name: 'fashion-mnist', split: 'test', pad: 32 } },
};

/** Side of stage `s`'s pooled output. */
export function stageSide(cfg: Pick<FeatureNetConfig, 'imageSize'>, s: number): number {
  return cfg.imageSize / 2 ** (s + 1);
}

/** Dimensions of the three outputs of a config. */
export function featureNetDims(cfg: FeatureNetConfig): { poolDim: number; spatialDim: number; classes: number } {
  const side = stageSide(cfg, cfg.spatialStage) / cfg.spatialPool;
  return { poolDim: cfg.hidden, spatialDim: side * side * cfg.spatialChannels, classes: cfg.classes };
}

/** Check a config; each problem names the field (`featureNet.channels`) and the fix. */
export function validateFeatureNetConfig(cfg: FeatureNetConfig): void {
  const where = (k: string) => `featureNet.${k}`;
  const int = (name: keyof FeatureNetConfig, min: number) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${v}`, where(name), `set ${name} to a whole number >= ${min}`);
  };
  int('imageSize', 2);
  int('classes', 2);
  ensure(
    Array.isArray(cfg.channels) && cfg.channels.length >= 1 && cfg.channels.every((c) => Number.isInteger(c) && c >= 1),
    `must be a non-empty list of whole numbers >= 1, got ${JSON.stringify(cfg.channels)}`,
    where('channels'),
    'use e.g. [16, 32]',
  );
  ensure(
    cfg.imageSize % 2 ** cfg.channels.length === 0,
    `imageSize ${cfg.imageSize} cannot be halved ${cfg.channels.length} times (one 2x2 max-pool per stage)`,
    where('channels'),
    `use at most ${Math.log2(cfg.imageSize & -cfg.imageSize)} stages for ${cfg.imageSize}x${cfg.imageSize} images`,
  );
  int('kernelSize', 1);
  ensure(cfg.kernelSize % 2 === 1, `must be odd ('same' padding on both sides), got ${cfg.kernelSize}`, where('kernelSize'), 'use 3 or 5');
  int('hidden', 1);
  int('spatialStage', 0);
  ensure(cfg.spatialStage < cfg.channels.length, `stage ${cfg.spatialStage} does not exist (stages 0..${cfg.channels.length - 1})`, where('spatialStage'), 'use 0, the first conv stage');
  int('spatialPool', 1);
  const side = stageSide(cfg, cfg.spatialStage);
  ensure(side % cfg.spatialPool === 0, `the ${side}x${side} map of stage ${cfg.spatialStage} does not divide by spatialPool ${cfg.spatialPool}`, where('spatialPool'), 'use a divisor of the map side, e.g. 2');
  int('spatialChannels', 1);
  ensure(
    cfg.spatialChannels <= cfg.channels[cfg.spatialStage],
    `asks for ${cfg.spatialChannels} channels but stage ${cfg.spatialStage} has ${cfg.channels[cfg.spatialStage]}`,
    where('spatialChannels'),
    `use at most ${cfg.channels[cfg.spatialStage]}`,
  );
  const ds = featureNetDims(cfg).spatialDim;
  ensure(ds <= 4096, `the spatial features would have ${ds} values per image; the Fréchet distance costs O(dim^3) (minutes beyond 1,000)`, where('spatialChannels'), 'keep spatialDim near 512: fewer channels or more spatialPool');
  validateOptimConfig(cfg, 'featureNet');
  int('logEvery', 1);
  int('checkpointEvery', 1);
  int('evalBatch', 1);
  ensure(
    typeof cfg.data === 'object' && cfg.data !== null && typeof cfg.data.train === 'object' && typeof cfg.data.test === 'object',
    'must give the train and test dataset options',
    where('data'),
    "pass { train: profileDataset('train'), test: profileDataset('test') }",
  );
  for (const split of ['train', 'test'] as const) {
    const pad = cfg.data[split].pad;
    ensure(pad === undefined || pad === cfg.imageSize, `pads images to ${pad} but the net expects ${cfg.imageSize}x${cfg.imageSize}`, where(`data.${split}.pad`), `pad to imageSize (${cfg.imageSize})`);
  }
}

/** The feature network's run folder for a profile: `<runRoot>/featurenet-<profile>`. */
export function featureNetRunDir(runRoot: string, profile: ProfileName = activeProfile()): string {
  return path.join(runRoot, `${FEATURE_NET_STAGE}-${profile}`);
}
