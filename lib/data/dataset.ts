/**
 * Image datasets for the generators: Fashion-MNIST from the Debian package,
 * the small subset shipped in `data/`, or any pair of IDX files a user gives.
 *
 * Images are stored flat as Float32 in [-1, 1] (0 -> -1, 255 -> 1), the range
 * the models train on. Train and test always come from different files, and
 * `limit` takes the first N items, so a run is reproducible without a seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure, oneOf } from '../runtime/errors';
import { DEBIAN_FASHION_MNIST_DIR, readIdx } from './idx';
import { repoRoot } from '../runtime/paths';

/** Fashion-MNIST label names, index = label (from the dataset's README). */
export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** Environment variable that points the 'fashion-mnist' dataset at another folder. */
export const FASHION_MNIST_DIR_ENV = 'ORDERHEAD_FASHION_MNIST_DIR';

export const DATASET_NAMES = ['fashion-mnist', 'subset', 'custom'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];
export const SPLITS = ['train', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** A labelled set of single-channel images. */
export interface ImageDataset {
  /** N * height * width pixels, row-major, scaled to [-1, 1]. */
  images: Float32Array;
  /** N labels, each an index into `classes`. */
  labels: Int32Array;
  n: number;
  height: number;
  width: number;
  classes: string[];
  /** Where the data came from, for notebook output (files, split, limit, padding). */
  source: string;
}

/** The two files of one split. */
export interface IdxPaths {
  images: string;
  labels: string;
}

export interface IdxPairOptions {
  /** Label names; labels must lie in 0 .. classes.length-1. Default: Fashion-MNIST's. */
  classes?: readonly string[];
  /** Keep only the first `limit` items. */
  limit?: number;
  /** Text for `ImageDataset.source`; default names the two files. */
  source?: string;
}

/**
 * Load an images file (N, H, W) and a labels file (N) and check that they
 * belong together: same count, labels within the class list.
 */
export function loadIdxPair(imagesPath: string, labelsPath: string, opts: IdxPairOptions = {}): ImageDataset {
  const classes = [...(opts.classes ?? FASHION_MNIST_CLASSES)];
  ensure(classes.length > 0, 'the class list is empty', 'loadIdxPair(opts.classes)', 'pass at least one class name');

  const images = readIdx(imagesPath);
  ensure(
    images.dims.length === 3,
    `expected an images file with 3 dimensions (N, height, width) but it has ${images.dims.length}: [${images.dims.join(', ')}]`,
    imagesPath,
    'pass an idx3 images file (e.g. train-images-idx3-ubyte.gz); did you swap the images and labels paths?',
  );
  const labels = readIdx(labelsPath);
  ensure(
    labels.dims.length === 1,
    `expected a labels file with 1 dimension (N) but it has ${labels.dims.length}: [${labels.dims.join(', ')}]`,
    labelsPath,
    'pass an idx1 labels file (e.g. train-labels-idx1-ubyte.gz); did you swap the images and labels paths?',
  );
  const [count, height, width] = images.dims;
  ensure(
    count === labels.dims[0],
    `holds ${labels.dims[0]} labels but the images file ${imagesPath} holds ${count} images`,
    labelsPath,
    'pass the labels file of the same split as the images file (train-* with train-*, t10k-* with t10k-*)',
  );
  ensure(count > 0 && height > 0 && width > 0, `holds no images (dimensions [${images.dims.join(', ')}])`, imagesPath, 'pass a non-empty images file');

  const n = takeCount(count, opts.limit, imagesPath);
  const labelArray = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = labels.data[i];
    if (label >= classes.length) {
      throw new OrderHeadError(
        `label ${label} at index ${i} is outside 0 .. ${classes.length - 1} (${classes.length} classes)`,
        labelsPath,
        'pass the class names that match this labels file (opts.classes), or check that the file is a labels file',
      );
    }
    labelArray[i] = label;
  }
  const limited = n < count ? `, first ${n} of ${count}` : '';
  return {
    images: bytesToSigned(images.data.subarray(0, n * height * width)),
    labels: labelArray,
    n,
    height,
    width,
    classes,
    source: (opts.source ?? `${imagesPath} + ${labelsPath}`) + limited,
  };
}

