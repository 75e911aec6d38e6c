//  Form fields whose errors sit next to them, in words: each field has an
//  error slot (data-testid="field-error-<name>") the input points at with
//  aria-describedby, and aria-invalid while it holds a message. Checks run
//  in the browser before sending; the API's error.field lands in the same
//  slot.
import { h } from './dom.js';

let serial = 0;

//  field({name, label, input, hint}) -> .field with label, input, hint and
//  the error slot. input is an element (its id is set when missing).
export function field ({ name, label, input, hint, className }) {
    const id = input.id || `f-${name}-${++serial}`;
    input.id = id;
    if (!input.name)
        input.name = name;
    const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
    const error = h('p', { class: 'field-error', id: `${id}-error`, 'data-testid': `field-error-${name}`,
                           'data-field': name, hidden: true });
    if (hintEl)
        input.setAttribute('aria-describedby', hintEl.id);
    const wrap = h('div', { class: `field ${className || ''}`, 'data-field-name': name },
        label ? h('label', { for: id }, label) : null, input, hintEl, error);
    clearOnEdit(wrap, name);
    return wrap;
}

//  An error goes away as soon as its field is edited.
export function clearOnEdit (wrap, name) {
    const clear = () => clearFieldError(wrap, name);
    wrap.addEventListener('input', clear);
    wrap.addEventListener('change', clear);
}

//  The error slot of field name inside root (the first input named name
//  decides, so fields outside a <form> work too).
function slotOf (root, name) {
    return root.querySelector(`.field-error[data-field="${CSS.escape(name)}"]`);
}

function inputOf (root, name) {
    const selector = `[data-field-name="${CSS.escape(name)}"]`;
    const wrap = root.matches(selector) ? root : root.querySelector(selector);
    return wrap && wrap.querySelector('input, select, textarea, fieldset');
}

export function setFieldError (root, name, message) {
    const slot = slotOf(root, name);
    if (!slot)
        return false;
    slot.textContent = message;
    slot.hidden = false;
    const input = inputOf(root, name);
    if (input) {
        input.setAttribute('aria-invalid', 'true');
        const ids = new Set((input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean));
        ids.add(slot.id);
        input.setAttribute('aria-describedby', [...ids].join(' '));
    }
    return true;
}

export function clearFieldError (root, name) {
    clearFieldErrors(root, name);
}

export function clearFieldErrors (root, only) {
    for (const slot of root.querySelectorAll('.field-error')) {
        if (only && slot.dataset.field !== only)
            continue;
        slot.textContent = '';
        slot.hidden = true;
        const input = inputOf(root, slot.dataset.field);
        if (input) {
            input.removeAttribute('aria-invalid');
            const ids = (input.getAttribute('aria-describedby') || '').split(' ')
                .filter((x) => x && x !== slot.id);
            if (ids.length)
                input.setAttribute('aria-describedby', ids.join(' '));
            else
                input.removeAttribute('aria-describedby');
        }
    }
}

//  Shows errors ({name: message}) and focuses the first; true when there
//  were none.
export function showFieldErrors (root, errors) {
    clearFieldErrors(root);
    const names = Object.keys(errors);
    for (const name of names)
        setFieldError(root, name, errors[name]);
    if (names.length) {
        const first = inputOf(root, names[0]);
        if (first && first.focus)
            first.focus();
    }
    return names.length === 0;
}

//  An API error on field name: the message the page gives for that field
//  (messages[name]) or the API's sentence, in its slot; false when the
//  error names no field of this form (the caller shows it elsewhere).
export function showApiFieldError (root, error, messages = {}) {
    if (!error || !error.field)
        return false;
    const name = error.field.split('.').pop();
    const message = messages[error.field] || messages[name] || error.message;
    clearFieldErrors(root);
    if (!setFieldError(root, name, message) && !setFieldError(root, error.field, message))
        return false;
    const input = inputOf(root, name) || inputOf(root, error.field);
    if (input && input.focus)
        input.focus();
    return true;
}

//  A number typed into input: {value} or {error}. Empty is an error ("Enter
//  a number"), never 0; so is a value outside [min, max].
export function readNumber (input, { min = -Infinity, max = Infinity, integer = false, unit = '' } = {}) {
    const text = String(input.value ?? '').trim().replace(',', '.');
    if (text === '' || (input.validity && input.validity.badInput))
        return { error: 'Enter a number.' };
    const value = Number(text);
    if (!Number.isFinite(value))
        return { error: 'Enter a number.' };
    if (integer && !Number.isInteger(value))
        return { error: 'Enter a whole number.' };
    const u = unit ? ` ${unit}` : '';
    if (value < min || value > max) {
        const fmt = (n) => n.toLocaleString();
        if (max === Infinity)
            return { error: `Enter a number of at least ${fmt(min)}${u}.` };
        return { error: `Enter a number from ${fmt(min)} to ${fmt(max)}${u}.` };
    }
    return { value };
}

//  A name: trimmed, and refused when empty.
export function readName (input, what = 'a name') {
    const value = String(input.value || '').trim();
    if (!value)
        return { error: `Enter ${what}.` };
    return { value };
}
