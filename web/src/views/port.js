//  One port: live power chart (uPlot, fed by Server-Sent Events), its
//  phantom episodes and always-on baseline.
import uPlot from 'uplot';
import { h, mount, badge, fmtWatts, fmtTime, fmtDuration, fmtMoney, fmtKwh, fmtAgo } from '../dom.js';
import { api, live, optional } from '../api.js';
import { state } from '../state.js';
import { copyButton, showError } from '../ui.js';
import { portSettingsDialog } from './ports.js';

//  Ranges offered above the chart; step is the downsampling bucket in seconds
//  (0 = raw readings).
const RANGES = [
    { label: '1 h', seconds: 3600, step: 0 },
    { label: '24 h', seconds: 86400, step: 60 },
    { label: '7 d', seconds: 7 * 86400, step: 600 },
];
const MAX_POINTS = 5000;

const toSeconds = (ts) => (typeof ts === 'number' ? (ts > 1e12 ? ts / 1000 : ts) : new Date(ts).getTime() / 1000);

export function portView (main, id, onLeave) {
    const alert = h('div', {});
    const head = h('div', { class: 'page-head' }, h('p', { class: 'muted' }, 'Loading…'));
    const chartBox = h('div', { class: 'chart', 'data-testid': 'chart', role: 'img',
                                'aria-label': 'Power over time' });
    const rangeBar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' });
    const facts = h('dl', { class: 'facts', 'data-testid': 'port-facts' });
    const episodesBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const liveNote = h('span', { class: 'live', 'data-testid': 'live-indicator' }, 'live');

    mount(main, head, alert,
        h('section', { class: 'card' },
            h('div', { class: 'card-head' }, h('h2', {}, 'Power ', liveNote), rangeBar),
            chartBox),
        h('div', { class: 'grid2' },
            h('section', { class: 'card' }, h('h2', {}, 'Baseline'), facts),
            h('section', { class: 'card' }, h('h2', {}, 'Phantom episodes'), episodesBox)));

    let port = null;
    let baseline = null;
    let range = RANGES[0];
    let xs = [];
    let ys = [];
    let plot = null;
    let pending = false;

    function renderHead () {
        mount(head,
            h('p', { class: 'crumbs' }, h('a', { href: '#/ports' }, 'Ports'), ' / '),
            h('div', { class: 'title-row' },
                h('h1', {}, port.name),
                h('span', { 'data-field': 'status' }, badge(port.status, 'port-status')),
                h('button', { type: 'button', class: 'btn btn-small push', 'data-testid': 'port-settings',
                              onclick: () => portSettingsDialog(port, loadPort) }, 'Settings')),
            h('div', { class: 'copy-row id-row' }, h('span', { class: 'muted small' }, 'Port ID'),
              h('code', { class: 'uuid', 'data-testid': 'port-id' }, port.id),
              copyButton(port.id, 'Copy port ID', 'copy-port-id')));
    }

    function renderFacts () {
        const s = port.settings || {};
        const currency = state.currency;
        const rows = [
            ['Now', h('span', { 'data-testid': 'port-power' }, fmtWatts(port.lastPower))],
            ['Last reading', h('span', { 'data-testid': 'port-last-reading' }, fmtAgo(port.lastReadingAt))],
            ['Always-on baseline', h('span', { 'data-testid': 'port-baseline' },
                                     fmtWatts(baseline && baseline.alwaysOnWatts))],
            ['Wasted per year', baseline && baseline.yearCost !== undefined
                && baseline.alwaysOnWatts !== null && baseline.alwaysOnWatts !== undefined
                ? `${fmtMoney(baseline.yearCost, currency)} (${fmtKwh(baseline.yearKwh)})` : '–'],
            ['Off at or below', fmtWatts(s.offWatts)],
            ['In use above', fmtWatts(s.standbyWatts)],
            ['Phantom after', s.minPhantomSeconds !== undefined ? fmtDuration(s.minPhantomSeconds * 1000) : '–'],
            ['Expected off', s.expectedOff === 'window' ? `${s.expectedOffFrom}–${s.expectedOffTo}`
                : (s.expectedOff || 'never')],
        ];
        mount(facts, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    }

    function renderRanges () {
        mount(rangeBar, RANGES.map((r) => h('button', {
            type: 'button', class: 'btn btn-small', 'aria-pressed': String(r === range),
            'data-testid': `range-${r.label.replace(' ', '')}`,
            onclick: () => { range = r; renderRanges(); loadReadings(); },
        }, r.label)));
    }

    async function loadPort () {
        try {
            const data = await api('GET', `/api/ports/${id}`);
            port = data.port;
            renderHead();
            document.title = `${port.name} · PhantomWatch`;
            await loadBaseline();
            renderFacts();
            draw();
        } catch (error) {
            if (error.status === 404)
                mount(head, h('div', { class: 'empty' }, h('h1', {}, 'Port not found'),
                    h('p', {}, h('a', { href: '#/ports' }, 'Back to ports'))));
            else
                showError(alert, error);
        }
    }

    async function loadBaseline () {
        //  Its own route if the gateway has one, else the port's summary row.
        const own = await optional(`/api/ports/${id}/baseline`, null).catch(() => null);
        if (own) {
            const b = own.baseline || own;
            baseline = { alwaysOnWatts: b.alwaysOnWatts ?? b.watts, yearKwh: b.yearKwh, yearCost: b.yearCost };
        } else if (port && port.alwaysOnWatts !== undefined && port.alwaysOnWatts !== null) {
            baseline = { alwaysOnWatts: port.alwaysOnWatts };
        }
        const summary = await optional('/api/summary', null).catch(() => null);
        const row = summary && (summary.ports || []).find((p) => p.id === id);
        if (row) {
            baseline = { alwaysOnWatts: row.alwaysOnWatts, yearKwh: row.yearKwh ?? row.yearKwhProjected,
                         yearCost: row.yearCost ?? row.yearCostProjected, ...(baseline || {}) };
            const currency = summary.currency || (summary.total && summary.total.currency);
            if (currency)
                state.currency = currency;
        }
    }

    async function loadReadings () {
        const to = Date.now();
        const from = to - range.seconds * 1000;
        const query = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
        if (range.step)
            query.set('step', String(range.step));
        try {
            const data = await optional(`/api/ports/${id}/readings?${query}`, { readings: [] });
            //  Raw readings carry power; downsampled buckets min/mean/max.
            const readings = (data.readings || [])
                .map((r) => [toSeconds(r.ts ?? r.timestamp), Number(r.power ?? r.mean)])
                .filter(([t, p]) => Number.isFinite(t) && Number.isFinite(p))
                .sort((a, b) => a[0] - b[0]);
            xs = readings.map((r) => r[0]);
            ys = readings.map((r) => r[1]);
            draw();
        } catch (error) {
            showError(alert, error);
        }
    }

    function series () {
        const known = baseline && baseline.alwaysOnWatts !== null && baseline.alwaysOnWatts !== undefined;
        const base = known && Number.isFinite(Number(baseline.alwaysOnWatts)) ? Number(baseline.alwaysOnWatts) : null;
        const standby = port && port.settings && Number(port.settings.standbyWatts);
        return [xs, ys, xs.map(() => base), xs.map(() => (Number.isFinite(standby) ? standby : null))];
    }

    function draw () {
        if (!xs.length) {
            if (plot) { plot.destroy(); plot = null; }
            mount(chartBox, h('p', { class: 'empty chart-empty', 'data-testid': 'chart-empty' },
                'No readings in this range yet. They appear here live as the device sends them.'));
            return;
        }
        const width = Math.max(280, chartBox.clientWidth || 600);
        const height = window.innerWidth < 600 ? 220 : 320;
        if (plot) {
            plot.setData(series());
            return;
        }
        mount(chartBox);
        plot = new uPlot({
            width, height,
            cursor: { drag: { x: true, y: false } },
            scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
            axes: [{ stroke: '#5b6475', grid: { stroke: '#eef0f4' } },
                   { stroke: '#5b6475', grid: { stroke: '#eef0f4' }, values: (u, v) => v.map((x) => `${x} W`), size: 60 }],
            series: [
                {},
                { label: 'Power', stroke: '#4338ca', width: 2, fill: 'rgba(67,56,202,0.08)',
                  value: (u, v) => fmtWatts(v) },
                { label: 'Always on', stroke: '#c2410c', width: 1.5, dash: [6, 4], value: (u, v) => fmtWatts(v) },
                { label: 'In use above', stroke: '#94a3b8', width: 1, dash: [2, 4], value: (u, v) => fmtWatts(v) },
            ],
        }, series(), chartBox);
    }

    //  Redraws at most once a frame however fast readings arrive.
    function schedule () {
        if (pending)
            return;
        pending = true;
        requestAnimationFrame(() => { pending = false; draw(); });
    }

    async function loadEpisodes () {
        try {
            const data = await optional(`/api/ports/${id}/episodes`, { episodes: [] });
            const episodes = data.episodes || [];
            if (!episodes.length) {
                mount(episodesBox, h('p', { class: 'empty', 'data-testid': 'episodes-empty' }, 'No phantom episodes yet.'));
                return;
            }
            mount(episodesBox, h('table', { class: 'table responsive', 'data-testid': 'episodes' },
                h('thead', {}, h('tr', {}, ['Start', 'Duration', 'Mean', 'Peak', 'Energy', 'Cost']
                    .map((label, i) => h('th', { scope: 'col', class: i > 1 ? 'num' : undefined }, label)))),
                h('tbody', {}, episodes.map((e) => {
                    const end = e.end ? new Date(e.end).getTime() : Date.now();
                    return h('tr', {},
                        h('td', { 'data-label': 'Start' }, fmtTime(e.start)),
                        h('td', { 'data-label': 'Duration' }, e.end ? fmtDuration(end - new Date(e.start).getTime())
                            : h('span', { class: 'badge badge-phantom' }, 'ongoing')),
                        h('td', { 'data-label': 'Mean', class: 'num' }, fmtWatts(e.meanWatts)),
                        h('td', { 'data-label': 'Peak', class: 'num' }, fmtWatts(e.peakWatts)),
                        h('td', { 'data-label': 'Energy', class: 'num' }, e.energyWh !== undefined ? fmtKwh(e.energyWh / 1000) : '–'),
                        h('td', { 'data-label': 'Cost', class: 'num' }, fmtMoney(e.cost, e.currency || state.currency)));
                }))));
        } catch (error) {
            showError(episodesBox, error);
        }
    }

    onLeave(live('reading', (r) => {
        if (r.portId !== id)
            return;
        const t = toSeconds(r.ts ?? r.timestamp ?? Date.now());
        const p = Number(r.power);
        if (!Number.isFinite(t) || !Number.isFinite(p))
            return;
        //  Append in order (readings can arrive slightly out of order).
        let at = xs.length;
        while (at > 0 && xs[at - 1] > t)
            at--;
        xs.splice(at, 0, t);
        ys.splice(at, 0, p);
        const cutoff = Date.now() / 1000 - range.seconds;
        while (xs.length && (xs[0] < cutoff || xs.length > MAX_POINTS)) {
            xs.shift();
            ys.shift();
        }
        if (port) {
            port.lastPower = p;
            port.lastReadingAt = new Date(t * 1000).toISOString();
            const now = facts.querySelector('[data-testid=port-power]');
            if (now)
                now.textContent = fmtWatts(p);
            const last = facts.querySelector('[data-testid=port-last-reading]');
            if (last)
                last.textContent = fmtAgo(port.lastReadingAt);
        }
        if (r.status)
            setStatus(r.status);
        schedule();
    }));
    onLeave(live('status', (s) => {
        if (s.portId === id) {
            setStatus(s.status);
            loadEpisodes();
        }
    }));
    onLeave(live('phantom', (e) => { if (e.portId === id) loadEpisodes(); }));
    onLeave(live('resync', () => { loadPort(); loadReadings(); loadEpisodes(); }));
    function setStatus (status) {
        if (!port || port.status === status)
            return;
        port.status = status;
        const slot = head.querySelector('[data-field=status]');
        if (slot)
            mount(slot, badge(status, 'port-status'));
    }

    const resize = new ResizeObserver(() => {
        if (plot)
            plot.setSize({ width: Math.max(280, chartBox.clientWidth), height: window.innerWidth < 600 ? 220 : 320 });
    });
    resize.observe(chartBox);
    onLeave(() => { resize.disconnect(); if (plot) plot.destroy(); });

    renderRanges();
    loadPort().then(loadReadings);
    loadEpisodes();
}
