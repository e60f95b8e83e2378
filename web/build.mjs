// Builds the UI into dist/: one hashed script and one hashed stylesheet under dist/assets/, and an
// index.html that names them. pgmon-api serves dist/ (api.web_dir); nothing is fetched from elsewhere.
import * as esbuild from 'esbuild';
import { mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';

const out = new URL('./dist/', import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out + 'assets', { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: 'src/main.jsx' },
  bundle: true,
  minify: true,
  sourcemap: 'linked',
  target: ['chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: out + 'assets',
  entryNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
});

const files = Object.keys(result.metafile.outputs).map((f) => basename(f));
const js = files.find((f) => f.endsWith('.js'));
const css = files.find((f) => f.endsWith('.css'));
const icon = readFileSync('src/icon.svg');
writeFileSync(out + 'assets/icon.svg', icon);
writeFileSync(
  out + 'index.html',
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>pgmon</title>
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/${css}">
<script type="module" src="/assets/${js}"></script>
</head>
<body><div id="app"></div><noscript>pgmon needs JavaScript.</noscript></body>
</html>
`,
);
console.log(`built ${out}: ${js}, ${css}`);
