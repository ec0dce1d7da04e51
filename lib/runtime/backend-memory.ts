/**
 * Direct access to tensor memory on the two backends whose storage lives in
 * this process: `wasm` (the module's heap) and `cpu` (a typed array per
 * tensor). Used by our kernels (wasm-kernels.ts, decode-kernels.ts) and by
 * the preallocated KV cache, which writes new slots in place instead of
 * concatenating a growing cache every token. Internal: not exported from
 * lib/index.ts.
 */
import * as tf from '@tensorflow/tfjs';

// The wasm backend's internals we rely on. They are not part of the public
// d.ts, so we name exactly what we use.
export interface WasmTensorData { id: number; memoryOffset: number; shape: number[]; dtype: tf.DataType }
export interface WasmModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
  /** The module's exports; `memory` is the heap's WebAssembly.Memory (single-threaded engine). */
  asm?: { memory?: WebAssembly.Memory };
  /** The heap of the threaded engine (shared memory, imported by the module rather than exported). */
  wasmMemory?: WebAssembly.Memory;
}
export interface WasmBackend {
  wasm: WasmModule;
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): WasmTensorData };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): void;
}
/** The cpu backend's storage (tfjs-backend-cpu `MathBackendCPU`). */
export interface CpuBackend {
  data: { get(dataId: object): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
}

/** The engine's heap: exported by the single-threaded module, shared and imported in the threaded one. */
export function wasmHeap(backend: WasmBackend): WebAssembly.Memory | undefined {
  return backend.wasm.wasmMemory ?? backend.wasm.asm?.memory;
}

/** The heap's current buffer (a SharedArrayBuffer in the threaded engine, whose HEAPU8 view is refreshed lazily after a growth). */
export function heapBuffer(backend: WasmBackend): ArrayBufferLike {
  return wasmHeap(backend)?.buffer ?? backend.wasm.HEAPU8.buffer;
}

/** Float32 view of a tensor living on the wasm heap (valid until the next allocation). */
export function heapF32(backend: WasmBackend, t: tf.TensorInfo): Float32Array {
  const { memoryOffset } = backend.dataIdMap.get(t.dataId);
  return new Float32Array(heapBuffer(backend), memoryOffset, tf.util.sizeFromShape(t.shape));
}

/** The float32 storage of a cpu-backend tensor (no copy). */
export function cpuF32(backend: CpuBackend, t: tf.TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  if (!(v instanceof Float32Array)) throw new Error('cpu tensor without float32 values');
  return v;
}

/** Whether tensors of the active backend can be read and written in place here (wasm, cpu). */
export function hasLocalMemory(): boolean {
  const b = tf.getBackend();
  return b === 'wasm' || b === 'cpu';
}

/** A float32 view of a tensor's storage on the active backend, or null when it is not local. */
export function localF32(t: tf.Tensor): Float32Array | null {
  const name = tf.getBackend();
  if (t.dtype !== 'float32') return null;
  if (name === 'wasm') return heapF32(tf.backend() as unknown as WasmBackend, t);
  if (name === 'cpu') return cpuF32(tf.backend() as unknown as CpuBackend, t);
  return null;
}
