/**
 * Which dataset a run uses, and how many of its images each profile takes.
 *
 * The dataset comes from the environment (`ORDERHEAD_DATA`), like the profile,
 * because headless runs (nbconvert, scripts/main.sh --data) can only pass
 * settings that way:
 *
 * - `fashion-mnist`: Debian's package (or ORDERHEAD_FASHION_MNIST_DIR);
 * - `subset`: the 2,000 + 500 images shipped in data/;
 * - `idx:DIR`: a folder of IDX files (lib/data/dataset.ts, idxFolder).
 *
 * Unset, each profile uses its own: smoke the shipped subset (no package
 * needed), default and full Fashion-MNIST.
 */
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { activeProfile, pick, ProfileName } from '../runtime/profile';
import { DatasetOptions, Split, datasetClasses, datasetTitle, idxFolder } from './dataset';

/** The environment variable that selects the dataset. */
export const DATA_ENV = 'ORDERHEAD_DATA';

/** The dataset of each profile when ORDERHEAD_DATA is unset. */
export const PROFILE_DEFAULT_DATA: Record<ProfileName, 'fashion-mnist' | 'subset'> = { smoke: 'subset', default: 'fashion-mnist', full: 'fashion-mnist' };

/** Side of the models' input images: every dataset is brought to it (dataset.ts, fitTo). */
export const INPUT_SIDE = 32;

/** A resolved ORDERHEAD_DATA: the dataset options and the key the main job files its report under. */
export interface DataChoice {
  /** 'fashion-mnist', 'subset' or 'idx:<absolute DIR>': part of the main job's resume key. */
  key: string;
  options: Pick<DatasetOptions, 'name' | 'dir'>;
}

/**
 * Parse a dataset value (`fashion-mnist`, `subset`, `idx:DIR`; empty or
 * undefined: the profile's default). A relative DIR is resolved from the
 * current folder, so the key names one folder wherever it is used.
 */
export function parseData(value: string | undefined, profile: ProfileName, where = `environment variable ${DATA_ENV}`): DataChoice {
  const v = (value ?? '').trim() || PROFILE_DEFAULT_DATA[profile];
  if (v === 'fashion-mnist' || v === 'subset') return { key: v, options: { name: v } };
  if (v.startsWith('idx:') && v.length > 4) {
    const dir = path.resolve(v.slice(4));
    return { key: `idx:${dir}`, options: { name: 'idx', dir } };
  }
  throw new OrderHeadError(`unknown dataset '${v}'`, `${where}='${value}'`,
    "use fashion-mnist, subset or idx:DIR (a folder with an images and a labels file per split; see the README's Data section)");
}

/** The dataset selected by ORDERHEAD_DATA in `env` for `profile`. */
export function activeData(profile: ProfileName = activeProfile(), env: NodeJS.ProcessEnv = process.env): DataChoice {
  return parseData(env[DATA_ENV], profile);
}

/**
 * Images per split that each profile asks for (undefined: all), and the
 * fewest it needs. The minimum is the most any stage of the profile takes from
 * the split and refuses to run without: the training batches (tokenizer,
 * feature network), oracle.images, and Stage 1's regime (plannerImages +
 * validationImages + one batch of training images, regime.ts) on train;
 * eval.nllImages and eval.trajectory.images on test
 * (tests/unit/data/data-folder.test.ts keeps this table equal to those configs).
 */
export const PROFILE_DATA_SIZES: Record<ProfileName, Record<Split, { asks?: number; needs: number }>> = {
  smoke: { train: { asks: 512, needs: 56 }, test: { asks: 128, needs: 16 } },
  default: { train: { needs: 3584 }, test: { needs: 1000 } },
  full: { train: { needs: 5160 }, test: { needs: 10000 } },
};

/**
 * The dataset options of a profile's split: the active dataset, the
 * profile's count, brought to INPUT_SIDE. For an idx folder the count asked
 * for is capped at the split's size (the note says so in the dataset's
 * source, which notebook 00 and the session banner print), and a split
 * smaller than the profile needs is refused. The shipped datasets are larger
 * than every profile needs.
 */
export function profileDataset(split: Split, profile: ProfileName = activeProfile(), env: NodeJS.ProcessEnv = process.env): DatasetOptions {
  const { options } = activeData(profile, env);
  const size = pick(PROFILE_DATA_SIZES, profile)[split];
  if (options.name !== 'idx') return { ...options, split, ...(size.asks ? { limit: size.asks } : {}), pad: INPUT_SIDE };
  const have = idxFolder(options.dir!).counts[split];
  ensure(have >= size.needs, `the ${split} split has ${have} images but the ${profile} profile needs at least ${size.needs}`, `${DATA_ENV}=idx:${options.dir}`,
    `add ${split} images (at least ${size.needs}), or use a smaller profile (ORDERHEAD_PROFILE=smoke needs ${PROFILE_DATA_SIZES.smoke[split].needs})`);
  if (size.asks === undefined || size.asks <= have) return { ...options, split, ...(size.asks ? { limit: size.asks } : {}), pad: INPUT_SIDE };
  return { ...options, split, limit: have, pad: INPUT_SIDE, note: `the ${profile} profile asks for ${size.asks} ${split} images; capped at the dataset's ${have}` };
}

/** Both splits of a profile's dataset, as the stage configs record them. */
export function profileDataPair(profile: ProfileName = activeProfile(), env: NodeJS.ProcessEnv = process.env): Record<Split, DatasetOptions> {
  return { train: profileDataset('train', profile, env), test: profileDataset('test', profile, env) };
}

/** What a notebook says about its data: the dataset's name, its classes, and any cap of the profile's counts. */
export interface DataSummary {
  key: string;
  title: string;
  classes: string[];
  notes: string[];
}

export function dataSummary(profile: ProfileName = activeProfile(), env: NodeJS.ProcessEnv = process.env): DataSummary {
  const choice = activeData(profile, env);
  const pair = profileDataPair(profile, env);
  return {
    key: choice.key, title: datasetTitle(choice.options), classes: datasetClasses(choice.options),
    notes: [pair.train.note, pair.test.note].filter((n): n is string => !!n),
  };
}
