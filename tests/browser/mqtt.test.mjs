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
//  Environment as lib.mjs reads it: PHANTOM_REPO, PHANTOM_BUILD_DIR,
//  PHANTOM_CHROMIUM, PHANTOM_KEEP_VAR, SCREENSHOTS, HEADED.
//  Exit 0 pass, 1 fail; run.sh decides about skipping (77).

import {
    SHOTS, WAIT_MS, log, check, same, run, Stack, expectOk, reportFailure,
    launch, contextDefaults, until, text, legendAt, shoot, writeShots, Watcher,
} from './lib.mjs';

//  Our share of the test ports (lib.mjs's Stack, slot k of 10), apart from
//  dashboard.test.mjs's (HTTP 3260+, its gateway 4260+, PG 5550+, ZMQ
//  7800+10k up to base+301, broker 1960+, metrics 9760+) and the
//  integration slots' (brokers 1900+ and 1950+, metrics 9900+): HTTP
//  3280+k (gateway 4280+k), PG 5570+k, ZMQ base 8400+10k (readings
//  base+100+i, events base+200+i, phantom-mqtt base+300+i), broker 1980+k,
//  phantom-mqtt metrics 9780+k.
const BASES = { http: 3280, pg: 5570, zmq: 8400, mqtt: 1980, metrics: 9780 };
const PARTITIONS = 2;
const LIVE_MS = 15000;              //  plug -> broker -> phantom-mqtt -> store -> live stream
const PASSWORD = 'correct horse battery';
const DEVICE = 'Kitchen plug';
//  What the plug publishes: three readings, a few seconds apart.
const WATTS = [37.5, 41.2, 39.8];
const VOLTS = 231.4;

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

//  mosquitto_pub as the plug, with the settings the page showed.
async function publish (settings, token, topic, payload) {
    const args = ['-h', settings.host, '-p', settings.port, '-u', settings.user, '-P', token,
                  '-q', '1', '-t', topic, '-m', payload];
    const r = await run('mosquitto_pub', args, {}, 10000);
    check(r.code === 0, `mosquitto_pub -h ${settings.host} -p ${settings.port} -u ${settings.user} -t ${topic} `
        + `exited ${r.code}: ${r.out}`);
}

//  ---------------------------------------------------------------------------
//  The walk

async function main () {
    const stack = new Stack({
        bases: BASES, zmqOffsets: [0, 1, 300], partitions: PARTITIONS,
        services: ['gateway', 'detector', 'store', 'notifier', 'mqtt'], varPrefix: 'phantom-browser-mqtt-',
        logs: ['gateway.log', 'mqtt-0.log', 'mosquitto.log', 'detector-0.log', 'detector-1.log', 'store.log'],
    });
    let browser = null;
    const watcher = new Watcher();
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
        const account = await expectOk(base, 'POST', '/api/auth/register',
            { body: { email, password: PASSWORD, name: 'Pat Plug' } });
        const zone = (await expectOk(base, 'GET', '/api/settings', { token: account.token })).timeZone || 'UTC';

        browser = await launch(['--lang=en-GB', '--no-sandbox', '--disable-gpu', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync']);
        const options = (extra = {}) => contextDefaults(base, zone, extra);
        const context = await browser.newContext(options());
        context.setDefaultTimeout(WAIT_MS);
        const page = watcher.watch(await context.newPage(), 'desktop');

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
            const l = await legendAt(page, 'chart', 1);
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
            const tab = watcher.watch(await phone.newPage(), 'phone');
            await tab.goto('/#/ports');
            await tab.getByTestId('port-row').filter({ hasText: name }).getByTestId('port-new').waitFor();
            shots.push(['mqtt-walkthrough-phone-2-ports.png', await shoot(tab)]);
            await tab.goto(`/#/ports/${portId}`);
            await tab.locator('[data-testid=chart] .u-over').waitFor();
            shots.push(['mqtt-walkthrough-phone-3-port.png', await shoot(tab, { fullPage: true })]);
            await watcher.quietly([tab], () => phone.close());
        }
        check(watcher.problems.length === 0, `the pages reported problems:\n  ${watcher.problems.join('\n  ')}`);
        if (SHOTS)
            writeShots(shots);
        log('PASS');
        return 0;
    } catch (error) {
        return reportFailure(error, watcher.problems, stack);
    } finally {
        await cleanup();
    }
}

process.exitCode = await main();
