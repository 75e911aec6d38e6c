//  The gateway's JSON API. The browser authenticates with the HttpOnly
//  session cookie; every request carries X-Requested-With, which the gateway
//  requires on state-changing cookie requests (its CSRF guard).

export class ApiError extends Error {
    constructor (status, message, code, field) {
        super(message);
        this.status = status;
        this.code = code;
        this.field = field;             //  the request field a validation error is about
    }
}

//  Called on a 401 outside /api/auth; resolves true once the user signed in
//  again (the call is then repeated), false when they gave up.
let reauthenticate = async () => false;
export function setReauthenticate (fn) { reauthenticate = fn; }

async function call (method, path, body) {
    const headers = { 'X-Requested-With': 'phantomwatch', Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    let response;
    try {
        response = await fetch(path, init);
    } catch {
        throw new ApiError(0, 'The gateway cannot be reached. Check your connection.', 'network');
    }
    let json = null;
    try {
        json = await response.json();
    } catch {
        json = null;
    }
    if (!response.ok || (json && json.success === false)) {
        const message = (json && json.message) || `Request failed (${response.status})`;
        const error = (json && json.error) || {};
        throw new ApiError(response.status, message, error.code, error.field);
    }
    return (json && json.data) || {};
}

//  A call whose session expired waits for the sign-in dialog and is then
//  repeated as it was, so the form that sent it keeps its content.
export async function api (method, path, body) {
    try {
        return await call(method, path, body);
    } catch (error) {
        if (error.status !== 401 || path.startsWith('/api/auth/'))
            throw error;
        if (!(await reauthenticate()))
            throw error;
        return call(method, path, body);
    }
}

//  ---------------------------------------------------------------------------
//  Live updates by Server-Sent Events from /api/stream (cookie-authenticated).
//  One EventSource for the whole app; views subscribe and unsubscribe.

//  reading {portId, ts, power, status}; status {portId, status, previous, ts};
//  phantom {portId, kind: start|end, ts, watts, episode}; notification {id, unread};
//  resync {} (the gateway dropped events for this stream: re-read everything);
//  ready {} on connect; ping {} every 15 s.
const KINDS = ['reading', 'status', 'phantom', 'notification', 'resync', 'stream'];
const listeners = Object.fromEntries(KINDS.map((k) => [k, new Set()]));
const SILENCE_MS = 40000;               //  > two pings missed: the stream is dead
const RETRY_MS = [2000, 5000, 15000, 30000];

let source = null;
let wanted = false;
let lastMessage = 0;
let failures = 0;
let retryTimer = null;
let watchdog = null;
let streamState = 'offline';            //  live | connecting | offline

export const liveState = () => streamState;

let wasLive = false;
function setState (next) {
    if (next === streamState)
        return;
    streamState = next;
    for (const fn of listeners.stream)
        fn(next);
    //  Back after a break: what happened meanwhile was not streamed, so the
    //  views read everything again.
    if (next === 'live' && wasLive)
        for (const fn of listeners.resync)
            fn({});
    if (next === 'live')
        wasLive = true;
}

function alive () {
    lastMessage = Date.now();
    failures = 0;
    setState('live');
}

function open () {
    clearTimeout(retryTimer);
    if (source)
        source.close();
    setState('connecting');
    source = new EventSource('/api/stream');
    source.addEventListener('open', alive);
    source.addEventListener('ready', alive);
    source.addEventListener('ping', alive);
    for (const kind of KINDS) {
        if (kind === 'stream')
            continue;
        source.addEventListener(kind, (event) => {
            alive();
            let data;
            try {
                data = JSON.parse(event.data);
            } catch {
                return;
            }
            for (const fn of listeners[kind])
                fn(data);
        });
    }
    source.addEventListener('error', () => {
        //  CONNECTING: the browser retries by itself (the gateway says
        //  retry: 3000). CLOSED: it gave up (a 401, a 5xx): we retry, slower
        //  each time, and a 401 on any call brings up the sign-in dialog.
        if (!source || source.readyState !== EventSource.CLOSED) {
            setState('connecting');
            return;
        }
        source = null;
        setState('offline');
        retry();
    });
}

function retry () {
    clearTimeout(retryTimer);
    if (!wanted)
        return;
    const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    failures++;
    retryTimer = setTimeout(open, delay);
}

export function liveStart () {
    if (wanted || typeof EventSource === 'undefined')
        return;
    wanted = true;
    failures = 0;
    open();
    //  A stream that stays open but says nothing (a proxy holding it, a
    //  gateway gone without closing) is not live: reopen it.
    watchdog = setInterval(() => {
        if (streamState === 'live' && Date.now() - lastMessage > SILENCE_MS) {
            setState('connecting');
            open();
        }
    }, 5000);
}

export function liveStop () {
    wanted = false;
    wasLive = false;
    clearTimeout(retryTimer);
    clearInterval(watchdog);
    if (source) {
        source.close();
        source = null;
    }
    setState('offline');
}

//  After signing in again: a stream that failed on the old session.
export function liveRestart () {
    if (!wanted)
        return liveStart();
    failures = 0;
    open();
}

//  Returns an unsubscribe function. 'stream' gets the state (live,
//  connecting, offline) whenever it changes.
export function live (kind, fn) {
    listeners[kind].add(fn);
    return () => listeners[kind].delete(fn);
}
