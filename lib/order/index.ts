/**
 * Block geometry, block orders, visible states and the order-policy interface
 * (METHOD.md sections 2 and 4). No tensors here: the planner and the samplers
 * build on these plain-array types.
 *
 * Curated: what the notebooks call (oh.order.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export {
  blockCells, blockDistance, BlockGeometry, blockGeometry, blockRowCol, cellBlock, divisors, neighbours,
  tokenRasterGeometry,
} from './geometry';
export { cellsOfBlockOrder, randomBlockOrder, rasterBlockOrder, rasterCells, spiralInBlockOrder, validateBlockOrder } from './orders';
export {
  checkPolicyChoice, fixedOrderPolicy, nearestToVisiblePolicy, OrderPolicy, PolicyState, randomPolicy, rasterPolicy,
  rollOutOrder, rollOutOrderSync,
} from './policy';
export { emptyState, isComplete, remainingBlocks, reveal, stateFromSequence } from './state';
