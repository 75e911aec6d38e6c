//  The charts: power over time (one port with its min–max band, or several
//  ports to compare) and energy per day/week/month as bars with the phantom
//  part marked. uPlot draws; the axes, the legend and the colours are ours:
//  times in the account's zone and the browser's locale, colours from the
//  stylesheet's variables (so dark mode reaches the canvas).
import uPlot from 'uplot';
import { accountZone, fmtWatts, fmtKwh, fmtMoney, fmtTime, fmtNumber, zoneParts } from './format.js';

//  ---------------------------------------------------------------------------
//  Series preparation (pure)

const toSeconds = (ts) => (typeof ts === 'number' ? (ts > 1e12 ? ts / 1000 : ts) : new Date(ts).getTime() / 1000);

//  Raw readings -> [xs, power] with a null where two readings are more than
//  gapSeconds apart (the sensor was offline): the line breaks there.
export function rawTable (readings, gapSeconds = 300) {
    const xs = [];
    const ys = [];
    let prev = null;
    for (const r of readings) {
        const t = toSeconds(r.ts ?? r.timestamp);
        const p = Number(r.power);
        if (!Number.isFinite(t) || !Number.isFinite(p) || r.power === null)
            continue;
        if (prev !== null && t - prev > gapSeconds) {
            xs.push((prev + t) / 2);
            ys.push(null);
        }
        xs.push(t);
        ys.push(p);
        prev = t;
    }
    return [xs, ys];
}

//  Buckets -> [xs, min, mean, max] with a null where buckets are missing:
//  present buckets further apart than max(step, gapSeconds) have a silence
//  between them (with a step shorter than the gap, one empty bucket is a
//  slow sensor, not an outage).
export function bucketTable (buckets, step, gapSeconds = 300) {
    const table = [[], [], [], []];
    const limit = Math.max(step, gapSeconds);
    let prev = null;
    for (const b of buckets) {
        const t = toSeconds(b.ts ?? b.start);
        if (!Number.isFinite(t) || b.mean === null || b.mean === undefined)
            continue;
        if (prev !== null && t - prev > limit) {
            table[0].push(prev + step);
            table[1].push(null);
            table[2].push(null);
            table[3].push(null);
        }
        table[0].push(t);
        table[1].push(Number(b.min ?? b.mean));
        table[2].push(Number(b.mean));
        table[3].push(Number(b.max ?? b.mean));
        prev = t;
    }
    return table;
}

//  Appends one live reading to a raw table, in order, breaking the line
//  after a silence; drops what fell out of [from, ...).
export function appendReading (table, t, power, gapSeconds, from) {
    const [xs, ys] = table;
    let at = xs.length;
    while (at > 0 && xs[at - 1] > t)
        at--;
    if (at > 0 && xs[at - 1] === t)
        return;
    const before = at > 0 && ys[at - 1] !== null ? xs[at - 1] : null;
    xs.splice(at, 0, t);
    ys.splice(at, 0, power);
    if (before !== null && t - before > gapSeconds) {
        xs.splice(at, 0, (before + t) / 2);
        ys.splice(at, 0, null);
    }
    while (xs.length && xs[0] < from) {
        xs.shift();
        ys.shift();
    }
    while (ys.length && ys[0] === null) {
        xs.shift();
        ys.shift();
    }
}

export const countPoints = (ys) => ys.reduce((n, y) => n + (y === null || y === undefined ? 0 : 1), 0);

//  ---------------------------------------------------------------------------
//  Colours and axes

function colors () {
    const css = getComputedStyle(document.documentElement);
    const v = (name, fallback) => (css.getPropertyValue(name) || '').trim() || fallback;
    return {
        text: v('--muted', '#5b6475'),
        grid: v('--chart-grid', '#eef0f4'),
        line: v('--chart-line', '#4338ca'),
        band: v('--chart-band', 'rgba(67,56,202,0.16)'),
        edge: v('--chart-edge', 'rgba(67,56,202,0.35)'),
        used: v('--chart-used', '#94a3b8'),
        phantom: v('--chart-phantom', '#c2410c'),
        compare: [1, 2, 3, 4, 5].map((i) => v(`--chart-${i}`, '#0f766e')),
    };
}

const dtf = new Map();
function fmt (ms, options) {
    const key = JSON.stringify(options) + accountZone();
    let f = dtf.get(key);
    if (!f) {
        f = new Intl.DateTimeFormat(undefined, { ...options, timeZone: accountZone() });
        dtf.set(key, f);
    }
    return f.format(ms);
}

const DAY = 86400;

