#!/usr/bin/env node
// Regenerate data/fashion-mnist-subset/ from the Debian package dataset-fashion-mnist:
// the first 2000 training and first 500 test images and labels, as gzipped IDX
// files named like the originals. Build first (npx tsc -p tsconfig.json).
//
//   node scripts/make-subset.js [sourceDir] [outDir]
//
// sourceDir defaults to $ORDERHEAD_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist.
'use strict';
const path = require('node:path');

const root = path.resolve(__dirname, '..');
let idx;
try {
  idx = require(path.join(root, 'dist/lib/data/idx.js'));
} catch (err) {
  console.error(`make-subset: cannot load dist/lib/data/idx.js (${err.message}). Fix: run \`npx tsc -p tsconfig.json\` first.`);
  process.exit(1);
}

const sourceDir = process.argv[2] || process.env.ORDERHEAD_FASHION_MNIST_DIR || idx.DEBIAN_FASHION_MNIST_DIR;
const outDir = process.argv[3] || path.join(root, 'data', 'fashion-mnist-subset');
const counts = { train: 2000, t10k: 500 };

try {
  for (const [prefix, count] of Object.entries(counts)) {
    for (const kind of ['images-idx3', 'labels-idx1']) {
      const name = `${prefix}-${kind}-ubyte.gz`;
      const { dims, data } = idx.readIdx(path.join(sourceDir, name));
      const itemSize = dims.slice(1).reduce((a, b) => a * b, 1);
      const outDims = [count, ...dims.slice(1)];
      idx.writeIdx(path.join(outDir, name), outDims, data.subarray(0, count * itemSize));
      console.log(`${name}: [${outDims.join(', ')}] of [${dims.join(', ')}]`);
    }
  }
} catch (err) {
  console.error(`make-subset: ${err.message}`);
  process.exit(1);
}
console.log(`wrote ${outDir}`);
