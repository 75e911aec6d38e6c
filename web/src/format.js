//  Every figure and time on the page goes through here: numbers in the
//  browser's locale, money in the account's currency, times in the
//  account's time zone (not the browser's), each with its unit.

const LOCALE = undefined;               //  the browser's
const account = { timeZone: undefined, currency: 'EUR' };

//  A zone the browser knows, else undefined (the browser's own).
function validZone (zone) {
    if (!zone)
        return undefined;
    try {
        new Intl.DateTimeFormat('en-US', { timeZone: zone });
        return zone;
    } catch {
        return undefined;
    }
}

export function setAccount ({ timeZone, currency } = {}) {
    if (timeZone !== undefined)
        account.timeZone = validZone(timeZone);
    if (currency)
        account.currency = currency;
    cache.clear();
}

export const accountZone = () => account.timeZone;
export const zoneLabel = () => account.timeZone || Intl.DateTimeFormat().resolvedOptions().timeZone;

//  Intl formatters are costly to build; the chart asks for thousands.
const cache = new Map();
function cached (kind, options) {
    const key = kind + JSON.stringify(options);
    let f = cache.get(key);
    if (!f) {
        f = kind === 'n' ? new Intl.NumberFormat(LOCALE, options)
            : new Intl.DateTimeFormat(LOCALE, { timeZone: account.timeZone, ...options });
        cache.set(key, f);
    }
    return f;
}

const missing = (v) => v === undefined || v === null || v === '' || !Number.isFinite(Number(v));

export function fmtNumber (n, digits = 1) {
    return cached('n', { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}

//  "4.0 W", "0.45 W", "1.25 kW".
export function fmtWatts (w) {
    if (missing(w))
        return '–';
    const n = Number(w);
    if (Math.abs(n) >= 1000)
        return `${fmtNumber(n / 1000, 2)} kW`;
    return `${fmtNumber(n, Math.abs(n) < 1 && n !== 0 ? 2 : 1)} W`;
}

//  "23.4 kWh", "1.25 kWh", "50 Wh", "4.2 Wh".
export function fmtKwh (kwh) {
    if (missing(kwh))
        return '–';
    const n = Number(kwh);
    if (Math.abs(n) >= 100)
        return `${fmtNumber(n, 0)} kWh`;
    if (Math.abs(n) >= 10)
        return `${fmtNumber(n, 1)} kWh`;
    if (Math.abs(n) >= 1)
        return `${fmtNumber(n, 2)} kWh`;
    const wh = n * 1000;
    return `${fmtNumber(wh, Math.abs(wh) < 10 && wh !== 0 ? 1 : 0)} Wh`;
}

//  "€7.01"; an amount below a cent but not zero says so instead of "€0.00".
export function fmtMoney (amount, currency = account.currency) {
    if (missing(amount))
        return '–';
    const n = Number(amount);
    let f;
    try {
        f = cached('n', { style: 'currency', currency });
    } catch {
        return `${fmtNumber(n, 2)} ${currency || ''}`.trim();
    }
    const digits = f.resolvedOptions().maximumFractionDigits;
    const smallest = 10 ** -digits;
    if (n > 0 && n < smallest / 2)
        return `< ${f.format(smallest)}`;
    return f.format(n);
}

const toMs = (value) => (typeof value === 'number' ? value : new Date(value).getTime());

function time (value, options) {
    if (value === undefined || value === null || value === '')
        return '–';
    const ms = toMs(value);
    if (!Number.isFinite(ms))
        return '–';
    return cached('d', options).format(ms);
}

//  "6 Dec 2026, 18:00" in the account's zone.
export const fmtTime = (value) => time(value, { dateStyle: 'medium', timeStyle: 'short' });
export const fmtDate = (value) => time(value, { dateStyle: 'medium' });

//  "just now", "7 min ago", "3 h ago", "2 d ago": relative to nowMs, so a
//  caller that ticks gets a clock that moves.
export function fmtAgo (value, nowMs = Date.now()) {
    if (!value)
        return 'never';
    const t = toMs(value);
    if (!Number.isFinite(t))
        return '–';
    const s = Math.round((nowMs - t) / 1000);
    if (s < 10)
        return 'just now';
    if (s < 60)
        return `${s} s ago`;
    if (s < 3600)
        return `${Math.floor(s / 60)} min ago`;
    if (s < 86400)
        return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
    return `${Math.floor(s / 86400)} d ago`;
}

export function fmtDuration (ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    const hours = Math.floor(s / 3600);
    if (hours < 48)
        return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

//  The data a projection rests on: "6 days", "30 h".
export function fmtSpan (hours) {
    const h = Number(hours) || 0;
    if (h >= 48)
        return `${Math.round(h / 24)} days`;
    return `${Math.floor(h)} h`;
}

//  ---------------------------------------------------------------------------
//  Wall time in the account's zone <-> instants

const PARTS = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
                second: '2-digit', hourCycle: 'h23' };

//  {year, month, day, hour, minute, second, weekday (0 = Monday)} of ms in zone.
export function zoneParts (ms, zone = account.timeZone) {
    const key = `parts${zone}`;
    let f = cache.get(key);
    if (!f) {
        f = new Intl.DateTimeFormat('en-US', { ...PARTS, timeZone: zone, weekday: 'short' });
        cache.set(key, f);
    }
    const out = {};
    for (const part of f.formatToParts(ms)) {
        if (part.type === 'weekday')
            out.weekday = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(part.value);
        else if (part.type !== 'literal')
            out[part.type] = Number(part.value);
    }
    if (out.hour === 24)
        out.hour = 0;
    return out;
}

function offset (ms, zone) {
    const p = zoneParts(ms, zone);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}

//  The instant of a wall time in zone (Date.UTC normalises overflowing
//  days and months, so day + 1 is tomorrow). A time a DST change skips
//  maps to the instant just after it.
export function zonedToUtc (year, month, day, hour = 0, minute = 0, zone = account.timeZone) {
    const wall = Date.UTC(year, month - 1, day, hour, minute);
    const first = wall - offset(wall, zone);
    const second = wall - offset(first, zone);
    return Math.max(first, second);
}

//  Local midnight of the day of ms, plus days.
export function startOfDay (ms, days = 0, zone = account.timeZone) {
    const p = zoneParts(ms, zone);
    return zonedToUtc(p.year, p.month, p.day + days, 0, 0, zone);
}

export function startOfWeek (ms, weeks = 0) {
    const p = zoneParts(ms);
    return zonedToUtc(p.year, p.month, p.day - p.weekday + 7 * weeks, 0, 0);
}

export function startOfMonth (ms, months = 0) {
    const p = zoneParts(ms);
    return zonedToUtc(p.year, p.month + months, 1, 0, 0);
}

const pad = (n) => String(n).padStart(2, '0');

//  <input type=datetime-local> value of ms in the account's zone, and back.
export function toLocalInput (ms) {
    const p = zoneParts(ms);
    return `${p.year}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}`;
}

export function fromLocalInput (value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?/.exec(value || '');
    if (!m)
        return null;
    return zonedToUtc(Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] || 0), Number(m[5] || 0));
}

//  <input type=date> value of ms in the account's zone.
export function toDateInput (ms) {
    const p = zoneParts(ms);
    return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

//  Weekday names in the browser's locale, Monday first, keyed by the API's
//  day codes.
export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
export function dayName (code, style = 'short') {
    const index = DAYS.indexOf(code);
    //  1 January 2024 was a Monday.
    return new Intl.DateTimeFormat(LOCALE, { weekday: style, timeZone: 'UTC' })
        .format(Date.UTC(2024, 0, 1 + index));
}