/** Validate `limit` and return how many items to keep. */
function takeCount(available: number, limit: number | undefined, file: string): number {
  if (limit === undefined) return available;
  ensure(Number.isInteger(limit) && limit > 0, `limit must be a positive integer, got ${limit}`, 'loadDataset(limit)', 'pass a whole number of images, or leave limit out to take all');
  ensure(
    limit <= available,
    `limit ${limit} asks for more images than the file holds (${available})`,
    file,
    `pass limit <= ${available}, or choose a larger dataset (name 'fashion-mnist' has 60000 train and 10000 test images)`,
  );
  return limit;
}

/** Map bytes 0..255 to [-1, 1]. */
function bytesToSigned(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / 127.5 - 1;
  return out;
}

/**
 * Pad every image to `size` x `size`, centred, with the background value -1
 * (black). Fashion-MNIST's 28x28 becomes 32x32 with 2 pixels each side, so it
 * tiles into 4x4 or 8x8 patches.
 */
export function padTo(ds: ImageDataset, size: number): ImageDataset {
  ensure(
    Number.isInteger(size) && size >= ds.height && size >= ds.width,
    `pad size ${size} must be a whole number at least the image size ${ds.height}x${ds.width}`,
    'padTo(size)',
    `pass a size >= ${Math.max(ds.height, ds.width)}, e.g. 32 for 28x28 images`,
  );
  if (size === ds.height && size === ds.width) return ds;
  const top = Math.floor((size - ds.height) / 2);
  const left = Math.floor((size - ds.width) / 2);
  const plane = ds.height * ds.width;
  const out = new Float32Array(ds.n * size * size).fill(-1);
  for (let i = 0; i < ds.n; i++) {
    for (let y = 0; y < ds.height; y++) {
      const from = i * plane + y * ds.width;
      out.set(ds.images.subarray(from, from + ds.width), i * size * size + (y + top) * size + left);
    }
  }
  return { ...ds, images: out, height: size, width: size, source: `${ds.source}, padded to ${size}x${size}` };
}

export interface DatasetOptions {
  /** 'fashion-mnist' (Debian package), 'subset' (shipped in data/), 'custom' (your IDX files). */
  name: DatasetName;
  split: Split;
  /** Keep the first `limit` items. */
  limit?: number;
  /** For 'custom': the files of each split; only the requested split is needed. */
  paths?: Partial<Record<Split, IdxPaths>>;
  /** Pad images to `pad` x `pad` (see padTo). */
  pad?: number;
  /** For 'custom': label names; default Fashion-MNIST's. */
  classes?: readonly string[];
}

/** File stem per split, as in the original Fashion-MNIST release. */
const SPLIT_PREFIX: Record<Split, string> = { train: 'train', test: 't10k' };

/** The four standard file names inside a Fashion-MNIST folder. */
export function fashionMnistFiles(dir: string, split: Split): IdxPaths {
  const prefix = SPLIT_PREFIX[split];
  return {
    images: path.join(dir, `${prefix}-images-idx3-ubyte.gz`),
    labels: path.join(dir, `${prefix}-labels-idx1-ubyte.gz`),
  };
}

/** The folder 'fashion-mnist' reads: $ORDERHEAD_FASHION_MNIST_DIR or the Debian location. */
export function fashionMnistDir(): string {
  const fromEnv = process.env[FASHION_MNIST_DIR_ENV];
  return fromEnv && fromEnv.trim() !== '' ? fromEnv : DEBIAN_FASHION_MNIST_DIR;
}

/** The shipped subset: first 2000 train and 500 test Fashion-MNIST items. */
export function subsetDir(): string {
  return path.join(repoRoot(), 'data', 'fashion-mnist-subset');
}

/** Load one split of a named dataset, optionally limited and padded. */
export function loadDataset(opts: DatasetOptions): ImageDataset {
  const name = oneOf(opts.name, DATASET_NAMES, 'loadDataset(name)');
  const split = oneOf(opts.split, SPLITS, 'loadDataset(split)');
  let files: IdxPaths;
  let classes: readonly string[] = FASHION_MNIST_CLASSES;
  let label: string;
  if (name === 'fashion-mnist') {
    const dir = fashionMnistDir();
    files = fashionMnistFiles(dir, split);
    if (dir !== DEBIAN_FASHION_MNIST_DIR) checkOverrideDir(dir, files);
    label = `Fashion-MNIST ${split} (${dir})`;
  } else if (name === 'subset') {
    const dir = subsetDir();
    files = fashionMnistFiles(dir, split);
    label = `Fashion-MNIST subset ${split} (${dir})`;
  } else {
    files = customFiles(opts.paths, split);
    classes = opts.classes ?? FASHION_MNIST_CLASSES;
    label = `custom ${split} (${files.images} + ${files.labels})`;
  }
  const ds = loadIdxPair(files.images, files.labels, { classes, limit: opts.limit, source: label });
  return opts.pad === undefined ? ds : padTo(ds, opts.pad);
}

