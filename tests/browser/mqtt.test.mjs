//  mqtt.test.mjs - README's "Connect a Tasmota, Shelly or ESPHome plug",
//  walked in a real browser as a person would (issue 17, item 6).
//
//  Debian's Chromium driven by playwright-core against a real stack
//  (deploy/up with its broker and phantom-mqtt, on ports of its own):
//
//  1. Sign in on the login page; create a device on the Devices page;
//     press Token and read the token from its dialog; press MQTT and read
//     host, port, user and topic from that dialog (the text shown), which
//     says the password is the device token.
//  2. Publish as a Tasmota plug with mosquitto_pub (Debian's
//     mosquitto-clients) using exactly those settings: MQTT 3.1.1 as
//     Tasmota speaks it, QoS 1, tele/<topic>/SENSOR with the ENERGY
//     object Tasmota sends (xdrv_03_energy.cpp EnergyShow; mqtt_parse.c
//     cites it), Time in the account's zone.
//  3. The Ports page, open while the plug publishes, lists the new port
//     "<device> 1" live, marked new, with the published watts as "Now".
//  4. Its page shows those watts as "Now"; two more readings arrive and
//     its live chart draws them, its legend at the latest one reading the
//     published watts.
//  5. No console error, uncaught exception or failed request.
//
//  SCREENSHOTS=1 also writes docs/screenshots/mqtt-walkthrough-*.png
//  (desktop 1280x800 and phone 390x844) after every check passed.
//
//  Environment as dashboard.test.mjs: PHANTOM_REPO, PHANTOM_BUILD_DIR,
//  PHANTOM_CHROMIUM, PHANTOM_KEEP_VAR, SCREENSHOTS, HEADED.
//  Exit 0 pass, 1 fail; run.sh decides about skipping (77).

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

