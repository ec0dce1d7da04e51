/**
 * Kernels that make the tfjs wasm backend train, and train fast.
 *
 * Measured on our CPUs (see shared/PLATFORM.md and `npm run bench`):
 *  - wasm `BatchMatMul` reaches XNNPACK (~40 GFLOP/s) only for batch 1 with no
 *    transposes. Everything else — every backward pass of a dense layer, every
 *    attention product — falls to a scalar loop (~3 GFLOP/s, and 10-30x worse
 *    with transposes). We re-register `BatchMatMul` so that every call is
 *    served by the fast path: transposes become explicit `Transpose` kernels,
 *    a batch with a shared right operand folds into one 2-D product, and a true
 *    batch runs one XNNPACK product per slice on zero-copy *views* of the heap.
 *  - wasm has no `UnsortedSegmentSum`, the gradient of `gather`, so embedding
 *    tables cannot train. We add it.
 *  - wasm has no `Conv2DBackpropFilter`, so conv weights cannot train. We add
 *    it as im2col + the fast matmul above.
 *  - wasm's `GatherV2` copies element by element behind a per-index closure;
 *    along axis 0 (every lookup here) we copy rows.
 *
 * Every kernel here is checked against the `cpu` backend in
 * tests/unit/runtime/wasm-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { heapBuffer, heapF32, WasmBackend } from './backend-memory';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

let patched = false;
let wasmMatMul: ((...a: unknown[]) => void) | null = null;

/** Run another registered wasm kernel from inside a kernel (no autograd tape). */
function callKernel(name: string, inputs: tf.NamedTensorInfoMap, backend: unknown, attrs: tf.NamedAttrMap = {}): tf.TensorInfo {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc({ inputs, backend: backend as tf.KernelBackend, attrs }) as tf.TensorInfo;
}

/** Register a tensor id that aliases `floats` floats at `offset` of the heap; no copy. */
function registerView(backend: WasmBackend, offset: number, floats: number): number {
  const id = backend.dataIdNextNumber++;
  backend.wasm.tfjs.registerTensor(id, floats, offset);
  return id;
}

