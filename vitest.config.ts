import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The integration tests mostly wait on real timers, processes and miners' replies: with two files
    // at once the suite used ~60% of 2 cores (300–325 s). With three it grew, as tests were added, to
    // 276–303 s (473 tests, 2026-12-03); four at once take 245–254 s, every test passing.
    maxWorkers: 4,
    // CI (.ci/run) reads the JSON report to print its `tests: N passed, N failed` line.
    reporters: process.env['CI'] ? ['default', 'json'] : ['default'],
    outputFile: { json: '.ci/vitest-report.json' },
  },
});
