//  Weekly windows ({days: ['mon', ...], from: 'HH:MM', to: 'HH:MM'}): the
//  editor shared by a port's "should be off" schedule and a tariff's peak
//  hours, and the sentence that describes them. A window belongs to the
//  days it starts on; one whose "to" is at or before its "from" runs into
//  the next day.
import { h, mount } from './dom.js';
import { DAYS, dayName } from './format.js';

const TIME = /^([01]\d|2[0-3]):[0-5]\d$/;

function clockText (hhmm) {
    const [hour, minute] = hhmm.split(':').map(Number);
    return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' })
        .format(Date.UTC(2024, 0, 1, hour, minute));
}

function daysText (days) {
    const set = DAYS.filter((d) => days.includes(d));
    if (set.length === 7)
        return 'every day';
    //  Runs of consecutive days: Mon–Fri, Sat, Sun.
    const parts = [];
    for (let i = 0; i < set.length;) {
        let j = i;
        while (j + 1 < set.length && DAYS.indexOf(set[j + 1]) === DAYS.indexOf(set[j]) + 1)
            j++;
        parts.push(j - i >= 2 ? `${dayName(set[i])}–${dayName(set[j])}`
            : set.slice(i, j + 1).map((d) => dayName(d)).join(', '));
        i = j + 1;
    }
    return parts.join(', ');
}

//  "Mon–Fri 09:00–17:00; every day 22:00–07:00 (into the next day)".
export function describeSchedule (windows) {
    if (!Array.isArray(windows) || !windows.length)
        return '';
    return windows.map((w) => `${daysText(w.days || [])} ${clockText(w.from)}–${clockText(w.to)}`
        + (w.to <= w.from && w.to !== '00:00' ? ' (into the next day)' : '')).join('; ');
}

const PRESETS = {
    nights: { label: 'Nights 22:00–07:00', window: { days: [...DAYS], from: '22:00', to: '07:00' } },
    workdays: { label: 'Weekdays 09:00–17:00', window: { days: DAYS.slice(0, 5), from: '09:00', to: '17:00' } },
    evenings: { label: 'Weekday evenings 17:00–21:00',
                window: { days: DAYS.slice(0, 5), from: '17:00', to: '21:00' } },
};

let serial = 0;

//  scheduleEditor({windows, max, presets, testid}) -> {el, read, focus}.
//  read() gives {value: [...]} or {error} (a sentence naming the window).
export function scheduleEditor ({ windows, max = 4, presets = ['nights', 'workdays'], testid = 'schedule',
                                  emptyText = 'Add at least one window, or choose “always”.' }) {
    const id = `sched-${++serial}`;
    let rows = (Array.isArray(windows) && windows.length ? windows : []).map((w) => ({ ...w, days: [...w.days] }));
    const list = h('div', { class: 'windows', 'data-testid': `${testid}-windows` });
    const addBar = h('div', { class: 'window-add' });
    const el = h('div', { class: 'schedule', 'data-testid': testid }, list, addBar);

    function row (w, index) {
        const dayBoxes = DAYS.map((d) => {
            const box = h('input', { type: 'checkbox', value: d, checked: w.days.includes(d),
                                     'data-testid': `${testid}-day-${d}`,
                                     onchange: () => { w.days = DAYS.filter((x) => x === d ? box.checked : w.days.includes(x)); } });
            return h('label', { class: 'day', title: dayName(d, 'long') }, box,
                     h('span', { 'aria-hidden': 'true' }, dayName(d)),
                     h('span', { class: 'sr-only' }, dayName(d, 'long')));
        });
        const fromId = `${id}-${index}-from`;
        const toId = `${id}-${index}-to`;
        const from = h('input', { id: fromId, type: 'time', value: w.from || '', required: true,
                                  'data-testid': `${testid}-from`, oninput: () => { w.from = from.value.slice(0, 5); note(); } });
        const to = h('input', { id: toId, type: 'time', value: w.to || '', required: true,
                                'data-testid': `${testid}-to`, oninput: () => { w.to = to.value.slice(0, 5); note(); } });
        const overnight = h('p', { class: 'hint' });
        const note = () => {
            overnight.textContent = w.from && w.to && w.to <= w.from && w.to !== '00:00'
                ? 'Runs past midnight into the next day.' : '';
        };
        note();
        return h('fieldset', { class: 'window', 'data-testid': `${testid}-window` },
            h('legend', {}, `Window ${index + 1}`),
            h('div', { class: 'days', role: 'group', 'aria-label': `Days window ${index + 1} starts on` }, dayBoxes),
            h('div', { class: 'window-times' },
                h('label', { for: fromId }, 'From'), from,
                h('label', { for: toId }, 'to'), to,
                h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': `${testid}-remove`,
                              'aria-label': `Remove window ${index + 1}`,
                              onclick: () => { rows.splice(index, 1); render(); } }, 'Remove')),
            overnight);
    }

    function add (w) {
        if (rows.length >= max)
            return;
        rows.push({ ...w, days: [...w.days] });
        render();
        const last = list.lastElementChild;
        const first = last && last.querySelector('input');
        if (first)
            first.focus();
    }

    function render () {
        mount(list, rows.length ? rows.map(row)
            : h('p', { class: 'hint' }, 'No windows yet. Add one below.'));
        const full = rows.length >= max;
        mount(addBar,
            h('button', { type: 'button', class: 'btn btn-small', disabled: full, 'data-testid': `${testid}-add`,
                          onclick: () => add({ days: DAYS.slice(0, 5), from: '09:00', to: '17:00' }) },
              'Add a window'),
            presets.map((key) => h('button', { type: 'button', class: 'btn btn-small btn-ghost', disabled: full,
                                               'data-testid': `${testid}-preset-${key}`,
                                               onclick: () => add(PRESETS[key].window) },
                                   `+ ${PRESETS[key].label}`)),
            full ? h('span', { class: 'hint' }, `At most ${max} windows.`) : null);
    }

    function read () {
        if (!rows.length)
            return { error: emptyText };
        const value = [];
        for (const [index, w] of rows.entries()) {
            const n = `Window ${index + 1}`;
            if (!w.days.length)
                return { error: `${n}: tick at least one day.` };
            if (!TIME.test(w.from || '') || !TIME.test(w.to || ''))
                return { error: `${n}: enter both times (hours and minutes).` };
            if (w.from === w.to)
                return { error: `${n}: the start and the end must differ.` };
            value.push({ days: DAYS.filter((d) => w.days.includes(d)), from: w.from, to: w.to });
        }
        return { value };
    }

    render();
    return { el, read };
}