/** The wasm module's own BatchMatMul entry point (tensor ids in, tensor id out). */
function bindMatMul(backend: WasmBackend) {
  return backend.wasm.cwrap('BatchMatMul', null,
    ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
}

/** Plain (untransposed) product on XNNPACK: a [m,k] @ b [k,n] -> out [m,n], by ids. */
function fastMatMul2d(aId: number, bId: number, outId: number, m: number, k: number, n: number): void {
  const aShape = new Uint8Array(new Int32Array([1, m, k]).buffer);
  const bShape = new Uint8Array(new Int32Array([1, k, n]).buffer);
  wasmMatMul!(aId, aShape, 3, bId, bShape, 3, false, false, outId);
}

/** Materialise the transpose of the last two axes of a rank-3 tensor. */
function transposeLast2(t: tf.TensorInfo, be: unknown): tf.TensorInfo {
  const backend = be as WasmBackend;
  const [batch, R, C] = t.shape;
  const out = backend.makeOutput([batch, C, R], 'float32');
  // Views after the allocation: it may grow (and detach) the heap.
  const a = heapF32(backend, t), o = heapF32(backend, out);
  // 8 x 8 tiles: tfjs's Transpose walks the output with a stride of a whole
  // row of the input, 7-8x slower on the [1024, 128..384] activations whose
  // transposes every weight gradient needs (measured: [1024, 384] 3.9 ms ->
  // 0.5 ms). This was ~20% of a `small` training step.
  const TILE = 8;
  for (let s = 0; s < batch; s++) {
    const base = s * R * C;
    for (let r0 = 0; r0 < R; r0 += TILE) {
      const r1 = Math.min(R, r0 + TILE);
      for (let c0 = 0; c0 < C; c0 += TILE) {
        const c1 = Math.min(C, c0 + TILE);
        for (let r = r0; r < r1; r++) {
          for (let c = c0, src = base + r * C + c0, dst = base + c0 * R + r; c < c1; c++, src++, dst += R) o[dst] = a[src];
        }
      }
    }
  }
  return out;
}

/**
 * BatchMatMul that always takes XNNPACK's fast path.
 * Shapes follow tf.matMul: a [...batchA, m, k] (or [.., k, m] when transposeA),
 * b [...batchB, k, n] (or [.., n, k]), batch dims broadcast.
 */
function batchMatMul({ inputs, backend: be, attrs }: KernelArgs): tf.TensorInfo {
  const backend = be as WasmBackend;
  wasmMatMul ??= bindMatMul(backend);
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error('BatchMatMul: float32 only');
  const ra = a.shape.length, rb = b.shape.length;
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  tf.util.assert(k === kb, () => `matMul: inner dimensions ${k} and ${kb} of shapes [${a.shape}] and [${b.shape}] differ`);
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const outBatchShape = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = tf.util.sizeFromShape(outBatchShape);
  tf.util.assert(batchA === batch || batchA === 1, () => `matMul: batch ${batchA} of [${a.shape}] does not broadcast`);
  tf.util.assert(batchB === batch || batchB === 1, () => `matMul: batch ${batchB} of [${b.shape}] does not broadcast`);

  // Bring both operands to plain row-major [batch, m, k] / [batch, k, n].
  const temps: tf.TensorInfo[] = [];
  const as3 = { dataId: a.dataId, shape: transposeA ? [batchA, k, m] : [batchA, m, k], dtype: a.dtype } as tf.TensorInfo;
  const bs3 = { dataId: b.dataId, shape: transposeB ? [batchB, n, k] : [batchB, k, n], dtype: b.dtype } as tf.TensorInfo;
  const A = transposeA ? transposeLast2(as3, backend) : as3;
  const B = transposeB ? transposeLast2(bs3, backend) : bs3;
  if (transposeA) temps.push(A);
  if (transposeB) temps.push(B);

  const out = backend.makeOutput([...outBatchShape, m, n], 'float32');
  const aInfo = backend.dataIdMap.get(A.dataId), bInfo = backend.dataIdMap.get(B.dataId);
  const oInfo = backend.dataIdMap.get(out.dataId);
  if (batchB === 1) {
    // Shared right operand: fold the batch into rows, one product [batch*m, k] @ [k, n].
    const rows = batchA * m;
    const aId = registerView(backend, aInfo.memoryOffset, rows * k);
    const oId = registerView(backend, oInfo.memoryOffset, rows * n);
    fastMatMul2d(aId, bInfo.id, oId, rows, k, n);
    backend.wasm.tfjs.disposeData(aId);
    backend.wasm.tfjs.disposeData(oId);
  } else {
    // True batch: one XNNPACK product per slice, on views into the heap.
    const F = 4;
    for (let i = 0; i < batch; i++) {
      const aOff = aInfo.memoryOffset + (batchA === 1 ? 0 : i * m * k * F);
      const bOff = bInfo.memoryOffset + i * k * n * F;
      const ids = [registerView(backend, aOff, m * k), registerView(backend, bOff, k * n),
        registerView(backend, oInfo.memoryOffset + i * m * n * F, m * n)];
      fastMatMul2d(ids[0], ids[1], ids[2], m, k, n);
      for (const id of ids) backend.wasm.tfjs.disposeData(id);
    }
  }
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
}

/**
 * UnsortedSegmentSum(x [n, ...inner], segmentIds [n], numSegments) -> [numSegments, ...inner].
 * The gradient of gather; embedding tables need it to train. Runs in JS on the
 * heap: it is memory-bound and small next to the matmuls around it.
 */
function unsortedSegmentSum({ inputs, backend: be, attrs }: KernelArgs): tf.TensorInfo {
  const backend = be as WasmBackend;
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const { numSegments } = attrs as { numSegments: number };
  if (x.dtype !== 'float32') throw new Error('UnsortedSegmentSum: float32 only');
  const idsShape = segmentIds.shape;
  const nIds = tf.util.sizeFromShape(idsShape);
  const inner = tf.util.sizeFromShape(x.shape.slice(idsShape.length));
  const out = backend.makeOutput([numSegments, ...x.shape.slice(idsShape.length)], 'float32');
  const o = heapF32(backend, out);
  o.fill(0);
  const xs = heapF32(backend, x);
  const si = backend.dataIdMap.get(segmentIds.dataId);
  const ids = new Int32Array(heapBuffer(backend), si.memoryOffset, nIds);
  for (let r = 0; r < nIds; r++) {
    const s = ids[r];
    if (s < 0 || s >= numSegments) continue; // tf semantics: out-of-range ids are dropped
    const src = r * inner, dst = s * inner;
    for (let c = 0; c < inner; c++) o[dst + c] += xs[src + c];
  }
  return out;
}

/**
 * Conv2DBackpropFilter (NHWC, no dilation): dW[kh,kw,ci,co] = Σ patches(x)ᵀ · dy.
 * im2col in JS into a heap tensor, then one fast matmul per chunk of rows so
 * the patch matrix stays small.
 */
function conv2DBackpropFilter({ inputs, backend: be, attrs }: KernelArgs): tf.TensorInfo {
  const backend = be as WasmBackend;
  const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as {
    strides: [number, number] | number; pad: 'valid' | 'same' | number; dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: [number, number, number, number];
  };
  if (dataFormat !== 'NHWC') throw new Error('Conv2DBackpropFilter on wasm: NHWC only');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels,
    filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const padTop = info.padInfo.top, padLeft = info.padInfo.left;
  const cols = fh * fw * inChannels;
  const totalRows = batchSize * outHeight * outWidth;
  const chunk = Math.max(1, Math.min(totalRows, Math.floor((1 << 24) / cols))); // <= 64 MB of patches
  let acc: tf.TensorInfo | null = null;
  for (let r0 = 0; r0 < totalRows; r0 += chunk) {
    const rows = Math.min(chunk, totalRows - r0);
    const patches = backend.makeOutput([rows, cols], 'float32');
    const p = heapF32(backend, patches);
    const xs = heapF32(backend, x);
    for (let r = 0; r < rows; r++) {
      const g = r0 + r;
      const bIdx = Math.floor(g / (outHeight * outWidth));
      const rem = g % (outHeight * outWidth);
      const oy = Math.floor(rem / outWidth), ox = rem % outWidth;
      let q = r * cols;
      for (let ky = 0; ky < fh; ky++) {
        const iy = oy * sh + ky - padTop;
        for (let kx = 0; kx < fw; kx++) {
          const ix = ox * sw + kx - padLeft;
          if (iy < 0 || iy >= inHeight || ix < 0 || ix >= inWidth) {
            p.fill(0, q, q + inChannels);
          } else {
            const src = ((bIdx * inHeight + iy) * inWidth + ix) * inChannels;
            p.set(xs.subarray(src, src + inChannels), q);
          }
          q += inChannels;
        }
      }
    }
    const dyInfo = backend.dataIdMap.get(dy.dataId);
    const dyRows = backend.makeOutput([rows, outChannels], 'float32');
    const dyAll = new Float32Array(heapBuffer(backend), dyInfo.memoryOffset, totalRows * outChannels);
    heapF32(backend, dyRows).set(dyAll.subarray(r0 * outChannels, (r0 + rows) * outChannels));
    const part = batchMatMul({ inputs: { a: patches, b: dyRows }, backend, attrs: { transposeA: true, transposeB: false } });
    backend.disposeData(patches.dataId);
    backend.disposeData(dyRows.dataId);
    if (acc === null) acc = part;
    else {
      const sum = callKernel('Add', { a: acc, b: part }, backend);
      backend.disposeData(acc.dataId);
      backend.disposeData(part.dataId);
      acc = sum;
    }
  }
  const result = acc!;
  return { dataId: result.dataId, shape: [fh, fw, inChannels, outChannels], dtype: 'float32' } as tf.TensorInfo;
}

/**
 * GatherV2 along axis 0 (embedding lookups, rotary tables): one block copy per
 * index on the heap. tfjs's wasm kernel checks every index through a closure
 * and copies element by element: 0.25 ms for 64 rows of 128 floats, about
 * 40x slower; at batch 64 the four lookups of a decoding step cost more than
 * a dense layer. Other axes and batch dims go to the original kernel.
 */
function makeGatherV2(original: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo => {
    const backend = args.backend as WasmBackend;
    const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const { axis, batchDims } = (args.attrs ?? {}) as { axis: number; batchDims: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    if (ax !== 0 || (batchDims ?? 0) !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32') {
      return original(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
    }
    const rows = x.shape[0], row = tf.util.sizeFromShape(x.shape.slice(1)), n = tf.util.sizeFromShape(indices.shape);
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    const buf = heapBuffer(backend);
    const view = (t: tf.TensorInfo, size: number) => {
      const off = backend.dataIdMap.get(t.dataId).memoryOffset;
      return t.dtype === 'int32' ? new Int32Array(buf, off, size) : new Float32Array(buf, off, size);
    };
    const ids = new Int32Array(buf, backend.dataIdMap.get(indices.dataId).memoryOffset, n);
    const src = view(x, rows * row), dst = view(out, n * row);
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < rows)) {
        backend.disposeData(out.dataId);
        throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
      }
      if (row === 1) dst[i] = src[id];
      else dst.set(src.subarray(id * row, (id + 1) * row), i * row);
    }
    return out;
  };
}

