/**
 * Rich notebook output: HTML tables, PNG image grids, offline plotly figures,
 * live displays, and the lazily loaded table libraries (arquero, danfojs).
 *
 * Curated: what the notebooks call as oh.report.* (the show* helpers every
 * notebook uses are at the top of lib/index.ts). Everything else is imported
 * by its file path.
 */
export { loadArquero } from './table';
