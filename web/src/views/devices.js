//  Devices: create, rename, delete; generate/rotate a token (shown once), revoke it.
import { h, mount } from '../dom.js';
import { fmtAgo, fmtTime } from '../format.js';
import { api } from '../api.js';
import { field, readName, showApiFieldError, showFieldErrors, clearFieldErrors } from '../forms.js';
import { copyButton, confirmDialog, modal, showError, toast } from '../ui.js';

export function devicesView (main) {
    const alert = h('div', {});
    const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
    const nameInput = h('input', { id: 'device-name', placeholder: 'e.g. Living room board', maxlength: 100,
                                   autocomplete: 'off', 'data-testid': 'device-name' });
    const form = h('form', { class: 'inline-form fields', 'data-testid': 'device-create-form', novalidate: true,
        onsubmit: async (event) => {
            event.preventDefault();
            const n = readName(nameInput, 'a name for the device');
            if (!showFieldErrors(form, n.error ? { name: n.error } : {}))
                return;
            const name = n.value;
            const button = form.querySelector('button');
            button.disabled = true;
            try {
                await api('POST', '/api/devices', { name });
                form.reset();
                clearFieldErrors(form);
                showError(alert, null);
                toast(`Device “${name}” created. Press Token to connect it.`, 'ok');
                await load();
            } catch (error) {
                if (!showApiFieldError(form, error))
                    showError(alert, error);
            } finally {
                button.disabled = false;
            }
        } },
        field({ name: 'name', label: 'New device name', input: nameInput, className: 'grow' }),
        h('div', { class: 'field field-button' },
            h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'device-create' }, 'Create device')));

    mount(main,
        h('div', { class: 'page-head' }, h('h1', {}, 'Devices'),
          h('p', { class: 'muted' }, 'A device is a sensor board or a smart plug. It sends readings with its token (over HTTP, or over MQTT: see MQTT).')),
        h('section', { class: 'card' }, form, alert),
        h('section', { class: 'card' }, list));

    async function load () {
        try {
            const data = await api('GET', '/api/devices');
            render(data.devices || []);
        } catch (error) {
            showError(alert, error);
        }
    }

    function render (devices) {
        if (!devices.length) {
            mount(list, h('div', { class: 'empty', 'data-testid': 'devices-empty' },
                h('p', {}, 'No devices yet. Create one above.')));
            return;
        }
        mount(list, h('table', { class: 'table responsive', 'data-testid': 'devices' },
            h('thead', {}, h('tr', {},
                h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Token'),
                h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
            h('tbody', {}, devices.map(row))));
    }

    function row (device) {
        const tokenInfo = device.hasToken
            ? h('span', {}, h('span', { class: 'badge badge-active' }, 'active'), ' ',
                h('span', { class: 'muted small' }, `created ${fmtAgo(device.tokenCreatedAt)}, last used ${fmtAgo(device.tokenLastUsedAt)}`))
            : h('span', { class: 'badge badge-off' }, 'none');
        return h('tr', { 'data-testid': 'device-row', 'data-device-id': device.id },
            h('td', { 'data-label': 'Name' }, h('strong', { 'data-testid': 'device-name-cell' }, device.name)),
            h('td', { 'data-label': 'Token', 'data-testid': 'device-token-state' }, tokenInfo),
            h('td', { 'data-label': 'Created' }, fmtTime(device.createdAt)),
            h('td', { class: 'actions' },
                h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'device-token-button',
                              onclick: () => token(device) }, device.hasToken ? 'Rotate token' : 'Token'),
                device.hasToken ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'device-revoke',
                                               onclick: () => revoke(device) }, 'Revoke') : null,
                device.mqtt ? h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'device-mqtt',
                                            onclick: () => mqttSettings(device) }, 'MQTT') : null,
                h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'device-rename',
                              onclick: () => rename(device) }, 'Rename'),
                h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', 'data-testid': 'device-delete',
                              onclick: () => remove(device) }, 'Delete')));
    }

    async function token (device) {
        const generate = async () => {
            try {
                const data = await api('POST', `/api/devices/${device.id}/token`);
                showToken(device, data.token);
                load();
            } catch (error) {
                showError(alert, error);
            }
        };
        if (!device.hasToken)
            return generate();
        confirmDialog('Rotate token?',
            `A new token replaces the current one of “${device.name}”. The old one keeps working only for a short grace period, so update the board soon.`,
            'Rotate', generate);
    }

    function showToken (device, value) {
        //  A read-only textarea shows the whole token even on a phone.
        const field = h('textarea', { readonly: true, rows: 2, class: 'mono token-field', spellcheck: 'false',
                                      value, 'data-testid': 'device-token', 'aria-label': 'Device token',
                                      onfocus: (e) => e.target.select() });
        modal(`Token for ${device.name}`, [
            h('p', {}, 'Put this token in your sensor board or the simulator (',
              h('code', {}, 'deviceToken'), ').'),
            h('div', { class: 'copy-row' }, field, copyButton(value, 'Copy token', 'copy-token', field)),
            h('p', { class: 'warn', role: 'note' },
              'This token is shown only once. Only a hash of it is kept, so copy it now; if you lose it, rotate it.'),
        ], [{ label: 'Done', kind: 'primary', testid: 'token-done' }], 'token-dialog');
        field.select();
    }

    //  What to type into a smart plug's MQTT page (Tasmota, Shelly,
    //  ESPHome): user and topic are the device's MQTT name, the password
    //  is its token. A broker listening on a loopback or wildcard address
    //  is reached at this page's own host.
    function mqttSettings (device) {
        const mqtt = device.mqtt;
        const local = ['127.0.0.1', '0.0.0.0', '::', '::1', 'localhost'].includes(mqtt.host);
        const host = local ? window.location.hostname : mqtt.host;
        const channels = h('div', { 'data-testid': 'mqtt-channels' }, h('p', { class: 'muted' }, 'Loading channels…'));
        const setting = (label, value, testid) => h('tr', {},
            h('th', { scope: 'row' }, label),
            h('td', {}, h('code', { 'data-testid': testid }, String(value)), ' ',
              copyButton(String(value), `Copy ${label.toLowerCase()}`, `copy-${testid}`)));
        modal(`MQTT settings for ${device.name}`, [
            h('p', {}, 'Type these into the plug\'s MQTT page. Its outlets appear as new ports once it publishes.'),
            h('table', { class: 'table', 'data-testid': 'mqtt-settings' }, h('tbody', {},
                setting('Host', host, 'mqtt-host'),
                setting('Port', mqtt.port, 'mqtt-port'),
                mqtt.tlsPort ? setting('TLS port', mqtt.tlsPort, 'mqtt-tls-port') : null,
                setting('User', mqtt.user, 'mqtt-user'),
                h('tr', {}, h('th', { scope: 'row' }, 'Password'),
                  h('td', { 'data-testid': 'mqtt-password' }, device.hasToken
                      ? 'the device token (shown once when it was made; rotate it if you lost it)'
                      : 'the device token: make one first (Token)')),
                setting('Topic', mqtt.topic, 'mqtt-topic'))),
            h('ul', { class: 'small' },
              h('li', {}, h('strong', {}, 'Tasmota'), ': Configuration → MQTT: Host, Port, User, Password, ',
                h('code', {}, 'Topic'), ' as above; keep Full Topic ', h('code', {}, '%prefix%/%topic%/'), '.'),
              h('li', {}, h('strong', {}, 'Shelly Gen2/Gen3'), ': Settings → MQTT: Server ',
                h('code', {}, `${host}:${mqtt.port}`), ', User, Password; MQTT prefix = the topic.'),
              h('li', {}, h('strong', {}, 'Shelly Gen1'), ': Internet & Security → Advanced: Server, User, Password; custom MQTT prefix ',
                h('code', {}, `shellies/${mqtt.topic}`), ' (its own default names the plug by its id).'),
              h('li', {}, h('strong', {}, 'ESPHome'), ': ', h('code', {}, 'mqtt:'), ' broker, port, username, password and ',
                h('code', {}, `topic_prefix: ${mqtt.topic}`), '.')),
            h('h3', {}, 'Channels'),
            channels,
        ], [{ label: 'Done', kind: 'primary', testid: 'mqtt-done' }], 'mqtt-dialog');
        mqttChannels(device, channels);
    }

    //  The channels the plug has published, each with the port it feeds
    //  and a select to move it onto another of the user's ports (PUT
    //  /api/devices/:id/mqtt-channels; phantom-mqtt applies it from the
    //  plug's next message on). A port another channel of this plug feeds
    //  is not offered (one channel per port).
    async function mqttChannels (device, slot) {
        let data, ports;
        try {
            [data, ports] = await Promise.all([
                api('GET', `/api/devices/${device.id}/mqtt-channels`),
                api('GET', '/api/ports').then((d) => d.ports || []),
            ]);
        } catch (error) {
            showError(slot, error);
            return;
        }
        const list = data.channels || [];
        if (!list.length) {
            mount(slot, h('p', { class: 'muted', 'data-testid': 'mqtt-channels-empty' },
                'None yet: each outlet the plug reports becomes a port here once it publishes.'));
            return;
        }
        const alert = h('div', {});
        const sorted = [...ports].sort((a, b) => a.name.localeCompare(b.name));
        const row = (channel) => {
            const taken = new Set(list.filter((c) => c !== channel).map((c) => c.portId));
            const select = h('select', { 'data-testid': 'mqtt-channel-port', 'aria-label': `Port for channel ${channel.channel}` },
                sorted.map((p) => h('option', { value: p.id, selected: p.id === channel.portId, disabled: taken.has(p.id) },
                    taken.has(p.id) ? `${p.name} (another channel)` : p.name)));
            select.addEventListener('change', async () => {
                select.disabled = true;
                try {
                    const answer = await api('PUT', `/api/devices/${device.id}/mqtt-channels`,
                                             { channel: channel.channel, portId: select.value });
                    Object.assign(channel, answer.channel);
                    showError(alert, null);
                    toast(`Channel ${channel.channel} now feeds “${channel.portName}”.`, 'ok');
                    draw();
                } catch (error) {
                    select.value = channel.portId;
                    showError(alert, error);
                } finally {
                    select.disabled = false;
                }
            });
            return h('tr', { 'data-testid': 'mqtt-channel', 'data-channel': channel.channel },
                h('th', { scope: 'row' }, h('code', {}, channel.channel),
                  channel.isNew ? h('span', { class: 'badge badge-new', title: 'Found on the plug; new until you change its port' }, 'new') : null),
                h('td', {}, select),
                h('td', { class: 'muted small' }, fmtAgo(channel.createdAt)));
        };
        const draw = () => mount(slot,
            h('p', { class: 'small' }, 'Each channel the plug reports feeds a port. Choose another of your ports to move its readings there from its next message on; the old port keeps its history.'),
            h('table', { class: 'table' },
              h('thead', {}, h('tr', {}, h('th', {}, 'Channel'), h('th', {}, 'Feeds port'), h('th', {}, 'First seen'))),
              h('tbody', {}, list.map(row))),
            alert);
        draw();
    }

    function revoke (device) {
        confirmDialog('Revoke token?',
            `“${device.name}” stops being able to send readings immediately.`, 'Revoke', async () => {
                try {
                    await api('DELETE', `/api/devices/${device.id}/token`);
                    toast('Token revoked.', 'ok');
                    load();
                } catch (error) {
                    showError(alert, error);
                }
            });
    }

    function rename (device) {
        const slot = h('div', {});
        const input = h('input', { id: 'rename-input', value: device.name, maxlength: 100,
                                   'data-testid': 'rename-input' });
        const { dialog } = modal('Rename device', [slot, field({ name: 'name', label: 'Name', input })], [
            { label: 'Cancel' },
            { label: 'Save', kind: 'primary', submit: true, testid: 'rename-save', onclick: async () => {
                const n = readName(input, 'a name for the device');
                if (!showFieldErrors(dialog, n.error ? { name: n.error } : {}))
                    return false;
                try {
                    await api('PATCH', `/api/devices/${device.id}`, { name: n.value });
                    load();
                    return true;
                } catch (error) {
                    if (!showApiFieldError(dialog, error))
                        showError(slot, error);
                    return false;
                }
            } },
        ], 'rename-dialog');
        input.select();
    }

    function remove (device) {
        confirmDialog('Delete device?',
            `“${device.name}” and its token are deleted. Its ports and their readings are deleted too.`, 'Delete', async () => {
                try {
                    await api('DELETE', `/api/devices/${device.id}`);
                    toast('Device deleted.', 'ok');
                    load();
                } catch (error) {
                    showError(alert, error);
                }
            });
    }

    load();
}
