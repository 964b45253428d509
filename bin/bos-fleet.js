#!/usr/bin/env node
// Entry point: the CLI bundled in one file by `npm run build` (tsc, then scripts/bundle-cli.mjs).
import { fileURLToPath } from 'node:url';

const bundle = new URL('../dist/cli/bos-fleet.mjs', import.meta.url);
try {
  await import(bundle.href);
} catch (err) {
  // A checkout not built yet (or built before the CLI was bundled) says what to run, not a stack
  // trace; any other module missing (a package, before `npm ci`) is Node's own error, as it names it.
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || err.url !== bundle.href) throw err;
  console.error(`bos-fleet: ${fileURLToPath(bundle)} is missing: run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))}`);
  process.exit(1);
}
