/**
 * IDX reading/writing and dataset loading: round trips, every user-caused
 * failure as an OrderHeadError naming the file, padding, the shipped subset.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { throwsOH } from '../../helpers';
import { DEBIAN_FASHION_MNIST_DIR, encodeIdx, readIdx, writeIdx } from '../../../lib/data/idx';
import {
  classMeanImages,
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_DIR_ENV,
  ImageDataset,
  datasetStats,
  loadDataset,
  loadIdxPair,
  padTo,
  subsetDir,
} from '../../../lib/data/dataset';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'orderhead-data-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic bytes 0..255. */
function pattern(count: number): Uint8Array {
  return Uint8Array.from({ length: count }, (_, i) => (i * 37 + 11) % 256);
}

/** Write an images file and a labels file of `n` items (labels i % 10). */
function writePair(dir: string, n: number, labelCount = n): { images: string; labels: string } {
  const images = path.join(dir, `images-${n}-${labelCount}.gz`);
  const labels = path.join(dir, `labels-${n}-${labelCount}.gz`);
  writeIdx(images, [n, 28, 28], pattern(n * 28 * 28));
  writeIdx(labels, [labelCount], Uint8Array.from({ length: labelCount }, (_, i) => i % 10));
  return { images, labels };
}

describe('IDX files', () => {
  test('round trip, plain and gzip', () => {
    const data = pattern(3 * 4 * 5);
    for (const name of ['a.idx', 'a.idx.gz']) {
      const file = path.join(tmp, name);
      writeIdx(file, [3, 4, 5], data);
      const head = fs.readFileSync(file).subarray(0, 2);
      assert.equal(head[0] === 0x1f && head[1] === 0x8b, name.endsWith('.gz'), `${name} gzip magic`);
      const back = readIdx(file);
      assert.deepEqual(back.dims, [3, 4, 5]);
      assert.deepEqual(Array.from(back.data), Array.from(data));
    }
  });

  test('header is 00 00 08 ndims then big-endian sizes', () => {
    const bytes = encodeIdx([2, 258], new Uint8Array(516));
    assert.deepEqual(Array.from(bytes.subarray(0, 12)), [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 1, 2]);
    assert.equal(bytes.length, 12 + 516);
  });

  test('gzip is detected by magic, not by name', () => {
    const file = path.join(tmp, 'really-gzip.idx');
    fs.writeFileSync(file, zlib.gzipSync(encodeIdx([4], Uint8Array.of(1, 2, 3, 4))));
    assert.deepEqual(Array.from(readIdx(file).data), [1, 2, 3, 4]);
  });

  test('missing file names the path; the Debian location suggests the package', () => {
    const file = path.join(tmp, 'nope.gz');
    throwsOH(() => readIdx(file), file, 'file not found');
    const debian = path.join(DEBIAN_FASHION_MNIST_DIR, 'no-such-file-idx3-ubyte.gz');
    throwsOH(() => readIdx(debian), debian, 'apt-get install dataset-fashion-mnist', 'bash scripts/setup.sh');
  });

  test('empty file', () => {
    const file = path.join(tmp, 'empty.gz');
    fs.writeFileSync(file, '');
    throwsOH(() => readIdx(file), file, 'empty');
  });

  test('wrong magic', () => {
    const file = path.join(tmp, 'png-not-idx');
    fs.writeFileSync(file, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 1, 2]));
    throwsOH(() => readIdx(file), file, 'not an IDX file', '89 50 4e 47');
    const badType = path.join(tmp, 'bad-type');
    fs.writeFileSync(badType, Buffer.from([0, 0, 0x42, 1, 0, 0, 0, 1, 7]));
    throwsOH(() => readIdx(badType), badType, 'unknown type code 0x42');
    const floats = path.join(tmp, 'floats');
    fs.writeFileSync(floats, Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]));
    throwsOH(() => readIdx(floats), floats, 'float32', 'only unsigned bytes');
  });

  test('truncated data and truncated header, plain and gzip', () => {
    const full = encodeIdx([10, 28, 28], pattern(10 * 28 * 28));
    const cut = full.subarray(0, full.length - 100);
    for (const [name, bytes] of [['cut.idx', cut], ['cut.idx.gz', zlib.gzipSync(cut)]] as const) {
      const file = path.join(tmp, name);
      fs.writeFileSync(file, bytes);
      throwsOH(() => readIdx(file), file, 'truncated data', `${28 * 28 * 10 - 100} are there`);
    }
    const header = path.join(tmp, 'cut-header');
    fs.writeFileSync(header, full.subarray(0, 9));
    throwsOH(() => readIdx(header), header, 'truncated header');
    const extra = path.join(tmp, 'extra');
    fs.writeFileSync(extra, Buffer.concat([full, Buffer.from([1, 2, 3])]));
    throwsOH(() => readIdx(extra), extra, '3 unexpected bytes');
  });

  test('corrupt gzip: flipped bytes and a cut-off stream', () => {
    const gz = zlib.gzipSync(encodeIdx([50, 28, 28], pattern(50 * 784)));
    const flipped = Buffer.from(gz);
    for (let i = 20; i < 60; i++) flipped[i] ^= 0xff;
    const flippedFile = path.join(tmp, 'flipped.gz');
    fs.writeFileSync(flippedFile, flipped);
    throwsOH(() => readIdx(flippedFile), flippedFile, 'corrupt gzip');
    const cutFile = path.join(tmp, 'cut-stream.gz');
    fs.writeFileSync(cutFile, gz.subarray(0, gz.length >> 1));
    throwsOH(() => readIdx(cutFile), cutFile, 'corrupt gzip');
  });

  test('writeIdx rejects a shape that does not match the data', () => {
    throwsOH(() => writeIdx(path.join(tmp, 'x.gz'), [2, 3], new Uint8Array(5)), 'describe 6 items', 'holds 5');
  });
});

