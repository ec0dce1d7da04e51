/**
 * Image datasets for the generators: Fashion-MNIST from the Debian package,
 * the small subset shipped in `data/`, a folder of IDX files ('idx', see
 * idxFolder), or any pair of IDX files a user gives ('custom').
 *
 * Images are stored flat as Float32 in [-1, 1] (0 -> -1, 255 -> 1), the range
 * the models train on. Train and test always come from different files, and
 * `limit` takes the first N items, so a run is reproducible without a seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure, oneOf } from '../runtime/errors';
import { DEBIAN_FASHION_MNIST_DIR, readIdx, readIdxHeader } from './idx';
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

export const DATASET_NAMES = ['fashion-mnist', 'subset', 'idx', 'custom'] as const;
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
  const labels = readIdx(labelsPath);
  const [count, height, width] = checkPairDims(imagesPath, images.dims, labelsPath, labels.dims);

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

/**
 * Check that an images file (dims from its header) and a labels file belong
 * together: grayscale (N, H, W) images, (N) labels, the same N > 0. Returns
 * [N, H, W]. Colour images (a 4th dimension, or 3 channels) are refused here:
 * the tokenizer reads one channel.
 */
export function checkPairDims(imagesPath: string, imageDims: readonly number[], labelsPath: string, labelDims: readonly number[]): [number, number, number] {
  const shape = `[${imageDims.join(', ')}]`;
  ensure(
    imageDims.length <= 3,
    `holds ${imageDims.length}-D images ${shape}: colour or multi-channel images (e.g. N x H x W x 3) are not supported, only one grayscale channel`,
    imagesPath,
    'convert the images to grayscale and write them as an idx3 file of shape (N, height, width) (e.g. average the channels, or keep one)',
  );
  ensure(
    imageDims.length === 3,
    `expected an images file with 3 dimensions (N, height, width) but it has ${imageDims.length}: ${shape}`,
    imagesPath,
    'pass an idx3 images file (e.g. train-images-idx3-ubyte.gz); did you swap the images and labels paths?',
  );
  ensure(
    labelDims.length === 1,
    `expected a labels file with 1 dimension (N) but it has ${labelDims.length}: [${labelDims.join(', ')}]`,
    labelsPath,
    'pass an idx1 labels file (e.g. train-labels-idx1-ubyte.gz); did you swap the images and labels paths?',
  );
  const [count, height, width] = imageDims;
  ensure(
    count === labelDims[0],
    `holds ${labelDims[0]} labels but the images file ${imagesPath} holds ${count} images`,
    labelsPath,
    'pass the labels file of the same split as the images file (train-* with train-*, t10k-* with t10k-*)',
  );
  ensure(count > 0 && height > 0 && width > 0, `holds no images (dimensions ${shape})`, imagesPath, 'pass a non-empty images file');
  return [count, height, width];
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

/**
 * The size rule for images of another size than the models' input
 * (`size` x `size`, 32 for the tokenizer and the feature network):
 *
 * - images that fit (height and width <= size) are padded, centred, with the
 *   background -1 (padTo): 28x28 Fashion-MNIST gets 2 pixels each side, 20x20
 *   images 6;
 * - larger images are first area-averaged down (each output pixel the mean of
 *   the input area it covers, fractional pixels weighted) so that their longer
 *   side is `size - 4` (28 for 32: Fashion-MNIST's own size, so every dataset
 *   keeps the 2-pixel background border the models saw), aspect ratio kept,
 *   then padded as above.
 *
 * Averaging rather than sampling, so thin strokes fade instead of vanishing.
 */
export function fitTo(ds: ImageDataset, size: number): ImageDataset {
  if (ds.height <= size && ds.width <= size) return padTo(ds, size);
  ensure(Number.isInteger(size) && size > 4, `fit size ${size} must be a whole number above 4`, 'fitTo(size)', 'pass the input side of the models, e.g. 32');
  const scale = (size - 4) / Math.max(ds.height, ds.width);
  const h = Math.max(1, Math.round(ds.height * scale)), w = Math.max(1, Math.round(ds.width * scale));
  const rows = areaWeights(ds.height, h), cols = areaWeights(ds.width, w);
  const out = new Float32Array(ds.n * h * w);
  for (let i = 0; i < ds.n; i++) {
    const src = i * ds.height * ds.width;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0;
        for (const [sy, wy] of rows[y]) for (const [sx, wx] of cols[x]) v += wy * wx * ds.images[src + sy * ds.width + sx];
        out[i * h * w + y * w + x] = v;
      }
    }
  }
  const shrunk = { ...ds, images: out, height: h, width: w, source: `${ds.source}, area-averaged ${ds.height}x${ds.width} -> ${h}x${w}` };
  return padTo(shrunk, size);
}

/** For each of `to` output cells along an axis of `from` pixels: the input pixels it covers and their weights (summing to 1). */
function areaWeights(from: number, to: number): [number, number][][] {
  const step = from / to;
  return Array.from({ length: to }, (_, o) => {
    const lo = o * step, hi = (o + 1) * step, cells: [number, number][] = [];
    for (let p = Math.floor(lo); p < Math.min(from, Math.ceil(hi)); p++) {
      const cover = Math.min(hi, p + 1) - Math.max(lo, p);
      if (cover > 1e-9) cells.push([p, cover / step]);
    }
    return cells;
  });
}

