//  Energy used per day, week or month as bars, the phantom part marked:
//  /api/energy (all ports, the overview) or /api/ports/:id/energy.
import { h, mount } from '../dom.js';
import { api } from '../api.js';
import { state } from '../state.js';
import { fmtKwh, fmtMoney, startOfDay, startOfMonth, startOfWeek } from '../format.js';
import { energyChart, onSchemeChange } from '../chart.js';
import { showError } from '../ui.js';

const PERIODS = [
    { key: 'day', label: 'Days', window: 'the last 30 days', from: (now) => startOfDay(now, -29) },
    { key: 'week', label: 'Weeks', window: 'the last 12 weeks', from: (now) => startOfWeek(now, -11) },
    { key: 'month', label: 'Months', window: 'the last 12 months', from: (now) => startOfMonth(now, -11) },
];

export function energyCard ({ path, title, onLeave }) {
    let period = PERIODS[0];
    const bar = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Bars per' });
    const box = h('div', { class: 'chart chart-bars', 'data-testid': 'energy-chart', role: 'img' });
    const sum = h('p', { class: 'stat-sub', 'data-testid': 'energy-total' });
    const alert = h('div', {});
    const chart = energyChart(box);
    const el = h('section', { class: 'card', 'data-testid': 'energy-card' },
        h('div', { class: 'card-head' }, h('h2', {}, title), bar),
        alert, box,
        h('div', { class: 'legend-row' },
            h('span', { class: 'key key-used' }, 'Used'),
            h('span', { class: 'key key-phantom' }, 'of which phantom (waste)'),
            sum));

    function renderBar () {
        mount(bar, PERIODS.map((p) => h('button', {
            type: 'button', class: 'btn btn-small', 'aria-pressed': String(p === period),
            'data-testid': `energy-${p.key}`, onclick: () => { period = p; renderBar(); load(); },
        }, p.label)));
    }

    async function load () {
        const now = Date.now();
        const query = new URLSearchParams({ period: period.key, from: new Date(period.from(now)).toISOString(),
                                            to: new Date(now).toISOString() });
        try {
            const data = await api('GET', `${path}?${query}`);
            const all = data.buckets || [];
            //  A young account: the bars start where its data does (at
            //  least a week of them), not with weeks of nothing.
            const first = all.findIndex((b) => Number(b.energyKwh) > 0 || Number(b.phantomKwh) > 0);
            const buckets = first < 0 ? all : all.slice(Math.max(0, Math.min(first, all.length - 7)));
            const currency = data.currency || state.settings.currency;
            showError(alert, null);
            box.dataset.bars = String(buckets.length);
            const used = buckets.reduce((s, b) => s + (Number(b.energyKwh) || 0), 0);
            const phantom = buckets.reduce((s, b) => s + (Number(b.phantomKwh) || 0), 0);
            const cost = buckets.reduce((s, b) => s + (Number(b.phantomCost) || 0), 0);
            box.setAttribute('aria-label', `Energy per ${period.key} over ${period.window}: ${fmtKwh(used)} used, `
                + `${fmtKwh(phantom)} of it phantom`);
            mount(sum, `Over ${period.window}: ${fmtKwh(used)} used, ${fmtKwh(phantom)} phantom (${fmtMoney(cost, currency)}).`);
            if (!buckets.length || (used === 0 && phantom === 0)) {
                chart.destroy();
                mount(box, h('p', { class: 'empty chart-empty' }, 'No energy measured in this window yet.'));
                return;
            }
            chart.draw(buckets, period.key, currency);
        } catch (error) {
            showError(alert, error);
        }
    }

    const resize = new ResizeObserver(() => chart.resize());
    resize.observe(box);
    onLeave(() => { resize.disconnect(); chart.destroy(); });
    onLeave(onSchemeChange(() => chart.restyle()));
    renderBar();
    load();
    return { el, load };
}
