//  Overview: phantom power now, waste today and per year, ports by status.
import { h, mount, badge, fmtWatts, fmtKwh, fmtMoney, STATUSES } from '../dom.js';
import { live, optional } from '../api.js';
import { state } from '../state.js';
import { showError } from '../ui.js';

function stat (label, value, sub, testid) {
    return h('div', { class: 'card stat' },
        h('p', { class: 'stat-label' }, label),
        h('p', { class: 'stat-value', 'data-testid': testid }, value),
        sub ? h('p', { class: 'stat-sub' }, sub) : null);
}

export function overviewView (main, onLeave) {
    const body = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading…'));
    mount(main, h('div', { class: 'page-head' }, h('h1', {}, 'Overview')), body);

    let ports = [];
    let total = {};
    let summaryCurrency = null;
    let timer = null;

    async function load () {
        try {
            const [summary, list] = await Promise.all([
                optional('/api/summary', null),
                optional('/api/ports', { ports: [] }),
            ]);
            total = (summary && summary.total) || {};
            summaryCurrency = summary && summary.currency;
            //  The summary's per-port rows carry the money; the port list
            //  carries every port even when the summary is not there yet.
            const byId = new Map(((summary && summary.ports) || []).map((p) => [p.id, p]));
            ports = (list.ports || []).map((p) => ({
                ...byId.get(p.id), id: p.id, name: p.name,
                status: p.status || (byId.get(p.id) || {}).status,
                watts: (byId.get(p.id) || {}).watts ?? p.lastPower,
            }));
            if (!list.ports || !list.ports.length)
                ports = (summary && summary.ports) || [];
            render();
        } catch (error) {
            showError(body, error);
        }
    }

    function render () {
        const currency = summaryCurrency || total.currency || state.currency;
        const phantomNow = total.phantomWattsNow ?? ports
            .filter((p) => p.status === 'phantom').reduce((sum, p) => sum + (Number(p.watts) || 0), 0);
        const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
        for (const p of ports)
            counts[p.status] = (counts[p.status] || 0) + 1;

        mount(body,
            h('div', { class: 'stats' },
                stat('Phantom power now', fmtWatts(phantomNow), 'drawn by appliances that should be off',
                     'total-phantom-watts'),
                stat('Wasted today', fmtMoney(total.todayCost, currency), fmtKwh(total.todayKwh),
                     'today-cost'),
                stat('Projected per year', fmtMoney(total.yearCost ?? total.yearCostProjected, currency),
                     fmtKwh(total.yearKwh ?? total.yearKwhProjected),
                     'year-cost')),
            h('section', { class: 'card' },
                h('h2', {}, 'Ports by status'),
                h('ul', { class: 'status-counts', 'data-testid': 'status-counts' },
                    STATUSES.map((s) => h('li', {}, badge(s), h('strong', { 'data-testid': `count-${s}` },
                                                              String(counts[s] || 0)))))),
            h('section', { class: 'card' },
                h('h2', {}, 'Ports'),
                ports.length ? portTable(ports, currency) : h('div', { class: 'empty' },
                    h('p', {}, 'No ports yet.'),
                    h('p', {}, 'Create a device and its token in ', h('a', { href: '#/devices' }, 'Devices'),
                      ', then a port in ', h('a', { href: '#/ports' }, 'Ports'), '.'))));
    }

    function portTable (rows, currency) {
        return h('table', { class: 'table responsive', 'data-testid': 'overview-ports' },
            h('thead', {}, h('tr', {},
                h('th', { scope: 'col' }, 'Port'), h('th', { scope: 'col' }, 'Status'),
                h('th', { scope: 'col', class: 'num' }, 'Now'),
                h('th', { scope: 'col', class: 'num' }, 'Always on'),
                h('th', { scope: 'col', class: 'num' }, 'Today'),
                h('th', { scope: 'col', class: 'num' }, 'Per year'))),
            h('tbody', {}, rows.map((p) => h('tr', { 'data-port': p.id },
                h('td', { 'data-label': 'Port' }, h('a', { href: `#/ports/${p.id}` }, p.name || p.id)),
                h('td', { 'data-label': 'Status' }, badge(p.status, 'port-status')),
                h('td', { 'data-label': 'Now', class: 'num', 'data-field': 'watts' }, fmtWatts(p.watts)),
                h('td', { 'data-label': 'Always on', class: 'num' }, fmtWatts(p.alwaysOnWatts)),
                h('td', { 'data-label': 'Today', class: 'num' }, fmtKwh(p.todayKwh)),
                h('td', { 'data-label': 'Per year', class: 'num' },
                  fmtMoney(p.yearCost ?? p.yearCostProjected, currency))))));
    }

    //  Live: readings update the "now" column in place; status changes
    //  re-read the summary (debounced, so a burst costs one request).
    onLeave(live('reading', (r) => {
        const port = ports.find((p) => p.id === r.portId);
        if (!port)
            return;
        port.watts = r.power;
        const cell = body.querySelector(`tr[data-port="${CSS.escape(r.portId)}"] [data-field=watts]`);
        if (cell)
            cell.textContent = fmtWatts(r.power);
        if (r.status && r.status !== port.status)
            schedule();
    }));
    onLeave(live('status', schedule));
    onLeave(live('resync', load));
    function schedule () {
        clearTimeout(timer);
        timer = setTimeout(load, 1500);
    }
    const poll = setInterval(load, 60000);
    onLeave(() => { clearTimeout(timer); clearInterval(poll); });
    load();
}