export interface DatasetOptions {
  /** 'fashion-mnist' (Debian package), 'subset' (shipped in data/), 'idx' (a folder of IDX files), 'custom' (your IDX files). */
  name: DatasetName;
  /** For 'idx': the folder (absolute; see idxFolder for what it holds). */
  dir?: string;
  split: Split;
  /** Keep the first `limit` items. */
  limit?: number;
  /** For 'custom': the files of each split; only the requested split is needed. */
  paths?: Partial<Record<Split, IdxPaths>>;
  /** Bring images to `pad` x `pad`: pad, or shrink larger ones first (see fitTo for the rule). */
  pad?: number;
  /** For 'custom': label names; default Fashion-MNIST's. */
  classes?: readonly string[];
  /** Said after the source in ImageDataset.source (e.g. that a profile's limit was capped at the dataset's size). */
  note?: string;
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
  } else if (name === 'idx') {
    const folder = idxFolder(idxDirOf(opts));
    files = folder[split];
    classes = folder.classes;
    label = `${folder.name} ${split} (idx:${folder.dir})`;
  } else {
    files = customFiles(opts.paths, split);
    classes = opts.classes ?? FASHION_MNIST_CLASSES;
    label = `custom ${split} (${files.images} + ${files.labels})`;
  }
  const ds = loadIdxPair(files.images, files.labels, { classes, limit: opts.limit, source: label });
  if (opts.note) ds.source += ` (${opts.note})`;
  return opts.pad === undefined ? ds : fitTo(ds, opts.pad);
}

/** The dataset's name for captions and tables: 'Fashion-MNIST', 'Fashion-MNIST subset', or an idx folder's name. */
export function datasetTitle(opts: Pick<DatasetOptions, 'name' | 'dir'>): string {
  const name = oneOf(opts.name, DATASET_NAMES, 'datasetTitle(name)');
  if (name === 'idx') return idxFolder(idxDirOf(opts)).name;
  return { 'fashion-mnist': 'Fashion-MNIST', subset: 'Fashion-MNIST subset', custom: 'custom idx files' }[name];
}

/** The class names of a dataset, index = label (for 'idx': its classes.txt, else the label numbers). */
export function datasetClasses(opts: Pick<DatasetOptions, 'name' | 'dir' | 'classes'>): string[] {
  const name = oneOf(opts.name, DATASET_NAMES, 'datasetClasses(name)');
  if (name === 'idx') return idxFolder(idxDirOf(opts)).classes;
  return [...(name === 'custom' && opts.classes ? opts.classes : FASHION_MNIST_CLASSES)];
}

function idxDirOf(opts: Pick<DatasetOptions, 'dir'>): string {
  ensure(typeof opts.dir === 'string' && opts.dir !== '', "name 'idx' needs the folder", 'loadDataset(dir)', "pass dir: '/path/to/folder' (or set ORDERHEAD_DATA=idx:/path/to/folder)");
  return opts.dir;
}

/** The optional explicit layout of an idx folder (see idxFolder). */
export const IDX_MANIFEST = 'orderhead-data.json';
/** The optional class-names file of an idx folder: one name per line, line k = label k. */
export const IDX_CLASSES_FILE = 'classes.txt';

/** An idx folder, found and checked (idxFolder). */
export interface IdxFolder {
  dir: string;
  /** The manifest's name, else the folder's name. */
  name: string;
  train: IdxPaths;
  test: IdxPaths;
  /** Images per split. */
  counts: Record<Split, number>;
  height: number;
  width: number;
  /** From classes.txt, else '0' .. String(max label). */
  classes: string[];
}

/** Name patterns of the pattern form; a file must match exactly one split and one kind. */
const IDX_SPLIT_RE: Record<Split, RegExp> = { train: /train/i, test: /t10k|test/i };
const IDX_KIND_RE: Record<keyof IdxPaths, RegExp> = { images: /images|idx3/i, labels: /labels|idx1/i };

/**
 * Find and check the files of an idx folder `dir`. Two forms:
 *
 * - explicit: `dir/orderhead-data.json` =
 *   `{ "name": "shapes", "train": { "images": "a", "labels": "b" }, "test": { "images": "c", "labels": "d" } }`
 *   (paths relative to `dir`; name optional, default the folder's name);
 * - by pattern, without a manifest: per split the one file whose name contains
 *   'train' (train) or 't10k' / 'test' (test) and 'images' / 'idx3' (images) or
 *   'labels' / 'idx1' (labels), plain or .gz: MNIST's and Fashion-MNIST's names.
 *
 * Class names: `dir/classes.txt`, one per line (line k names label k; labels
 * must lie below the number of names), else the label numbers '0' ..
 * String(max label over both splits). Checked for both splits at once, so a
 * broken test split stops the run before training: grayscale (N, H, W) images,
 * as many labels as images, the same image size in train and test.
 */
