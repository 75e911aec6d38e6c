//  Shared UI pieces: modal dialogs, toasts, copy-to-clipboard.
import { h, mount } from './dom.js';

//  Copies text; the clipboard API needs a secure context (https or
//  localhost), so plain-http LAN use falls back to select() + execCommand.
export async function copyText (text, field) {
    try {
        if (navigator.clipboard && window.isSecureContext) {
            await navigator.clipboard.writeText(text);
            return true;
        }
    } catch {
        //  fall through to the legacy path
    }
    const input = field || h('textarea', { class: 'offscreen', readonly: true }, text);
    if (!field)
        document.body.append(input);
    input.focus();
    input.select();
    let ok = false;
    try {
        ok = document.execCommand('copy');
    } catch {
        ok = false;
    }
    if (!field)
        input.remove();
    return ok;
}

export function copyButton (text, label, testid, field) {
    const button = h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': testid,
        'aria-label': label,
        onclick: async () => {
            const ok = await copyText(typeof text === 'function' ? text() : text,
                                      typeof field === 'function' ? field() : field);
            button.textContent = ok ? 'Copied' : 'Press Ctrl+C';
            setTimeout(() => { button.textContent = 'Copy'; }, 1800);
        },
    }, 'Copy');
    return button;
}

let toastBox = null;
export function toast (message, kind = 'info') {
    if (!toastBox) {
        toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
        document.body.append(toastBox);
    }
    const item = h('div', { class: `toast toast-${kind}` }, message);
    toastBox.append(item);
    setTimeout(() => item.remove(), 4000);
}

//  A modal <dialog>. body is a node or array; actions a list of
//  {label, kind, onclick} whose onclick may return false to keep it open.
//  onclose(how) runs once when it closes: 'action' after an action, 'cancel'
//  on Escape or a plain button. Returns {dialog, close}.
let dialogSerial = 0;
export function modal (title, body, actions = [{ label: 'Close' }], testid, onclose) {
    const titleId = `dialog-title-${++dialogSerial}`;
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'data-testid': testid });
    let how = 'cancel';
    const close = () => { dialog.close(); };
    dialog.addEventListener('close', () => {
        dialog.remove();
        if (onclose)
            onclose(how);
    });
    const buttons = actions.map((action) => h('button', {
        type: action.submit ? 'submit' : 'button',
        class: `btn ${action.kind ? `btn-${action.kind}` : ''}`,
        'data-testid': action.testid,
        onclick: async (event) => {
            if (action.submit)
                event.preventDefault();
            if (action.onclick) {
                const button = event.currentTarget;
                button.disabled = true;
                let keep;
                try {
                    keep = await action.onclick(event);
                } finally {
                    button.disabled = false;
                }
                if (keep === false)
                    return;
                how = 'action';
            }
            close();
        },
    }, action.label));
    mount(dialog,
        h('form', { method: 'dialog', class: 'dialog-form', novalidate: true,
                    onsubmit: (event) => {
                        event.preventDefault();
                        const primary = buttons.find((b) => b.type === 'submit');
                        if (primary && !primary.disabled) primary.click();
                    } },
          h('h2', { id: titleId }, title),
          h('div', { class: 'dialog-body' }, body),
          h('div', { class: 'dialog-actions' }, buttons)));
    document.body.append(dialog);
    dialog.showModal();
    return { dialog, close };
}

export function confirmDialog (title, message, confirmLabel, onConfirm) {
    return modal(title, h('p', {}, message), [
        { label: 'Cancel' },
        { label: confirmLabel, kind: 'danger', submit: true, testid: 'confirm', onclick: onConfirm },
    ], 'confirm-dialog');
}

//  Shows an error inside a form's alert slot.
export function showError (slot, error) {
    mount(slot, error ? h('p', { class: 'alert', role: 'alert' }, error.message || String(error)) : null);
}