describe('image/label pairs', () => {
  test('loads, scales to [-1, 1], keeps labels', () => {
    const { images, labels } = writePair(tmp, 12);
    const ds = loadIdxPair(images, labels);
    assert.equal(ds.n, 12);
    assert.equal(ds.height, 28);
    assert.equal(ds.width, 28);
    assert.equal(ds.images.length, 12 * 784);
    const bytes = pattern(12 * 784);
    for (const i of [0, 1, 500, 12 * 784 - 1]) assert.ok(Math.abs(ds.images[i] - (bytes[i] / 127.5 - 1)) < 1e-6);
    assert.deepEqual(Array.from(ds.labels), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert.deepEqual(ds.classes, [...FASHION_MNIST_CLASSES]);
  });

  test('count mismatch names both files', () => {
    const { images, labels } = writePair(tmp, 8, 7);
    throwsOH(() => loadIdxPair(images, labels), images, labels, '7 labels', '8 images');
  });

  test('swapped images and labels files', () => {
    const { images, labels } = writePair(tmp, 4);
    throwsOH(() => loadIdxPair(labels, images), labels, '3 dimensions');
  });

  test('label out of range names the labels file and the index', () => {
    const { images } = writePair(tmp, 3);
    const labels = path.join(tmp, 'bad-labels.gz');
    writeIdx(labels, [3], Uint8Array.of(1, 12, 2));
    throwsOH(() => loadIdxPair(images, labels), labels, 'label 12 at index 1');
    throwsOH(() => loadIdxPair(images, labels, { classes: ['a', 'b'] }), labels, 'label 12', '0 .. 1');
  });

  test('limit takes the first N; too large a limit is an error', () => {
    const { images, labels } = writePair(tmp, 20);
    const all = loadIdxPair(images, labels);
    const first = loadIdxPair(images, labels, { limit: 5 });
    assert.equal(first.n, 5);
    assert.deepEqual(Array.from(first.images), Array.from(all.images.subarray(0, 5 * 784)));
    assert.ok(first.source.includes('first 5 of 20'));
    throwsOH(() => loadIdxPair(images, labels, { limit: 21 }), images, 'limit 21');
    throwsOH(() => loadIdxPair(images, labels, { limit: 2.5 }), 'positive integer');
  });
});

describe('padding', () => {
  test('28x28 sits in the centre of 32x32 with background -1', () => {
    const n = 2;
    const images = new Float32Array(n * 28 * 28);
    for (let i = 0; i < images.length; i++) images[i] = ((i % 251) / 250) * 2 - 1 + 1e-3; // never exactly -1
    const ds: ImageDataset = { images, labels: Int32Array.of(0, 1), n, height: 28, width: 28, classes: ['a', 'b'], source: 'test' };
    const padded = padTo(ds, 32);
    assert.equal(padded.height, 32);
    assert.equal(padded.width, 32);
    assert.equal(padded.images.length, n * 32 * 32);
    for (let k = 0; k < n; k++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const v = padded.images[k * 1024 + y * 32 + x];
          const inside = y >= 2 && y < 30 && x >= 2 && x < 30;
          if (inside) assert.equal(v, images[k * 784 + (y - 2) * 28 + (x - 2)], `image ${k} pixel (${y}, ${x})`);
          else assert.equal(v, -1, `border pixel (${y}, ${x})`);
        }
      }
    }
    assert.equal(padded.labels, ds.labels);
    throwsOH(() => padTo(ds, 27), 'padTo(size)');
  });
});

