import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// base "./": every asset path is relative, so dist/ works wherever it is served from
// (a node's HTTP port at "/", or any sub-path behind a proxy).
export default defineConfig({
  base: "./",
  plugins: [vue()],
  build: { outDir: "dist", emptyOutDir: true, target: "es2020" },
  server: { host: "127.0.0.1" },
});
