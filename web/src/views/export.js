//  Download links for CSV exports (plain <a download>: the session cookie
//  goes along). All ports' readings and episodes over a chosen window.
import { h } from '../dom.js';

const WINDOWS = [
    { key: '24h', label: 'Last 24 hours', seconds: 86400 },
    { key: '7d', label: 'Last 7 days', seconds: 7 * 86400 },
    { key: '30d', label: 'Last 30 days', seconds: 30 * 86400 },
    { key: '1y', label: 'Last year', seconds: 365 * 86400 },
];

//  href of an export with from/to (ms) and extra parameters.
export function csvHref (path, from, to, extra = {}) {
    const query = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
    for (const [k, v] of Object.entries(extra))
        query.set(k, String(v));
    return `${path}?${query}`;
}

export function csvLink (label, href, testid) {
    return h('a', { class: 'btn btn-small', href, download: '', 'data-testid': testid }, label);
}

export function exportCard () {
    const select = h('select', { id: 'export-window', 'data-testid': 'export-window' },
        WINDOWS.map((w) => h('option', { value: w.key, selected: w.key === '7d' }, w.label)));
    const readings = csvLink('All readings', '#', 'export-readings');
    const hourly = csvLink('Hourly min/mean/max', '#', 'export-hourly');
    const episodes = csvLink('Phantom episodes', '#', 'export-episodes');
    function update () {
        const w = WINDOWS.find((x) => x.key === select.value) || WINDOWS[1];
        const to = Date.now();
        const from = to - w.seconds * 1000;
        readings.href = csvHref('/api/readings.csv', from, to, { step: 0 });
        hourly.href = csvHref('/api/readings.csv', from, to, { step: 3600 });
        episodes.href = csvHref('/api/episodes.csv', from, to);
    }
    select.addEventListener('change', update);
    const links = h('div', { class: 'button-row' }, readings, hourly, episodes);
    //  The window ends when a link is used, not when the page loaded.
    links.addEventListener('pointerdown', update, true);
    links.addEventListener('focusin', update, true);
    update();
    return h('section', { class: 'card', 'data-testid': 'export-card' },
        h('h2', {}, 'Download your data (CSV)'),
        h('div', { class: 'export-row' },
            h('label', { for: 'export-window' }, 'Window'), select, links),
        h('p', { class: 'hint' }, 'Spreadsheet-ready files of every port, times in UTC and in your time zone.'));
}
