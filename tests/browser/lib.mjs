//  lib.mjs - what the browser specs (dashboard.test.mjs, mqtt.test.mjs)
//  share: their environment, failures and checks, a stack of their own
//  started with deploy/up on a free slot of their test ports, the test's
//  own API requests, and the page helpers. Each spec keeps its checks, its
//  constants and its flow; what differs between them (slot port bases,
//  services, deploy settings, logs) is a parameter here.
//
//  Environment (read here for both specs):
//    PHANTOM_REPO        source tree (default: two levels above this file)
//    PHANTOM_BUILD_DIR   build tree with services/*/phantom-* (default: $PHANTOM_REPO/build)
//    PHANTOM_CHROMIUM    the browser (default /usr/bin/chromium)
//    PHANTOM_KEEP_VAR    1: deploy/down without --purge, to read the logs afterwards
//    SCREENSHOTS         1: the specs write docs/screenshots/*.png after every check passed
//    HEADED              1: show the browser (debugging)

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = process.env.PHANTOM_REPO || resolve(HERE, '..', '..');
export const BUILD = resolve(process.env.PHANTOM_BUILD_DIR || join(REPO, 'build'));
export const CHROMIUM = process.env.PHANTOM_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = process.env.SCREENSHOTS === '1';
export const SHOT_DIR = join(REPO, 'docs', 'screenshots');

export const WAIT_MS = 15000;       //  one expectation in the page
const HTTP_MS = 15000;              //  one request from the test itself
const UP_TIMEOUT_MS = 120000;       //  initdb, migrations, supervisord, /healthz
const DOWN_TIMEOUT_MS = 60000;
const SLOTS = 10;                   //  slots of test ports a spec may pick from

const t0 = Date.now();
export const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);

//  A check that failed: the spec prints its message alone, without a stack.
export class Failure extends Error {}
export function check (cond, message) {
    if (!cond)
        throw new Failure(message);
}
export function same (got, want, what) {
    check(got === want, `${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

//  ---------------------------------------------------------------------------
//  The stack

function portFree (port) {
    return new Promise((done) => {
        const server = net.createServer();
        server.once('error', () => done(false));
        server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => done(true)));
    });
}

//  The first slot k whose ports are all free: HTTP bases.http+k (its
//  gateway +1000), PG bases.pg+k, ZMQ base bases.zmq+10k (base+offset for
//  each of zmqOffsets, readings base+100+i and events base+200+i for each
//  partition i), broker bases.mqtt+k, phantom-mqtt metrics bases.metrics+k.
async function pickSlot (bases, zmqOffsets, partitions) {
    for (let k = 0; k < SLOTS; k++) {
        const slot = { http: bases.http + k, pg: bases.pg + k, base: bases.zmq + 10 * k,
                       mqtt: bases.mqtt + k, metrics: bases.metrics + k };
        const ports = [slot.http, slot.http + 1000, slot.pg, ...zmqOffsets.map((o) => slot.base + o),
                       slot.mqtt, slot.metrics];
        for (let i = 0; i < partitions; i++)
            ports.push(slot.base + 100 + i, slot.base + 200 + i);
        let free = true;
        for (const p of ports)
            free = free && await portFree(p);
        if (free)
            return slot;
    }
    throw new Failure(`no free slot of test ports (HTTP ${bases.http}-${bases.http + SLOTS - 1} busy?)`);
}

//  Runs a program to its end within timeoutMs; resolves {code, out}.
export function run (cmd, args, options, timeoutMs) {
    return new Promise((done) => {
        const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { out += d; });
        const timer = setTimeout(() => {
            out += `\n(${cmd} killed after ${timeoutMs} ms)\n`;
            try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
        }, timeoutMs);
        child.on('error', (error) => { clearTimeout(timer); done({ code: -1, out: out + String(error) }); });
        child.on('close', (code, signal) => { clearTimeout(timer); done({ code: code ?? signal, out }); });
    });
}

//  A stack of the spec's own: deploy/up under a temporary PHANTOM_VAR on
//  the first free slot of its ports, deploy/down --purge afterwards.
//    bases       {http, pg, zmq, mqtt, metrics}: the spec's slot 0
//    zmqOffsets  ZMQ ports besides the partitions', from the slot's base
//    partitions  PHANTOM_PARTITIONS
//    services    the phantom-* binaries the stack needs built
//    varPrefix   of the temporary PHANTOM_VAR
//    env         the spec's deploy settings (PHANTOM_* beyond the ports)
//    logs        the files of $PHANTOM_VAR/log that logTail shows
export class Stack {
    constructor ({ bases, zmqOffsets, partitions, services, varPrefix, env = {}, logs }) {
        this.options = { bases, zmqOffsets, partitions, services, varPrefix, env, logs };
        this.var = null;
        this.env = null;
        this.base = null;
        this.started = false;
    }

    async up () {
        const o = this.options;
        for (const svc of o.services)
            check(existsSync(join(BUILD, 'services', svc, `phantom-${svc}`)),
                `no ${BUILD}/services/${svc}/phantom-${svc}: build the tree first`);
        const slot = await pickSlot(o.bases, o.zmqOffsets, o.partitions);
        this.var = mkdtempSync(join(tmpdir(), o.varPrefix));
        //  Nothing PHANTOM_* from the caller's shell points the stack elsewhere.
        const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PHANTOM_')));
        Object.assign(env, {
            PHANTOM_VAR: this.var,
            PHANTOM_REPO: REPO,
            PHANTOM_BUILD_DIR: BUILD,
            PHANTOM_HTTP_PORT: String(slot.http),
            PHANTOM_PG_PORT: String(slot.pg),
            PHANTOM_ZMQ_PORT_BASE: String(slot.base),
            PHANTOM_MQTT_PORT: String(slot.mqtt),
            PHANTOM_MQTT_METRICS_PORT: String(slot.metrics),
            PHANTOM_PARTITIONS: String(o.partitions),
            PHANTOM_SEED: '0',
            PHANTOM_SIMULATOR: '0',
            PHANTOM_SKIP_INSTALL: '1',
            PHANTOM_SKIP_BUILD: '1',
        }, o.env);
        this.env = env;
        this.started = true;            //  from here on down() has something to do
        log(`deploy/up (HTTP ${slot.http}, PG ${slot.pg}, ZMQ ${slot.base}, broker ${slot.mqtt}, var ${this.var})`);
        const r = await run(join(REPO, 'deploy', 'up'), [], { cwd: REPO, env }, UP_TIMEOUT_MS);
        if (r.code !== 0)
            throw new Failure(`deploy/up exited ${r.code}:\n${r.out.slice(-4000)}${this.logTail()}`);
        this.base = `http://127.0.0.1:${slot.http}`;
        log(`stack up at ${this.base}`);
    }

    async down () {
        if (!this.started)
            return;
        this.started = false;
        const keep = process.env.PHANTOM_KEEP_VAR === '1';
        const r = await run(join(REPO, 'deploy', 'down'), keep ? [] : ['--purge'],
            { cwd: REPO, env: this.env }, DOWN_TIMEOUT_MS);
        if (r.code !== 0)
            log(`deploy/down exited ${r.code}: ${r.out.slice(-2000)}`);
        else
            log(keep ? `deploy/down (kept ${this.var})` : 'deploy/down --purge');
        if (!keep)
            rmSync(this.var, { recursive: true, force: true });
    }

    //  The last lines of the stack's logs, for a failure's report.
    logTail (lines = 25) {
        const dir = this.var && join(this.var, 'log');
        if (!dir || !existsSync(dir))
            return '';
        let text = '';
        for (const name of this.options.logs) {
            const file = join(dir, name);
            if (existsSync(file))
                text += `\n--- ${file}\n` + readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
        }
        return text;
    }
}

