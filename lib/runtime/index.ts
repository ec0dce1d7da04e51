/**
 * The runtime (backends, profiles, seeds, atomic files, checkpoints, run folders, the optimizer): the
 * bottom layer every other one stands on.
 *
 * Curated: what the notebooks call (oh.runtime.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { readJsonLines, writeFileAtomic } from './atomic';
export { pick } from './profile';
export { scheduledLr } from './optim';
