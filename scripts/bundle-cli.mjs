// Bundles the compiled CLI (dist/cli/main.js, from tsc) and the packages it loads into one file,
// dist/cli/bos-fleet.mjs, which bin/bos-fleet.js runs. Node 20 opens ~750 small ESM and CommonJS files
// for the CLI otherwise, and spends most of a command's start-up (~0.8 s) resolving, reading and
// pre-parsing them; one file starts in about half that. `npm run build` runs this after tsc.
//
// What stays outside the bundle, and why:
// - piscina: it starts its threads from its own worker.js, found next to its index.js;
// - ioredis: it reads its own package.json, by its own path, to tell Redis its version;
// - msgpackr-extract (BullMQ's msgpackr's native part): its binary is found next to its own files;
//   bundled, msgpackr would quietly fall back to plain JavaScript;
// - the worker threads (dist/workers/thread.js) and the simulator's shard processes
//   (dist/sim/shard.js): they are started by path and load the unbundled dist/ as before;
// - proto/: read at run time from the package root, which the bundle finds from its own address
//   (dist/cli/, as deep as the dist/core/ it replaces).
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/bos-fleet.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['piscina', 'ioredis', 'msgpackr-extract'],
  // The bundled CommonJS packages call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __bosFleetRequire } from 'node:module'; const require = __bosFleetRequire(import.meta.url);" },
  logLevel: 'warning',
});
