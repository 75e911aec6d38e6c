//  The gateway's JSON API. The browser authenticates with the HttpOnly
//  session cookie; every request carries X-Requested-With, which the gateway
//  requires on state-changing cookie requests (its CSRF guard).

export class ApiError extends Error {
    constructor (status, message, code) {
        super(message);
        this.status = status;
        this.code = code;
    }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler (fn) { onUnauthorized = fn; }

export async function api (method, path, body) {
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
        const code = json && json.error && json.error.code;
        if (response.status === 401 && !path.startsWith('/api/auth/'))
            onUnauthorized();
        throw new ApiError(response.status, message, code);
    }
    return (json && json.data) || {};
}

//  A GET whose route may not exist yet on this gateway: 404 gives fallback.
export async function optional (path, fallback) {
    try {
        return await api('GET', path);
    } catch (error) {
        if (error.status === 404 || error.status === 405 || error.status === 501)
            return fallback;
        throw error;
    }
}

//  ---------------------------------------------------------------------------
//  Live updates by Server-Sent Events from /api/stream (cookie-authenticated).
//  One EventSource for the whole app; views subscribe and unsubscribe.

//  reading {portId, ts, power, status}; status {portId, status, previous, ts};
//  phantom {portId, kind: start|end, ts, watts, episode}; notification {id, unread};
//  resync {} (the gateway dropped events for this stream: re-read everything).
const listeners = { reading: new Set(), status: new Set(), phantom: new Set(), notification: new Set(),
                    resync: new Set() };
let source = null;

export function liveStart () {
    if (source || typeof EventSource === 'undefined')
        return;
    source = new EventSource('/api/stream');
    for (const kind of Object.keys(listeners)) {
        source.addEventListener(kind, (event) => {
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
    //  EventSource reconnects by itself after network errors; a 401/404
    //  closes it for good, which is fine (the page still works by polling).
}

export function liveStop () {
    if (source) {
        source.close();
        source = null;
    }
}

//  Returns an unsubscribe function.
export function live (kind, fn) {
    listeners[kind].add(fn);
    return () => listeners[kind].delete(fn);
}
