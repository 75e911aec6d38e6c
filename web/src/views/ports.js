//  Ports: create on a device, copy the UUID, change detection settings, delete.
import { h, mount, badge, fmtWatts, fmtAgo } from '../dom.js';
import { api, live, optional } from '../api.js';
import { copyButton, confirmDialog, modal, showError, toast } from '../ui.js';

export function portsView (main, onLeave) {
    const alert = h('div', {});
    const formSlot = h('div', {});
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    let ports = [];
    let devices = [];

    mount(main,
        h('div', { class: 'page-head' }, h('h1', {}, 'Ports'),
          h('p', { class: 'muted' }, 'A port is one outlet a device measures. Its ID goes in each reading as ',
            h('code', {}, 'portId'), '.')),
        h('section', { class: 'card' }, formSlot, alert),
        h('section', { class: 'card' }, list));

    function renderForm () {
        if (!devices.length) {
            mount(formSlot, h('p', { class: 'empty', 'data-testid': 'ports-need-device' },
                'Create a device first in ', h('a', { href: '#/devices' }, 'Devices'), '.'));
            return;
        }
        const form = h('form', { class: 'inline-form', 'data-testid': 'port-create-form',
            onsubmit: async (event) => {
                event.preventDefault();
                const name = form.elements.name.value.trim();
                const deviceId = Number(form.elements.device.value);
                if (!name)
                    return;
                const button = form.querySelector('button');
                button.disabled = true;
                try {
                    const data = await api('POST', '/api/ports', { name, deviceId });
                    form.elements.name.value = '';
                    toast(`Port “${name}” created.`, 'ok');
                    showError(alert, null);
                    await load(data.port && data.port.id);
                } catch (error) {
                    showError(alert, error);
                } finally {
                    button.disabled = false;
                }
            } },
            h('label', { for: 'port-name', class: 'sr-only' }, 'New port name'),
            h('input', { id: 'port-name', name: 'name', placeholder: 'New port name, e.g. TV socket',
                         required: true, maxlength: 100, 'data-testid': 'port-name' }),
            h('label', { for: 'port-device', class: 'sr-only' }, 'Device'),
            h('select', { id: 'port-device', name: 'device', 'data-testid': 'port-device' },
              devices.map((d) => h('option', { value: d.id }, d.name))),
            h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'port-create' }, 'Create port'));
        mount(formSlot, form);
    }

    async function load (highlight) {
        try {
            const [p, d] = await Promise.all([
                optional('/api/ports', { ports: [] }),
                optional('/api/devices', { devices: [] }),
            ]);
            ports = p.ports || [];
            const hadDevices = devices.length;
            devices = d.devices || [];
            if (!formSlot.firstChild || hadDevices !== devices.length)
                renderForm();
            render(highlight);
        } catch (error) {
            showError(alert, error);
        }
    }

    function deviceName (id) {
        const device = devices.find((d) => String(d.id) === String(id));
        return device ? device.name : `#${id}`;
    }

    function render (highlight) {
        if (!ports.length) {
            mount(list, h('div', { class: 'empty', 'data-testid': 'ports-empty' }, h('p', {}, 'No ports yet.')));
            return;
        }
        mount(list, h('table', { class: 'table responsive', 'data-testid': 'ports' },
            h('thead', {}, h('tr', {},
                h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Port ID'),
                h('th', { scope: 'col' }, 'Device'), h('th', { scope: 'col' }, 'Status'),
                h('th', { scope: 'col', class: 'num' }, 'Power'),
                h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
            h('tbody', {}, ports.map((port) => row(port, port.id === highlight)))));
    }

    function row (port, fresh) {
        return h('tr', { 'data-testid': 'port-row', 'data-port': port.id, class: fresh ? 'fresh' : undefined },
            h('td', { 'data-label': 'Name' }, h('a', { href: `#/ports/${port.id}`, 'data-testid': 'port-link' }, port.name)),
            h('td', { 'data-label': 'Port ID', class: 'stacked' }, h('div', { class: 'copy-row' },
                h('code', { class: 'uuid', 'data-testid': 'port-id' }, port.id),
                copyButton(port.id, `Copy ID of ${port.name}`, 'copy-port-id'))),
            h('td', { 'data-label': 'Device' }, deviceName(port.deviceId)),
            h('td', { 'data-label': 'Status', 'data-field': 'status' }, badge(port.status, 'port-status')),
            h('td', { 'data-label': 'Power', class: 'num', 'data-field': 'power',
                      title: port.lastReadingAt ? `last reading ${fmtAgo(port.lastReadingAt)}` : 'no readings yet' },
              fmtWatts(port.lastPower)),
            h('td', { class: 'actions' },
                h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'port-settings',
                              onclick: () => portSettingsDialog(port, load) }, 'Settings'),
                h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'data-testid': 'port-delete',
                              onclick: () => remove(port) }, 'Delete')));
    }

    function remove (port) {
        confirmDialog('Delete port?', `“${port.name}”, its readings and episodes are deleted.`, 'Delete', async () => {
            try {
                await api('DELETE', `/api/ports/${port.id}`);
                toast('Port deleted.', 'ok');
                load();
            } catch (error) {
                showError(alert, error);
            }
        });
    }

    //  Live status and power, in place.
    const update = (event) => {
        const tr = list.querySelector(`tr[data-port="${CSS.escape(event.portId || '')}"]`);
        if (!tr)
            return;
        if (event.status)
            mount(tr.querySelector('[data-field=status]'), badge(event.status, 'port-status'));
        if (event.power !== undefined)
            tr.querySelector('[data-field=power]').textContent = fmtWatts(event.power);
    };
    onLeave(live('reading', update));
    onLeave(live('status', update));
    onLeave(live('resync', () => load()));
    load();
}

