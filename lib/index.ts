/**
 * OrderHead's public API: the one module notebooks and scripts import.
 * Layers, bottom to top: runtime -> stats -> data -> order -> tokenizer -> backbone -> oracle
 * -> planner -> eval -> report -> session, curriculum -> evaluation (notebook 08 on both cores) -> study (the crossover study, notebook 09);
 * a lower layer never imports a higher one
 * (the planner reaches the sampler only through the order-policy interface).
 *
 * At the top, the few helpers every notebook uses: start the session, find the
 * stage inputs, show tables, figures, images and text (stamped with the
 * session's profile and dataset). The method itself is reached by area, in
 * layer order: oh.backbone.*, oh.oracle.*, oh.planner.*, oh.eval.*, ...; each
 * area's index (lib/<area>/index.ts) is curated to what notebooks use, and the
 * rest of the library is imported by file path (tests, bench, scripts).
 */
export { startNotebook, NotebookSession, setupFindings } from './session';
export { stageInputs } from './curriculum';
export { showHtml, showMarkdown, showNote, showPlot } from './report/notebook';
export { showTable } from './report/table';
export { showImageGrid } from './report/images';
export * as tf from '@tensorflow/tfjs';

export * as runtime from './runtime';
export * as stats from './stats';
export * as data from './data';
export * as order from './order';
export * as tokenizer from './tokenizer';
export * as backbone from './backbone';
export * as oracle from './oracle';
export * as planner from './planner';
export * as eval from './eval';
export * as report from './report';
export * as curriculum from './curriculum';
export * as evaluation from './evaluation';
export * as study from './study';
