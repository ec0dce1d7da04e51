/**
 * Block geometry, block orders, visible states and the order-policy interface
 * (METHOD.md sections 2 and 4). No tensors here: the planner and the samplers
 * build on these plain-array types.
 */
export * from './geometry';
export * from './orders';
export * from './state';
export * from './policy';
