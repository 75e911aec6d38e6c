//  dashboard.test.mjs - the integration guide's flow in a real browser.
//
//  Debian's Chromium (/usr/bin/chromium), driven by playwright-core (no
//  browser download), against a real stack started with deploy/up:
//
//    sign up -> create a device -> press Token -> copy it -> create a port ->
//    copy its ID -> post ~5 W readings spanning 90 s (device timestamps) ->
//    the port page turns idle/phantom live, the chart fills, the unread badge
//    goes 0 -> 1 -> run tools/sensor_simulator.py with the copied token and
//    port ID -> the port turns active live, the chart and "Now" follow, the
//    episode closes.
//
//  Every check reads what the page shows; every wait is bounded.
//
//  Environment:
//    PHANTOM_REPO        source tree (default: two levels above this file)
//    PHANTOM_BUILD_DIR   build tree with services/*/phantom-* (default: $PHANTOM_REPO/build)
//    PHANTOM_CHROMIUM    the browser (default /usr/bin/chromium)
//    PHANTOM_KEEP_VAR    1: deploy/down without --purge, to read the logs afterwards
//    SCREENSHOTS         1: write docs/screenshots/*.png after a successful run
//    HEADED              1: show the browser (debugging)
//
//  Exit 0 pass, 1 fail. run.sh decides about skipping (77).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = process.env.PHANTOM_REPO || resolve(HERE, '..', '..');
const BUILD = resolve(process.env.PHANTOM_BUILD_DIR || join(REPO, 'build'));
const CHROMIUM = process.env.PHANTOM_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.SCREENSHOTS === '1';
const SHOT_DIR = join(REPO, 'docs', 'screenshots');

//  Our share of the test ports: HTTP 3260-3269, PG 5550-5559, ZMQ base
//  7800 + 10 * slot (verdicts base, acks base+1, readings base+100+i,
//  events base+200+i).
const SLOTS = 10;
const PARTITIONS = 2;

const UP_TIMEOUT_MS = 120000;       //  initdb, migrations, supervisord, /healthz
const DOWN_TIMEOUT_MS = 60000;
const WAIT_MS = 15000;              //  one expectation in the page
const LIVE_MS = 20000;              //  a change that travels detector -> gateway -> SSE
const HTTP_MS = 10000;              //  one request from the test itself

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BROWSER_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);

class Failure extends Error {}
function check (cond, message) {
    if (!cond)
        throw new Failure(message);
}

//  The dashboard's own formatting (web/src/dom.js fmtWatts), to compare
//  what the page shows with what was sent.
function fmtWatts (w) {
    const n = Number(w);
    if (Math.abs(n) >= 1000)
        return `${(n / 1000).toFixed(2)} kW`;
    return `${n.toFixed(n < 10 ? 2 : 1)} W`;
}

//  ---------------------------------------------------------------------------
//  The stack

function portFree (port) {
    return new Promise((done) => {
        const server = net.createServer();
        server.once('error', () => done(false));
        server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => done(true)));
    });
}

async function pickSlot () {
    for (let k = 0; k < SLOTS; k++) {
        const http = 3260 + k;
        const pg = 5550 + k;
        const base = 7800 + 10 * k;
        const ports = [http, pg, base, base + 1];
        for (let i = 0; i < PARTITIONS; i++)
            ports.push(base + 100 + i, base + 200 + i);
        let free = true;
        for (const p of ports)
            free = free && await portFree(p);
        if (free)
            return { http, pg, base };
    }
    throw new Failure('no free slot of test ports (HTTP 3260-3269 busy?)');
}