describe('datasets', () => {
  test('the shipped subset: 2000 train, 500 test, Fashion-MNIST classes, separate files', () => {
    const train = loadDataset({ name: 'subset', split: 'train' });
    const test = loadDataset({ name: 'subset', split: 'test' });
    assert.equal(train.n, 2000);
    assert.equal(test.n, 500);
    assert.equal(train.labels.length, 2000);
    assert.equal(train.height, 28);
    assert.deepEqual(train.classes, [
      'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
    ]);
    assert.ok(train.source.includes('train') && test.source.includes('test'));
    assert.notDeepEqual(Array.from(train.images.subarray(0, 784)), Array.from(test.images.subarray(0, 784)));
    // Fashion-MNIST's first training label is 9 (Ankle boot), first test label 9 too, second test label 2.
    assert.equal(train.labels[0], 9);
    assert.deepEqual(Array.from(test.labels.subarray(0, 2)), [9, 2]);
    let min = Infinity;
    let max = -Infinity;
    for (const v of train.images) [min, max] = [Math.min(min, v), Math.max(max, v)];
    assert.equal(min, -1);
    assert.equal(max, 1);
    assert.ok(fs.existsSync(path.join(subsetDir(), 'README.md')));
  });

  test('limit and pad through loadDataset', () => {
    const ds = loadDataset({ name: 'subset', split: 'train', limit: 10, pad: 32 });
    assert.equal(ds.n, 10);
    assert.equal(ds.height, 32);
    assert.equal(ds.images.length, 10 * 1024);
    assert.ok(ds.source.includes('first 10 of 2000') && ds.source.includes('padded to 32x32'), ds.source);
    throwsOH(() => loadDataset({ name: 'subset', split: 'test', limit: 501 }), 'limit 501');
  });

  test('unknown name or split lists the valid ones', () => {
    throwsOH(() => loadDataset({ name: 'mnist' as never, split: 'train' }), 'loadDataset(name)', 'fashion-mnist, subset, idx, custom');
    throwsOH(() => loadDataset({ name: 'subset', split: 'val' as never }), 'loadDataset(split)', 'train, test');
  });

  test(`'fashion-mnist' reads ${FASHION_MNIST_DIR_ENV} when set`, () => {
    const saved = process.env[FASHION_MNIST_DIR_ENV];
    try {
      process.env[FASHION_MNIST_DIR_ENV] = subsetDir();
      const ds = loadDataset({ name: 'fashion-mnist', split: 'test', limit: 3 });
      assert.equal(ds.n, 3);
      assert.ok(ds.source.includes(subsetDir()));
      process.env[FASHION_MNIST_DIR_ENV] = tmp;
      throwsOH(() => loadDataset({ name: 'fashion-mnist', split: 'train' }), path.join(tmp, 'train-images-idx3-ubyte.gz'), FASHION_MNIST_DIR_ENV);
    } finally {
      if (saved === undefined) delete process.env[FASHION_MNIST_DIR_ENV];
      else process.env[FASHION_MNIST_DIR_ENV] = saved;
    }
  });

  test('the Debian package, when installed, matches the subset prefix', (t) => {
    if (process.env[FASHION_MNIST_DIR_ENV] || !fs.existsSync(path.join(DEBIAN_FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'))) {
      t.skip('dataset-fashion-mnist not installed');
      return;
    }
    const full = loadDataset({ name: 'fashion-mnist', split: 'test', limit: 500 });
    const subset = loadDataset({ name: 'subset', split: 'test' });
    assert.deepEqual(Array.from(full.labels), Array.from(subset.labels));
    assert.deepEqual(Array.from(full.images), Array.from(subset.images));
    assert.ok(full.source.includes('first 500 of 10000'));
  });

  test("'custom' needs the split's files and keeps train and test apart", () => {
    const pair = writePair(tmp, 6);
    const ds = loadDataset({ name: 'custom', split: 'test', paths: { test: pair } });
    assert.equal(ds.n, 6);
    throwsOH(() => loadDataset({ name: 'custom', split: 'train', paths: { test: pair } }), 'paths.train');
    throwsOH(() => loadDataset({ name: 'custom', split: 'train', paths: { train: pair, test: pair } }), 'same file', pair.images);
    const missing = { images: path.join(tmp, 'missing-images.gz'), labels: pair.labels };
    throwsOH(() => loadDataset({ name: 'custom', split: 'train', paths: { train: missing } }), missing.images, 'file not found');
  });

  test('datasetStats: class counts and pixel moments', () => {
    const ds = loadDataset({ name: 'subset', split: 'test', limit: 100 });
    const stats = datasetStats(ds);
    assert.equal(stats.n, 100);
    assert.equal(stats.perClass.length, 10);
    assert.equal(stats.perClass.reduce((a, c) => a + c.count, 0), 100);
    for (const row of stats.perClass) {
      assert.equal(row.count, ds.labels.filter((l) => l === row.label).length);
      assert.equal(row.name, FASHION_MNIST_CLASSES[row.label]);
      assert.ok(Math.abs(row.share - row.count / 100) < 1e-12);
    }
    let sum = 0;
    for (const v of ds.images) sum += v;
    const mean = sum / ds.images.length;
    let sq = 0;
    for (const v of ds.images) sq += (v - mean) ** 2;
    assert.ok(Math.abs(stats.pixelMean - mean) < 1e-9);
    assert.ok(Math.abs(stats.pixelStd - Math.sqrt(sq / ds.images.length)) < 1e-6);
    assert.ok(stats.pixelMean < 0, 'Fashion-MNIST is mostly black background');
    assert.equal(stats.pixelMin, -1);
  });
});

test('classMeanImages averages each class and leaves empty classes at background', () => {
  const ds = { images: new Float32Array([1, 1, 0, 0, -1, 1, 0.5, 0.5]), labels: new Int32Array([0, 0, 2, 0]),
    n: 4, height: 1, width: 2, classes: ['a', 'b', 'c'], source: 'test' };
  const seen: number[] = [];
  const m = classMeanImages(ds, (c) => seen.push(c));
  // class 0 = images 0, 1, 3: ((1 + 0 + 0.5) / 3) per pixel; class 1 is empty; class 2 = image 2.
  assert.deepEqual(Array.from(m), [0.5, 0.5, -1, -1, -1, 1]);
  assert.deepEqual(seen, [0, 1, 2]);
});

// ---- bad input ----
// What a user (or a crash) can get wrong here. Each test asserts an
// OrderHeadError naming the file or config field with a fix (expectOH /
// rejectsOH), and that the temp folder is byte-identical afterwards, nothing
// added (untouched); both in tests/helpers.ts.
import { expectOH, sandbox, untouched } from '../../helpers';

describe('bad input', () => {
  test('a corrupt idx.gz file (flipped bytes in the gzip stream) names the file and says to replace it', async () => {
    const dir = sandbox();
    const { images, labels } = writePair(dir, 4);
    const gz = fs.readFileSync(images);
    for (let i = 12; i < gz.length - 8; i += 5) gz[i] ^= 0x5a;
    fs.writeFileSync(images, gz);
    await untouched(dir, () => {
      expectOH(() => readIdx(images), images, 'corrupt gzip', 'replace it');
      expectOH(() => loadIdxPair(images, labels), images, 'corrupt gzip');
    });
  });

  test('a truncated idx file (cut mid-data, plain and gzip) names the file and the missing bytes', async () => {
    const dir = sandbox();
    const plain = path.join(dir, 'images.idx');
    writeIdx(plain, [3, 28, 28], pattern(3 * 28 * 28));
    const bytes = fs.readFileSync(plain);
    fs.writeFileSync(plain, bytes.subarray(0, bytes.length - 100));
    const gz = path.join(dir, 'images.idx.gz');
    fs.writeFileSync(gz, zlib.gzipSync(bytes.subarray(0, 10)));
    const cut = path.join(dir, 'cut.idx.gz');
    const whole = zlib.gzipSync(bytes);
    fs.writeFileSync(cut, whole.subarray(0, whole.length >> 1));
    await untouched(dir, () => {
      expectOH(() => readIdx(plain), plain, 'truncated data', 'only 2252 are there', 'complete copy');
      expectOH(() => readIdx(gz), gz, 'truncated header');
      expectOH(() => readIdx(cut), cut, /corrupt gzip|truncated/);
    });
  });

  test('a wrong-magic file (a PNG and a text file renamed to .idx) is not read as images', async () => {
    const dir = sandbox();
    const png = path.join(dir, 'train-images-idx3-ubyte');
    fs.writeFileSync(png, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]));
    const text = path.join(dir, 'labels.idx');
    fs.writeFileSync(text, '\0\0\x07\x01 not an idx file');
    await untouched(dir, () => {
      expectOH(() => readIdx(png), png, 'not an IDX file', 'magic bytes 89 50 4e 47', 'expected 00 00 08');
      expectOH(() => readIdx(text), text, 'unknown type code 0x07');
    });
  });

  test('an images file and a labels file of different counts name both files and the split fix', async () => {
    const dir = sandbox();
    const { images, labels } = writePair(dir, 5, 4);
    await untouched(dir, () => {
      expectOH(() => loadIdxPair(images, labels), labels, 'holds 4 labels', `images file ${images} holds 5 images`, 'same split');
    });
  });

  test('an empty dataset (an idx file of 0 images) is refused instead of training on nothing', async () => {
    const dir = sandbox();
    const { images, labels } = writePair(dir, 0);
    const empty = path.join(dir, 'empty.idx');
    fs.writeFileSync(empty, '');
    await untouched(dir, () => {
      expectOH(() => loadIdxPair(images, labels), images, 'holds no images', 'non-empty images file');
      expectOH(() => readIdx(empty), empty, 'empty (0 bytes)');
    });
  });
});
