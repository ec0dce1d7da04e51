/**
 * Any dataset: ORDERHEAD_DATA=idx:DIR (files by pattern or by manifest, class
 * names), the size rule (fitTo), the profile's counts against the dataset's
 * size, the class count following the dataset, and every bad input as an
 * OrderHeadError naming the file and the fix.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { throwsOH } from '../../helpers';
import { writeIdx } from '../../../lib/data/idx';
import { IDX_MANIFEST, ImageDataset, datasetClasses, fitTo, idxFolder, loadDataset } from '../../../lib/data/dataset';
import { DATA_ENV, PROFILE_DATA_SIZES, activeData, dataSummary, parseData, profileDataPair, profileDataset } from '../../../lib/data/profile-data';
import { PROFILES } from '../../../lib/runtime/profile';
import { featureNetConfig } from '../../../lib/eval/feature-net-config';
import { tokenizerConfig } from '../../../lib/tokenizer/config';
import { oracleDatasetConfig } from '../../../lib/oracle/dataset-config';
import { evalConfig } from '../../../lib/eval/config';
import { stage1Config } from '../../../lib/backbone/stage1';
import { regimeImages } from '../../../lib/backbone/regime';
import { SHAPE_CLASSES, writeShapesSet } from '../../fixtures/idx-set';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-data-folder-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let k = 0;
const fresh = () => { const d = path.join(tmp, `set-${k++}`); fs.mkdirSync(d); return d; };

const env = (dir: string) => ({ [DATA_ENV]: `idx:${dir}` });

describe('idx folders', () => {
  test('by pattern: MNIST names, and other names holding train/test and images/labels', () => {
    const a = writeShapesSet(fresh());
    const f = idxFolder(a);
    assert.equal(path.basename(f.train.images), 'train-images-idx3-ubyte.gz');
    assert.equal(path.basename(f.test.labels), 't10k-labels-idx1-ubyte.gz');
    assert.deepEqual(f.counts, { train: 64, test: 32 });
    assert.deepEqual([f.height, f.width], [20, 20]);
    assert.equal(f.name, path.basename(a));
    const b = writeShapesSet(fresh(), { files: { trainImages: 'shapes_train_images.idx', trainLabels: 'shapes_train_labels.idx', testImages: 'shapes-test.idx3', testLabels: 'shapes-test.idx1' } });
    assert.equal(path.basename(idxFolder(b).test.images), 'shapes-test.idx3');
  });

  test('explicit: orderhead-data.json names the files and the dataset', () => {
    const d = writeShapesSet(fresh(), { files: { trainImages: 'a.bin', trainLabels: 'b.bin', testImages: 'c.bin', testLabels: 'd.bin' } });
    fs.writeFileSync(path.join(d, IDX_MANIFEST), JSON.stringify({ name: 'shapes', train: { images: 'a.bin', labels: 'b.bin' }, test: { images: 'c.bin', labels: 'd.bin' } }));
    const f = idxFolder(d);
    assert.equal(f.name, 'shapes');
    assert.equal(f.test.images, path.join(d, 'c.bin'));
    const ds = loadDataset({ name: 'idx', dir: d, split: 'test' });
    assert.equal(ds.n, 32);
    assert.match(ds.source, /^shapes test \(idx:/);
    fs.writeFileSync(path.join(d, IDX_MANIFEST), '{ "train": ');
    throwsOH(() => idxFolder(d), path.join(d, IDX_MANIFEST), 'not valid JSON', 'write it as');
    fs.writeFileSync(path.join(d, IDX_MANIFEST), JSON.stringify({ train: { images: 'a.bin', labels: 'b.bin' } }));
    throwsOH(() => idxFolder(d), IDX_MANIFEST, 'no "test"');
  });

  test('class names: classes.txt, else the label numbers; the class count follows the dataset', () => {
    const named = writeShapesSet(fresh());
    assert.deepEqual(datasetClasses({ name: 'idx', dir: named }), SHAPE_CLASSES);
    assert.deepEqual(loadDataset({ name: 'idx', dir: named, split: 'train' }).classes, SHAPE_CLASSES);
    const plain = writeShapesSet(fresh(), { names: false });
    assert.deepEqual(datasetClasses({ name: 'idx', dir: plain }), ['0', '1', '2', '3']);
    assert.equal(featureNetConfig('smoke', { data: profileDataPair('smoke', env(plain)) }).classes, 4, 'max label + 1');
    const saved = process.env[DATA_ENV];
    process.env[DATA_ENV] = `idx:${named}`;
    try {
      assert.equal(featureNetConfig('smoke').classes, 4, 'the feature net has one output per class of the dataset');
      assert.equal(tokenizerConfig('smoke').data.train.dir, named);
      const s = dataSummary('smoke');
      assert.deepEqual([s.title, s.classes], [path.basename(named), SHAPE_CLASSES]);
    } finally {
      if (saved === undefined) delete process.env[DATA_ENV]; else process.env[DATA_ENV] = saved;
    }
  });

  test('ORDERHEAD_DATA: the three forms, unset = the profile\'s own, a relative DIR made absolute; others refused', () => {
    assert.equal(activeData('smoke', {}).key, 'subset');
    assert.equal(activeData('default', {}).key, 'fashion-mnist');
    assert.equal(activeData('smoke', { [DATA_ENV]: 'fashion-mnist' }).key, 'fashion-mnist');
    assert.equal(parseData('idx:rel/dir', 'smoke').key, `idx:${path.resolve('rel/dir')}`);
    throwsOH(() => parseData('mnist', 'smoke'), DATA_ENV, "unknown dataset 'mnist'", 'idx:DIR');
    throwsOH(() => parseData('idx:', 'smoke'), DATA_ENV, 'fashion-mnist, subset or idx:DIR');
    // The built-in datasets keep their options (the same run configs as before).
    assert.deepEqual(profileDataset('train', 'smoke', {}), { name: 'subset', split: 'train', limit: 512, pad: 32 });
    assert.deepEqual(profileDataset('test', 'default', {}), { name: 'fashion-mnist', split: 'test', pad: 32 });
  });
});

describe('profile sizes', () => {
  test('the smoke profile\'s counts are capped at a smaller set, with a note in the source', () => {
    const d = writeShapesSet(fresh(), { train: 100, test: 40 });
    const train = profileDataset('train', 'smoke', env(d));
    assert.equal(train.limit, 100);
    assert.match(train.note!, /asks for 512 train images; capped at the dataset's 100/);
    const ds = loadDataset(train);
    assert.equal(ds.n, 100);
    assert.match(ds.source, /capped at the dataset's 100/);
    assert.deepEqual(dataSummary('smoke', env(d)).notes.length, 2);
    const big = writeShapesSet(fresh(), { train: 600, test: 200 });
    assert.deepEqual(profileDataset('train', 'smoke', env(big)), { name: 'idx', dir: big, split: 'train', limit: 512, pad: 32 });
  });

  test('a set smaller than the profile needs is refused, naming the split, the need and the fix', () => {
    const d = writeShapesSet(fresh(), { train: 20, test: 40 });
    throwsOH(() => profileDataset('train', 'smoke', env(d)), `${DATA_ENV}=idx:${d}`, 'has 20 images', 'needs at least 56', 'add train images');
    throwsOH(() => profileDataset('test', 'default', env(d)), 'needs at least 1000', 'ORDERHEAD_PROFILE=smoke');
  });

  test('each profile\'s minimum is what its stages take from the split (the table follows the configs)', () => {
    for (const p of PROFILES) {
      const ev = evalConfig(p);
      const s1 = stage1Config(p, 'block-rar');
      const oracleImages = oracleDatasetConfig(p, { backbone: 'b', tokens: 't' }).images;
      // Stage 1's regime: the planner's images, the validation images and at least one batch of training images.
      const regime = s1.plannerImages + s1.validationImages + (s1.uniqueImages === 'all' ? s1.batch : s1.uniqueImages);
      const train = Math.max(oracleImages, tokenizerConfig(p).batch, regime, featureNetConfig(p).batch);
      assert.equal(PROFILE_DATA_SIZES[p].train.needs, train, `${p} train`);
      assert.equal(PROFILE_DATA_SIZES[p].test.needs, Math.max(ev.nllImages, ev.trajectory.images), `${p} test`);
      // A train split of exactly that size holds the profile's regime, and one image fewer is refused (naming the regime's fields).
      const split = regimeImages(train, s1, s1.batch);
      assert.ok(split.k >= s1.batch, `${p}: ${split.k} training images`);
      if (train === regime) throwsOH(() => regimeImages(train - 1, s1, s1.batch), 'stage1.');
      // The oracle's states come from the planner's images (regime.ts): no backbone of any K trains on them.
      assert.ok(oracleImages <= s1.plannerImages, `${p}: oracle.images ${oracleImages} > stage1.plannerImages ${s1.plannerImages}`);
    }
  });
});

describe('the size rule (fitTo)', () => {
  const one = (h: number, w: number, v: (y: number, x: number) => number): ImageDataset => ({
    images: Float32Array.from({ length: h * w }, (_, i) => v(Math.floor(i / w), i % w)), labels: new Int32Array(1), n: 1, height: h, width: w, classes: ['a'], source: 'test',
  });
  const at = (ds: ImageDataset, y: number, x: number) => ds.images[y * ds.width + x];

  test('smaller images are padded centred with the background', () => {
    const out = fitTo(one(20, 20, () => 1), 32);
    assert.deepEqual([out.height, out.width], [32, 32]);
    assert.equal(at(out, 5, 16), -1);
    assert.equal(at(out, 6, 6), 1);
    assert.equal(at(out, 25, 25), 1);
    assert.equal(at(out, 26, 16), -1);
    const loaded = loadDataset({ name: 'idx', dir: writeShapesSet(fresh()), split: 'train', pad: 32 });
    assert.deepEqual([loaded.height, loaded.width], [32, 32]);
  });

  test('larger images are area-averaged to 28 on the longer side (aspect kept), then padded', () => {
    // 56x56 halves: each output pixel is the mean of a 2x2 block.
    const out = fitTo(one(56, 56, (y, x) => (y % 2 === 0 && x % 2 === 0 ? 1 : -1)), 32);
    assert.deepEqual([out.height, out.width], [32, 32]);
    assert.ok(Math.abs(at(out, 2, 2) - -0.5) < 1e-6, `mean of one 1 and three -1: ${at(out, 2, 2)}`);
    assert.equal(at(out, 1, 16), -1, 'the 2-pixel border stays background');
    assert.match(out.source, /area-averaged 56x56 -> 28x28/);
    // 40x80: the longer side becomes 28, the other 14, centred.
    const wide = fitTo(one(40, 80, () => 0.5), 32);
    assert.ok(Math.abs(at(wide, 16, 16) - 0.5) < 1e-6, 'a constant image stays constant (weights sum to 1)');
    assert.equal(at(wide, 8, 16), -1);
    assert.ok(Math.abs(at(wide, 9, 16) - 0.5) < 1e-6);
    assert.match(wide.source, /-> 14x28/);
  });
});

describe('bad idx folders: each names the file and the fix', () => {
  test('colour or 4-D images', () => {
    const d = writeShapesSet(fresh());
    const file = path.join(d, 'train-images-idx3-ubyte.gz');
    writeIdx(file, [64, 20, 20, 3], new Uint8Array(64 * 20 * 20 * 3));
    throwsOH(() => idxFolder(d), file, '4-D images [64, 20, 20, 3]', 'colour', 'convert the images to grayscale');
    throwsOH(() => loadDataset({ name: 'idx', dir: d, split: 'train' }), file, 'grayscale');
  });

  test('a label outside the names of classes.txt', () => {
    const d = writeShapesSet(fresh());
    fs.writeFileSync(path.join(d, 'classes.txt'), 'ring\nbar\ncross\n');
    throwsOH(() => idxFolder(d), path.join(d, 'classes.txt'), 'names 3 classes', 'holds label 3', 'add the missing class names');
    fs.writeFileSync(path.join(d, 'classes.txt'), 'ring\n\ncross\ndot\n');
    throwsOH(() => idxFolder(d), 'classes.txt', 'empty class name');
  });

  test('train and test images of different sizes', () => {
    const d = writeShapesSet(fresh());
    writeIdx(path.join(d, 't10k-images-idx3-ubyte.gz'), [32, 24, 24], new Uint8Array(32 * 24 * 24));
    throwsOH(() => loadDataset({ name: 'idx', dir: d, split: 'train' }), path.join(d, 'train-images-idx3-ubyte.gz'), 'are 20x20', 'are 24x24', 'same size');
  });

  test('images and labels of different counts (in either split, found before training)', () => {
    const d = writeShapesSet(fresh());
    writeIdx(path.join(d, 't10k-labels-idx1-ubyte.gz'), [31], new Uint8Array(31));
    throwsOH(() => loadDataset({ name: 'idx', dir: d, split: 'train' }), path.join(d, 't10k-labels-idx1-ubyte.gz'), 'holds 31 labels', '32 images', 'same split');
  });

  test('no file, or two, for a split and kind; a missing folder', () => {
    const d = writeShapesSet(fresh());
    fs.rmSync(path.join(d, 't10k-labels-idx1-ubyte.gz'));
    throwsOH(() => idxFolder(d), d, 'holds no test labels file', IDX_MANIFEST);
    writeIdx(path.join(d, 't10k-labels-idx1-ubyte.gz'), [32], new Uint8Array(32));
    writeIdx(path.join(d, 'test-labels-copy.idx1'), [32], new Uint8Array(32));
    throwsOH(() => idxFolder(d), '2 candidates', 'test-labels-copy.idx1');
    throwsOH(() => profileDataset('train', 'smoke', env(path.join(d, 'nope'))), path.join(d, 'nope'), 'is not a folder');
  });
});
