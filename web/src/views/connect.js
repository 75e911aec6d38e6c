//  How to connect a sensor to a port: a curl command and the three lines of
//  the integration guide's sensor_simulator.py, with the port id filled in.
//  The device token is shown once when it is made (only its hash is kept),
//  so it stays a placeholder here.
import { h } from '../dom.js';
import { copyButton } from '../ui.js';

export const TOKEN_PLACEHOLDER = '<your device token>';

export function connectCommands (portId) {
    const url = `${location.origin}/api/sensor/reading`;
    const body = JSON.stringify({ deviceToken: TOKEN_PLACEHOLDER, portId, voltage: 230.0, current: 0.02, power: 4.6 });
    const curl = `curl -X POST '${url}' \\\n  -H 'Content-Type: application/json' \\\n  -d '${body}'`;
    const python = `NODE_SERVER_URL = "${url}"\nDEVICE_TOKEN = "${TOKEN_PLACEHOLDER}"\nPORT_ID = "${portId}"`;
    return { curl, python };
}

function block (label, text, testid) {
    const id = `${testid}-code`;
    return h('div', { class: 'code-block' },
        h('div', { class: 'code-head' }, h('span', { id: `${id}-label` }, label),
          copyButton(text, `Copy: ${label}`, `copy-${testid}`)),
        h('pre', { 'aria-labelledby': `${id}-label`, tabindex: '0' }, h('code', { 'data-testid': testid }, text)));
}

export function connectHelp (portId) {
    const { curl, python } = connectCommands(portId);
    return h('div', { class: 'connect', 'data-testid': 'connect-help' },
        h('p', {}, 'Send one reading by hand to see it arrive:'),
        block('curl', curl, 'connect-curl'),
        h('p', {}, 'Or set these three lines at the top of the integration guide’s ',
          h('code', {}, 'sensor_simulator.py'), ' and run it:'),
        block('sensor_simulator.py', python, 'connect-python'),
        h('p', { class: 'hint' }, 'Replace ', h('code', {}, TOKEN_PLACEHOLDER),
          ' with the token of the device this port belongs to. It was shown once when it was made; ',
          'if you no longer have it, make a new one under ', h('a', { href: '#/devices' }, 'Devices'), '.'));
}
