/**
 * Preloaded into every notebook kernel the headless runner starts
 * (scripts/run-notebooks.sh puts `--require` of this file on NODE_OPTIONS):
 * the kernel ends itself when the nbconvert process that started it is gone
 * (see lib/runtime/parent-watch.ts). startNotebook() starts the same watch,
 * but only once the first cell runs; a runner killed while the kernel was
 * starting would otherwise leave an idle kernel behind for good.
 */
import { isMainThread } from 'node:worker_threads';
import { watchParent } from '../lib/runtime/parent-watch';

if (isMainThread) watchParent();
