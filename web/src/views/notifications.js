//  Notification centre: newest first, unread marked; mark one or all read.
import { h, mount, fmtTime } from '../dom.js';
import { api, live, optional } from '../api.js';
import { setUnread } from '../state.js';
import { showError } from '../ui.js';

export function notificationsView (main, onLeave) {
    const alert = h('div', {});
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
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
        alert, h('section', { class: 'card' }, list));

    async function load () {
        try {
            const data = await optional('/api/notifications', { notifications: [], unread: 0 });
            const items = data.notifications || [];
            setUnread(data.unread ?? items.filter((n) => !n.read).length);
            readAll.disabled = !items.some((n) => !n.read);
            if (!items.length) {
                mount(list, h('div', { class: 'empty', 'data-testid': 'notifications-empty' },
                    h('p', {}, 'Nothing yet. You are told here when a port starts wasting power.')));
                return;
            }
            mount(list, h('ul', { class: 'notifications', 'data-testid': 'notifications' }, items.map(item)));
        } catch (error) {
            showError(alert, error);
        }
    }

    function item (n) {
        return h('li', { class: `notification ${n.read ? '' : 'unread'}`, 'data-testid': 'notification',
                         'data-read': String(Boolean(n.read)) },
            h('span', { class: `kind kind-${String(n.kind || 'info').split('.')[0]}`, 'aria-hidden': 'true' }),
            h('div', { class: 'notification-body' },
                h('p', { class: 'notification-title' }, n.read ? null : h('span', { class: 'sr-only' }, 'Unread: '),
                  n.title || n.kind),
                n.message ? h('p', { class: 'muted' }, n.message) : null,
                h('p', { class: 'small muted' }, fmtTime(n.createdAt),
                  n.portId ? [' · ', h('a', { href: `#/ports/${n.portId}` }, 'Open port')] : null)),
            n.read ? null : h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'mark-read',
                onclick: async () => {
                    try {
                        await api('PATCH', `/api/notifications/${n.id}`, { read: true });
                        load();
                    } catch (error) {
                        showError(alert, error);
                    }
                } }, 'Mark read'));
    }

    onLeave(live('notification', load));
    load();
}