//  The locale's clock: "20:00" where it counts 24 hours, "8:00 PM" where 12.
const HOUR = ['h11', 'h12'].includes(new Intl.DateTimeFormat(undefined, { hour: 'numeric' }).resolvedOptions().hourCycle)
    ? 'numeric' : '2-digit';

//  Tick labels by the tick spacing uPlot found: clock times (with the date
//  under the first tick of each day), days, months or years.
function timeValues (u, splits, axisIdx, foundSpace, incr) {
    let prevDay = null;
    let prevYear = null;
    return splits.map((s, i) => {
        const ms = s * 1000;
        const p = zoneParts(ms);
        const day = p.year * 10000 + p.month * 100 + p.day;
        let label;
        if (incr < DAY) {
            label = fmt(ms, incr < 60 ? { hour: HOUR, minute: '2-digit', second: '2-digit' }
                                      : { hour: HOUR, minute: '2-digit' });
            if (day !== prevDay)
                label += `\n${fmt(ms, { day: 'numeric', month: 'short' })}`;
        } else if (incr < 28 * DAY) {
            label = fmt(ms, { day: 'numeric', month: 'short' });
            if (i === 0 || p.year !== prevYear)
                label += `\n${p.year}`;
        } else if (incr < 365 * DAY) {
            label = fmt(ms, { month: 'short' });
            if (i === 0 || p.year !== prevYear)
                label += `\n${p.year}`;
        } else {
            label = String(p.year);
        }
        prevDay = day;
        prevYear = p.year;
        return label;
    });
}

//  Enough decimals that neighbouring ticks differ: 0.5 W steps need one.
function decimals (step) {
    let d = 0;
    while (d < 3 && step > 0 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6)
        d++;
    return d;
}

function unitValues (splits, big, bigUnit, unit) {
    const top = Math.max(...splits.map(Math.abs));
    const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : top;
    if (top >= big)
        return splits.map((v) => `${fmtNumber(v / big, decimals(step / big))} ${bigUnit}`);
    return splits.map((v) => `${fmtNumber(v, decimals(step))} ${unit}`);
}

const wattValues = (u, splits) => unitValues(splits, 1000, 'kW', 'W');

//  kWh from the API; below 1 kWh in Wh.
const kwhValues = (u, splits) => unitValues(splits.map((v) => v * 1000), 1000, 'kWh', 'Wh');

function timeAxis (c) {
    return { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 },
             values: timeValues, size: 46, space: 70 };
}

function yAxis (c, values) {
    return { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 },
             values, size: 64 };
}

const tzDate = (ts) => {
    const zone = accountZone();
    return zone ? uPlot.tzDate(new Date(ts * 1000), zone) : new Date(ts * 1000);
};

function chartSize (box, compact) {
    const width = Math.max(260, box.clientWidth || 600);
    const phone = window.innerWidth < 700;
    return { width, height: compact ? (phone ? 180 : 220) : (phone ? 230 : 320) };
}

//  ---------------------------------------------------------------------------
//  Power chart

//  powerChart(box, {onZoom}) -> {draw(model), update(model), destroy()}.
//  model: {from, to (seconds), band (bool: tables[0] is [xs, min, mean,
//  max]), tables: [{label, table}], emptyText}. Dragging across the chart
//  calls onZoom(from, to) (the caller fetches the finer data).
export function powerChart (box, { onZoom } = {}) {
    let plot = null;
    let model = null;
    let shape = '';

    function data () {
        const tables = model.tables.map((t) => t.table);
        if (tables.length === 1)
            return tables[0];
        //  Aligned on the union of the timestamps; a port without a value at
        //  another's timestamp is spanned (undefined), its own gaps stay
        //  null and stay gaps.
        return uPlot.join(tables);
    }

    function options () {
        const c = colors();
        const series = [{ label: 'Time', value: (u, v) => (v === null || v === undefined ? '–' : fmtTime(v * 1000)) }];
        const bands = [];
        model.tables.forEach((t, i) => {
            const color = i === 0 ? c.line : c.compare[(i - 1) % c.compare.length];
            const watts = (u, v) => fmtWatts(v);
            if (i === 0 && model.band) {
                const base = series.length;
                series.push({ label: `${t.label} lowest`, stroke: c.edge, width: 1, value: watts });
                series.push({ label: t.label, stroke: color, width: 2, value: watts });
                series.push({ label: `${t.label} highest`, stroke: c.edge, width: 1, value: watts });
                bands.push({ series: [base + 2, base], fill: c.band });
            } else {
                series.push({ label: t.label, stroke: color, width: 2, value: watts,
                              fill: model.tables.length === 1 ? c.band : undefined });
            }
        });
        return {
            ...chartSize(box, false),
            tzDate,
            cursor: { drag: { x: true, y: false, setScale: false } },
            select: { show: true },
            scales: {
                x: { time: true, range: () => [model.from, model.to] },
                y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.1)] },
            },
            axes: [timeAxis(c), yAxis(c, wattValues)],
            series,
            bands,
            legend: { live: true },
            hooks: {
                setSelect: [(u) => {
                    if (u.select.width < 5)
                        return;
                    const from = u.posToVal(u.select.left, 'x');
                    const to = u.posToVal(u.select.left + u.select.width, 'x');
                    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
                    if (onZoom && to - from >= 30)
                        onZoom(Math.round(from), Math.round(to));
                }],
            },
        };
    }

    function draw (next) {
        model = next;
        const nextShape = `${model.band}|${model.tables.map((t) => t.label).join('|')}`;
        if (plot && nextShape === shape) {
            plot.setData(data());
            return;
        }
        destroy();
        box.replaceChildren();
        shape = nextShape;
        plot = new uPlot(options(), data(), box);
    }

    function destroy () {
        if (plot)
            plot.destroy();
        plot = null;
        shape = '';
    }

    function resize () {
        if (plot)
            plot.setSize(chartSize(box, false));
    }

    //  A new colour scheme: rebuild with the new colours.
    function restyle () {
        if (plot && model) {
            destroy();
            draw(model);
        }
    }

    return { draw, destroy, resize, restyle, get plot () { return plot; } };
}

