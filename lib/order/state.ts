/**
 * The visible state S of METHOD.md section 2: which blocks are already
 * visible (generated, or revealed from ground truth), and in which order they
 * were revealed. States are treated as immutable values: `reveal` returns a
 * new state.
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry, checkBlock } from './geometry';

export interface OrderState {
  geo: BlockGeometry;
  /** Length numBlocks; 1 = visible, 0 = not yet. Do not mutate: `reveal` copies. */
  visible: Uint8Array;
  /** The blocks revealed so far, in order. Do not mutate: `reveal` copies. */
  sequence: number[];
}

/** No block visible. */
export function emptyState(geo: BlockGeometry): OrderState {
  return { geo, visible: new Uint8Array(geo.numBlocks), sequence: [] };
}

/**
 * A new state with `block` visible too; every other field of `state` (for a
 * `PolicyState`: index, tokens, classId, context) is carried over unchanged —
 * updating the tokens is the caller's job. Throws if the block is out of range
 * or already visible.
 */
export function reveal<S extends OrderState>(state: S, block: number): S {
  const { geo } = state;
  ensure(
    state.visible.length === geo.numBlocks,
    `state.visible has length ${state.visible.length}, expected numBlocks = ${geo.numBlocks}`,
    'reveal(state)',
    'build states with emptyState(geo) / stateFromSequence(geo, blocks)',
  );
  checkBlock(geo, block, 'reveal(block)');
  ensure(
    state.visible[block] === 0,
    `block ${block} is already visible (revealed so far: ${state.sequence.join(', ')})`,
    'reveal(block)',
    'reveal only blocks from remainingBlocks(state)',
  );
  const visible = state.visible.slice();
  visible[block] = 1;
  return { ...state, visible, sequence: [...state.sequence, block] };
}

/** The state after revealing `blocks` in turn from the empty state. */
export function stateFromSequence(geo: BlockGeometry, blocks: readonly number[]): OrderState {
  let s = emptyState(geo);
  for (const b of blocks) s = reveal(s, b);
  return s;
}

/** The blocks not yet visible (the set R), ascending. */
export function remainingBlocks(state: OrderState): number[] {
  const out: number[] = [];
  for (let b = 0; b < state.geo.numBlocks; b++) if (!state.visible[b]) out.push(b);
  return out;
}

/** True when every block is visible. */
export function isComplete(state: OrderState): boolean {
  return state.sequence.length >= state.geo.numBlocks && remainingBlocks(state).length === 0;
}