//  The detection settings of a port; shared with the port page.
export function portSettingsDialog (port, done) {
    const s = port.settings || {};
    const slot = h('div', {});
    const num = (name, label, value, step, hint) => h('div', { class: 'field' },
        h('label', { for: `s-${name}` }, label),
        h('input', { id: `s-${name}`, name, type: 'number', min: 0, step, value: value ?? '',
                     inputmode: 'decimal', 'data-testid': `setting-${name}` }),
        hint ? h('p', { class: 'hint' }, hint) : null);
    const mode = h('select', { id: 's-expectedOff', name: 'expectedOff', 'data-testid': 'setting-expectedOff' },
        [['never', 'No'], ['always', 'Always'], ['window', 'In a daily time window']].map(([v, label]) =>
            h('option', { value: v, selected: (s.expectedOff || 'never') === v }, label)));
    const from = h('input', { id: 's-from', type: 'time', value: s.expectedOffFrom || '22:00', 'data-testid': 'setting-from' });
    const to = h('input', { id: 's-to', type: 'time', value: s.expectedOffTo || '07:00', 'data-testid': 'setting-to' });
    const windowRow = h('div', { class: 'row2' },
        h('div', { class: 'field' }, h('label', { for: 's-from' }, 'Off from'), from),
        h('div', { class: 'field' }, h('label', { for: 's-to' }, 'Off until'), to));
    const syncWindow = () => { windowRow.hidden = mode.value !== 'window'; };
    mode.addEventListener('change', syncWindow);
    syncWindow();
    const name = h('input', { id: 's-name', value: port.name, required: true, maxlength: 100, 'data-testid': 'setting-name' });

    const { dialog } = modal(`Settings: ${port.name}`, [
        slot,
        h('div', { class: 'field' }, h('label', { for: 's-name' }, 'Name'), name),
        h('div', { class: 'row2' },
            num('offWatts', 'Off at or below (W)', s.offWatts ?? 0.5, 0.1),
            num('standbyWatts', 'In use above (W)', s.standbyWatts ?? 15, 0.1)),
        num('minPhantomSeconds', 'Phantom after (seconds of low draw)', s.minPhantomSeconds ?? 60, 1),
        h('div', { class: 'field' }, h('label', { for: 's-expectedOff' }, 'Should this appliance be off?'), mode,
          h('p', { class: 'hint' }, 'While it should be off, any draw above the off level counts as phantom.')),
        windowRow,
    ], [
        { label: 'Cancel' },
        { label: 'Save', kind: 'primary', submit: true, testid: 'settings-save', onclick: async () => {
            const value = (field) => Number(dialog.querySelector(`[name=${field}]`).value);
            //  The API takes the settings fields flat, beside name.
            const body = {
                name: name.value.trim(),
                offWatts: value('offWatts'),
                standbyWatts: value('standbyWatts'),
                minPhantomSeconds: Math.round(value('minPhantomSeconds')),
                expectedOff: mode.value,
            };
            if (mode.value === 'window') {
                body.expectedOffFrom = from.value.slice(0, 5);
                body.expectedOffTo = to.value.slice(0, 5);
            }
            if (!(body.standbyWatts > body.offWatts)) {
                showError(slot, new Error('“In use above” must be higher than “Off at or below”.'));
                return false;
            }
            try {
                await api('PATCH', `/api/ports/${port.id}`, body);
                toast('Settings saved.', 'ok');
                if (done)
                    done();
                return true;
            } catch (error) {
                showError(slot, error);
                return false;
            }
        } },
    ], 'port-settings-dialog');
}