//  One request of the test itself: {status, json}.
export async function request (base, method, path, { token, cookie, body } = {}) {
    const headers = { Accept: 'application/json', 'X-Requested-With': 'phantomwatch' };
    if (token)
        headers.Authorization = `Bearer ${token}`;
    if (cookie)
        headers.Cookie = cookie;
    if (body !== undefined)
        headers['Content-Type'] = 'application/json';
    const response = await fetch(`${base}${path}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(HTTP_MS),
    });
    const json = await response.json().catch(() => null);
    return { status: response.status, json };
}

//  A request that must succeed: its data.
export async function expectOk (base, method, path, options) {
    const r = await request(base, method, path, options);
    check(r.status >= 200 && r.status < 300, `${method} ${path} answered ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.data;
}

//  A failed run's report: the failure (a Failure's message alone), what
//  the pages reported besides, the stack's last log lines. Returns the
//  exit code, 1.
export function reportFailure (error, problems, stack) {
    log(`FAIL: ${error instanceof Failure ? error.message : error.stack || error}`);
    if (problems.length)
        log(`the pages also reported:\n  ${problems.join('\n  ')}`);
    const tail = stack.logTail();
    if (tail)
        process.stderr.write(`${tail}\n`);
    return 1;
}

//  ---------------------------------------------------------------------------
//  The browser and its pages

//  Debian's Chromium with the spec's command-line args.
export function launch (args) {
    return chromium.launch({ executablePath: CHROMIUM, headless: process.env.HEADED !== '1', args, timeout: 30000 });
}

//  A desktop browser context's options for the stack at base, in en-GB and
//  timezoneId; extra overrides any.
export const contextDefaults = (base, timezoneId, extra = {}) => ({
    baseURL: base, viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1,
    locale: 'en-GB', timezoneId, colorScheme: 'light', ...extra,
});

//  Polls fn (in the test) until it returns a truthy value; throws message on timeout.
export async function until (fn, message, timeoutMs = WAIT_MS) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last)
                return last;
        } catch (error) {
            last = error;
        }
        if (Date.now() > deadline)
            throw new Failure(`${message} (within ${timeoutMs} ms; last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
        await sleep(150);
    }
}

export const text = async (locator) => ((await locator.first().textContent({ timeout: WAIT_MS })) || '').trim();

//  uPlot's legend, {label: value}, with the cursor at fraction (0 left
//  edge .. 1 right edge, where the newest reading is) of the plot area of
//  box (a [data-testid] holding one uPlot).
export async function legendAt (page, box, fraction) {
    const over = page.locator(`[data-testid=${box}] .u-over`);
    await over.scrollIntoViewIfNeeded({ timeout: WAIT_MS });
    const rect = await over.boundingBox({ timeout: WAIT_MS });
    check(rect && rect.width > 50, `the ${box} has no plot area`);
    const x = rect.x + Math.min(rect.width - 1, Math.max(1, fraction * rect.width));
    const y = rect.y + rect.height / 2;
    //  Nothing over that point (a toast fades after 4 s).
    await until(() => page.evaluate(([px, py, testid]) => {
        const el = document.elementFromPoint(px, py);
        return Boolean(el && el.closest(`[data-testid=${testid}] .u-over`));
    }, [x, y, box]), `something covers the ${box} at ${Math.round(x)}, ${Math.round(y)}`, 6000);
    await page.mouse.move(x, y);
    const values = await page.evaluate((testid) => Object.fromEntries(
        [...document.querySelectorAll(`[data-testid=${testid}] .u-legend .u-series`)].map((row) => [
            (row.querySelector('.u-label') || {}).textContent, (row.querySelector('.u-value') || {}).textContent,
        ])), box);
    await page.mouse.move(0, 0);
    return values;
}

//  A screenshot once no toast covers the page (they fade after 4 s), within
//  toastMs; settle (a scroll) runs before it is taken.
export async function shoot (page, options = {}, { toastMs = 8000, settle = null } = {}) {
    await until(async () => await page.locator('.toast').count() === 0, 'a toast stays up', toastMs);
    if (settle)
        await settle();
    await page.waitForTimeout(300);
    return page.screenshot(options);
}

//  Writes [name, png] to docs/screenshots/ (after every check passed);
//  prune (a RegExp of the names a spec owns): first removes the PNGs of
//  that name that shots does not hold, leaving other specs' alone.
export function writeShots (shots, { prune = null } = {}) {
    mkdirSync(SHOT_DIR, { recursive: true });
    const names = new Set(shots.map(([name]) => name));
    for (const old of prune ? readdirSync(SHOT_DIR) : [])
        if (old.endsWith('.png') && prune.test(old) && !names.has(old)) {
            rmSync(join(SHOT_DIR, old));
            log(`removed ${join(SHOT_DIR, old)}`);
        }
    for (const [name, png] of shots) {
        writeFileSync(join(SHOT_DIR, name), png);
        log(`wrote ${join(SHOT_DIR, name)} (${Math.round(png.length / 1024)} kB)`);
    }
}

//  Console errors, uncaught exceptions and failed requests (an answer of
//  400 or more, or none) of every page watched. A spec that provokes one
//  failure sets expected; those are then allowed, each at most once.
export class Watcher {
    constructor () {
        this.problems = [];
        //  The one failure a spec provokes: {page, method, path, responses,
        //  console, aborted} (a 401 answer, its console line, and the live
        //  stream the page closes itself to open one on the new session).
        this.expected = null;
        this.seen401 = 0;
        this.on = true;
        this.leaving = new Set();       //  pages the test reloads or closes
    }

    //  A reload or close by the test cancels the page's open requests (its
    //  live stream): those cancellations are no failures.
    async quietly (pages, fn) {
        for (const p of pages)
            this.leaving.add(p);
        try {
            return await fn();
        } finally {
            for (const p of pages)
                this.leaving.delete(p);
        }
    }

    watch (page, name) {
        const note = (what) => { if (this.on) this.problems.push(`${name}: ${what}`); };
        page.on('pageerror', (error) => note(`uncaught ${error}`));
        page.on('console', (message) => {
            if (message.type() !== 'error')
                return;
            const where = message.location() && message.location().url;
            if (this.expected && this.expected.page === page && /status of 401/.test(message.text()) && where
                && new URL(where).pathname === this.expected.path && this.expected.console) {
                this.expected.console--;
                return;
            }
            note(`console error: ${message.text()} (${where || 'no location'})`);
        });
        page.on('requestfailed', (req) => {
            const failure = req.failure() ? req.failure().errorText : 'failed';
            if (this.leaving.has(page) && failure === 'net::ERR_ABORTED')
                return;
            const e = this.expected;
            if (e && e.page === page && e.aborted && failure === 'net::ERR_ABORTED'
                && new URL(req.url()).pathname === '/api/stream') {
                e.aborted--;
                return;
            }
            note(`request failed: ${req.method()} ${new URL(req.url()).pathname} ${failure}`);
        });
        page.on('response', (response) => {
            if (response.status() < 400)
                return;
            const req = response.request();
            const path = new URL(response.url()).pathname;
            if (this.expected && this.expected.page === page && response.status() === 401
                && req.method() === this.expected.method
                && path === this.expected.path && this.expected.responses) {
                this.expected.responses--;
                this.seen401++;
                return;
            }
            note(`${response.status()} ${req.method()} ${path}`);
        });
        return page;
    }
}
