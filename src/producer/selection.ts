// Part of an inventory: `--miner`, `--site`, `--tag` pick the miners a command works on, so a farm
// keeps one inventory file and polls, changes or watches a site or a rack of it.
import { targetsDigest, type Inventory } from './inventory.js';

export interface Selection {
  /** These miners (by id). */
  miners?: string[];
  /** Miners at any of these sites. */
  sites?: string[];
  /** Miners carrying every one of these tags. */
  tags?: string[];
}

export const isSelecting = (s: Selection): boolean => Boolean(s.miners?.length || s.sites?.length || s.tags?.length);

/** The selection as it was typed, for messages: `--site site-a --tag rack-12`. */
export function selectionText(s: Selection): string {
  const flags = [...(s.miners ?? []).map((v) => ['--miner', v]), ...(s.sites ?? []).map((v) => ['--site', v]), ...(s.tags ?? []).map((v) => ['--tag', v])];
  return flags.map(([f, v]) => `${f} ${JSON.stringify(v)}`).join(' ');
}

const listed = (values: Iterable<string>, max = 10): string => {
  const all = [...values].sort();
  return all.length ? all.slice(0, max).join(', ') + (all.length > max ? `, … (${all.length} in all)` : '') : 'none';
};

/**
 * The inventory's miners that the selection picks, as an inventory of their own (its digest is the
 * selected set's). Every value given must match some miner — a misspelt site or tag would otherwise
 * quietly select nothing, or, combined with others, less than meant — and the whole must select one.
 */
export function selectTargets(inventory: Inventory, s: Selection, /** Whose miners, as in `… has no miner at that site`. */ has = `inventory ${inventory.file} has`): Inventory {
  if (!isSelecting(s)) return inventory;
  const ids = new Set(inventory.targets.map((t) => t.minerId));
  const sites = new Set(inventory.targets.map((t) => t.site));
  const tags = new Set(inventory.targets.flatMap((t) => t.tags));
  for (const id of s.miners ?? []) if (!ids.has(id)) throw new Error(`--miner "${id}": ${has} no miner of that id`);
  for (const site of s.sites ?? []) if (!sites.has(site)) throw new Error(`--site "${site}": ${has} no miner at that site (its sites: ${listed([...sites].filter(Boolean))})`);
  for (const tag of s.tags ?? []) if (!tags.has(tag)) throw new Error(`--tag "${tag}": ${has} no miner with that tag (its tags: ${listed(tags)})`);
  const miners = s.miners?.length ? new Set(s.miners) : undefined;
  const atSites = s.sites?.length ? new Set(s.sites) : undefined;
  const targets = inventory.targets.filter((t) => (!miners || miners.has(t.minerId)) && (!atSites || atSites.has(t.site)) && (s.tags ?? []).every((tag) => t.tags.includes(tag)));
  if (targets.length === 0) throw new Error(`${selectionText(s)}: ${has} no miner matching all of these (--miner and --site pick any of theirs, --tag needs every one)`);
  return { file: inventory.file, targets, digest: targetsDigest(targets) };
}