//  Runs a program to its end within timeoutMs; resolves {code, out}.
function run (cmd, args, options, timeoutMs) {
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

function logTail (varDir, lines = 25) {
    const dir = join(varDir, 'log');
    if (!existsSync(dir))
        return '';
    let text = '';
    for (const name of ['gateway.log', 'detector-0.log', 'detector-1.log', 'store.log', 'notifier.log']) {
        const file = join(dir, name);
        if (existsSync(file))
            text += `\n--- ${file}\n` + readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
    }
    return text;
}

class Stack {
    constructor () {
        this.var = null;
        this.env = null;
        this.base = null;
        this.started = false;
    }

    async up () {
        for (const svc of ['gateway', 'detector', 'store', 'notifier'])
            check(existsSync(join(BUILD, 'services', svc, `phantom-${svc}`)),
                `no ${BUILD}/services/${svc}/phantom-${svc}: build the tree first`);
        const slot = await pickSlot();
        this.var = mkdtempSync(join(tmpdir(), 'phantom-browser-'));
        //  Nothing PHANTOM_* from the caller's shell points the stack elsewhere.
        const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PHANTOM_')));
        Object.assign(env, {
            PHANTOM_VAR: this.var,
            PHANTOM_REPO: REPO,
            PHANTOM_BUILD_DIR: BUILD,
            PHANTOM_HTTP_PORT: String(slot.http),
            PHANTOM_PG_PORT: String(slot.pg),
            PHANTOM_ZMQ_PORT_BASE: String(slot.base),
            PHANTOM_PARTITIONS: String(PARTITIONS),
            PHANTOM_SEED: '0',
            PHANTOM_SIMULATOR: '0',
            PHANTOM_SKIP_INSTALL: '1',
            PHANTOM_SKIP_BUILD: '1',
        });
        this.env = env;
        this.started = true;            //  from here on down() has something to do
        log(`deploy/up (HTTP ${slot.http}, PG ${slot.pg}, ZMQ ${slot.base}, var ${this.var})`);
        const r = await run(join(REPO, 'deploy', 'up'), [], { cwd: REPO, env }, UP_TIMEOUT_MS);
        if (r.code !== 0)
            throw new Failure(`deploy/up exited ${r.code}:\n${r.out.slice(-4000)}${logTail(this.var)}`);
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

    logTail () {
        return this.var ? logTail(this.var) : '';
    }
}

//  One reading the way a sensor board sends it (the guide's contract).
async function postReading (base, body) {
    const response = await fetch(`${base}/api/sensor/reading`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
        signal: AbortSignal.timeout(HTTP_MS),
    });
    const json = await response.json().catch(() => null);
    return { status: response.status, json };
}

//  ---------------------------------------------------------------------------
//  Page helpers

//  Polls fn (in the test) until it returns a truthy value; throws message on timeout.
async function until (fn, message, timeoutMs = WAIT_MS) {
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
        await new Promise((r) => setTimeout(r, 100));
    }
}

const text = (page, selector) => page.locator(selector).first().textContent({ timeout: WAIT_MS });

async function clipboard (page) {
    await page.bringToFront();
    return page.evaluate(() => navigator.clipboard.readText());
}

//  The value uPlot's legend shows for the Power series with the cursor at
//  fraction x (0 left edge .. 1 right edge) of the plot area.
async function legendPowerAt (page, x) {
    const over = page.locator('[data-testid=chart] .u-over');
    const box = await over.boundingBox({ timeout: WAIT_MS });
    check(box && box.width > 50, 'the chart has no plot area');
    await page.mouse.move(box.x + Math.min(box.width - 1, Math.max(1, x * box.width)), box.y + box.height / 2);
    const value = await page.evaluate(() => {
        const row = [...document.querySelectorAll('[data-testid=chart] .u-legend .u-series')]
            .find((tr) => /Power/.test(tr.textContent));
        return row && row.querySelector('.u-value') ? row.querySelector('.u-value').textContent : null;
    });
    await page.mouse.move(0, 0);
    return value;
}

//  ---------------------------------------------------------------------------
//  The test

