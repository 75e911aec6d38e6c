//  Account settings: the electricity price (flat or time of use, from a
//  date on), currency, time zone and language, the daily digest, webhooks,
//  and where the account is signed in (sessions).
//  Each card saves only its own fields: a price sent again unchanged would
//  replace the price history.
import { h, mount } from '../dom.js';
import { api } from '../api.js';
import { state } from '../state.js';
import { fmtAgo, fmtDate, fmtMoney, fmtTime, fromLocalInput, setAccount, toDateInput } from '../format.js';
import { clearOnEdit, field, readNumber, showApiFieldError, showFieldErrors, clearFieldErrors } from '../forms.js';
import { describeSchedule, scheduleEditor } from '../schedule.js';
import { confirmDialog, copyButton, modal, showError, toast } from '../ui.js';

const COMMON_CURRENCIES = ['EUR', 'USD', 'GBP', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'CZK', 'HUF', 'CAD', 'AUD',
                           'NZD', 'JPY', 'CNY', 'INR', 'BRL', 'ZAR'];
const COMMON_LOCALES = ['en-GB', 'en-US', 'de-DE', 'fr-FR', 'es-ES', 'it-IT', 'nl-NL', 'pl-PL', 'sv-SE', 'da-DK',
                        'nb-NO', 'fi-FI', 'pt-PT', 'pt-BR', 'cs-CZ', 'ja-JP'];

//  The codes the gateway accepts (GET /api/currencies), else the browser's
//  ISO 4217 list, else a short one.
let accepted = null;
function currencies () {
    if (accepted && accepted.length)
        return accepted;
    const all = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('currency') : [];
    return all.length ? all : COMMON_CURRENCIES;
}

function currencyName (code) {
    try {
        return new Intl.DisplayNames(undefined, { type: 'currency' }).of(code);
    } catch {
        return code;
    }
}

function zones () {
    return typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
}

function validLocale (tag) {
    try {
        return Intl.getCanonicalLocales(tag).length === 1 && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(tag);
    } catch {
        return false;
    }
}

const MESSAGES = {
    currency: 'Choose a currency from the list.',
    pricePerKwh: 'Enter the price per kWh, from 0 to 100.',
    peakPricePerKwh: 'Enter the peak price per kWh, from 0 to 100.',
    validFrom: 'Enter a date, or leave it empty for all your data.',
    peakWindows: 'Add at least one peak window, each with a day and two different times.',
    timeZone: 'Choose a time zone from the list.',
    locale: 'Enter a language tag such as en-GB or de-DE.',
    url: 'Enter a web address starting with http:// or https://.',
};

