/**
 * OrderHead's public API: the one module notebooks and scripts import.
 * Layers, bottom to top: runtime -> stats -> data -> order -> tokenizer -> backbone -> oracle
 * -> planner -> eval -> report -> session, curriculum -> evaluation (notebook 08 on both cores); a lower layer never imports a higher one
 * (the planner reaches the sampler only through the order-policy interface).
 */
export * from './runtime/errors';
export * from './runtime/backend';
export * from './runtime/wasm-kernels';
export * from './runtime/gradients';
export * from './runtime/paths';
export * from './runtime/profile';
export * from './runtime/seed';
export * from './runtime/atomic';
export * from './runtime/safetensors';
export * from './runtime/checkpoint';
export * from './runtime/run';
export * from './runtime/progress';
export * from './runtime/optim';
export * from './runtime/train-loop';
export * from './data/idx';
export * from './data/dataset';
export * from './data/profile-data';
export * from './backbone/config';
export * as gpt from './backbone/gpt';
export * from './backbone/nll';
export * from './backbone/sampler';
export * from './backbone/stage1';
export * from './backbone/training-budget';
export * from './backbone/checkpoints';
export * from './backbone/order-nll';
export * from './backbone/findings';
export * from './report/png';
export * from './report/images';
export * from './report/notebook';
export * from './report/table';
export * from './session';
export * from './curriculum';
export * from './evaluation';
export * as tf from '@tensorflow/tfjs';
export * from './order';
export * from './tokenizer';
export * from './oracle';
export * from './planner';
export * from './eval';