//  ---------------------------------------------------------------------------
//  Energy bars

//  energyChart(box) -> {draw(buckets, period, currency), ...}. Each bucket a
//  bar of the energy used, its phantom part drawn over it from the base in
//  the phantom colour.
export function energyChart (box) {
    let plot = null;
    let last = null;

    function label (b, period, long) {
        const ms = new Date(b.start).getTime();
        if (period === 'month')
            return fmt(ms, long ? { month: 'long', year: 'numeric' } : { month: 'short' });
        if (period === 'week')
            return `${long ? 'Week of ' : ''}${fmt(ms, { day: 'numeric', month: 'short' })}`;
        return fmt(ms, long ? { weekday: 'short', day: 'numeric', month: 'short' } : { day: 'numeric', month: 'short' });
    }

    function draw (buckets, period, currency) {
        last = { buckets, period, currency };
        destroy();
        box.replaceChildren();
        const c = colors();
        const xs = buckets.map((b, i) => i);
        const used = buckets.map((b) => (b.energyKwh === null || b.energyKwh === undefined ? null : Number(b.energyKwh)));
        const phantom = buckets.map((b) => (b.phantomKwh === null || b.phantomKwh === undefined ? null : Number(b.phantomKwh)));
        const bars = uPlot.paths.bars({ size: [0.7, 48], gap: 1 });
        plot = new uPlot({
            ...chartSize(box, true),
            cursor: { drag: { x: false, y: false }, points: { show: false } },
            scales: {
                x: { time: false, range: () => [-0.6, Math.max(0.6, buckets.length - 0.4)] },
                y: { range: (u, min, max) => [0, Math.max(0.01, (max || 0) * 1.1)] },
            },
            axes: [
                { ...timeAxis(c), values: (u, splits) => splits.map((i) => (Number.isInteger(i) && buckets[i]
                    ? label(buckets[i], period, false) : '')), size: 36, space: 48 },
                yAxis(c, kwhValues),
            ],
            series: [
                { label: { day: 'Day', week: 'Week', month: 'Month' }[period] || 'Period',
                  value: (u, i) => (buckets[i] ? label(buckets[i], period, true) : '–') },
                { label: 'Used', fill: c.used, stroke: c.used, width: 0, paths: bars, points: { show: false },
                  value: (u, v) => fmtKwh(v) },
                { label: 'Phantom', fill: c.phantom, stroke: c.phantom, width: 0, paths: bars, points: { show: false },
                  value: (u, v, si, i) => (v === null || v === undefined ? '–'
                      : `${fmtKwh(v)} · ${fmtMoney(buckets[i] && buckets[i].phantomCost, currency)}`) },
            ],
        }, [xs, used, phantom], box);
    }

    function destroy () {
        if (plot)
            plot.destroy();
        plot = null;
    }

    return {
        draw, destroy,
        resize: () => { if (plot) plot.setSize(chartSize(box, true)); },
        restyle: () => { if (last) draw(last.buckets, last.period, last.currency); },
    };
}

//  Calls fn when the colour scheme changes; returns the unsubscribe.
export function onSchemeChange (fn) {
    const query = window.matchMedia('(prefers-color-scheme: dark)');
    query.addEventListener('change', fn);
    return () => query.removeEventListener('change', fn);
}