export function idxFolder(dir: string): IdxFolder {
  ensure(fs.existsSync(dir) && fs.statSync(dir).isDirectory(), 'is not a folder', dir, 'pass the folder that holds the image and label files (ORDERHEAD_DATA=idx:DIR)');
  const manifestPath = path.join(dir, IDX_MANIFEST);
  const found = fs.existsSync(manifestPath) ? readIdxManifest(manifestPath) : { name: path.basename(path.resolve(dir)), ...findIdxByPattern(dir) };
  const counts = {} as Record<Split, number>;
  const sizes: Record<string, [number, number]> = {};
  let maxLabel = -1, maxAt = '';
  for (const split of SPLITS) {
    const files = found[split];
    const labels = readIdx(files.labels);
    const [n, h, w] = checkPairDims(files.images, readIdxHeader(files.images).dims, files.labels, labels.dims);
    counts[split] = n;
    sizes[split] = [h, w];
    for (let i = 0; i < labels.data.length; i++) if (labels.data[i] > maxLabel) { maxLabel = labels.data[i]; maxAt = `${files.labels} (index ${i})`; }
  }
  const [[th, tw], [eh, ew]] = [sizes.train, sizes.test];
  ensure(th === eh && tw === ew, `the train images are ${th}x${tw} but the test images (${found.test.images}) are ${eh}x${ew}`, found.train.images,
    'give both splits images of the same size (the models are trained on one size and tested on the same)');
  const classesPath = path.join(dir, IDX_CLASSES_FILE);
  let classes: string[];
  if (fs.existsSync(classesPath)) {
    classes = fs.readFileSync(classesPath, 'utf8').replace(/\s+$/, '').split(/\r?\n/).map((l) => l.trim());
    ensure(classes.length > 0 && classes.every((c) => c !== ''), 'has an empty class name', classesPath, 'write one non-empty name per line, line k naming label k');
    ensure(maxLabel < classes.length, `names ${classes.length} classes (labels 0 .. ${classes.length - 1}) but ${maxAt} holds label ${maxLabel}`, classesPath,
      `add the missing class names to ${IDX_CLASSES_FILE} (one per line), or fix the labels file`);
  } else {
    classes = Array.from({ length: maxLabel + 1 }, (_, c) => String(c));
  }
  ensure(classes.length >= 2, `holds only one class (every label is ${maxLabel})`, found.train.labels, 'use labels of at least two classes (0 .. C-1)');
  return { dir, name: found.name, train: found.train, test: found.test, counts, height: th, width: tw, classes };
}

/** The explicit form: the manifest's files, resolved against its folder. */
function readIdxManifest(file: string): { name: string } & Record<Split, IdxPaths> {
  const form = `{ "name": "my-set", "train": { "images": "...", "labels": "..." }, "test": { "images": "...", "labels": "..." } }`;
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new OrderHeadError(`is not valid JSON (${(err as Error).message})`, file, `write it as ${form}`);
  }
  const dir = path.dirname(file);
  const split = (s: Split): IdxPaths => {
    const v = doc?.[s] as Partial<IdxPaths> | undefined;
    ensure(v && typeof v.images === 'string' && typeof v.labels === 'string', `has no "${s}": { "images": ..., "labels": ... }`, file, `write it as ${form}`);
    return { images: path.resolve(dir, v.images), labels: path.resolve(dir, v.labels) };
  };
  const name = doc?.name === undefined ? path.basename(path.resolve(dir)) : doc.name;
  ensure(typeof name === 'string' && name.trim() !== '', '"name" must be a non-empty string', file, `write it as ${form}, or leave "name" out`);
  return { name: name.trim(), train: split('train'), test: split('test') };
}

/** The pattern form: exactly one file per split and kind. */
function findIdxByPattern(dir: string): Record<Split, IdxPaths> {
  const names = fs.readdirSync(dir).filter((f) => fs.statSync(path.join(dir, f)).isFile() && f !== IDX_CLASSES_FILE);
  const one = (split: Split, kind: keyof IdxPaths): string => {
    const other = kind === 'images' ? 'labels' : 'images', otherSplit = split === 'train' ? 'test' : 'train';
    const hits = names.filter((f) => IDX_SPLIT_RE[split].test(f) && !IDX_SPLIT_RE[otherSplit].test(f) && IDX_KIND_RE[kind].test(f) && !IDX_KIND_RE[other].test(f));
    const wanted = `${split} ${kind} file (a name containing ${split === 'train' ? "'train'" : "'t10k' or 'test'"} and ${kind === 'images' ? "'images' or 'idx3'" : "'labels' or 'idx1'"})`;
    const fix = `name the files like train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, or list them in ${path.join(dir, IDX_MANIFEST)}`;
    ensure(hits.length > 0, `holds no ${wanted}; it holds: ${names.join(', ') || 'no files'}`, dir, fix);
    ensure(hits.length === 1, `holds ${hits.length} candidates for the ${wanted}: ${hits.join(', ')}`, dir, fix);
    return path.join(dir, hits[0]);
  };
  return { train: { images: one('train', 'images'), labels: one('train', 'labels') }, test: { images: one('test', 'images'), labels: one('test', 'labels') } };
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
