//  Notification centre: newest first, unread marked, each kind with its own
//  mark; mark one or all read; older ones page in.
import { h, mount } from '../dom.js';
import { fmtAgo, fmtTime } from '../format.js';
import { api, live } from '../api.js';
import { setUnread } from '../state.js';
import { showError } from '../ui.js';

const KINDS = {
    'phantom.start': { label: 'Phantom power', tone: 'phantom' },
    'phantom.end': { label: 'Phantom ended', tone: 'ok' },
    'sensor.offline': { label: 'Sensor offline', tone: 'offline' },
    'sensor.online': { label: 'Back online', tone: 'ok' },
    digest: { label: 'Daily digest', tone: 'info' },
    'webhook.test': { label: 'Test', tone: 'info' },
};
const PAGE = 50;

export function notificationsView (main, onLeave) {
    const alert = h('div', {});
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const more = h('div', {});
    let items = [];
    const readAll = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'read-all',
        onclick: async () => {
            try {
                await api('POST', '/api/notifications/read-all');
                setUnread(0);
                load();
            } catch (error) {
                showError(alert, error);
            }
        } }, 'Mark all as read');

    mount(main, h('div', { class: 'page-head title-row' }, h('h1', {}, 'Notifications'), readAll),
        alert, h('section', { class: 'card' }, list, more));

    async function load () {
        try {
            const data = await api('GET', `/api/notifications?limit=${PAGE}`);
            items = data.notifications || [];
            setUnread(data.unread ?? items.filter((n) => !n.read).length);
            render(items.length === PAGE);
        } catch (error) {
            showError(alert, error);
        }
    }

    async function older () {
        const last = items[items.length - 1];
        try {
            const data = await api('GET', `/api/notifications?limit=${PAGE}&before=${encodeURIComponent(last.id)}`);
            const page = data.notifications || [];
            items = items.concat(page);
            render(page.length === PAGE);
        } catch (error) {
            showError(alert, error);
        }
    }

    function render (hasMore) {
        readAll.disabled = !items.some((n) => !n.read);
        mount(more, hasMore ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'notifications-older',
                                            onclick: older }, 'Show older') : null);
        if (!items.length) {
            mount(list, h('div', { class: 'empty', 'data-testid': 'notifications-empty' },
                h('p', {}, 'Nothing yet. You are told here when a port starts wasting power or a sensor goes quiet.')));
            return;
        }
        mount(list, h('ul', { class: 'notifications', 'data-testid': 'notifications' }, items.map(item)));
    }

    function item (n) {
        const kind = KINDS[n.kind] || { label: n.kind || 'Notice', tone: 'info' };
        return h('li', { class: `notification tone-${kind.tone} ${n.read ? '' : 'unread'}`, 'data-testid': 'notification',
                         'data-kind': n.kind, 'data-read': String(Boolean(n.read)) },
            h('span', { class: 'kind', 'aria-hidden': 'true' }),
            h('div', { class: 'notification-body' },
                h('p', { class: 'notification-title' }, n.read ? null : h('span', { class: 'sr-only' }, 'Unread: '),
                  h('span', { class: 'kind-label', 'data-testid': 'notification-kind' }, kind.label),
                  n.title || ''),
                n.message ? h('p', { class: 'notification-message muted' }, n.message) : null,
                h('p', { class: 'small muted' },
                  h('time', { datetime: n.createdAt, title: fmtAgo(n.createdAt) }, fmtTime(n.createdAt)),
                  n.portId ? [' · ', h('a', { href: `#/ports/${n.portId}` }, 'Open port')] : null)),
            n.read ? null : h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'mark-read',
                onclick: async () => {
                    try {
                        const data = await api('PATCH', `/api/notifications/${n.id}`, { read: true });
                        if (typeof data.unread === 'number')
                            setUnread(data.unread);
                        n.read = true;
                        render(Boolean(more.firstChild));
                    } catch (error) {
                        showError(alert, error);
                    }
                } }, 'Mark read'));
    }

    onLeave(live('notification', load));
    load();
}
