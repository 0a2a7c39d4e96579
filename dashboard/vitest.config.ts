import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

// Unit tests of the pure modules in lib/; the browser tests (pytest + Playwright) cover the page.
export default defineConfig({
  resolve: { alias: { "@": fileURLToPath(new URL(".", import.meta.url)) } },
  test: { include: ["lib/**/*.test.ts"], environment: "node" },
});
