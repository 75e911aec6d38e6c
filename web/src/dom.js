//  Tiny DOM helpers. Text always goes in as text nodes, never as HTML, so
//  names and messages from the API cannot inject markup.

//  h('button', {class: 'x', onclick: fn, 'data-testid': 'y'}, 'text', child, ...)
export function h (tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
        if (value === undefined || value === null || value === false)
            continue;
        if (key.startsWith('on') && typeof value === 'function')
            el.addEventListener(key.slice(2), value);
        else if (key === 'value')
            el.value = value;
        else
            el.setAttribute(key, value === true ? '' : String(value));
    }
    append(el, children);
    return el;
}

function append (el, children) {
    for (const child of children.flat(Infinity)) {
        if (child === undefined || child === null || child === false)
            continue;
        el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
}

//  Replaces el's children.
export function mount (el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

//  ---------------------------------------------------------------------------
//  Formatting

export function fmtWatts (w) {
    if (w === undefined || w === null || Number.isNaN(Number(w)))
        return '–';
    const n = Number(w);
    if (Math.abs(n) >= 1000)
        return `${(n / 1000).toFixed(2)} kW`;
    return `${n.toFixed(n < 10 ? 2 : 1)} W`;
}

export function fmtKwh (kwh) {
    if (kwh === undefined || kwh === null)
        return '–';
    const n = Number(kwh);
    if (n >= 1)
        return `${n.toFixed(2)} kWh`;
    //  Small episodes are common (a charger for a few minutes): keep a decimal.
    const wh = n * 1000;
    return wh < 10 ? `${wh.toFixed(1)} Wh` : `${wh.toFixed(0)} Wh`;
}

export function fmtMoney (amount, currency) {
    if (amount === undefined || amount === null)
        return '–';
    try {
        return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' })
            .format(Number(amount));
    } catch {
        return `${Number(amount).toFixed(2)} ${currency || ''}`.trim();
    }
}

//  Accepts ISO-8601 text or epoch ms.
export function fmtTime (value) {
    if (value === undefined || value === null || value === '')
        return '–';
    const d = new Date(value);
    if (Number.isNaN(d.getTime()))
        return '–';
    return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtAgo (value) {
    if (!value)
        return 'never';
    const t = new Date(value).getTime();
    if (Number.isNaN(t))
        return '–';
    const s = Math.round((Date.now() - t) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
}

export function fmtDuration (ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    const hours = Math.floor(s / 3600);
    return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
}

export const STATUSES = ['active', 'idle', 'phantom', 'off', 'offline'];

export function badge (status, testid) {
    const known = STATUSES.includes(status) ? status : 'unknown';
    return h('span', { class: `badge badge-${known}`, 'data-testid': testid,
                       'data-status': known }, status || 'unknown');
}
