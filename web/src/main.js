//  PhantomWatch dashboard: hash router and page layout.
import { h, mount, $ } from './dom.js';
import { api, live, liveStart, liveStop, optional, setUnauthorizedHandler } from './api.js';
import { state, setUnread, onUnread } from './state.js';
import { loginView, signupView } from './views/auth.js';
import { overviewView } from './views/overview.js';
import { devicesView } from './views/devices.js';
import { portsView } from './views/ports.js';
import { portView } from './views/port.js';
import { notificationsView } from './views/notifications.js';
import { settingsView } from './views/settings.js';
import { toast } from './ui.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const NAV = [
    { href: '#/', label: 'Overview', match: (p) => p === '/' },
    { href: '#/devices', label: 'Devices', match: (p) => p === '/devices' },
    { href: '#/ports', label: 'Ports', match: (p) => p.startsWith('/ports') },
    { href: '#/notifications', label: 'Notifications', match: (p) => p === '/notifications',
      count: true },
    { href: '#/settings', label: 'Settings', match: (p) => p === '/settings' },
];

//  Cleanups registered by the current view (live subscriptions, timers).
let cleanups = [];
export function onLeave (fn) { cleanups.push(fn); }

function route () {
    const raw = location.hash.replace(/^#/, '') || '/';
    const path = raw.split('?')[0];
    for (const fn of cleanups.splice(0))
        fn();
    //  A dialog belongs to the page that opened it.
    for (const dialog of document.querySelectorAll('dialog[open]'))
        dialog.close();

    if (!state.user && path !== '/signup') {
        if (path !== '/login')
            return void location.replace('#/login');
        return void renderBare(loginView(onSignedIn));
    }
    if (!state.user)
        return void renderBare(signupView(onSignedIn));
    if (path === '/login' || path === '/signup')
        return void location.replace('#/');

    let view;
    let title;
    const match = path.match(/^\/ports\/([^/]+)$/);
    if (path === '/') { view = overviewView; title = 'Overview'; }
    else if (path === '/devices') { view = devicesView; title = 'Devices'; }
    else if (path === '/ports') { view = portsView; title = 'Ports'; }
    else if (match && UUID.test(match[1])) { view = (m, leave) => portView(m, match[1].toLowerCase(), leave); title = 'Port'; }
    else if (path === '/notifications') { view = notificationsView; title = 'Notifications'; }
    else if (path === '/settings') { view = settingsView; title = 'Settings'; }
    else { view = notFoundView; title = 'Not found'; }

    const main = renderShell(path);
    document.title = `${title} · PhantomWatch`;
    view(main, onLeave);
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
}

function notFoundView (main) {
    mount(main, h('section', { class: 'empty' },
        h('h1', {}, 'Page not found'),
        h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))));
}

function renderBare (node) {
    document.title = 'PhantomWatch';
    mount($('#app'), h('main', { id: 'main', class: 'bare', tabindex: '-1' }, node));
}

function brand () {
    return h('a', { class: 'brand', href: '#/' },
        h('img', { src: '/assets/icon.svg', alt: '', width: 28, height: 28 }),
        h('span', {}, 'PhantomWatch'));
}

function renderShell (path) {
    const app = $('#app');
    const count = h('span', { class: 'count', 'data-testid': 'notif-count',
                              'aria-label': `${state.unread} unread` },
                    String(state.unread));
    const showCount = (n) => {
        count.textContent = String(n);
        count.setAttribute('aria-label', `${n} unread`);
        count.hidden = n === 0;
    };
    showCount(state.unread);
    onLeave(onUnread(showCount));

    const nav = h('nav', { id: 'nav', class: 'nav', 'aria-label': 'Main' },
        h('ul', {}, NAV.map((item) => h('li', {},
            h('a', { href: item.href, 'aria-current': item.match(path) ? 'page' : undefined,
                     'data-testid': `nav-${item.label.toLowerCase()}` },
              item.label, item.count ? count : null)))),
        h('div', { class: 'who' },
            h('span', { class: 'who-name', title: state.user.email }, state.user.name || state.user.email),
            h('button', { type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'logout',
                          onclick: logout }, 'Log out')));
    const toggle = h('button', {
        type: 'button', class: 'menu-toggle', 'aria-controls': 'nav', 'aria-expanded': 'false',
        'aria-label': 'Menu', 'data-testid': 'menu',
        onclick: () => {
            const open = toggle.getAttribute('aria-expanded') !== 'true';
            toggle.setAttribute('aria-expanded', String(open));
            nav.classList.toggle('open', open);
        },
    }, h('span', { class: 'bars', 'aria-hidden': 'true' }), state.unread ? h('span', { class: 'dot' }) : null);
    const main = h('main', { id: 'main', tabindex: '-1' });
    mount(app, h('header', { class: 'top' }, h('div', { class: 'top-inner' }, brand(), toggle, nav)), main);
    return main;
}

async function logout () {
    try {
        await api('POST', '/api/auth/logout');
    } catch {
        //  the session is gone either way from the user's point of view
    }
    signedOut();
}

function signedOut () {
    state.user = null;
    liveStop();
    setUnread(0);
    location.hash = '#/login';
    route();
}

async function refreshUnread () {
    try {
        const data = await optional('/api/notifications?limit=1', { unread: 0 });
        setUnread(data.unread || 0);
    } catch {
        //  the badge just stays as it was
    }
}

async function onSignedIn (user) {
    state.user = user;
    await loadSettings();
    startLive();
    location.hash = '#/';
    route();
}

async function loadSettings () {
    const settings = (state.user && state.user.settings) || {};
    try {
        const data = await optional('/api/settings', null);
        Object.assign(settings, (data && (data.settings || data)) || {});
    } catch {
        //  defaults below
    }
    state.user.settings = settings;
    state.currency = settings.currency || 'EUR';
}

function startLive () {
    liveStart();
    refreshUnread();
}

//  One app-wide subscription: the badge follows the stream.
live('notification', (data) => {
    if (typeof data.unread === 'number')
        setUnread(data.unread);
    else
        setUnread(state.unread + 1);
    if (data.title)
        toast(data.title);
});

setUnauthorizedHandler(() => {
    if (state.user)
        signedOut();
});

async function start () {
    try {
        const data = await api('GET', '/api/auth/me');
        state.user = data.user || null;
    } catch {
        state.user = null;
    }
    if (state.user) {
        await loadSettings();
        startLive();
    }
    window.addEventListener('hashchange', route);
    route();
}

start();
