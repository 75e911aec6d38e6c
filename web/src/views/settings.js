//  Account settings: tariff, currency, time zone (used for cost and
//  expected-off windows).
import { h, mount } from '../dom.js';
import { api, optional } from '../api.js';
import { state } from '../state.js';
import { showError, toast } from '../ui.js';

export function settingsView (main) {
    const alert = h('div', {});
    const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    mount(main, h('div', { class: 'page-head' }, h('h1', {}, 'Settings')), alert,
          h('section', { class: 'card narrow' }, body));

    async function load () {
        let settings = state.user.settings || {};
        try {
            const data = await optional('/api/settings', null);
            if (data)
                settings = { ...settings, ...(data.settings || data) };
        } catch (error) {
            showError(alert, error);
        }
        render(settings);
    }

    function render (s) {
        const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
        const form = h('form', { class: 'stack', 'data-testid': 'settings-form',
            onsubmit: async (event) => {
                event.preventDefault();
                const update = {
                    tariffPerKwh: Number(form.elements.tariff.value),
                    currency: form.elements.currency.value.trim().toUpperCase(),
                    timeZone: form.elements.zone.value.trim(),
                };
                try {
                    const data = await api('PATCH', '/api/settings', update);
                    state.user.settings = { ...s, ...update, ...((data && (data.settings || data)) || {}) };
                    state.currency = state.user.settings.currency || update.currency;
                    showError(alert, null);
                    toast('Settings saved.', 'ok');
                } catch (error) {
                    showError(alert, error);
                }
            } },
            h('div', { class: 'field' }, h('label', { for: 'set-tariff' }, 'Electricity price per kWh'),
              h('input', { id: 'set-tariff', name: 'tariff', type: 'number', min: 0, step: 0.0001, inputmode: 'decimal',
                           value: s.tariffPerKwh ?? 0.3, required: true, 'data-testid': 'setting-tariff' })),
            h('div', { class: 'field' }, h('label', { for: 'set-currency' }, 'Currency (ISO code)'),
              h('input', { id: 'set-currency', name: 'currency', pattern: '[A-Za-z]{3}', maxlength: 3,
                           value: s.currency || 'EUR', required: true, 'data-testid': 'setting-currency' })),
            h('div', { class: 'field' }, h('label', { for: 'set-zone' }, 'Time zone'),
              h('input', { id: 'set-zone', name: 'zone', list: 'zones', value: s.timeZone || 'UTC', required: true,
                           'data-testid': 'setting-zone' }),
              h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z })))),
            h('p', { class: 'hint' }, `Signed in as ${state.user.email}.`),
            h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'settings-submit' }, 'Save'));
        mount(body, form);
    }

    load();
}