/** With the env override set, a missing file is the override's fault, not a missing Debian package. */
function checkOverrideDir(dir: string, files: IdxPaths): void {
  for (const file of [files.images, files.labels]) {
    ensure(
      fs.existsSync(file),
      `file not found (the folder comes from ${FASHION_MNIST_DIR_ENV}=${dir})`,
      file,
      `point ${FASHION_MNIST_DIR_ENV} at a folder holding the four Fashion-MNIST .gz files, or unset it to use ${DEBIAN_FASHION_MNIST_DIR}`,
    );
  }
}

/** The requested split's files for 'custom', checked so train and test stay apart. */
function customFiles(paths: DatasetOptions['paths'], split: Split): IdxPaths {
  const files = paths?.[split];
  ensure(
    files && typeof files.images === 'string' && typeof files.labels === 'string',
    `name 'custom' needs the ${split} files`,
    `loadDataset(paths.${split})`,
    `pass paths: { ${split}: { images: '…-images-idx3-ubyte.gz', labels: '…-labels-idx1-ubyte.gz' } }`,
  );
  const other = paths?.[split === 'train' ? 'test' : 'train'];
  if (other) {
    const same = [files.images, files.labels].filter((f) => [other.images, other.labels].some((o) => path.resolve(o) === path.resolve(f)));
    ensure(
      same.length === 0,
      `train and test point at the same file ${same[0]}`,
      'loadDataset(paths)',
      'give the test split its own files, so evaluation never sees training images',
    );
  }
  return files;
}

/** Per-class count row for a notebook table. */
export interface ClassCount {
  label: number;
  name: string;
  count: number;
  /** count / n */
  share: number;
}

export interface DatasetStats {
  source: string;
  n: number;
  height: number;
  width: number;
  /** Mean and standard deviation of all pixels, in the stored [-1, 1] scale. */
  pixelMean: number;
  pixelStd: number;
  pixelMin: number;
  pixelMax: number;
  perClass: ClassCount[];
}

/** Summary numbers for a dataset: class balance and pixel statistics. */
export function datasetStats(ds: ImageDataset): DatasetStats {
  const counts = new Array<number>(ds.classes.length).fill(0);
  for (let i = 0; i < ds.n; i++) counts[ds.labels[i]]++;
  let sum = 0;
  let sumSq = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < ds.images.length; i++) {
    const v = ds.images[i];
    sum += v;
    sumSq += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const total = ds.images.length;
  const mean = total > 0 ? sum / total : NaN;
  const variance = total > 0 ? Math.max(0, sumSq / total - mean * mean) : NaN;
  return {
    source: ds.source,
    n: ds.n,
    height: ds.height,
    width: ds.width,
    pixelMean: mean,
    pixelStd: Math.sqrt(variance),
    pixelMin: total > 0 ? min : NaN,
    pixelMax: total > 0 ? max : NaN,
    perClass: counts.map((count, label) => ({ label, name: ds.classes[label], count, share: ds.n > 0 ? count / ds.n : 0 })),
  };
}

/**
 * Mean image of each class, [numClasses * H * W] in the stored scale: a quick
 * look at what separates the classes. `onClass` is called after each class
 * (progress displays).
 */
export function classMeanImages(ds: ImageDataset, onClass?: (label: number) => void): Float32Array {
  const C = ds.classes.length, P = ds.height * ds.width;
  const sums = new Float64Array(C * P), counts = new Float64Array(C);
  for (let i = 0; i < ds.n; i++) {
    const c = ds.labels[i];
    counts[c]++;
    const src = i * P, dst = c * P;
    for (let p = 0; p < P; p++) sums[dst + p] += ds.images[src + p];
  }
  const out = new Float32Array(C * P).fill(-1);
  for (let c = 0; c < C; c++) {
    if (counts[c] > 0) for (let p = 0; p < P; p++) out[c * P + p] = sums[c * P + p] / counts[c];
    onClass?.(c);
  }
  return out;
}
