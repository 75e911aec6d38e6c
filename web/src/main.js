//  PhantomWatch dashboard: hash router, page layout, the session and the
//  live stream's indicator.
import { h, mount, $ } from './dom.js';
import { api, live, liveRestart, liveStart, liveState, liveStop, setReauthenticate } from './api.js';
import { state, setUnread, onUnread } from './state.js';
import { setAccount } from './format.js';
import { loginView, signupView, signInDialog } from './views/auth.js';
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

function currentRoute () {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    return { raw, path, params: new URLSearchParams(query || '') };
}

//  Only a route of this app (no scheme, no other host) is followed.
function safeNext (next) {
    return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login')
        && !next.startsWith('/signup') ? next : '/';
}

function route () {
    const { path } = currentRoute();
    for (const fn of cleanups.splice(0))
        fn();
    //  A dialog belongs to the page that opened it.
    for (const dialog of document.querySelectorAll('dialog[open]'))
        dialog.close();

    if (!state.user && path !== '/signup') {
        if (path !== '/login') {
            const next = currentRoute().raw;
            return void location.replace(`#/login${next && next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`);
        }
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

//  "live" only while the stream is open and said something lately (the
//  gateway pings every 15 s); else "reconnecting…" or "offline".
const LIVE_TEXT = { live: 'live', connecting: 'reconnecting…', offline: 'offline' };
const LIVE_TITLE = {
    live: 'Updates arrive as they happen.',
    connecting: 'The live connection was lost; trying again. Figures may be out of date.',
    offline: 'No live connection. Figures are as of the last load.',
};
function liveIndicator () {
    const text = h('span', {});
    const el = h('span', { class: 'live-indicator', 'data-testid': 'live-indicator', role: 'status' }, text);
    const show = (s) => {
        el.dataset.state = s;
        el.title = LIVE_TITLE[s];
        text.textContent = LIVE_TEXT[s];
    };
    show(liveState());
    onLeave(live('stream', show));
    return el;
}

function renderShell (path) {
    const app = $('#app');
    const count = h('span', { class: 'count', 'data-testid': 'notif-count',
                              'aria-label': `${state.unread} unread` },
                    String(state.unread));
    const dot = h('span', { class: 'dot', hidden: !state.unread });
    const showCount = (n) => {
        count.textContent = String(n);
        count.setAttribute('aria-label', `${n} unread`);
        count.hidden = n === 0;
        dot.hidden = n === 0;
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
    }, h('span', { class: 'bars', 'aria-hidden': 'true' }), dot);
    const main = h('main', { id: 'main', tabindex: '-1' });
    mount(app, h('header', { class: 'top' },
        h('div', { class: 'top-inner' }, brand(), liveIndicator(), toggle, nav)), main);
    return main;
}

async function logout () {
    try {
        await api('POST', '/api/auth/logout');
    } catch {
        //  the session is gone either way from the user's point of view
    }
    signedOut('/login');
}

function signedOut (to) {
    state.user = null;
    remember(false);
    liveStop();
    setUnread(0);
    location.hash = `#${to}`;
    route();
}

async function refreshUnread () {
    try {
        const data = await api('GET', '/api/notifications?limit=1');
        setUnread(data.unread || 0);
    } catch {
        //  the badge just stays as it was
    }
}

async function onSignedIn (user) {
    state.user = user;
    remember(true);
    await loadSettings();
    startLive();
    const next = safeNext(currentRoute().params.get('next'));
    location.hash = `#${next}`;
    route();
}

export async function loadSettings () {
    let settings = {};
    try {
        settings = await api('GET', '/api/settings');
        settings = settings.settings || settings;
    } catch {
        //  defaults below
    }
    state.settings = settings;
    setAccount({ timeZone: settings.timeZone || null, currency: settings.currency || 'EUR' });
    //  The daily digest is written in the account's locale: until the user
    //  chooses one, it is the browser's.
    if (settings && !settings.locale && navigator.language && state.user) {
        api('PATCH', '/api/settings', { locale: navigator.language })
            .then(() => { settings.locale = navigator.language; })
            .catch(() => {});
    }
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

//  The stream cannot say why it closed; a call can: a 401 brings up the
//  sign-in dialog, and the unread count is fresh afterwards.
live('stream', (s) => {
    if (s === 'offline' && state.user)
        refreshUnread();
});

//  A 401 on any call: sign in again over the page, then the call is
//  repeated. Cancel: the login page, which comes back here afterwards.
let reauthPending = null;
setReauthenticate(() => {
    if (!state.user)
        return Promise.resolve(false);
    if (!reauthPending) {
        reauthPending = signInDialog(state.user.email).then((user) => {
            reauthPending = null;
            if (!user) {
                const here = currentRoute().raw;
                signedOut(`/login?next=${encodeURIComponent(here)}`);
                return false;
            }
            const sameUser = String(user.id) === String(state.user.id);
            state.user = user;
            liveRestart();
            if (!sameUser) {
                //  Someone else signed in: nothing of the old page is theirs.
                loadSettings().then(() => { location.hash = '#/'; route(); });
                return false;
            }
            return true;
        });
    }
    return reauthPending;
});

//  Whether this browser signed in and has not signed out: without it the
//  start does not ask /api/auth/me, whose 401 the console would show on
//  every visit to the login page. The session itself is the HttpOnly cookie.
const SIGNED_IN = 'phantomwatch.signedIn';
function remember (yes) {
    try {
        if (yes)
            localStorage.setItem(SIGNED_IN, '1');
        else
            localStorage.removeItem(SIGNED_IN);
    } catch {
        //  storage off: the start just asks every time
    }
}
function remembered () {
    try {
        return localStorage.getItem(SIGNED_IN) !== null;
    } catch {
        return true;
    }
}

async function start () {
    state.user = null;
    if (remembered()) {
        try {
            const data = await api('GET', '/api/auth/me');
            state.user = data.user || null;
        } catch {
            state.user = null;
        }
        remember(Boolean(state.user));
    }
    if (state.user) {
        await loadSettings();
        startLive();
    }
    window.addEventListener('hashchange', route);
    route();
}

start();
