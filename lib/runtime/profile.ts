/**
 * Run profiles: one switch that scales every notebook from a CI smoke test to
 * the full experiment, so the same code path is exercised at every size.
 *
 * The profile comes from the environment (not from a notebook cell) because
 * headless runs (`nbconvert --execute`, CI) can only pass settings that way,
 * and the tslab kernel inherits the environment of whoever started Jupyter.
 */
import { OrderHeadError, oneOf } from './errors';

/** Valid profile names, smallest first. */
export const PROFILES = ['smoke', 'default', 'full'] as const;

export type ProfileName = (typeof PROFILES)[number];

/** The environment variable that selects the profile. */
export const PROFILE_ENV = 'ORDERHEAD_PROFILE';

/** The profile used when the variable is unset or empty: the real embedded run. */
export const DEFAULT_PROFILE: ProfileName = 'default';

/**
 * What each profile promises, shown in every notebook's banner so nobody reads
 * conclusions into a smoke run's numbers.
 */
const DESCRIPTIONS: Record<ProfileName, string> = {
  smoke: 'tiny data, few steps; results are for CI, not for conclusions',
  default: 'the embedded run: real data, sized for a CPU in minutes to hours; results are the ones reported',
  full: 'the longest runs and largest settings; slow on CPU, use a GPU backend where available',
};

/**
 * The profile selected by `ORDERHEAD_PROFILE` in `env` (case and surrounding
 * spaces ignored); `default` when unset. An unknown name throws an
 * OrderHeadError listing the valid ones instead of silently running `default`,
 * because a typo would otherwise cost a multi-hour run.
 */
export function activeProfile(env: NodeJS.ProcessEnv = process.env): ProfileName {
  const raw = env[PROFILE_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_PROFILE;
  return oneOf(raw.trim().toLowerCase(), PROFILES, `environment variable ${PROFILE_ENV}='${raw}'`);
}

/**
 * One line for the top of a notebook or a CLI log, e.g.
 * `Profile: smoke (ORDERHEAD_PROFILE=smoke) — tiny data, few steps; results are for CI, not for conclusions`.
 */
export function profileBanner(name: ProfileName = activeProfile()): string {
  const valid = oneOf(name, PROFILES, 'profileBanner(name)');
  return `Profile: ${valid} (${PROFILE_ENV}=${valid}) — ${DESCRIPTIONS[valid]}`;
}

/**
 * Select the value for a profile from a per-profile table, e.g.
 * `pick({ smoke: 20, default: 2000, full: 20000 })`. The Record type makes a
 * missing profile a compile error; the runtime check covers JavaScript callers
 * and tables built from JSON.
 */
export function pick<T>(byProfile: Record<ProfileName, T>, profile: ProfileName = activeProfile()): T {
  const name = oneOf(profile, PROFILES, 'pick(profile)');
  if (!Object.prototype.hasOwnProperty.call(byProfile, name)) {
    throw new OrderHeadError(
      `the per-profile table has no entry for '${name}' (it has: ${Object.keys(byProfile).join(', ') || 'nothing'})`,
      'pick(byProfile)',
      `give a value for every profile: ${PROFILES.join(', ')}`,
    );
  }
  return byProfile[name];
}

/** Fields to change in a config: any field, and object-valued fields (not arrays) in part. */
export type ConfigOverrides<C> = { [K in keyof C]?: C[K] extends readonly unknown[] ? C[K] : C[K] extends object ? Partial<C[K]> : C[K] };

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The one way a stage builds its config: `defaults`, then the profile's
 * entry of `byProfile`, then `overrides`, each merged field by field (an
 * object-valued field such as `planner` or `data` is merged one level deep,
 * so `{ planner: { latentSteps: 2 } }` keeps the other planner fields), then
 * checked by `validate`.
 */
export function profileConfig<C extends object>(defaults: C, byProfile: Record<ProfileName, ConfigOverrides<C>>, profile: ProfileName,
  overrides: ConfigOverrides<C>, validate: (cfg: C) => void): C {
  const merge = (base: C, top: ConfigOverrides<C>): C => {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(top)) {
      if (v === undefined) continue;
      out[k] = isPlainObject(v) && isPlainObject(out[k]) ? { ...(out[k] as object), ...v } : v;
    }
    return out as C;
  };
  const cfg = merge(merge(defaults, pick(byProfile, profile)), overrides);
  validate(cfg);
  return cfg;
}