async function main () {
    const stack = new Stack();
    let browser = null;
    const shots = [];                   //  [name, png] written only after a pass
    let cleanupStarted = false;
    const cleanup = async () => {
        if (cleanupStarted)
            return;
        cleanupStarted = true;
        if (browser)
            await browser.close().catch(() => {});
        await stack.down();
    };
    //  ctest's TIMEOUT or Ctrl-C: still take the stack down.
    for (const sig of ['SIGTERM', 'SIGINT'])
        process.on(sig, () => { log(`${sig}: cleaning up`); cleanup().finally(() => process.exit(1)); });

    try {
        await stack.up();
        const base = stack.base;

        browser = await chromium.launch({ executablePath: CHROMIUM, headless: process.env.HEADED !== '1',
                                          args: BROWSER_ARGS, timeout: 30000 });
        log(`Chromium ${browser.version()}`);
        const context = await browser.newContext({
            baseURL: base, viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1,
            permissions: ['clipboard-read', 'clipboard-write'], locale: 'en-GB', timezoneId: 'UTC',
        });
        context.setDefaultTimeout(WAIT_MS);
        const page = await context.newPage();
        const pageErrors = [];
        page.on('pageerror', (error) => pageErrors.push(String(error)));
        //  4xx are part of the app's normal life (401 from /api/auth/me before
        //  signing in, 404 from routes it treats as optional); 5xx are not.
        const failed = [];
        context.on('response', (r) => {
            if (r.status() >= 400)
                failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
        });

        //  --- sign up --------------------------------------------------------
        await page.goto('/');
        await page.waitForURL(/#\/login$/);
        await page.getByRole('link', { name: 'Sign up' }).click();
        await page.waitForURL(/#\/signup$/);
        const email = `browser-${Date.now()}@example.com`;
        await page.getByTestId('signup-name').fill('Ada Browser');
        await page.getByTestId('signup-email').fill(email);
        await page.getByTestId('signup-password').fill('correct horse battery');
        //  The app opens its live stream right after signing in.
        const streamResponse = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/stream',
                                                    { timeout: WAIT_MS });
        await page.getByTestId('signup-submit').click();
        await page.locator('h1', { hasText: 'Overview' }).waitFor();
        check(page.url().endsWith('#/'), `after sign-up the page is ${page.url()}, not the overview`);
        const stream = await streamResponse.catch(() => null);
        check(stream, 'the dashboard opened no GET /api/stream after sign-in');
        check(stream.status() === 200 && /text\/event-stream/.test(stream.headers()['content-type'] || ''),
            `GET /api/stream answered ${stream.status()} ${stream.headers()['content-type']}`);
        check(await text(page, '[data-testid=notif-count]') === '0', 'a new account has unread notifications');
        check(await page.getByTestId('notif-count').isHidden(), 'the unread badge shows while the count is 0');
        log(`signed up as ${email}; live stream open`);

        //  --- a device and its token --------------------------------------------
        await page.getByTestId('nav-devices').click();
        await page.getByTestId('devices-empty').waitFor();
        await page.getByTestId('device-name').fill('Living room board');
        await page.getByTestId('device-create').click();
        const deviceRow = page.getByTestId('device-row').filter({ hasText: 'Living room board' });
        await deviceRow.waitFor();
        await deviceRow.getByTestId('device-token-button').click();
        const dialog = page.getByTestId('token-dialog');
        await dialog.waitFor();
        const shownToken = await dialog.getByTestId('device-token').inputValue();
        check(/^\S{32,}$/.test(shownToken), `the token dialog shows no token: "${shownToken}"`);
        await dialog.getByTestId('copy-token').click();
        await until(async () => (await dialog.getByTestId('copy-token').textContent()) === 'Copied',
            'the Copy token button did not say Copied');
        const token = await clipboard(page);
        check(token === shownToken, `the clipboard holds "${token}", the dialog shows "${shownToken}"`);
        if (SHOTS)
            shots.push(['02-devices-token.png', await page.screenshot()]);
        await dialog.getByTestId('token-done').click();
        await dialog.waitFor({ state: 'detached' });
        await until(async () => /active/.test(await deviceRow.getByTestId('device-token-state').textContent()),
            'the device row does not show an active token');
        log('device created, token copied');

        //  --- a port and its ID ---------------------------------------------------
        await page.getByTestId('nav-ports').click();
        await page.getByTestId('ports-empty').waitFor();
        await page.getByTestId('port-name').fill('TV socket');
        check(await page.getByTestId('port-device').locator('option:checked').textContent() === 'Living room board',
            'the port form does not offer the new device');
        await page.getByTestId('port-create').click();
        const portRow = page.getByTestId('port-row').filter({ hasText: 'TV socket' });
        await portRow.waitFor();
        await portRow.getByTestId('copy-port-id').click();
        await until(async () => (await portRow.getByTestId('copy-port-id').textContent()) === 'Copied',
            'the port ID Copy button did not say Copied');
        const portId = await clipboard(page);
        check(UUID_RE.test(portId), `the copied port ID "${portId}" is not a UUID`);
        check(await portRow.getByTestId('port-id').textContent() === portId,
            'the copied port ID differs from the one in the table');
        const apiPorts = await page.evaluate(async () => {
            const r = await fetch('/api/ports', { headers: { Accept: 'application/json' } });
            return r.json();
        });
        const apiIds = ((apiPorts && apiPorts.data && apiPorts.data.ports) || []).map((p) => p.id);
        check(apiIds.length === 1 && apiIds[0] === portId,
            `GET /api/ports returns ${JSON.stringify(apiIds)}, the page copied ${portId}`);
        log(`port ${portId} created, ID copied`);

        //  --- the port page, before any reading ----------------------------------------
        await portRow.getByTestId('port-link').click();
        await page.waitForURL(new RegExp(`#/ports/${portId}$`));
        await page.locator('h1', { hasText: 'TV socket' }).waitFor();
        await page.getByTestId('chart-empty').waitFor();
        const statusBadge = page.locator('[data-field=status] [data-testid=port-status]');
        const firstStatus = await statusBadge.getAttribute('data-status');
        //  Every badge the page mounts from here on, and a marker a reload would lose.
        await page.evaluate(() => {
            window.__noReload = true;
            window.__statuses = [];
            const slot = document.querySelector('[data-field=status]');
            new MutationObserver(() => {
                const b = slot.querySelector('[data-testid=port-status]');
                if (b)
                    window.__statuses.push(b.dataset.status);
            }).observe(slot, { childList: true });
        });
        log(`port page open, status ${firstStatus}, chart empty`);

        //  A second tab on the overview follows the same changes.
        const overview = await context.newPage();
        await overview.goto('/#/');
        await overview.getByTestId('count-phantom').waitFor();
        await page.bringToFront();

        //  --- low draw with device timestamps: idle, then phantom ---------------------
        //  ~5 W (between offWatts 0.5 and standbyWatts 15) for 90 s of device
        //  time, past the default minPhantomSeconds of 60. The simulator stamps
        //  its readings with the current clock, so these go first: the detector
        //  ignores readings older than a port's last one.
        const now = Date.now();
        let last = null;
        for (let i = 0; i < 10; i++) {
            const voltage = 230 + (i % 3) * 0.5;
            const current = 0.0215 + (i % 2) * 0.0005;
            const body = {
                deviceToken: token, portId, voltage, current, power: Math.round(voltage * current * 100) / 100,
                timestamp: new Date(now - 100000 + i * 10000).toISOString(), readingId: `browser-low-${i}`,
            };
            const r = await postReading(base, body);
            check(r.status === 201, `POST /api/sensor/reading (low ${i}) answered ${r.status} ${JSON.stringify(r.json)}`);
            last = r.json.data;
        }
        check(last.portStatus === 'phantom' && last.phantomDetected === true,
            `after 90 s of ~5 W the sensor response says ${JSON.stringify(last)}`);
        log('10 low readings posted (device time now-100 s .. now-10 s): gateway says phantom');

        await until(async () => (await statusBadge.getAttribute('data-status')) === 'phantom',
            'the port page status badge did not turn phantom live', LIVE_MS);
        const seen = await page.evaluate(() => window.__statuses);
        check(seen.includes('idle') && seen.indexOf('idle') < seen.lastIndexOf('phantom'),
            `the badge went ${firstStatus} -> ${seen.join(' -> ')}: no idle before phantom`);
        log(`status badge live: ${firstStatus} -> ${seen.join(' -> ')}`);

        await until(async () => (await text(page, '[data-testid=notif-count]')) === '1'
                                 && await page.getByTestId('notif-count').isVisible(),
            'the unread badge did not go from 0 to 1 live', LIVE_MS);
        log('unread badge 0 -> 1 live');

        await page.locator('[data-testid=chart] canvas').waitFor({ timeout: LIVE_MS });
        check(await page.getByTestId('chart-empty').count() === 0, 'the chart still says it is empty');
        await until(async () => (await text(page, '[data-testid=port-power]')) === fmtWatts(last.reading.power),
            `"Now" does not show the last low reading (${fmtWatts(last.reading.power)})`);
        const firstLow = await legendPowerAt(page, 0);
        const lastLow = await legendPowerAt(page, 1);
        check(/^[45]\.\d\d W$/.test(firstLow) && lastLow === fmtWatts(last.reading.power),
            `the chart's legend shows ${firstLow} at the left edge and ${lastLow} at the right edge`);
        log(`chart drawn live: ${firstLow} .. ${lastLow}`);

        //  The overview tab turned too (it re-reads the summary on status events).
        await until(async () => (await text(overview, '[data-testid=count-phantom]')) === '1',
            'the overview tab does not count the port as phantom', LIVE_MS);
        await until(async () => (await text(overview, '[data-testid=notif-count]')) === '1',
            'the overview tab\'s unread badge is not 1', LIVE_MS);
        if (SHOTS)
            shots.push(['01-overview.png', await overview.screenshot()]);
        await overview.close();

        //  --- the guide's simulator with the copied token and port ID --------------------
        await page.bringToFront();
        const sim = await run('/usr/bin/python3', [join(REPO, 'tools', 'sensor_simulator.py')], {
            cwd: REPO,
            env: {
                PATH: process.env.PATH, PYTHONUNBUFFERED: '1',
                NODE_SERVER_URL: `${base}/api/sensor/reading`, DEVICE_TOKEN: token, PORT_ID: portId,
                READING_INTERVAL: '1', COUNT: '4', VOLTAGE_MIN: '225', VOLTAGE_MAX: '235',
                CURRENT_MIN: '0.4', CURRENT_MAX: '0.6',
            },
        }, 30000);
        check(sim.code === 0, `the simulator exited ${sim.code}:\n${sim.out}`);
        const sent = [...sim.out.matchAll(/^Sent: .*'power': ([\d.]+)\} \| Status: (\S+)/gm)];
        check(sent.length === 4 && sent.every((m) => m[2] === '201'),
            `the simulator did not get four 201s:\n${sim.out}`);
        const simPower = Number(sent[sent.length - 1][1]);
        log(`simulator sent 4 readings, the last ${simPower} W`);

        await until(async () => (await statusBadge.getAttribute('data-status')) === 'active',
            'the status badge did not turn active live after the simulator\'s readings', LIVE_MS);
        await until(async () => (await text(page, '[data-testid=port-power]')) === fmtWatts(simPower),
            `"Now" does not show the simulator's last reading ${fmtWatts(simPower)}`, LIVE_MS);
        const lastHigh = await until(async () => {
            const v = await legendPowerAt(page, 1);
            return v === fmtWatts(simPower) ? v : null;
        }, `the chart's last point is not the simulator's ${fmtWatts(simPower)}`, LIVE_MS);
        check(await legendPowerAt(page, 0) === firstLow, 'the chart lost its first point');
        //  Leaving phantom closes the episode: the table shows it with a duration.
        await page.getByTestId('episodes').waitFor({ timeout: LIVE_MS });
        const episodeRows = await page.locator('[data-testid=episodes] tbody tr').count();
        check(episodeRows === 1, `the episodes table has ${episodeRows} rows, not 1`);
        check(await page.evaluate(() => window.__noReload === true), 'the port page was reloaded');
        log(`status badge live: phantom -> active; chart's last point ${lastHigh}; one episode`);
        //  The episode's end is a notification too.
        await until(async () => Number(await text(page, '[data-testid=notif-count]')) >= 1,
            'the unread badge went away');
        if (SHOTS)
            shots.push(['04-port.png', await page.screenshot()]);

        //  --- notifications ---------------------------------------------------------
        await page.getByTestId('nav-notifications').click();
        await page.getByTestId('notifications').waitFor();
        const titles = await page.locator('[data-testid=notification] .notification-title').allTextContents();
        check(titles.some((t) => /phantom/i.test(t) && /TV socket/.test(t)),
            `no phantom notification for TV socket on the notifications page: ${JSON.stringify(titles)}`);
        const unread = Number(await text(page, '[data-testid=notif-count]'));
        check(unread === titles.length, `the badge says ${unread} unread, the page lists ${titles.length}`);
        log(`notifications: ${JSON.stringify(titles)}`);
        if (SHOTS)
            shots.push(['05-notifications.png', await page.screenshot()]);

        //  --- ports list (live status and power) and the phone layout ---------------
        await page.getByTestId('nav-ports').click();
        await portRow.waitFor();
        check(await portRow.getByTestId('port-status').getAttribute('data-status') === 'active',
            'the ports list does not show the port active');
        if (SHOTS)
            shots.push(['03-ports.png', await page.screenshot()]);

        if (SHOTS) {
            const phone = await browser.newContext({
                baseURL: base, viewport: { width: 390, height: 844 }, deviceScaleFactor: 1,
                isMobile: true, hasTouch: true, storageState: await context.storageState(),
                locale: 'en-GB', timezoneId: 'UTC',
            });
            const mobile = await phone.newPage();
            await mobile.goto('/#/');
            await mobile.locator('[data-testid=overview-ports]').waitFor();
            shots.push(['06-phone-overview.png', await mobile.screenshot()]);
            await phone.close();
        }

        if (process.env.DEBUG_API === '1')
            for (const path of ['/api/summary', `/api/ports/${portId}`, `/api/ports/${portId}/episodes`])
                log(`${path}: ${JSON.stringify(await page.evaluate(async (p) => (await fetch(p)).json(), path))}`);
        if (failed.length)
            log(`4xx/5xx seen: ${[...new Set(failed)].join(', ')}`);
        check(!failed.some((f) => f.startsWith('5')), `the gateway answered 5xx: ${failed.join(', ')}`);
        check(pageErrors.length === 0, `the page threw:\n${pageErrors.join('\n')}`);

        if (SHOTS) {
            mkdirSync(SHOT_DIR, { recursive: true });
            for (const [name, png] of shots) {
                writeFileSync(join(SHOT_DIR, name), png);
                log(`wrote ${join(SHOT_DIR, name)} (${Math.round(png.length / 1024)} kB)`);
            }
        }
        log('PASS');
        return 0;
    } catch (error) {
        log(`FAIL: ${error instanceof Failure ? error.message : error.stack || error}`);
        const tail = stack.logTail();
        if (tail)
            process.stderr.write(`${tail}\n`);
        return 1;
    } finally {
        await cleanup();
    }
}

process.exitCode = await main();
