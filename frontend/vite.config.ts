// One build for every page of the frontend, written into the Python package
// (app/static/), which serves it under /static/. Each entry below is one page.
//
// The build is reproducible: the same sources give the same bytes. Beside the hashed
// files it writes manifest.json: each entry's script and styles, and `sources_digest`,
// the SHA-256 over every file of frontend/ outside node_modules/ (sorted by path, each
// as "<path>\n<sha256 of its bytes>\n"), which the test suite recomputes to prove that
// the committed build matches its sources.

import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";

import { defineConfig, type Plugin } from "vite";

const root = import.meta.dirname;

const entries: Record<string, string> = {
  graphiql: "src/graphiql/main.tsx",
  ui: "src/ui/main.tsx",
};

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((item) => {
    const path = join(directory, item.name);
    if (item.isDirectory()) {
      return item.name === "node_modules" ? [] : sourceFiles(path);
    }
    return [relative(root, path).split(sep).join("/")];
  });
}

function sourcesDigest(): string {
  const digest = createHash("sha256");
  for (const path of sourceFiles(root).sort()) {
    const content = createHash("sha256").update(readFileSync(join(root, path))).digest("hex");
    digest.update(`${path}\n${content}\n`);
  }
  return digest.digest("hex");
}

function buildManifest(): Plugin {
  return {
    name: "modelreg-build-manifest",
    generateBundle(_options, bundle) {
      const built: Record<string, { script: string; styles: string[] }> = {};
      for (const chunk of Object.values(bundle)) {
        if (chunk.type === "chunk" && chunk.isEntry) {
          built[chunk.name] = {
            script: chunk.fileName,
            styles: [...(chunk.viteMetadata?.importedCss ?? [])].sort(),
          };
        }
      }
      const manifest = { sources_digest: sourcesDigest(), entries: built };
      this.emitFile({
        type: "asset",
        fileName: "manifest.json",
        source: `${JSON.stringify(manifest, null, 2)}\n`,
      });
    },
  };
}

export default defineConfig({
  root,
  base: "/static/",
  publicDir: false,
  esbuild: { jsx: "automatic", legalComments: "none" },
  plugins: [buildManifest()],
  build: {
    outDir: "../app/static",
    emptyOutDir: true,
    target: "es2022",
    // Every asset is a file of its own: the page's policy allows scripts and styles
    // from this server only.
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
    // GraphiQL is one chunk of about 1 MB (300 KB compressed), loaded once and cached.
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      input: Object.fromEntries(
        Object.entries(entries).map(([name, path]) => [name, join(root, path)]),
      ),
      output: {
        entryFileNames: "assets/[name]-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
});
