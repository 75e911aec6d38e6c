//  The figures the overview and a port page share, each with its unit and
//  its window (docs/figures-and-api.md).
import { h } from '../dom.js';
import { fmtKwh, fmtMoney, fmtSpan, fmtWatts } from '../format.js';

//  A port's projected waste per year: "on by design" for an always-on
//  port, "learning (N h of data)" before 24 reported hours, else
//  "23.4 kWh / €7.01 a year" and its window.
export function yearFigure (year, role, currency, { withWindow = true } = {}) {
    if (role === 'alwaysOn')
        return h('span', { class: 'by-design', 'data-testid': 'port-year', 'data-state': 'by-design' },
                 'on by design');
    if (!year || year.learning || year.phantomKwh === null || year.phantomKwh === undefined)
        return h('span', { class: 'learning', 'data-testid': 'port-year', 'data-state': 'learning' },
                 `learning (${Math.floor(Number(year && year.reportedHours) || 0)} h of data)`);
    //  A narrow cell breaks the line between the two figures, never
    //  inside one ("€8.97 a" / "year").
    return h('span', { 'data-testid': 'port-year', 'data-state': 'projected' },
        h('span', { class: 'nowrap', 'data-testid': 'port-year-kwh' }, fmtKwh(year.phantomKwh)), ' / ',
        h('span', { class: 'nowrap' }, h('span', { 'data-testid': 'port-year-cost' }, fmtMoney(year.phantomCost, currency)),
          ' a year'),
        withWindow ? h('span', { class: 'window-note' }, `, from ${fmtSpan(year.reportedHours)} of data`) : null);
}

//  Power now: no value for a port that is offline or never reported.
export function nowFigure (watts, status) {
    if (status === 'offline')
        return h('span', { class: 'muted', 'data-testid': 'port-now', 'data-state': 'offline' }, 'offline');
    if (status === 'waiting')
        return h('span', { class: 'muted', 'data-testid': 'port-now', 'data-state': 'waiting' }, 'no reading yet');
    if (watts === null || watts === undefined)
        return h('span', { class: 'muted', 'data-testid': 'port-now', 'data-state': 'none' }, '–');
    return h('span', { 'data-testid': 'port-now', 'data-state': 'live' },
             h('span', { 'data-testid': 'port-power' }, fmtWatts(watts)));
}

//  Waste of a window: "€0.02 (50 Wh)".
export function wasteFigure (part, currency, testid) {
    if (!part)
        return h('span', { 'data-testid': testid }, '–');
    return h('span', { 'data-testid': testid },
             fmtMoney(part.phantomCost, currency), h('span', { class: 'muted' }, ` (${fmtKwh(part.phantomKwh)})`));
}
