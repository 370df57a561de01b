import { defineConfig } from 'vitest/config';

// Kernel and e2e tests share one kernel: run files one at a time so namespaces and
// conntrack floods do not interfere; unit tests are fast enough not to care.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
