//  One port: its figures, power over time at any range (raw readings for an
//  hour, min/mean/max buckets beyond), other ports to compare, energy per
//  day/week/month, its phantom episodes, exports; live by Server-Sent
//  Events.
import { h, mount, badge, statusNow, ROLES } from '../dom.js';
import { api, live } from '../api.js';
import { onTick } from '../state.js';
import { fmtAgo, fmtDuration, fmtKwh, fmtMoney, fmtTime, fmtWatts, fromLocalInput, toLocalInput,
         zoneLabel } from '../format.js';
import { appendReading, bucketTable, countPoints, onSchemeChange, powerChart, rawTable } from '../chart.js';
import { describeSchedule } from '../schedule.js';
import { field, showFieldErrors } from '../forms.js';
import { copyButton, showError } from '../ui.js';
import { portSettingsDialog } from './ports.js';
import { nowFigure, wasteFigure, yearFigure } from './figures.js';
import { energyCard } from './energy.js';
import { connectHelp } from './connect.js';
import { csvHref, csvLink } from './export.js';

const HOUR = 3600;
const RANGES = [
    { key: '1h', label: '1 h', seconds: HOUR },
    { key: '24h', label: '24 h', seconds: 24 * HOUR },
    { key: '7d', label: '7 d', seconds: 7 * 24 * HOUR },
    { key: '30d', label: '30 d', seconds: 30 * 24 * HOUR },
    { key: '1y', label: '1 y', seconds: 365 * 24 * HOUR },
];
const MAX_POINTS = 1500;
const STEPS = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const MAX_SPAN_DAYS = 400;              //  the API's widest window
const MAX_COMPARE = 4;
const EPISODES_PAGE = 50;
const BUCKETS_REFRESH_MS = 60000;

//  Raw readings up to an hour; beyond, the smallest step that keeps the
//  chart at most MAX_POINTS points.
function stepFor (seconds) {
    if (seconds <= HOUR)
        return 0;
    return STEPS.find((s) => seconds / s <= MAX_POINTS) || Math.ceil(seconds / MAX_POINTS);
}

