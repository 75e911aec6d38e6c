//  Ports: create on a device, copy the UUID, set what the appliance is
//  (its role and schedule) and the detection levels, delete.
import { h, mount, badge, statusNow, ROLES } from '../dom.js';
import { api, live } from '../api.js';
import { onTick } from '../state.js';
import { fmtAgo, fmtWatts } from '../format.js';
import { clearOnEdit, field, readName, readNumber, showApiFieldError, showFieldErrors, clearFieldErrors } from '../forms.js';
import { scheduleEditor } from '../schedule.js';
import { copyButton, confirmDialog, modal, showError, toast } from '../ui.js';
import { connectHelp } from './connect.js';

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
        const name = h('input', { id: 'port-name', placeholder: 'e.g. TV socket', maxlength: 100,
                                  autocomplete: 'off', 'data-testid': 'port-name' });
        const device = h('select', { id: 'port-device', 'data-testid': 'port-device' },
            devices.map((d) => h('option', { value: d.id }, d.name)));
        const form = h('form', { class: 'inline-form fields', 'data-testid': 'port-create-form', novalidate: true,
            onsubmit: async (event) => {
                event.preventDefault();
                const n = readName(name, 'a name for the port');
                if (!showFieldErrors(form, n.error ? { name: n.error } : {}))
                    return;
                const button = form.querySelector('button');
                button.disabled = true;
                try {
                    const data = await api('POST', '/api/ports', { name: n.value, deviceId: Number(device.value) });
                    name.value = '';
                    showError(alert, null);
                    clearFieldErrors(form);
                    await load(data.port && data.port.id);
                    if (data.port)
                        createdDialog(data.port);
                } catch (error) {
                    if (!showApiFieldError(form, error, { deviceId: 'Choose one of your devices.' }))
                        showError(alert, error);
                } finally {
                    button.disabled = false;
                }
            } },
            field({ name: 'name', label: 'New port name', input: name, className: 'grow' }),
            field({ name: 'deviceId', label: 'On device', input: device }),
            h('div', { class: 'field field-button' },
                h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'port-create' }, 'Create port')));
        mount(formSlot, form);
    }

    function createdDialog (port) {
        modal(`Port “${port.name}” created`, [
            h('p', {}, 'It is waiting for its first reading. Point a sensor at it:'),
            connectHelp(port.id),
        ], [
            { label: 'Open its page', kind: 'primary', testid: 'created-open',
              onclick: () => { location.hash = `#/ports/${port.id}`; } },
            { label: 'Close', testid: 'created-close' },
        ], 'port-created-dialog');
    }

    async function load (highlight) {
        try {
            const [p, d] = await Promise.all([api('GET', '/api/ports'), api('GET', '/api/devices')]);
            ports = p.ports || [];
            const now = Date.now();
            for (const port of ports)
                port.seenAt = now;
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
                h('th', { scope: 'col', class: 'num' }, 'Now'),
                h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
            h('tbody', {}, ports.map((port) => row(port, port.id === highlight)))));
    }

    function nowCell (port) {
        const s = statusNow(port);
        if (s === 'offline' || s === 'waiting')
            return h('span', { class: 'muted', 'data-testid': 'port-now' }, s === 'waiting' ? 'no reading yet' : 'offline');
        return h('span', { 'data-testid': 'port-now', title: `last reading ${fmtAgo(port.lastReadingAt)}` },
                 fmtWatts(port.lastPower));
    }

    function row (port, fresh) {
        return h('tr', { 'data-testid': 'port-row', 'data-port': port.id, class: fresh ? 'fresh' : undefined },
            h('td', { 'data-label': 'Name' }, h('span', {}, h('a', { href: `#/ports/${port.id}`, 'data-testid': 'port-link' }, port.name),
              port.isNew ? h('span', { class: 'badge badge-new', 'data-testid': 'port-new',
                                       title: 'Found on a plug over MQTT; new until you change its settings' }, 'new') : null,
              h('span', { class: 'role-chip' }, ROLES[(port.settings || {}).role] || ROLES.standby))),
            h('td', { 'data-label': 'Port ID', class: 'stacked' }, h('div', { class: 'copy-row' },
                h('code', { class: 'uuid', 'data-testid': 'port-id' }, port.id),
                copyButton(port.id, `Copy ID of ${port.name}`, 'copy-port-id'))),
            h('td', { 'data-label': 'Device' }, deviceName(port.deviceId)),
            h('td', { 'data-label': 'Status', 'data-field': 'status' }, badge(statusNow(port), 'port-status')),
            h('td', { 'data-label': 'Now', class: 'num', 'data-field': 'power' }, nowCell(port)),
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
    function refresh (port) {
        const tr = list.querySelector(`tr[data-port="${CSS.escape(port.id)}"]`);
        if (!tr)
            return;
        mount(tr.querySelector('[data-field=status]'), badge(statusNow(port), 'port-status'));
        mount(tr.querySelector('[data-field=power]'), nowCell(port));
    }
    //  An event of a port not listed: a plug's new channel, just created by
    //  the MQTT service. The list is read again (once per port) and the
    //  events that came meanwhile are applied to it, since the list may
    //  have been read before the reading they carry was stored.
    const unlisted = new Map();
    const update = (event) => {
        const port = ports.find((p) => p.id === event.portId);
        if (!port) {
            if (!event.portId || unlisted.get(event.portId) === null)
                return;
            if (unlisted.has(event.portId)) {
                unlisted.get(event.portId).push(event);
                return;
            }
            unlisted.set(event.portId, [event]);
            load(event.portId).then(() => {
                const events = unlisted.get(event.portId);
                unlisted.set(event.portId, null);
                if (ports.some((p) => p.id === event.portId))
                    events.forEach(update);
            });
            return;
        }
        if (event.status)
            port.status = event.status;
        if (event.power !== undefined) {
            port.lastPower = event.power;
            port.lastReadingAt = event.ts;
            port.seenAt = Date.now();
        }
        refresh(port);
    };
    onLeave(live('reading', update));
    onLeave(live('status', update));
    onLeave(live('resync', () => load()));
    onLeave(onTick(() => ports.forEach(refresh)));
    load();
}

//  ---------------------------------------------------------------------------
//  The settings of a port, shared with the port page: name, what the
//  appliance is (role, and when it should be off), detection levels.

const ROLE_CHOICES = [
    { value: 'standby', label: 'Watch it for standby waste',
      hint: 'A TV, a charger, a games console: a low draw for a while counts as phantom.' },
    { value: 'shouldBeOff', label: 'It should be off',
      hint: 'Always, or at set times (nights, working hours): any draw above “off” then counts as phantom.' },
    { value: 'alwaysOn', label: 'It is on by design',
      hint: 'A fridge, a router, an alarm: never phantom, never notified, still charted and counted as used.' },
];

const MESSAGES = {
    name: 'Enter a name for the port.',
    offWatts: 'Enter the “off” level in watts, from 0 to 100,000.',
    standbyWatts: 'Enter the standby level in watts, from 0 to 100,000, above the “off” level.',
    minPhantomSeconds: 'Enter the number of seconds, from 0 to 604,800 (a week).',
    role: 'Choose what this appliance is.',
};

export function portSettingsDialog (port, done) {
    const s = port.settings || {};
    const slot = h('div', {});
    let role = s.role || 'standby';
    let scheduled = Array.isArray(s.offSchedule) && s.offSchedule.length > 0;

    const name = h('input', { value: port.name, maxlength: 100, 'data-testid': 'setting-name' });
    const num = (key, value, step) => h('input', { type: 'number', min: 0, step, value: value ?? '',
                                                   inputmode: 'decimal', 'data-testid': `setting-${key}` });
    const offWatts = num('offWatts', s.offWatts ?? 0.5, 0.1);
    const standbyWatts = num('standbyWatts', s.standbyWatts ?? 15, 0.1);
    const minPhantom = num('minPhantomSeconds', s.minPhantomSeconds ?? 60, 1);
    const editor = scheduleEditor({ windows: scheduled ? s.offSchedule : [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'],
                                                                 from: '22:00', to: '07:00' }],
                                    max: 4, presets: ['nights', 'workdays'], testid: 'off-schedule' });

    const roleBox = h('fieldset', { class: 'choices', 'data-testid': 'setting-role' },
        h('legend', {}, 'What is this appliance?'),
        ROLE_CHOICES.map((c) => h('label', { class: 'choice' },
            h('input', { type: 'radio', name: 'role', value: c.value, checked: role === c.value,
                         'data-testid': `role-${c.value}`, onchange: () => { role = c.value; sync(); } }),
            h('span', {}, h('strong', {}, c.label), h('span', { class: 'hint block' }, c.hint)))));
    const whenBox = h('fieldset', { class: 'choices inline', 'data-testid': 'setting-when' },
        h('legend', {}, 'When should it be off?'),
        h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'when', value: 'always', checked: !scheduled,
            'data-testid': 'when-always', onchange: () => { scheduled = false; sync(); } }), ' Always'),
        h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'when', value: 'schedule', checked: scheduled,
            'data-testid': 'when-schedule', onchange: () => { scheduled = true; sync(); } }), ' On a weekly schedule'));
    const scheduleField = h('div', { class: 'field', 'data-field-name': 'offSchedule' },
        h('p', { class: 'label' }, 'Off during (in your account’s time zone)'), editor.el,
        h('p', { class: 'field-error', id: 'off-schedule-error', 'data-testid': 'field-error-offSchedule',
                 'data-field': 'offSchedule', hidden: true }));
    clearOnEdit(scheduleField, 'offSchedule');
    const standbyField = field({ name: 'standbyWatts', label: 'Standby at or below (W)', input: standbyWatts,
                                 hint: 'Above this it is in use, never waste.' });
    const minField = field({ name: 'minPhantomSeconds', label: 'Phantom after (seconds)', input: minPhantom,
                             hint: 'How long the low draw lasts before it counts.' });

    function sync () {
        whenBox.hidden = role !== 'shouldBeOff';
        scheduleField.hidden = role !== 'shouldBeOff' || !scheduled;
        standbyField.hidden = role === 'alwaysOn';
        minField.hidden = role === 'alwaysOn';
    }
    sync();

    const { dialog } = modal(`Settings: ${port.name}`, [
        slot,
        field({ name: 'name', label: 'Name', input: name }),
        roleBox,
        whenBox,
        scheduleField,
        h('div', { class: 'row2' },
            field({ name: 'offWatts', label: 'Off at or below (W)', input: offWatts,
                    hint: 'At or below this the appliance is off.' }),
            standbyField),
        minField,
    ], [
        { label: 'Cancel' },
        { label: 'Save', kind: 'primary', submit: true, testid: 'settings-save', onclick: async () => {
            showError(slot, null);
            const errors = {};
            const body = { role };
            const n = readName(name, 'a name for the port');
            if (n.error) errors.name = n.error; else body.name = n.value;
            const off = readNumber(offWatts, { min: 0, max: 100000, unit: 'W' });
            if (off.error) errors.offWatts = off.error; else body.offWatts = off.value;
            if (role !== 'alwaysOn') {
                const standby = readNumber(standbyWatts, { min: 0, max: 100000, unit: 'W' });
                if (standby.error) errors.standbyWatts = standby.error; else body.standbyWatts = standby.value;
                if (!standby.error && !off.error && !(standby.value > off.value))
                    errors.standbyWatts = 'Enter a standby level above the “off” level.';
                const min = readNumber(minPhantom, { min: 0, max: 604800, integer: true, unit: 's' });
                if (min.error) errors.minPhantomSeconds = min.error; else body.minPhantomSeconds = min.value;
            }
            //  Another role keeps the schedule stored, for a change back.
            if (role === 'shouldBeOff')
                body.offSchedule = null;
            if (role === 'shouldBeOff' && scheduled) {
                const windows = editor.read();
                if (windows.error) errors.offSchedule = windows.error; else body.offSchedule = windows.value;
            }
            if (!showFieldErrors(dialog, errors))
                return false;
            try {
                //  The API takes the settings fields flat, beside name.
                await api('PATCH', `/api/ports/${port.id}`, body);
                toast('Settings saved.', 'ok');
                if (done)
                    done();
                return true;
            } catch (error) {
                if (!showApiFieldError(dialog, error, MESSAGES))
                    showError(slot, error);
                return false;
            }
        } },
    ], 'port-settings-dialog');
}
