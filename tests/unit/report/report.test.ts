/**
 * Report helpers: PNG encoding checked chunk by chunk and decoded with pngjs, image
 * grids, HTML tables, arquero/danfojs loading, and notebook display both
 * outside a kernel and inside a simulated tslab kernel.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import * as tf from '@tensorflow/tfjs';
import { OrderHeadError } from '../../../lib/runtime/errors';
import { PNG } from 'pngjs';
import { encodePng } from '../../../lib/report/png';
import { imageGrid } from '../../../lib/report/images';
import { arqueroTable, danfoFrame, loadArquero, showTable, toHtmlTable } from '../../../lib/report/table';
import {
  inNotebook, liveDisplay, plotHtml, plotlyScript, showHtml, showImage, showNote, showPlot, stamped, stampOutputs,
} from '../../../lib/report/notebook';

/** Bit-by-bit CRC-32, written independently of the encoder's. */
function referenceCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

interface Chunk {
  type: string;
  data: Buffer;
}

/** Split a PNG into chunks, checking the signature and every chunk's CRC. */
function parsePng(png: Buffer): Chunk[] {
  assert.deepEqual(png.subarray(0, 8), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const chunks: Chunk[] = [];
  let at = 8;
  while (at < png.length) {
    const length = png.readUInt32BE(at);
    const type = png.toString('ascii', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    const stored = png.readUInt32BE(at + 8 + length);
    assert.equal(stored, referenceCrc32(png.subarray(at + 4, at + 8 + length)), `CRC of ${type}`);
    chunks.push({ type, data });
    at += 12 + length;
  }
  assert.equal(at, png.length, 'no trailing bytes');
  return chunks;
}

/** Decode a PNG with pngjs back to 1- or 3-channel pixels (its colour type from IHDR, after the chunk checks of parsePng). */
function decodePng(png: Buffer): { width: number; height: number; channels: number; pixels: Buffer } {
  const ihdr = parsePng(png)[0].data;
  const channels = ihdr[9] === 0 ? 1 : 3;
  const { width, height, data } = PNG.sync.read(png);
  const pixels = Buffer.alloc(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    assert.equal(data[p * 4 + 3], 255, 'opaque');
    for (let c = 0; c < channels; c++) pixels[p * channels + c] = data[p * 4 + c];
  }
  return { width, height, channels, pixels };
}

describe('PNG encoder', () => {
  for (const channels of [1, 3] as const) {
    test(`${channels === 1 ? 'grayscale' : 'RGB'}: signature, IHDR, CRCs, scanlines, and decoding gives back the pixels`, () => {
      const width = 37;
      const height = 23;
      // Smooth ramps and a flat band, so the adaptive filters pick more than one filter type.
      const pixels = Uint8Array.from({ length: width * height * channels }, (_, i) => {
        const y = Math.floor(i / (width * channels));
        return y < 8 ? 40 : (i * 31 + 5 * y) & 0xff;
      });
      const png = encodePng(pixels, width, height, channels);
      const chunks = parsePng(png);
      assert.deepEqual(chunks.map((c) => c.type), ['IHDR', 'IDAT', 'IEND']);
      const ihdr = chunks[0].data;
      assert.equal(ihdr.length, 13);
      assert.equal(ihdr.readUInt32BE(0), width);
      assert.equal(ihdr.readUInt32BE(4), height);
      assert.equal(ihdr[8], 8, 'bit depth');
      assert.equal(ihdr[9], channels === 1 ? 0 : 2, 'colour type');
      assert.deepEqual([ihdr[10], ihdr[11], ihdr[12]], [0, 0, 0], 'compression, filter, interlace');
      assert.equal(chunks[2].data.length, 0);
      const raw = zlib.inflateSync(chunks[1].data);
      assert.equal(raw.length, (width * channels + 1) * height, 'one filter byte + one row per scanline');
      for (let y = 0; y < height; y++) assert.ok(raw[y * (width * channels + 1)] <= 4, 'a filter type of method 0');
      const decoded = decodePng(png);
      assert.deepEqual([decoded.width, decoded.height, decoded.channels], [width, height, channels]);
      assert.deepEqual(decoded.pixels, Buffer.from(pixels));
    });
  }

  test('wrong pixel count or channels is an OrderHeadError', () => {
    assert.throws(() => encodePng(new Uint8Array(10), 3, 3, 1), (e: unknown) => e instanceof OrderHeadError && e.message.includes('needs 9'));
    assert.throws(() => encodePng(new Uint8Array(9), 3, 3, 2 as 1), (e: unknown) => e instanceof OrderHeadError && e.message.includes('channels'));
  });
});

describe('image grid', () => {
  test('dimensions, tile placement, value mapping and padding colour', () => {
    const n = 5;
    const h = 4;
    const w = 3;
    const images = new Float32Array(n * h * w);
    for (let k = 0; k < n; k++) images.fill(k % 2 === 0 ? -1 : 1, k * h * w, (k + 1) * h * w);
    images[0] = 0; // first pixel of image 0: mid grey
    const grid = imageGrid(images, { height: h, width: w, cols: 3, scale: 2, pad: 1, padValue: 77 });
    assert.equal(grid.width, 3 * w * 2 + 4 * 1);
    assert.equal(grid.height, 2 * h * 2 + 3 * 1);
    const decoded = decodePng(grid.png);
    assert.equal(decoded.width, grid.width);
    assert.equal(decoded.height, grid.height);
    assert.equal(decoded.channels, 1);
    const at = (x: number, y: number) => decoded.pixels[y * grid.width + x];
    assert.equal(at(0, 0), 77, 'outer padding');
    assert.equal(at(1, 1), 128, 'value 0 -> 128 (scaled 2x: 2x2 block)');
    assert.equal(at(2, 2), 128);
    assert.equal(at(3, 1), 0, 'value -1 -> 0');
    assert.equal(at(1 + 6 + 1, 1), 255, 'second tile, value 1 -> 255');
    assert.equal(at(1 + 6, 1), 77, 'gap between tiles');
    assert.equal(at(grid.width - 2, grid.height - 2), 77, 'empty sixth cell stays padding');
  });

  test('tfjs tensors (N,H,W,1) in [0,1] give the same grid as the flat array in [-1,1]', () => {
    const n = 4;
    const flat = Float32Array.from({ length: n * 28 * 28 }, (_, i) => ((i % 255) / 254) * 2 - 1);
    const unit = tf.tidy(() => tf.tensor4d(flat, [n, 28, 28, 1]).add(1).div(2));
    const fromTensor = imageGrid(unit, { range: '[0,1]', cols: 2 });
    unit.dispose();
    const fromArray = imageGrid(flat, { height: 28, width: 28, cols: 2 });
    assert.equal(fromTensor.width, 2 * 56 + 3 * 2);
    assert.equal(fromTensor.height, fromTensor.width);
    assert.deepEqual(decodePng(fromTensor.png).pixels, decodePng(fromArray.png).pixels);
  });

  test('RGB tensors and bad input', () => {
    const rgb = tf.zeros([2, 5, 5, 3]);
    const grid = imageGrid(rgb, { range: '[0,1]', scale: 1, pad: 0 });
    rgb.dispose();
    assert.equal(decodePng(grid.png).channels, 3);
    assert.equal(grid.width, 10);
    assert.throws(() => imageGrid(new Float32Array(10), {}), OrderHeadError);
    assert.throws(() => imageGrid(new Float32Array(10), { height: 3, width: 3 }), OrderHeadError);
  });
});

describe('tables', () => {
  test('HTML table escapes markup and rounds numbers', () => {
    const html = toHtmlTable(
      [
        { model: '<script>alert(1)</script>', loss: 0.123456, steps: 100 },
        { model: 'a & b', loss: null, extra: 'x' },
      ],
      { caption: 'loss < 1', digits: 3 },
    );
    assert.ok(!html.includes('<script>'), html);
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(html.includes('<caption>loss &lt; 1</caption>'));
    assert.ok(html.includes('a &amp; b'));
    assert.ok(html.includes('>0.123<'));
    assert.ok(html.includes('>100<'));
    assert.ok(html.includes('<th>model</th><th>loss</th><th>steps</th><th>extra</th>'));
    assert.equal(html.match(/<tr>/g)?.length, 3);
  });

  test('arquero loads from compiled CommonJS through a real import()', async () => {
    const aq = await loadArquero();
    assert.equal(await loadArquero(), aq, 'module is cached');
    const table = await arqueroTable([
      { cls: 'Bag', n: 2 },
      { cls: 'Coat', n: 5 },
      { cls: 'Bag', n: 4 },
    ]);
    assert.equal(table.numRows(), 3);
    const grouped = table.groupby('cls').rollup({ total: aq.op.sum('n') }).orderby('cls').objects();
    assert.deepEqual(grouped, [
      { cls: 'Bag', total: 6 },
      { cls: 'Coat', total: 5 },
    ]);
  });

  test('danfojs-node loads lazily and describes a frame', () => {
    const df = danfoFrame([
      { cls: 'a', loss: 1 },
      { cls: 'b', loss: 3 },
      { cls: 'c', loss: 5 },
    ]);
    assert.deepEqual(df.shape, [3, 2]);
    const stats = df.describe();
    assert.deepEqual(stats.index.slice(0, 3), ['count', 'mean', 'std']);
    assert.deepEqual(stats.values.slice(0, 3), [[3], [3], [2]]);
  });
});

describe('notebook display', () => {
  test('plot HTML: unique ids, data escaped, no CDN', () => {
    const a = plotHtml([{ x: Float32Array.of(1, 2), y: [3, 4], name: '</script><b>' }], { title: 'loss' });
    const b = plotHtml([{ x: [1], y: [1] }]);
    const idA = a.match(/id="(orderhead-plot-[0-9a-f]+)"/)?.[1];
    const idB = b.match(/id="(orderhead-plot-[0-9a-f]+)"/)?.[1];
    assert.ok(idA && idB && idA !== idB);
    assert.equal(a.match(/<\/script>/g)?.length, 1, 'the trace name cannot close the script');
    assert.ok(a.includes('"x":[1,2]'), 'typed arrays become JSON arrays');
    assert.ok(a.includes('Plotly.newPlot'));
    assert.ok(!/https?:\/\/cdn/i.test(a));
  });

  test('plotly bundle is inlined with AMD define hidden and restored', () => {
    const script = plotlyScript();
    const hide = script.indexOf('window.define = undefined');
    const bundle = script.indexOf('plotly.js v');
    const restore = script.indexOf('window.define = window.__orderheadDefine');
    assert.ok(hide >= 0 && hide < bundle && bundle < restore, 'hide, load, restore in order');
    assert.equal(script.match(/<\/script>/gi)?.length, 3, 'only our own closing tags');
    // The minified bundle (plotly.js-dist-min, 4.6 MB), not the 10.8 MB plotly.js-dist that made every notebook 14 MB.
    assert.ok(script.length > 1_000_000 && script.length < 6_000_000, `bundle of ${script.length} characters`);
  });

  test('outside a notebook every helper is a no-op', () => {
    assert.equal(inNotebook(), false);
    showHtml('<b>x</b>');
    showImage(encodePng(new Uint8Array(1), 1, 1, 1));
    showPlot([{ y: [1, 2] }]);
    const live = liveDisplay();
    assert.equal(live.active, false);
    live.text('nothing happens');
  });

  test('inside a (simulated) tslab kernel: display_data, plotly once, live updates in place', () => {
    // What the tslab kernel does before running a cell: install the writer for display messages.
    const jupyter = require('tslab/dist/jupyter.js') as { lastWriteDisplayData: unknown };
    const sent: { data: Record<string, string>; transient: { display_id?: string }; update: boolean }[] = [];
    jupyter.lastWriteDisplayData = (msg: { data: Record<string, string>; transient: { display_id?: string } }, update: boolean) =>
      sent.push({ ...msg, update });
    try {
      assert.equal(inNotebook(), true);
      showHtml('<i>hi</i>');
      assert.deepEqual(sent[0].data, { 'text/html': '<i>hi</i>' });
      const png = encodePng(new Uint8Array(4), 2, 2, 1);
      showImage(png);
      assert.equal(sent[1].data['image/png'], png.toString('base64'));

      sent.length = 0;
      showPlot([{ y: [1, 2] }], { title: 'a' });
      showPlot([{ y: [3] }]);
      assert.equal(sent.length, 3, 'bundle once, then two figures');
      assert.ok(sent[0].data['text/html'].includes('window.define = undefined'));
      assert.ok(!sent[1].data['text/html'].includes('window.define = undefined'));
      assert.ok(sent[2].data['text/html'].includes('Plotly.newPlot'));

      sent.length = 0;
      const live = liveDisplay();
      assert.equal(live.active, true);
      live.text('step 1');
      live.text('step 2');
      assert.equal(sent.length, 2);
      assert.equal(sent[0].transient.display_id, sent[1].transient.display_id);
      assert.ok(!sent[0].update, 'first write creates the output');
      assert.equal(sent[1].update, true, 'later writes update it');
      assert.equal(sent[1].data['text/plain'], 'step 2');
    } finally {
      jupyter.lastWriteDisplayData = null;
    }
    assert.equal(inNotebook(), false, 'no kernel writer, no notebook');
  });

  test('once a session stamps outputs, captions, titles and notes carry the stamp exactly once', () => {
    const stamp = 'profile smoke, test data, backend wasm';
    assert.equal(stamped('Dataset statistics'), 'Dataset statistics', 'no session, no stamp');
    const jupyter = require('tslab/dist/jupyter.js') as { lastWriteDisplayData: unknown };
    const sent: { data: Record<string, string> }[] = [];
    jupyter.lastWriteDisplayData = (msg: { data: Record<string, string> }) => sent.push(msg);
    const logged: string[] = [];
    const log = console.log;
    console.log = (text: string) => logged.push(text);
    stampOutputs(stamp);
    try {
      assert.equal(stamped('Dataset statistics'), `Dataset statistics (${stamp})`);
      assert.equal(stamped(`Stage 5 losses (${stamp})`), `Stage 5 losses (${stamp})`, 'a figure builder already stamped it');
      showTable([{ a: 1 }], { caption: 'Images per class' });
      assert.ok(sent.at(-1)!.data['text/html'].includes(`<caption>Images per class (${stamp})</caption>`));
      showPlot([{ y: [1] }], { title: 'NLL per order type' });
      assert.ok(sent.at(-1)!.data['text/html'].includes(JSON.stringify(`NLL per order type (${stamp})`)));
      showPlot([{ y: [1] }], { title: { text: 'Class shares' } });
      assert.ok(sent.at(-1)!.data['text/html'].includes(JSON.stringify(`Class shares (${stamp})`)));
      showNote('first 40 training images');
      assert.deepEqual(logged, [`first 40 training images; ${stamp}`]);
    } finally {
      console.log = log;
      stampOutputs(undefined);
      jupyter.lastWriteDisplayData = null;
    }
  });
});