/**
 * Register the training kernels on the wasm backend. Idempotent; call after
 * `@tensorflow/tfjs-backend-wasm` is loaded and before the first wasm op.
 */
export function registerWasmTrainingKernels(): void {
  if (patched) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  if (!original) throw new Error('the wasm backend is not loaded; import @tensorflow/tfjs-backend-wasm first');
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul', backendName: 'wasm',
    setupFunc: (backend) => { wasmMatMul = bindMatMul(backend as unknown as WasmBackend); },
    kernelFunc: batchMatMul as unknown as tf.KernelFunc,
  });
  const gather = tf.getKernel('GatherV2', 'wasm');
  if (gather) {
    tf.unregisterKernel('GatherV2', 'wasm');
    // Keep the original's setupFunc: it binds the wasm function the fallback (other axes) calls.
    tf.registerKernel({ kernelName: 'GatherV2', backendName: 'wasm', setupFunc: gather.setupFunc, kernelFunc: makeGatherV2(gather.kernelFunc) as unknown as tf.KernelFunc });
  }
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc });
  }
  if (!tf.getKernel('Conv2DBackpropFilter', 'wasm')) {
    tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc });
  }
  patched = true;
}

/** Names of the kernels this module adds or replaces (for reports). */
export const WASM_TRAINING_KERNELS = ['BatchMatMul', 'GatherV2', 'UnsortedSegmentSum', 'Conv2DBackpropFilter'] as const;
