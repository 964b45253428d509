// Credential profiles: from a JSON file ({profile: {username, password}}) or, for `default`, the
// environment (BOS_FLEET_USERNAME / BOS_FLEET_PASSWORD). Jobs carry only the profile name. A profile
// without a username holds a pool password only (a `pools` change's passwordRef): no miner logs in with it.
import { statSync } from 'node:fs';
import { z } from 'zod';
import type { Credentials } from '../core/sessions.js';
import { readJsonFile } from './json-file.js';
import { issueText } from './zod-issue.js';

const fileSchema = z.record(z.string().min(1), z.object({ username: z.string().min(1).optional(), password: z.string() }).strict());

/** A profile: a miner login, or (no username) a pool password that a `pools` change names as passwordRef. */
export interface CredentialProfile {
  username?: string;
  password: string;
}

export type CredentialProfiles = Map<string, CredentialProfile>;

/** The login a profile gives, or undefined when it has none (missing, or a pool password only). */
export function loginOf(profiles: ReadonlyMap<string, CredentialProfile>, name: string): Credentials | undefined {
  const p = profiles.get(name);
  return p?.username === undefined ? undefined : { username: p.username, password: p.password };
}

/** Of the profiles miners log in with, those that are there but hold a pool password only (no username). */
export function passwordOnlyProfiles(needed: Iterable<string>, profiles: CredentialProfiles): string[] {
  return [...new Set(needed)].filter((p) => profiles.has(p) && profiles.get(p)?.username === undefined);
}

/** Why a credentials file is too open (readable or writable by group or others), if it is. */
export function looseModeWarning(file: string): string | undefined {
  if (process.platform === 'win32') return undefined;
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  return `credentials file ${file} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${file}`;
}

export function loadCredentialProfiles(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  warn: (message: string) => void = (m) => process.stderr.write(`bos-fleet: WARNING: ${m}\n`),
): CredentialProfiles {
  const profiles: CredentialProfiles = new Map();
  // An empty BOS_FLEET_USERNAME is unset (as `${VAR:-}` in a compose file gives it): a login with no
  // user name fails on every miner, so the missing profile is named instead, before anything runs.
  const username = env['BOS_FLEET_USERNAME']?.trim() ? env['BOS_FLEET_USERNAME'] : undefined;
  const password = env['BOS_FLEET_PASSWORD'];
  if (username !== undefined) {
    if (password === undefined) warn(`BOS_FLEET_PASSWORD is not set: the "default" profile logs in as "${username}" with an empty password (Braiins OS's factory default; set BOS_FLEET_PASSWORD= to say so and silence this)`);
    profiles.set('default', { username, password: password ?? '' });
  } else if (password) {
    warn('BOS_FLEET_PASSWORD is set but BOS_FLEET_USERNAME is not: the environment gives no "default" profile (set both)');
  }
  if (!file) return profiles;
  const raw = readJsonFile(file, `credentials file ${file}`);
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    // Never echo a value here: it could be a password.
    throw new Error(`credentials file ${file}: ${issue?.path.join('.') || '(top level)'} ${issueText(issue)}; expected {"profile": {"username": "...", "password": "..."}} ("username" left out: a pool password only)`);
  }
  for (const [name, c] of Object.entries(parsed.data)) profiles.set(name, c.username === undefined ? { password: c.password } : { username: c.username, password: c.password });
  const loose = looseModeWarning(file);
  if (loose) warn(loose);
  return profiles;
}

/** Checks every profile an inventory names exists, before anything is enqueued. */
export function missingProfiles(needed: Iterable<string>, profiles: CredentialProfiles): string[] {
  return [...new Set(needed)].filter((p) => !profiles.has(p));
}

/** How to add `count` missing profiles: to the credentials file given, or by --credentials / the environment. */
export function credentialsHelp(file: string | undefined, count = 1): string {
  return file
    ? `add ${count === 1 ? 'it' : 'them'} to ${file} ({"profile": {"username": "...", "password": "..."}})`
    : 'pass --credentials FILE (JSON {"profile": {"username", "password"}}) or set BOS_FLEET_USERNAME and BOS_FLEET_PASSWORD for the "default" profile';
}
