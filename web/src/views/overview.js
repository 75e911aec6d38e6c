//  Overview: phantom power now, the waste of today, of the last 30 days and
//  per year, energy per day/week/month, every port with its figures.
import { h, mount, badge, statusNow, STATUSES, ROLES } from '../dom.js';
import { api, live } from '../api.js';
import { onTick } from '../state.js';
import { fmtKwh, fmtMoney, fmtSpan, fmtWatts, zoneLabel } from '../format.js';
import { showError } from '../ui.js';
import { yearFigure, nowFigure, wasteFigure } from './figures.js';
import { energyCard } from './energy.js';
import { exportCard } from './export.js';

function stat (label, value, sub, testid) {
    return h('div', { class: 'card stat', 'data-testid': testid },
        h('p', { class: 'stat-label' }, label),
        h('p', { class: 'stat-value' }, value),
        sub ? h('p', { class: 'stat-sub' }, sub) : null);
}

export function overviewView (main, onLeave) {
    const alert = h('div', {});
    const stats = h('div', { class: 'stats' }, h('p', { class: 'muted' }, 'Loading…'));
    const counts = h('ul', { class: 'status-counts', 'data-testid': 'status-counts' });
    const table = h('div', {});
    const energy = energyCard({ path: '/api/energy', title: 'Energy used, all ports', onLeave });
    mount(main,
        h('div', { class: 'page-head' }, h('h1', {}, 'Overview'),
          h('p', { class: 'muted', 'data-testid': 'overview-context' })),
        alert, stats,
        h('section', { class: 'card' }, h('h2', {}, 'Ports by status'), counts),
        h('section', { class: 'card' }, h('h2', {}, 'Ports'), table),
        energy.el,
        exportCard());

    let summary = null;
    let timer = null;

    async function load () {
        try {
            const [s, list] = await Promise.all([api('GET', '/api/summary'), api('GET', '/api/ports')]);
            const extra = new Map((list.ports || []).map((p) => [p.id, p]));
            const now = Date.now();
            for (const p of s.ports || []) {
                p.offlineAfterSeconds = (extra.get(p.id) || {}).offlineAfterSeconds;
                p.seenAt = now;
            }
            summary = s;
            showError(alert, null);
            render();
        } catch (error) {
            showError(alert, error);
        }
    }

    //  Phantom power now counts only ports that are phantom now (an
    //  offline one is not, even before the server says so).
    function phantomWatts () {
        return (summary.ports || []).filter((p) => p.shownStatus === 'phantom')
            .reduce((sum, p) => sum + (Number(p.watts) || 0), 0);
    }

    //  The status each port shows now (see statusNow), kept on the row.
    function refreshStatus (now = Date.now()) {
        let changed = false;
        for (const p of summary.ports || []) {
            const s = statusNow(p, now);
            changed = changed || s !== p.shownStatus;
            p.shownStatus = s;
        }
        return changed;
    }

    function render () {
        if (!summary)
            return;
        refreshStatus();
        const list = summary.ports || [];
        const currency = summary.currency;
        const total = summary.total || {};
        const today = total.today || {};
        const last30 = total.last30 || {};
        const year = total.year || {};
        const tally = Object.fromEntries(STATUSES.map((s) => [s, 0]));
        for (const p of list)
            tally[p.shownStatus] = (tally[p.shownStatus] || 0) + 1;
        const phantomNow = phantomWatts();

        mount(main.querySelector('[data-testid=overview-context]'),
            `Times in ${zoneLabel()}, money in ${currency}. “Today” began at local midnight.`);

        const learning = year.phantomKwh === null || year.phantomKwh === undefined;
        const yearPorts = list.filter((p) => p.role !== 'alwaysOn' && p.year && !p.year.learning
                                             && p.year.phantomKwh !== null);
        const hours = yearPorts.map((p) => Number(p.year.reportedHours) || 0);
        const windowText = hours.length
            ? (Math.round(Math.min(...hours) / 24) === Math.round(Math.max(...hours) / 24) || Math.max(...hours) < 48
                ? `from ${fmtSpan(Math.max(...hours))} of data`
                : `from ${fmtSpan(Math.min(...hours))} to ${fmtSpan(Math.max(...hours))} of data per port`)
            : '';
        const maxHours = Math.max(0, ...list.map((p) => Number(p.year && p.year.reportedHours) || 0));

        mount(stats,
            stat('Phantom power now', h('span', { 'data-testid': 'total-phantom-watts' }, fmtWatts(phantomNow)),
                 `drawn right now by ${tally.phantom} port${tally.phantom === 1 ? '' : 's'} wasting power`, 'stat-now'),
            stat('Wasted today', h('span', { 'data-testid': 'today-cost' }, fmtMoney(today.phantomCost, currency)),
                 [h('span', { 'data-testid': 'today-kwh' }, fmtKwh(today.phantomKwh)),
                  ` since midnight, of ${fmtKwh(today.energyKwh)} used`], 'stat-today'),
            stat('Wasted in the last 30 days',
                 h('span', { 'data-testid': 'last30-cost' }, fmtMoney(last30.phantomCost, currency)),
                 [h('span', { 'data-testid': 'last30-kwh' }, fmtKwh(last30.phantomKwh)),
                  ` of ${fmtKwh(last30.energyKwh)} used`], 'stat-last30'),
            learning
                ? stat('Projected per year',
                       h('span', { class: 'learning', 'data-testid': 'learning' },
                         `learning (${Math.floor(maxHours)} h of data)`),
                       'A projection needs 24 hours of readings from a port.', 'stat-year')
                : stat('Projected per year',
                       [h('span', { 'data-testid': 'year-cost' }, fmtMoney(year.phantomCost, currency)),
                        h('span', { class: 'stat-unit' }, ' a year')],
                       [h('span', { 'data-testid': 'year-kwh' }, fmtKwh(year.phantomKwh)), ` a year, ${windowText}`,
                        year.learningPorts ? h('span', { 'data-testid': 'year-learning-ports' },
                            ` · ${year.learningPorts} port${year.learningPorts === 1 ? '' : 's'} still learning`) : null],
                       'stat-year'));

        mount(counts, STATUSES.map((s) => h('li', {}, badge(s),
            h('strong', { 'data-testid': `count-${s}` }, String(tally[s] || 0)))));

        if (!list.length) {
            mount(table, h('div', { class: 'empty' },
                h('p', {}, 'No ports yet.'),
                h('p', {}, 'Create a device and its token in ', h('a', { href: '#/devices' }, 'Devices'),
                  ', then a port in ', h('a', { href: '#/ports' }, 'Ports'), '.')));
            return;
        }
        mount(table, h('table', { class: 'table responsive', 'data-testid': 'overview-ports' },
            h('thead', {}, h('tr', {},
                h('th', { scope: 'col' }, 'Port'), h('th', { scope: 'col' }, 'Status'),
                h('th', { scope: 'col', class: 'num' }, 'Now'),
                h('th', { scope: 'col', class: 'num' }, 'Lowest steady draw'),
                h('th', { scope: 'col', class: 'num' }, 'Wasted today'),
                h('th', { scope: 'col', class: 'num' }, 'Waste per year'))),
            h('tbody', {}, list.map((p) => h('tr', { 'data-port': p.id, 'data-testid': 'overview-port' },
                h('td', { 'data-label': 'Port' }, h('span', {}, h('a', { href: `#/ports/${p.id}` }, p.name || p.id),
                  h('span', { class: 'role-chip', 'data-testid': 'port-role' }, ROLES[p.role] || ROLES.standby))),
                h('td', { 'data-label': 'Status', 'data-field': 'status' }, badge(p.shownStatus, 'port-status')),
                h('td', { 'data-label': 'Now', class: 'num', 'data-field': 'watts' }, nowFigure(p.watts, p.shownStatus)),
                h('td', { 'data-label': 'Lowest steady draw', class: 'num', title: 'Information, not waste' },
                  h('span', { 'data-testid': 'port-lowest' }, fmtWatts(p.lowestSteadyWatts))),
                h('td', { 'data-label': 'Wasted today', class: 'num' },
                  p.role === 'alwaysOn' ? h('span', { class: 'by-design' }, 'on by design')
                      : wasteFigure(p.today, currency, 'port-today')),
                h('td', { 'data-label': 'Waste per year', class: 'num' },
                  yearFigure(p.year, p.role, currency, { withWindow: false })))))));
    }

    //  Live: readings update "now" in place; status changes re-read the
    //  summary (debounced, so a burst costs one request).
    onLeave(live('reading', (r) => {
        const port = summary && (summary.ports || []).find((p) => p.id === r.portId);
        if (!port)
            return;
        port.watts = r.power;
        port.lastReadingAt = r.ts;
        port.seenAt = Date.now();
        const statusChanged = r.status && r.status !== port.status;
        if (r.status)
            port.status = r.status;
        if (statusChanged || statusNow(port) !== port.shownStatus) {
            render();
            schedule();
            return;
        }
        const cell = table.querySelector(`tr[data-port="${CSS.escape(r.portId)}"] [data-field=watts]`);
        if (cell)
            mount(cell, nowFigure(r.power, port.shownStatus));
        const total = stats.querySelector('[data-testid=total-phantom-watts]');
        if (total)
            total.textContent = fmtWatts(phantomWatts());
    }));
    onLeave(live('status', schedule));
    onLeave(live('resync', load));
    //  The clock: a port that went silent turns offline here without
    //  waiting for anyone to tell.
    onLeave(onTick((now) => {
        if (summary && refreshStatus(now))
            render();
    }));
    function schedule () {
        clearTimeout(timer);
        timer = setTimeout(load, 1500);
    }
    const poll = setInterval(load, 60000);
    onLeave(() => { clearTimeout(timer); clearInterval(poll); });
    load();
}
