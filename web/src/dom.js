import { liveState } from './api.js';

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
//  Port status

export const STATUSES = ['active', 'idle', 'phantom', 'off', 'offline', 'waiting'];
const LABELS = { waiting: 'waiting', offline: 'offline' };

//  The status a person should see now. The server's, except that a port
//  the page has heard nothing from for longer than its offline delay shows
//  offline at once, in case the "offline" event is late or lost: seenAt is
//  the browser's time of the last reading the page knew of (set when the
//  port is loaded and on each live reading), and its device time must be as
//  old, so a device clock running late does not make it look offline. Only
//  while the stream is live: without it the page cannot know.
export function statusNow (port, nowMs = Date.now()) {
    if (!port)
        return 'unknown';
    if (port.status === 'waiting' || !port.lastReadingAt)
        return 'waiting';
    const limit = (port.offlineAfterSeconds || 300) * 1000;
    const silent = nowMs - (port.seenAt ?? nowMs) > limit
        && nowMs - new Date(port.lastReadingAt).getTime() > limit;
    if (port.status !== 'offline' && silent && liveState() === 'live')
        return 'offline';
    return port.status || 'unknown';
}

export function badge (status, testid) {
    const known = STATUSES.includes(status) ? status : 'unknown';
    return h('span', { class: `badge badge-${known}`, 'data-testid': testid,
                       'data-status': known }, LABELS[known] || status || 'unknown');
}

export const ROLES = {
    standby: 'Standby watch',
    shouldBeOff: 'Should be off',
    alwaysOn: 'On by design',
};
