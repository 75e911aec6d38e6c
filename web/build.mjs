//  Builds the dashboard into dist/: one bundled, minified app.<hash>.js (our
//  ES modules + uPlot), one app.<hash>.css, and index.html pointing at them.
//  The hash in the names lets the gateway cache assets for a year while
//  index.html (no-cache) always names the current ones.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const out = process.argv[2] ? process.argv[2] : dist;

const hash = (text) => createHash('sha256').update(text).digest('hex').slice(0, 12);

const js = await build({
    entryPoints: [join(root, 'src', 'main.js')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2020'],
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
});
const script = js.outputFiles[0].text;

//  uPlot's stylesheet first so ours can override it.
const style = readFileSync(join(root, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'), 'utf8')
    + '\n' + readFileSync(join(root, 'src', 'app.css'), 'utf8');
const css = (await build({
    stdin: { contents: style, loader: 'css' }, minify: true, write: false, logLevel: 'warning',
})).outputFiles[0].text;

const scriptName = `app.${hash(script)}.js`;
const styleName = `app.${hash(css)}.css`;
const html = readFileSync(join(root, 'src', 'index.html'), 'utf8')
    .replace('%APP_JS%', `/assets/${scriptName}`)
    .replace('%APP_CSS%', `/assets/${styleName}`);

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
writeFileSync(join(out, 'index.html'), html);
writeFileSync(join(out, 'assets', scriptName), script);
writeFileSync(join(out, 'assets', styleName), css);
writeFileSync(join(out, 'assets', 'icon.svg'), readFileSync(join(root, 'src', 'icon.svg')));
console.log(`web: built ${out} (${scriptName} ${script.length} B, ${styleName} ${css.length} B)`);