//  Our share of the test ports, apart from dashboard.test.mjs's (HTTP
//  3260+, its gateway 4260+, PG 5550+, ZMQ 7800+10k up to base+301) and
//  the integration slots' (brokers 1900+ and 1950+, metrics 9900+):
//  HTTP 3280+k (gateway 4280+k), PG 5570+k, ZMQ base 8400+10k (readings
//  base+100+i, events base+200+i, phantom-mqtt base+300+i), broker 1980+k,
//  phantom-mqtt metrics 9780+k.
const SLOTS = 10;
const PARTITIONS = 2;
const UP_TIMEOUT_MS = 120000;
const DOWN_TIMEOUT_MS = 60000;
const WAIT_MS = 15000;              //  one expectation in the page
const LIVE_MS = 15000;              //  plug -> broker -> phantom-mqtt -> store -> live stream
const PASSWORD = 'correct horse battery';
const DEVICE = 'Kitchen plug';
//  What the plug publishes: three readings, a few seconds apart.
const WATTS = [37.5, 41.2, 39.8];
const VOLTS = 231.4;

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}\n`);

class Failure extends Error {}
function check (cond, message) {
    if (!cond)
        throw new Failure(message);
}
function same (got, want, what) {
    check(got === want, `${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

//  "37.5 W" as web/src/format.js writes watts in en-GB.
function watts (w) {
    const n = Number(w);
    const digits = Math.abs(n) < 1 && n !== 0 ? 2 : 1;
    return `${new Intl.NumberFormat('en-GB', { minimumFractionDigits: digits, maximumFractionDigits: digits })
        .format(n)} W`;
}

//  Tasmota's Time: local wall time of the plug, no zone ("2026-12-07T05:31:02").
function tasmotaTime (ms, zone) {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-GB', { timeZone: zone, year: 'numeric', month: '2-digit',
        day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' })
        .formatToParts(ms).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}`;
}

//  tele/<topic>/SENSOR of a one-relay Tasmota plug with energy monitoring.
function tasmotaSensor (ms, zone, w) {
    const amps = Math.round(w / VOLTS * 1000) / 1000;
    return JSON.stringify({ Time: tasmotaTime(ms, zone), ENERGY: {
        TotalStartTime: '2026-11-02T09:14:51', Total: 0.412, Yesterday: 0.097, Today: 0.031,
        Period: 0, Power: w, ApparentPower: Math.round(w * 1.04), ReactivePower: 9, Factor: 0.96,
        Voltage: Math.round(VOLTS), Current: amps } });
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
        const slot = { http: 3280 + k, pg: 5570 + k, base: 8400 + 10 * k, mqtt: 1980 + k, metrics: 9780 + k };
        const ports = [slot.http, slot.http + 1000, slot.pg, slot.base, slot.base + 1, slot.mqtt, slot.metrics,
                       slot.base + 300];
        for (let i = 0; i < PARTITIONS; i++)
            ports.push(slot.base + 100 + i, slot.base + 200 + i);
        let free = true;
        for (const p of ports)
            free = free && await portFree(p);
        if (free)
            return slot;
    }
    throw new Failure('no free slot of test ports (HTTP 3280-3289 busy?)');
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

class Stack {
    async up () {
        for (const svc of ['gateway', 'detector', 'store', 'notifier', 'mqtt'])
            check(existsSync(join(BUILD, 'services', svc, `phantom-${svc}`)),
                `no ${BUILD}/services/${svc}/phantom-${svc}: build the tree first`);
        const slot = await pickSlot();
        this.var = mkdtempSync(join(tmpdir(), 'phantom-browser-mqtt-'));
        const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PHANTOM_')));
        Object.assign(env, {
            PHANTOM_VAR: this.var, PHANTOM_REPO: REPO, PHANTOM_BUILD_DIR: BUILD,
            PHANTOM_HTTP_PORT: String(slot.http), PHANTOM_PG_PORT: String(slot.pg),
            PHANTOM_ZMQ_PORT_BASE: String(slot.base), PHANTOM_PARTITIONS: String(PARTITIONS),
            PHANTOM_MQTT_PORT: String(slot.mqtt), PHANTOM_MQTT_METRICS_PORT: String(slot.metrics),
            PHANTOM_SEED: '0', PHANTOM_SIMULATOR: '0', PHANTOM_SKIP_INSTALL: '1', PHANTOM_SKIP_BUILD: '1',
        });
        this.env = env;
        this.started = true;
        log(`deploy/up (HTTP ${slot.http}, PG ${slot.pg}, ZMQ ${slot.base}, broker ${slot.mqtt})`);
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
        const r = await run(join(REPO, 'deploy', 'down'), keep ? [] : ['--purge'], { cwd: REPO, env: this.env },
            DOWN_TIMEOUT_MS);
        if (r.code !== 0)
            log(`deploy/down exited ${r.code}: ${r.out.slice(-2000)}`);
        if (!keep)
            rmSync(this.var, { recursive: true, force: true });
    }

    logTail (lines = 25) {
        const dir = this.var && join(this.var, 'log');
        if (!dir || !existsSync(dir))
            return '';
        let text = '';
        for (const name of ['gateway.log', 'mqtt-0.log', 'mosquitto.log', 'detector-0.log', 'detector-1.log', 'store.log']) {
            const file = join(dir, name);
            if (existsSync(file))
                text += `\n--- ${file}\n` + readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
        }
        return text;
    }
}

async function request (base, method, path, { token, body } = {}) {
    const headers = { Accept: 'application/json', 'X-Requested-With': 'phantomwatch' };
    if (token)
        headers.Authorization = `Bearer ${token}`;
    if (body !== undefined)
        headers['Content-Type'] = 'application/json';
    const response = await fetch(`${base}${path}`, { method, headers,
        body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(WAIT_MS) });
    const json = await response.json().catch(() => null);
    check(response.status < 300, `${method} ${path} answered ${response.status} ${JSON.stringify(json)}`);
    return json.data;
}

//  mosquitto_pub as the plug, with the settings the page showed.
async function publish (settings, token, topic, payload) {
    const args = ['-h', settings.host, '-p', settings.port, '-u', settings.user, '-P', token,
                  '-q', '1', '-t', topic, '-m', payload];
    const r = await run('mosquitto_pub', args, {}, 10000);
    check(r.code === 0, `mosquitto_pub -h ${settings.host} -p ${settings.port} -u ${settings.user} -t ${topic} `
        + `exited ${r.code}: ${r.out}`);
}

//  ---------------------------------------------------------------------------
//  Page helpers

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
        await sleep(150);
    }
}

const text = async (locator) => ((await locator.first().textContent({ timeout: WAIT_MS })) || '').trim();

//  Console errors, uncaught exceptions, failed requests and answers of 400
//  or more, of every page watched.
function watch (page, name, problems, leaving) {
    page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`); });
    page.on('requestfailed', (req) => {
        const failure = req.failure() ? req.failure().errorText : 'failed';
        if (!(leaving.has(page) && failure === 'net::ERR_ABORTED'))
            problems.push(`${name}: request failed: ${req.method()} ${new URL(req.url()).pathname} ${failure}`);
    });
    page.on('response', (r) => {
        if (r.status() >= 400)
            problems.push(`${name}: ${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    return page;
}

//  A screenshot once no toast covers the page (they fade after 4 s).
async function shoot (page, options = {}) {
    await until(async () => await page.locator('.toast').count() === 0, 'a toast stays up', 8000);
    await page.waitForTimeout(300);
    return page.screenshot(options);
}

//  uPlot's legend {label: value} with the cursor at the plot's right edge,
//  where the newest reading is.
async function legendAtNow (page) {
    const over = page.locator('[data-testid=chart] .u-over');
    await over.scrollIntoViewIfNeeded({ timeout: WAIT_MS });
    const rect = await over.boundingBox({ timeout: WAIT_MS });
    check(rect && rect.width > 50, 'the chart has no plot area');
    await page.mouse.move(rect.x + rect.width - 1, rect.y + rect.height / 2);
    const values = await page.evaluate(() => Object.fromEntries(
        [...document.querySelectorAll('[data-testid=chart] .u-legend .u-series')].map((row) => [
            (row.querySelector('.u-label') || {}).textContent, (row.querySelector('.u-value') || {}).textContent,
        ])));
    await page.mouse.move(0, 0);
    return values;
}

//  ---------------------------------------------------------------------------
//  The walk

async function main () {
    const stack = new Stack();
    let browser = null;
    const problems = [];
    const leaving = new Set();
    const shots = [];
    const cleanup = async () => {
        if (browser)
            await browser.close().catch(() => {});
        await stack.down();
    };
    for (const sig of ['SIGTERM', 'SIGINT'])
        process.on(sig, () => { log(`${sig}: cleaning up`); cleanup().finally(() => process.exit(1)); });
    try {
        await stack.up();
        const base = stack.base;
        const email = `plug-${Date.now()}@example.com`;
        const account = await request(base, 'POST', '/api/auth/register',
            { body: { email, password: PASSWORD, name: 'Pat Plug' } });
        const zone = (await request(base, 'GET', '/api/settings', { token: account.token })).timeZone || 'UTC';

        browser = await chromium.launch({ executablePath: CHROMIUM, headless: process.env.HEADED !== '1',
            args: ['--lang=en-GB', '--no-sandbox', '--disable-gpu', '--no-first-run',
                   '--disable-background-networking', '--disable-component-update', '--disable-sync'],
            timeout: 30000 });
        const options = (extra = {}) => ({ baseURL: base, viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1,
            locale: 'en-GB', timezoneId: zone, colorScheme: 'light', ...extra });
        const context = await browser.newContext(options());
        context.setDefaultTimeout(WAIT_MS);
        const page = watch(await context.newPage(), 'desktop', problems, leaving);

        //  === 1. Sign in, a device, its token and its MQTT settings ===
        await page.goto('/');
        await page.waitForURL(/#\/login$/);
        await page.getByTestId('login-email').fill(email);
        await page.getByTestId('login-password').fill(PASSWORD);
        await page.getByTestId('login-submit').click();
        await page.locator('h1', { hasText: 'Overview' }).waitFor();
        await page.getByTestId('nav-devices').click();
        await page.getByTestId('devices-empty').waitFor();
        await page.getByTestId('device-name').fill(DEVICE);
        await page.getByTestId('device-create').click();
        const row = page.getByTestId('device-row').filter({ hasText: DEVICE });
        await row.waitFor();
        await row.getByTestId('device-token-button').click();
        const tokenDialog = page.getByTestId('token-dialog');
        await tokenDialog.waitFor();
        const token = await tokenDialog.getByTestId('device-token').inputValue();
        check(/^\S{32,}$/.test(token), `the token dialog shows no token: "${token}"`);
        await tokenDialog.getByTestId('token-done').click();
        await tokenDialog.waitFor({ state: 'detached' });

        await row.getByTestId('device-mqtt').click();
        const dialog = page.getByTestId('mqtt-dialog');
        await dialog.waitFor();
        const settings = {
            host: await text(dialog.getByTestId('mqtt-host')),
            port: await text(dialog.getByTestId('mqtt-port')),
            user: await text(dialog.getByTestId('mqtt-user')),
            topic: await text(dialog.getByTestId('mqtt-topic')),
        };
        const password = await text(dialog.getByTestId('mqtt-password'));
        check(/^the device token\b/.test(password), `the dialog's Password says "${password}", not the device token`);
        check(/^pw-[0-9a-f]{10}$/.test(settings.user), `the dialog's User "${settings.user}" is no MQTT name`);
        same(settings.topic, settings.user, 'the dialog\'s Topic (Tasmota\'s Topic: the MQTT name)');
        same(settings.host, '127.0.0.1', 'the dialog\'s Host (this page\'s host: the broker is local)');
        same(settings.port, stack.env.PHANTOM_MQTT_PORT, 'the dialog\'s Port');
        check((await text(dialog.locator('li', { hasText: 'Tasmota' }))).includes('%prefix%/%topic%/'),
            'the dialog does not tell Tasmota to keep its Full Topic');
        log(`MQTT settings on the page: ${settings.host}:${settings.port}, user ${settings.user}, topic ${settings.topic}`);
        if (SHOTS)
            shots.push(['mqtt-walkthrough-desktop-1-settings.png', await shoot(page)]);
        await dialog.getByTestId('mqtt-done').click();
        await dialog.waitFor({ state: 'detached' });

        //  === 2, 3. The plug publishes; the Ports page lists its port live ===
        await page.getByTestId('nav-ports').click();
        await page.getByTestId('ports-empty').waitFor();
        const topic = `tele/${settings.topic}/SENSOR`;
        const firstAt = Date.now() - 6000;
        await publish(settings, token, topic, tasmotaSensor(firstAt, zone, WATTS[0]));
        const name = `${DEVICE} 1`;
        const portRow = page.getByTestId('port-row').filter({ hasText: name });
        await until(() => portRow.count(), `the Ports page did not list "${name}" live`, LIVE_MS);
        check(await portRow.getByTestId('port-new').isVisible(), `"${name}" is not marked new`);
        same(await text(portRow.getByTestId('port-new')), 'new', 'the new port\'s mark');
        same(await text(portRow.getByTestId('port-now')), watts(WATTS[0]), `"${name}" Now`);
        same(await portRow.getByTestId('port-status').getAttribute('data-status'), 'active', `"${name}" status`);
        log(`Ports: "${name}" listed live, marked new, Now ${watts(WATTS[0])}`);
        if (SHOTS)
            shots.push(['mqtt-walkthrough-desktop-2-ports.png', await shoot(page)]);

        //  === 4. Its page: Now, and the live chart ===
        const portId = await portRow.getAttribute('data-port');
        await portRow.getByTestId('port-link').click();
        await page.locator('h1', { hasText: name }).waitFor();
        const chart = page.getByTestId('chart');
        await until(async () => Number(await chart.getAttribute('data-points')) === 1,
            'the port page\'s chart does not show the first reading');
        same(await text(page.getByTestId('port-power')), watts(WATTS[0]), 'the port page\'s Now');
        for (let i = 1; i < WATTS.length; i++) {
            await publish(settings, token, topic, tasmotaSensor(firstAt + i * 3000, zone, WATTS[i]));
            await until(async () => Number(await chart.getAttribute('data-points')) === i + 1,
                `the chart did not draw reading ${i + 1} live`, LIVE_MS);
            await until(async () => (await text(page.getByTestId('port-power'))) === watts(WATTS[i]),
                `the port page's Now does not show ${watts(WATTS[i])}`, LIVE_MS);
        }
        const legend = await until(async () => {
            const l = await legendAtNow(page);
            return l[name] === watts(WATTS[WATTS.length - 1]) && l;
        }, `the chart's legend at its newest point does not read ${watts(WATTS[WATTS.length - 1])}`);
        log(`port page: Now ${watts(WATTS[WATTS.length - 1])}, chart ${WATTS.length} points live, legend ${JSON.stringify(legend)}`);
        if (SHOTS) {
            //  The legend reads the newest point, as a person hovering there sees it.
            await page.evaluate(() => window.scrollTo(0, 0));
            const over = await page.locator('[data-testid=chart] .u-over').boundingBox();
            await page.mouse.move(over.x + over.width - 1, over.y + over.height / 2);
            shots.push(['mqtt-walkthrough-desktop-3-port.png', await shoot(page, { fullPage: true })]);
            const state = await context.storageState();
            const phone = await browser.newContext(options({ storageState: state,
                viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }));
            const tab = watch(await phone.newPage(), 'phone', problems, leaving);
            await tab.goto('/#/ports');
            await tab.getByTestId('port-row').filter({ hasText: name }).getByTestId('port-new').waitFor();
            shots.push(['mqtt-walkthrough-phone-2-ports.png', await shoot(tab)]);
            await tab.goto(`/#/ports/${portId}`);
            await tab.locator('[data-testid=chart] .u-over').waitFor();
            shots.push(['mqtt-walkthrough-phone-3-port.png', await shoot(tab, { fullPage: true })]);
            leaving.add(tab);
            await phone.close();
        }
        check(problems.length === 0, `the pages reported problems:\n  ${problems.join('\n  ')}`);
        if (SHOTS) {
            mkdirSync(SHOT_DIR, { recursive: true });
            for (const [file, png] of shots) {
                writeFileSync(join(SHOT_DIR, file), png);
                log(`wrote ${join(SHOT_DIR, file)} (${Math.round(png.length / 1024)} kB)`);
            }
        }
        log('PASS');
        return 0;
    } catch (error) {
        log(`FAIL: ${error instanceof Failure ? error.message : error.stack || error}`);
        if (problems.length)
            log(`the pages also reported:\n  ${problems.join('\n  ')}`);
        const tail = stack.logTail();
        if (tail)
            process.stderr.write(`${tail}\n`);
        return 1;
    } finally {
        for (const p of [...leaving])
            leaving.delete(p);
        await cleanup();
    }
}

process.exitCode = await main();