export function portView (main, id, onLeave) {
    const alert = h('div', {});
    const head = h('div', { class: 'page-head' }, h('p', { class: 'muted' }, 'Loading…'));
    const connect = h('div', {});
    const facts = h('dl', { class: 'facts', 'data-testid': 'port-facts' });
    const chartBox = h('div', { class: 'chart', 'data-testid': 'chart', 'data-points': '0', role: 'img',
                                'aria-label': 'Power over time' });
    const rangeBar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' });
    const navBar = h('div', { class: 'range-nav' });
    const customBox = h('div', { hidden: true });
    const compareBox = h('details', { class: 'compare', 'data-testid': 'compare' });
    const chartNote = h('p', { class: 'hint', 'data-testid': 'chart-note' });
    const chartExport = h('div', { class: 'button-row' });
    const episodesBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const episodesExport = h('div', { class: 'button-row' });
    const energy = energyCard({ path: `/api/ports/${id}/energy`, title: 'Energy used', onLeave });

    mount(main, head, alert, connect,
        h('section', { class: 'card' }, h('h2', {}, 'Figures'), facts),
        h('section', { class: 'card chart-card' },
            h('div', { class: 'card-head' }, h('h2', {}, 'Power'), rangeBar),
            navBar, customBox, chartBox, chartNote,
            h('div', { class: 'chart-foot' }, compareBox, chartExport)),
        energy.el,
        h('section', { class: 'card' },
            h('div', { class: 'card-head' }, h('h2', {}, 'Phantom episodes'), episodesExport),
            episodesBox));

    let port = null;
    let fig = null;                     //  this port's row of /api/summary
    let currency = 'EUR';
    let others = [];                    //  the user's other ports
    let shown = null;                   //  status shown now
    let range = RANGES[0];
    let end = null;                     //  right edge (ms); null: now, following live
    let zoom = null;                    //  {from, to} ms inside the range
    const compare = new Set();
    const chart = powerChart(chartBox, { onZoom: (from, to) => { zoom = { from: from * 1000, to: to * 1000 }; loadSeries(); } });
    let model = null;                   //  what the chart shows
    let series = new Map();             //  port id -> {label, table}
    let step = 0;
    let gapSeconds = 300;
    let loadSerial = 0;
    let loadedAt = 0;
    let pending = false;
    let episodes = [];
    let episodesLoaded = false;
    let episodesMore = false;

    //  ---------------------------------------------------------------------
    //  Head and figures

    function renderHead () {
        mount(head,
            h('p', { class: 'crumbs' }, h('a', { href: '#/ports' }, 'Ports'), ' / '),
            h('div', { class: 'title-row' },
                h('h1', { 'data-testid': 'port-name' }, port.name),
                h('span', { 'data-field': 'status' }, badge(shown, 'port-status')),
                h('span', { class: 'role-chip', 'data-testid': 'port-role' }, ROLES[role()] || ROLES.standby),
                h('button', { type: 'button', class: 'btn btn-small push', 'data-testid': 'port-settings',
                              onclick: () => portSettingsDialog(port, reload) }, 'Settings')),
            h('div', { class: 'copy-row id-row' }, h('span', { class: 'muted small' }, 'Port ID'),
              h('code', { class: 'uuid', 'data-testid': 'port-id' }, port.id),
              copyButton(port.id, 'Copy port ID', 'copy-port-id')));
    }

    const role = () => (port && port.settings && port.settings.role) || (fig && fig.role) || 'standby';

    function renderConnect () {
        if (shown !== 'waiting') {
            mount(connect);
            return;
        }
        mount(connect, h('section', { class: 'card notice', 'data-testid': 'waiting' },
            h('h2', {}, 'Waiting for its first reading'),
            h('p', { class: 'muted' }, 'Nothing has arrived for this port yet. Its figures start with the first reading.'),
            connectHelp(port.id)));
    }

    function lastReading (now) {
        if (!port.lastReadingAt)
            return h('span', { 'data-testid': 'port-last-reading' }, 'waiting for its first reading');
        return h('span', {}, h('span', { 'data-testid': 'port-last-reading', title: fmtTime(port.lastReadingAt) },
                                fmtAgo(port.lastReadingAt, now)),
                 h('span', { class: 'muted small block' }, fmtTime(port.lastReadingAt)));
    }

    function renderFacts (now = Date.now()) {
        const s = port.settings || {};
        const r = role();
        const rows = [
            ['Now', nowFigure(port.lastPower, shown)],
            ['Last reading', lastReading(now)],
            ['Lowest steady draw', h('span', {}, h('span', { 'data-testid': 'port-lowest' }, fig ? fmtWatts(fig.lowestSteadyWatts) : '–'),
                                         h('span', { class: 'muted small block' }, 'over the last 24 h; information, not waste'))],
        ];
        if (r === 'alwaysOn') {
            rows.push(['Waste', h('span', { class: 'by-design', 'data-testid': 'port-year', 'data-state': 'by-design' },
                                  'on by design')]);
        } else {
            rows.push(['Wasted today', fig ? wasteFigure(fig.today, currency, 'port-today') : '–']);
            rows.push(['Wasted, last 30 days', fig ? wasteFigure(fig.last30, currency, 'port-last30') : '–']);
            rows.push(['Waste per year', fig ? yearFigure(fig.year, r, currency) : '–']);
        }
        if (fig && fig.today)
            rows.push(['Used today', h('span', { 'data-testid': 'port-used-today' }, fmtKwh(fig.today.energyKwh))]);
        rows.push(['Role', h('span', {}, ROLES[r] || ROLES.standby,
            r === 'shouldBeOff' ? h('span', { class: 'muted small block', 'data-testid': 'port-schedule' },
                Array.isArray(s.offSchedule) && s.offSchedule.length ? `off ${describeSchedule(s.offSchedule)}` : 'always off') : null)]);
        rows.push(['Off at or below', fmtWatts(s.offWatts)]);
        if (r === 'standby')
            rows.push(['Standby at or below', fmtWatts(s.standbyWatts)]);
        if (r !== 'alwaysOn')
            rows.push(['Phantom after', s.minPhantomSeconds !== undefined && s.minPhantomSeconds !== null
                ? fmtDuration(s.minPhantomSeconds * 1000) : '–']);
        mount(facts, rows.map(([k, v]) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, v))));
    }

    function refreshShown (now = Date.now()) {
        const next = statusNow(port, now);
        if (next === shown)
            return false;
        shown = next;
        const slot = head.querySelector('[data-field=status]');
        if (slot)
            mount(slot, badge(shown, 'port-status'));
        renderConnect();
        return true;
    }

    async function loadPort () {
        try {
            const [data, summary, list] = await Promise.all([
                api('GET', `/api/ports/${id}`),
                api('GET', '/api/summary').catch(() => null),
                api('GET', '/api/ports').catch(() => ({ ports: [] })),
            ]);
            port = data.port;
            port.seenAt = Date.now();
            fig = summary && (summary.ports || []).find((p) => p.id === id) || null;
            currency = (summary && summary.currency) || currency;
            others = (list.ports || []).filter((p) => p.id !== id);
            shown = statusNow(port);
            document.title = `${port.name} · PhantomWatch`;
            renderHead();
            renderConnect();
            renderFacts();
            renderCompare();
            if (episodesLoaded)
                renderEpisodes(episodesMore);
            return true;
        } catch (error) {
            if (error.status === 404)
                mount(head, h('div', { class: 'empty' }, h('h1', {}, 'Port not found'),
                    h('p', {}, h('a', { href: '#/ports' }, 'Back to ports'))));
            else
                showError(alert, error);
            return false;
        }
    }

    function reload () {
        loadPort().then((ok) => { if (ok) loadSeries(); });
        loadEpisodes();
        energy.load();
    }

    //  ---------------------------------------------------------------------
    //  Chart: range, navigation, zoom, compare, export

    //  The window on screen, ms.
    function windowMs () {
        if (zoom)
            return { ...zoom };
        const to = end === null ? Date.now() : end;
        return { from: to - range.seconds * 1000, to };
    }

    const following = () => end === null && !zoom;

    function renderRanges () {
        mount(rangeBar,
            RANGES.map((r) => h('button', {
                type: 'button', class: 'btn btn-small', 'aria-pressed': String(r === range),
                'data-testid': `range-${r.key}`,
                onclick: () => { range = r; end = null; zoom = null; customBox.hidden = true; renderRanges(); loadSeries(); },
            }, r.label)),
            h('button', { type: 'button', class: 'btn btn-small', 'aria-pressed': String(range.key === 'custom'),
                          'aria-expanded': String(!customBox.hidden), 'data-testid': 'range-custom',
                          onclick: () => { customBox.hidden = !customBox.hidden; renderCustom(); renderRanges(); } },
              'Custom…'));
    }

    function renderNav () {
        const w = windowMs();
        const atNow = end === null;
        mount(navBar,
            h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'range-back',
                          'aria-label': `Back ${range.label || ''}`.trim(),
                          onclick: () => move(-1) }, '‹ Back'),
            h('span', { class: 'range-label', 'data-testid': 'range-label' },
              `${fmtTime(w.from)} – ${following() ? 'now' : fmtTime(w.to)}`,
              h('span', { class: 'muted small' }, ` (${zoneLabel()})`)),
            h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'range-forward',
                          disabled: atNow && !zoom, 'aria-label': `Forward ${range.label || ''}`.trim(),
                          onclick: () => move(1) }, 'Forward ›'),
            end !== null ? h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'range-now',
                                         onclick: () => { end = null; zoom = null; renderRanges(); loadSeries(); } },
                             'Back to now') : null,
            zoom ? h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'reset-zoom',
                                 onclick: () => { zoom = null; loadSeries(); } }, 'Reset zoom') : null);
    }

    //  Back/forward by the range's length (of the zoom's when zoomed in).
    function move (direction) {
        const w = windowMs();
        const span = w.to - w.from;
        if (zoom) {
            zoom = { from: w.from + direction * span, to: w.to + direction * span };
        } else {
            //  Forward into the last minute is "now" again (and live).
            const next = w.to + direction * span;
            end = next >= Date.now() - 60000 ? null : next;
        }
        loadSeries();
    }

    function renderCustom () {
        if (customBox.hidden)
            return;
        const w = windowMs();
        const from = h('input', { type: 'datetime-local', value: toLocalInput(w.from), 'data-testid': 'custom-from' });
        const to = h('input', { type: 'datetime-local', value: toLocalInput(w.to), 'data-testid': 'custom-to' });
        const form = h('form', { class: 'custom-range', novalidate: true, 'data-testid': 'custom-form',
            onsubmit: (event) => {
                event.preventDefault();
                const a = fromLocalInput(from.value);
                const b = fromLocalInput(to.value);
                const errors = {};
                if (a === null)
                    errors.from = 'Enter the start date and time.';
                if (b === null)
                    errors.to = 'Enter the end date and time.';
                else if (a !== null && b <= a)
                    errors.to = 'The end must be after the start.';
                else if (a !== null && b - a > MAX_SPAN_DAYS * 86400000)
                    errors.to = `Choose at most ${MAX_SPAN_DAYS} days.`;
                if (!showFieldErrors(form, errors))
                    return;
                range = { key: 'custom', label: '', seconds: (b - a) / 1000 };
                end = b >= Date.now() ? null : b;
                zoom = null;
                renderRanges();
                loadSeries();
            } },
            field({ name: 'from', label: `From (${zoneLabel()})`, input: from }),
            field({ name: 'to', label: 'To', input: to }),
            h('button', { type: 'submit', class: 'btn btn-primary btn-small', 'data-testid': 'custom-show' }, 'Show'));
        mount(customBox, form);
    }

    function renderCompare () {
        if (!others.length) {
            mount(compareBox);
            compareBox.hidden = true;
            return;
        }
        compareBox.hidden = false;
        mount(compareBox,
            h('summary', {}, compare.size ? `Comparing with ${compare.size} port${compare.size === 1 ? '' : 's'}`
                                          : 'Compare with other ports'),
            h('div', { class: 'compare-list' }, others.map((p) => h('label', { class: 'check' },
                h('input', { type: 'checkbox', value: p.id, checked: compare.has(p.id),
                             disabled: !compare.has(p.id) && compare.size >= MAX_COMPARE,
                             'data-testid': 'compare-port',
                             onchange: (event) => {
                                 if (event.target.checked)
                                     compare.add(p.id);
                                 else
                                     compare.delete(p.id);
                                 renderCompare();
                                 compareBox.open = true;
                                 loadSeries();
                             } }),
                ' ', p.name))),
            h('p', { class: 'hint' }, `Up to ${MAX_COMPARE} ports. Each line is its port’s mean power.`));
    }

    function renderExport (w) {
        const params = { step };
        mount(chartExport,
            csvLink(step ? 'CSV of this range (min/mean/max)' : 'CSV of this range',
                    csvHref(`/api/ports/${id}/readings.csv`, w.from, w.to, params), 'export-port-readings'),
            step ? csvLink('CSV, every reading', csvHref(`/api/ports/${id}/readings.csv`, w.from, w.to, { step: 0 }),
                           'export-port-raw') : null);
        mount(episodesExport,
            csvLink('CSV of this range', csvHref(`/api/ports/${id}/episodes.csv`, w.from, w.to), 'export-port-episodes'));
    }

    async function fetchSeries (portId, w, wantStep) {
        const query = new URLSearchParams({ from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString() });
        if (wantStep)
            query.set('step', String(wantStep));
        const data = await api('GET', `/api/ports/${portId}/readings?${query}`);
        const gap = Number(data.gapSeconds) || 300;
        const usedStep = wantStep ? Number(data.step) || wantStep : 0;
        const table = usedStep ? bucketTable(data.buckets || [], usedStep, gap) : rawTable(data.readings || [], gap);
        return { table, step: usedStep, gap, truncated: Boolean(data.truncated) };
    }

    async function loadSeries () {
        const serial = ++loadSerial;
        loadedAt = Date.now();
        const w = windowMs();
        const want = stepFor((w.to - w.from) / 1000);
        renderNav();
        renderExport(w);
        try {
            const ids = [id, ...[...compare].filter((p) => others.some((o) => o.id === p))];
            const results = await Promise.all(ids.map((p) => fetchSeries(p, w, want)));
            if (serial !== loadSerial)
                return;                 //  a newer request won
            step = results[0].step;
            gapSeconds = results[0].gap;
            series = new Map(ids.map((p, i) => {
                const name = p === id ? (port ? port.name : 'This port') : (others.find((o) => o.id === p) || {}).name;
                let table = results[i].table;
                //  Compared ports show their mean only.
                if (p !== id && results[i].step)
                    table = [table[0], table[2]];
                return [p, { label: name, table }];
            }));
            model = { from: w.from / 1000, to: w.to / 1000, band: step > 0, tables: [...series.values()] };
            renderExport(w);
            mount(chartNote, step
                ? `Each point is ${fmtDuration(step * 1000)}: the line is the mean, the band the lowest and highest reading. `
                  + 'Drag across the chart to zoom in.'
                : 'Every reading. Drag across the chart to zoom in.',
                results[0].truncated ? ' Only the newest readings of this range are shown; zoom in for the rest.' : '');
            draw();
        } catch (error) {
            if (serial === loadSerial)
                showError(alert, error);
        }
    }

    function draw () {
        if (!model)
            return;
        const primary = model.tables[0].table;
        const points = countPoints(model.band ? primary[2] : primary[1]);
        chartBox.dataset.points = String(points);
        chartBox.dataset.step = String(step);
        chartBox.dataset.range = range.key;
        const w = windowMs();
        chartBox.setAttribute('aria-label', `Power of ${model.tables.map((t) => t.label).join(', ')} from `
            + `${fmtTime(w.from)} to ${fmtTime(w.to)}: ${points} points`);
        const anything = model.tables.some((t) => countPoints(t.table[t.table.length > 2 ? 2 : 1]) > 0);
        if (!anything) {
            chart.destroy();
            mount(chartBox, h('p', { class: 'empty chart-empty', 'data-testid': 'chart-empty' },
                shown === 'waiting' ? 'Waiting for its first reading. It appears here as soon as it arrives.'
                    : 'No readings in this range.', following() ? '' : ' Try another range.'));
            return;
        }
        if (!chartBox.querySelector('.uplot'))
            chart.destroy();
        chart.draw(model);
    }

    //  Redraws at most once a frame however fast readings arrive.
    function schedule () {
        if (pending)
            return;
        pending = true;
        requestAnimationFrame(() => { pending = false; draw(); });
    }

    //  ---------------------------------------------------------------------
    //  Episodes


    async function loadEpisodes (older = false) {
        try {
            const before = older && episodes.length ? `&before=${encodeURIComponent(episodes[episodes.length - 1].id)}` : '';
            const data = await api('GET', `/api/ports/${id}/episodes?limit=${EPISODES_PAGE}${before}`);
            const page = data.episodes || [];
            episodes = older ? episodes.concat(page) : page;
            episodesLoaded = true;
            episodesMore = page.length === EPISODES_PAGE;
            renderEpisodes(episodesMore);
        } catch (error) {
            showError(episodesBox, error);
        }
    }

    function renderEpisodes (hasMore) {
        if (!episodes.length) {
            mount(episodesBox, h('p', { class: 'empty', 'data-testid': 'episodes-empty' },
                role() === 'alwaysOn' ? 'None: this port is on by design, so it is never phantom.'
                    : 'No phantom episodes yet.'));
            return;
        }
        mount(episodesBox, h('table', { class: 'table responsive', 'data-testid': 'episodes' },
            h('thead', {}, h('tr', {}, ['Start', 'Duration', 'Mean', 'Peak', 'Energy', 'Cost']
                .map((label, i) => h('th', { scope: 'col', class: i > 1 ? 'num' : undefined }, label)))),
            h('tbody', {}, episodes.map((e) => {
                const open = e.open || !e.end;
                const endMs = open ? Date.now() : new Date(e.end).getTime();
                return h('tr', { 'data-testid': 'episode' },
                    h('td', { 'data-label': 'Start' }, fmtTime(e.start)),
                    h('td', { 'data-label': 'Duration' }, open
                        ? h('span', {}, h('span', { class: 'badge badge-phantom' }, 'ongoing'), ' ',
                            fmtDuration(endMs - new Date(e.start).getTime()))
                        : fmtDuration(endMs - new Date(e.start).getTime())),
                    h('td', { 'data-label': 'Mean', class: 'num' }, fmtWatts(e.meanWatts)),
                    h('td', { 'data-label': 'Peak', class: 'num' }, fmtWatts(e.peakWatts)),
                    h('td', { 'data-label': 'Energy', class: 'num' },
                      e.energyWh !== undefined && e.energyWh !== null ? fmtKwh(e.energyWh / 1000) : '–'),
                    h('td', { 'data-label': 'Cost', class: 'num' }, fmtMoney(e.cost, e.currency || currency)));
            }))),
            hasMore ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'episodes-older',
                                    onclick: () => loadEpisodes(true) }, 'Show older') : null);
    }

    //  ---------------------------------------------------------------------
    //  Live

    let figuresTimer = null;
    function reloadFigures () {
        clearTimeout(figuresTimer);
        figuresTimer = setTimeout(() => { loadPort(); loadEpisodes(); }, 1500);
    }

    onLeave(live('reading', (r) => {
        const t = new Date(r.ts).getTime() / 1000;
        const p = Number(r.power);
        if (!Number.isFinite(t) || !Number.isFinite(p))
            return;
        if (r.portId === id && port) {
            const was = shown;
            port.lastPower = p;
            port.seenAt = Date.now();
            if (!port.lastReadingAt || new Date(port.lastReadingAt).getTime() <= t * 1000)
                port.lastReadingAt = r.ts;
            if (r.status && r.status !== port.status) {
                port.status = r.status;
                reloadFigures();
            }
            if (was === 'waiting')
                reloadFigures();
            refreshShown();
            renderFacts();
        }
        //  Live appends only while the chart shows raw readings up to now.
        const s = series.get(r.portId);
        if (!s || !model || step !== 0 || !following())
            return;
        const now = Date.now() / 1000;
        model.to = now;
        model.from = now - range.seconds;
        appendReading(s.table, t, p, gapSeconds, model.from);
        schedule();
    }));
    onLeave(live('status', (s) => {
        if (s.portId === id && port) {
            port.status = s.status;
            port.statusSince = s.ts;
            refreshShown();
            renderFacts();
            reloadFigures();
        }
    }));
    onLeave(live('phantom', (e) => { if (e.portId === id) reloadFigures(); }));
    onLeave(live('resync', reload));

    //  The clock: "last reading" moves on, a silent port turns offline, and
    //  a chart following now slides so that the silence shows as a gap.
    onLeave(onTick((now) => {
        if (!port)
            return;
        refreshShown(now);
        renderFacts(now);
        if (model && following() && step === 0) {
            model.to = now / 1000;
            model.from = model.to - range.seconds;
            schedule();
        } else if (model && following() && now - loadedAt > BUCKETS_REFRESH_MS) {
            //  Buckets are not appended to: the range up to now is read again.
            loadSeries();
        }
    }));

    const resize = new ResizeObserver(() => chart.resize());
    resize.observe(chartBox);
    onLeave(onSchemeChange(() => chart.restyle()));
    onLeave(() => { resize.disconnect(); chart.destroy(); clearTimeout(figuresTimer); });

    renderRanges();
    loadPort().then((ok) => { if (ok) loadSeries(); });
    loadEpisodes();
}
