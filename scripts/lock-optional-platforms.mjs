// The package registry reachable here lacks msgpackr-extract's prebuilt binaries for other platforms,
// so `npm install` leaves them out of package-lock.json and `npm ci` then refuses the lock. This adds
// them back as optional, platform-bound entries (npm ci skips them on non-matching platforms).
// Run after `npm install` changes the lock: node scripts/lock-optional-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const platforms = {
  'darwin-arm64': ['darwin', 'arm64'],
  'darwin-x64': ['darwin', 'x64'],
  'linux-arm': ['linux', 'arm'],
  'linux-arm64': ['linux', 'arm64'],
  'linux-x64': ['linux', 'x64'],
  'win32-x64': ['win32', 'x64'],
};
const parent = lock.packages['node_modules/msgpackr-extract'];
if (parent) {
  for (const [name, [os, cpu]] of Object.entries(platforms)) {
    const key = `node_modules/@msgpackr-extract/msgpackr-extract-${name}`;
    lock.packages[key] ??= { version: parent.version, cpu: [cpu], license: 'MIT', optional: true, os: [os] };
  }
  lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
  writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n');
}
