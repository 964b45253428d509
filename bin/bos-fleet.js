#!/usr/bin/env node
// Entry point: the CLI bundled in one file by `npm run build` (tsc, then scripts/bundle-cli.mjs).
import '../dist/cli/bos-fleet.mjs';