export function settingsView (main, onLeave) {
    const alert = h('div', {});
    const priceCard = h('section', { class: 'card narrow', 'data-testid': 'tariff-card' });
    const regionCard = h('section', { class: 'card narrow', 'data-testid': 'region-card' });
    const digestCard = h('section', { class: 'card narrow', 'data-testid': 'digest-card' });
    const hooksCard = h('section', { class: 'card narrow', 'data-testid': 'webhooks-card' });
    const sessionsCard = h('section', { class: 'card narrow', 'data-testid': 'sessions-card' });
    mount(main, h('div', { class: 'page-head' }, h('h1', {}, 'Settings'),
                  h('p', { class: 'muted' }, `Signed in as ${state.user.email}.`)),
          alert, h('div', { class: 'settings-grid' }, priceCard, regionCard, digestCard, hooksCard, sessionsCard));

    let settings = null;

    async function load () {
        try {
            const [data, codes] = await Promise.all([
                api('GET', '/api/settings'),
                accepted ? null : api('GET', '/api/currencies').catch(() => null),
            ]);
            if (codes && Array.isArray(codes.currencies))
                accepted = codes.currencies;
            settings = data.settings || data;
            state.settings = settings;
            renderPrice();
            renderRegion();
            renderDigest();
            loadHistory();
        } catch (error) {
            showError(alert, error);
        }
    }

    //  -----------------------------------------------------------------------
    //  Electricity price

    const history = h('div', { 'data-testid': 'tariff-history' });

    function renderPrice () {
        const t = settings.tariff || { kind: 'flat', pricePerKwh: settings.tariffPerKwh ?? 0.3 };
        let kind = t.kind === 'timeOfUse' ? 'timeOfUse' : 'flat';
        const slot = h('div', {});
        const list = currencies();
        const current = settings.currency || 'EUR';
        const currency = h('select', { 'data-testid': 'setting-currency' },
            (list.includes(current) ? list : [current, ...list]).map((c) => h('option', { value: c, selected: c === current },
                `${c} – ${currencyName(c)}`)));
        const price = h('input', { type: 'number', min: 0, max: 100, step: 0.0001, inputmode: 'decimal',
                                   value: t.pricePerKwh ?? '', 'data-testid': 'setting-price' });
        const peak = h('input', { type: 'number', min: 0, max: 100, step: 0.0001, inputmode: 'decimal',
                                  value: t.peakPricePerKwh ?? '', 'data-testid': 'setting-peak-price' });
        const windows = Array.isArray(t.peakWindows) && t.peakWindows.length ? t.peakWindows : null;
        const editor = scheduleEditor({ windows: windows || [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'],
                                                               from: '17:00', to: '21:00' }],
                                        emptyText: 'Add at least one peak window.',
                                        max: 8, presets: ['evenings', 'workdays'], testid: 'peak-windows' });
        const validFrom = h('input', { type: 'date', value: t.validFrom ? toDateInput(new Date(t.validFrom).getTime()) : '',
                                       'data-testid': 'setting-valid-from' });
        const priceField = field({ name: 'pricePerKwh', label: 'Price per kWh', input: price });
        const priceLabel = priceField.querySelector('label');
        const peakPart = h('div', {},
            field({ name: 'peakPricePerKwh', label: 'Peak price per kWh', input: peak }),
            h('div', { class: 'field', 'data-field-name': 'peakWindows' },
                h('p', { class: 'label' }, 'Peak hours (in your time zone)'), editor.el,
                h('p', { class: 'field-error', id: 'peak-windows-error', 'data-testid': 'field-error-peakWindows',
                         'data-field': 'peakWindows', hidden: true })));
        clearOnEdit(peakPart, 'peakWindows');
        const sync = () => {
            peakPart.hidden = kind !== 'timeOfUse';
            priceLabel.textContent = kind === 'timeOfUse' ? 'Off-peak price per kWh' : 'Price per kWh';
        };
        const kinds = h('fieldset', { class: 'choices inline', 'data-testid': 'setting-tariff-kind' },
            h('legend', {}, 'Tariff'),
            [['flat', 'One price'], ['timeOfUse', 'Peak and off-peak (time of use)']].map(([value, label]) =>
                h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'kind', value, checked: kind === value,
                    'data-testid': `tariff-${value}`, onchange: () => { kind = value; sync(); } }), ` ${label}`)));
        sync();

        const form = h('form', { class: 'stack', novalidate: true, 'data-testid': 'tariff-form',
            onsubmit: async (event) => {
                event.preventDefault();
                showError(slot, null);
                const errors = {};
                const p = readNumber(price, { min: 0, max: 100 });
                if (p.error) errors.pricePerKwh = p.error;
                const tariff = { kind, pricePerKwh: p.value, peakPricePerKwh: null, peakWindows: null, validFrom: null };
                if (kind === 'timeOfUse') {
                    const q = readNumber(peak, { min: 0, max: 100 });
                    if (q.error) errors.peakPricePerKwh = q.error; else tariff.peakPricePerKwh = q.value;
                    const w = editor.read();
                    if (w.error) errors.peakWindows = w.error; else tariff.peakWindows = w.value;
                }
                if (validFrom.value) {
                    const ms = fromLocalInput(validFrom.value);
                    if (ms === null) errors.validFrom = MESSAGES.validFrom;
                    else tariff.validFrom = new Date(ms).toISOString();
                } else if (validFrom.validity && validFrom.validity.badInput) {
                    errors.validFrom = MESSAGES.validFrom;
                }
                if (!currencies().includes(currency.value) && currency.value !== settings.currency)
                    errors.currency = MESSAGES.currency;
                if (!showFieldErrors(form, errors))
                    return;
                const before = { kind: t.kind || 'flat', pricePerKwh: t.pricePerKwh, peakPricePerKwh: t.peakPricePerKwh ?? null,
                                 peakWindows: t.kind === 'timeOfUse' ? windows : null,
                                 validFrom: t.validFrom ? new Date(t.validFrom).toISOString() : null };
                const update = {};
                if (currency.value !== settings.currency)
                    update.currency = currency.value;
                if (JSON.stringify(tariff) !== JSON.stringify(before))
                    update.tariff = tariff;
                if (!Object.keys(update).length) {
                    toast('Nothing to save: the price is as it was.');
                    return;
                }
                await save(form, slot, update, 'Price saved.');
                loadHistory();
            } },
            slot,
            field({ name: 'currency', label: 'Currency', input: currency }),
            kinds,
            priceField,
            peakPart,
            field({ name: 'validFrom', label: 'In force from', input: validFrom,
                    hint: 'Leave empty to price all your data at it. Set the day your price changed to keep earlier days at the old price.' }),
            h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'tariff-save' }, 'Save price'));
        mount(priceCard, h('h2', {}, 'Electricity price'), form,
              h('h3', { class: 'sub' }, 'Price history'), history);
    }

    async function loadHistory () {
        try {
            const data = await api('GET', '/api/tariffs');
            const periods = data.tariffs || [];
            const currency = settings.currency;
            mount(history, periods.length ? h('ul', { class: 'plain-list' }, periods.map((p, i) => {
                const next = periods[i + 1];
                const span = `${p.validFrom ? `from ${fmtDate(p.validFrom)}` : 'from the start'}`
                    + `${next && next.validFrom ? ` until ${fmtDate(next.validFrom)}` : ''}`;
                return h('li', { 'data-testid': 'tariff-period' }, h('strong', {}, span), ': ',
                    p.kind === 'timeOfUse'
                        ? `${fmtMoney(p.pricePerKwh, currency)} per kWh off-peak, ${fmtMoney(p.peakPricePerKwh, currency)} `
                          + `at peak (${describeSchedule(p.peakWindows) || 'no peak hours'})`
                        : `${fmtMoney(p.pricePerKwh, currency)} per kWh`);
            })) : h('p', { class: 'hint' }, 'One price for all your data.'));
        } catch (error) {
            mount(history, h('p', { class: 'hint' }, `The price history cannot be shown (${error.message}).`));
        }
    }

    //  -----------------------------------------------------------------------
    //  Time zone and language

    function renderRegion () {
        const slot = h('div', {});
        const list = zones();
        const current = settings.timeZone || 'UTC';
        const zone = list.length
            ? h('select', { 'data-testid': 'setting-zone' },
                (list.includes(current) ? list : [current, ...list]).map((z) => h('option', { value: z, selected: z === current }, z)))
            : h('input', { value: current, 'data-testid': 'setting-zone' });
        const locale = h('input', { value: settings.locale || navigator.language || 'en-GB', list: 'locales',
                                    autocomplete: 'off', spellcheck: 'false', 'data-testid': 'setting-locale' });
        const form = h('form', { class: 'stack', novalidate: true, 'data-testid': 'region-form',
            onsubmit: async (event) => {
                event.preventDefault();
                showError(slot, null);
                const errors = {};
                const tz = zone.value.trim();
                try {
                    new Intl.DateTimeFormat('en-US', { timeZone: tz });
                } catch {
                    errors.timeZone = MESSAGES.timeZone;
                }
                const tag = locale.value.trim();
                if (!validLocale(tag))
                    errors.locale = MESSAGES.locale;
                if (!showFieldErrors(form, errors))
                    return;
                const ok = await save(form, slot, { timeZone: tz, locale: tag }, 'Time zone and language saved.');
                if (ok) {
                    setAccount({ timeZone: tz });
                    renderPrice();
                    loadHistory();
                }
            } },
            slot,
            field({ name: 'timeZone', label: 'Time zone', input: zone,
                    hint: 'Every time on these pages, “today”, schedules and peak hours are in this zone.' }),
            field({ name: 'locale', label: 'Language of the daily digest', input: locale,
                    hint: `A language tag such as en-GB. This browser uses ${navigator.language || 'an unknown one'}.` }),
            h('datalist', { id: 'locales' }, COMMON_LOCALES.map((l) => h('option', { value: l }))),
            h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'region-save' }, 'Save'));
        mount(regionCard, h('h2', {}, 'Time zone and language'), form);
    }

    //  -----------------------------------------------------------------------
    //  Daily digest

    function renderDigest () {
        const slot = h('div', {});
        const box = h('input', { type: 'checkbox', role: 'switch', id: 'digest-enabled', checked: settings.digestEnabled !== false,
                                 'data-testid': 'setting-digest',
            onchange: async () => {
                box.disabled = true;
                const ok = await save(digestCard, slot, { digestEnabled: box.checked },
                                      box.checked ? 'The daily digest is on.' : 'The daily digest is off.');
                if (!ok)
                    box.checked = !box.checked;
                box.disabled = false;
            } });
        mount(digestCard, h('h2', {}, 'Daily digest'), slot,
            h('label', { class: 'switch', for: 'digest-enabled' }, box,
              h('span', {}, 'Send me a summary of yesterday each morning')),
            h('p', { class: 'hint' }, 'Yesterday’s waste per port and its cost, with the same figures as the overview, '
              + 'as a notification here and to your webhooks.'));
    }

    //  PATCH /api/settings with update; field errors next to their fields.
    async function save (form, slot, update, done) {
        const button = form.querySelector('button[type=submit]');
        if (button)
            button.disabled = true;
        try {
            const data = await api('PATCH', '/api/settings', update);
            settings = { ...settings, ...update, ...((data && (data.settings || data)) || {}) };
            state.settings = settings;
            setAccount({ timeZone: settings.timeZone, currency: settings.currency });
            clearFieldErrors(form);
            toast(done, 'ok');
            return true;
        } catch (error) {
            if (!showApiFieldError(form, error, MESSAGES))
                showError(slot, error);
            return false;
        } finally {
            if (button)
                button.disabled = false;
        }
    }

    //  -----------------------------------------------------------------------
    //  Webhooks

    const hookList = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const hookAlert = h('div', {});
    let hookTimer = null;
    onLeave(() => clearTimeout(hookTimer));

    function renderHooks () {
        const url = h('input', { type: 'url', placeholder: 'https://example.com/phantomwatch', autocomplete: 'off',
                                 'data-testid': 'webhook-url' });
        const form = h('form', { class: 'inline-form fields', novalidate: true, 'data-testid': 'webhook-form',
            onsubmit: async (event) => {
                event.preventDefault();
                const value = url.value.trim();
                let ok = /^https?:\/\/[^\s/]/.test(value);
                try {
                    new URL(value);
                } catch {
                    ok = false;
                }
                if (!showFieldErrors(form, ok ? {} : { url: MESSAGES.url }))
                    return;
                const button = form.querySelector('button');
                button.disabled = true;
                try {
                    const data = await api('POST', '/api/webhooks', { url: value });
                    url.value = '';
                    clearFieldErrors(form);
                    showError(hookAlert, null);
                    showSecret(data.webhook, data.secret);
                    loadHooks();
                } catch (error) {
                    //  The server's own words: it says why an address is refused.
                    if (!showApiFieldError(form, error))
                        showError(hookAlert, error);
                } finally {
                    button.disabled = false;
                }
            } },
            field({ name: 'url', label: 'Address (URL)', input: url, className: 'grow' }),
            h('div', { class: 'field field-button' },
                h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'webhook-create' }, 'Add webhook')));
        mount(hooksCard, h('h2', {}, 'Webhooks'),
            h('p', { class: 'hint' }, 'Every notification is also sent as JSON (POST) to these addresses, signed with ',
              h('code', {}, 'X-PhantomWatch-Signature'), '.'),
            form, hookAlert, hookList);
    }

    function showSecret (hook, secret) {
        if (!secret)
            return;
        const box = h('textarea', { readonly: true, rows: 2, class: 'mono token-field', spellcheck: 'false',
                                    value: secret, 'data-testid': 'webhook-secret', 'aria-label': 'Signing secret' });
        modal('Webhook added', [
            h('p', {}, 'Requests to ', h('code', {}, hook ? hook.url : 'it'), ' are signed with this secret:'),
            h('div', { class: 'copy-row' }, box, copyButton(secret, 'Copy secret', 'copy-webhook-secret', box)),
            h('p', { class: 'warn', role: 'note' }, 'It is shown only once. Copy it now to check the signatures.'),
        ], [{ label: 'Done', kind: 'primary', testid: 'webhook-secret-done' }], 'webhook-secret-dialog');
        box.select();
    }

    function delivery (d) {
        if (!d)
            return h('span', { class: 'muted', 'data-testid': 'webhook-last' }, 'No deliveries yet.');
        if (d.status === 'delivered')
            return h('span', { 'data-testid': 'webhook-last', 'data-status': 'delivered' },
                h('span', { class: 'badge badge-active' }, 'delivered'), ` ${fmtTime(d.deliveredAt || d.createdAt)}`);
        if (d.status === 'failed')
            return h('span', { 'data-testid': 'webhook-last', 'data-status': 'failed' },
                h('span', { class: 'badge badge-offline' }, 'failed'),
                ` ${fmtTime(d.createdAt)} after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
                d.lastError ? h('span', { class: 'block small muted' }, d.lastError) : null);
        return h('span', { 'data-testid': 'webhook-last', 'data-status': d.status || 'pending' },
            h('span', { class: 'badge badge-idle' }, 'sending'),
            ` ${fmtTime(d.createdAt)}${d.attempts ? `, attempt ${d.attempts}` : ''}`,
            d.lastError ? h('span', { class: 'block small muted' }, d.lastError) : null);
    }

    async function loadHooks () {
        clearTimeout(hookTimer);
        try {
            const data = await api('GET', '/api/webhooks');
            const hooks = data.webhooks || [];
            if (!hooks.length) {
                mount(hookList, h('p', { class: 'empty', 'data-testid': 'webhooks-empty' }, 'No webhooks.'));
                return;
            }
            mount(hookList, h('ul', { class: 'hooks', 'data-testid': 'webhooks' }, hooks.map(hookRow)));
            //  A delivery on its way: look again shortly.
            if (hooks.some((w) => w.lastDelivery && w.lastDelivery.status === 'pending'))
                hookTimer = setTimeout(loadHooks, 3000);
        } catch (error) {
            showError(hookAlert, error);
        }
    }

    function hookRow (w) {
        const switchId = `hook-${w.id}-on`;
        const onOff = h('span', {}, w.enabled !== false ? 'On' : 'Off');
        const enabled = h('input', { type: 'checkbox', role: 'switch', id: switchId, checked: w.enabled !== false,
                                     'data-testid': 'webhook-enabled',
            onchange: async () => {
                enabled.disabled = true;
                try {
                    await api('PATCH', `/api/webhooks/${w.id}`, { enabled: enabled.checked });
                    onOff.textContent = enabled.checked ? 'On' : 'Off';
                    toast(enabled.checked ? 'Webhook on.' : 'Webhook off.', 'ok');
                } catch (error) {
                    enabled.checked = !enabled.checked;
                    showError(hookAlert, error);
                } finally {
                    enabled.disabled = false;
                }
            } });
        return h('li', { class: 'hook', 'data-testid': 'webhook', 'data-id': w.id },
            h('div', { class: 'hook-main' },
                h('code', { class: 'hook-url' }, w.url),
                h('div', { class: 'small' }, 'Last delivery: ', delivery(w.lastDelivery))),
            h('div', { class: 'hook-actions' },
                h('label', { class: 'switch', for: switchId }, enabled, onOff),
                h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'webhook-test',
                    onclick: async (event) => {
                        const button = event.currentTarget;
                        button.disabled = true;
                        try {
                            await api('POST', `/api/webhooks/${w.id}/test`);
                            toast('Test sent. Its outcome shows here in a moment.', 'ok');
                            hookTimer = setTimeout(loadHooks, 2000);
                        } catch (error) {
                            showError(hookAlert, error);
                        } finally {
                            button.disabled = false;
                        }
                    } }, 'Send test'),
                h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'data-testid': 'webhook-delete',
                    onclick: () => confirmDialog('Delete webhook?', `Nothing more is sent to ${w.url}.`, 'Delete', async () => {
                        try {
                            await api('DELETE', `/api/webhooks/${w.id}`);
                            toast('Webhook deleted.', 'ok');
                            loadHooks();
                        } catch (error) {
                            showError(hookAlert, error);
                        }
                    }) }, 'Delete')));
    }

    //  -----------------------------------------------------------------------
    //  Where you are signed in: end one session, or all but this one.

    const sessionAlert = h('div', {});
    const sessionList = h('div', {});

    async function loadSessions () {
        try {
            const data = await api('GET', '/api/auth/sessions');
            const sessions = data.sessions || [];
            const others = sessions.filter((x) => !x.current).length;
            mount(sessionList,
                h('ul', { class: 'hooks', 'data-testid': 'sessions' }, sessions.map(sessionRow)),
                others ? h('button', { type: 'button', class: 'btn btn-danger-ghost', 'data-testid': 'sessions-end-others',
                    onclick: () => confirmDialog('Sign out everywhere else?',
                        `Your ${others === 1 ? 'other session ends' : `${others} other sessions end`}; this one stays.`,
                        'Sign out', async () => {
                            try {
                                const result = await api('DELETE', '/api/auth/sessions');
                                toast(`Signed out of ${result.ended} other session${result.ended === 1 ? '' : 's'}.`, 'ok');
                                loadSessions();
                            } catch (error) {
                                showError(sessionAlert, error);
                            }
                        }) }, 'Sign out everywhere else') : null);
        } catch (error) {
            showError(sessionAlert, error);
        }
    }

    function sessionRow (x) {
        return h('li', { class: 'hook', 'data-testid': 'session', 'data-id': x.id, 'data-current': x.current ? 'yes' : 'no' },
            h('div', { class: 'hook-main' },
                h('div', {}, x.current ? h('span', { class: 'badge badge-active' }, 'This session') : null,
                  ` ${x.userAgent || 'Unknown browser or app'}`),
                h('div', { class: 'small muted' },
                  `From ${x.clientAddress || 'an unknown address'} · signed in ${fmtDate(x.createdAt)}`
                  + ` · last active ${fmtAgo(x.lastSeenAt)}`)),
            x.current ? null : h('div', { class: 'hook-actions' },
                h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'data-testid': 'session-end',
                    onclick: async (event) => {
                        event.currentTarget.disabled = true;
                        try {
                            await api('DELETE', `/api/auth/sessions/${x.id}`);
                            toast('Session ended.', 'ok');
                            loadSessions();
                        } catch (error) {
                            showError(sessionAlert, error);
                        }
                    } }, 'Sign out')));
    }

    mount(sessionsCard, h('h2', {}, 'Where you are signed in'),
          h('p', { class: 'muted small' }, 'A session ends after 30 days, or after two weeks unused.'),
          sessionAlert, sessionList);

    renderHooks();
    loadHooks();
    loadSessions();
    load();
}
