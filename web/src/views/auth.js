//  Log in and sign up. Both end in onSignedIn(user).
import { h } from '../dom.js';
import { api } from '../api.js';
import { showError } from '../ui.js';

function field (label, attrs) {
    const id = `f-${attrs.name}`;
    return h('div', { class: 'field' },
        h('label', { for: id }, label),
        h('input', { id, ...attrs }));
}

function card (title, form, footer) {
    return h('section', { class: 'auth' },
        h('div', { class: 'auth-brand' },
            h('img', { src: '/assets/icon.svg', alt: '', width: 40, height: 40 }),
            h('span', {}, 'PhantomWatch')),
        h('div', { class: 'card auth-card' }, h('h1', {}, title), form, footer));
}

async function submitting (form, slot, work) {
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    showError(slot, null);
    try {
        await work();
    } catch (error) {
        showError(slot, error);
    } finally {
        button.disabled = false;
    }
}

export function loginView (onSignedIn) {
    const slot = h('div', {});
    const form = h('form', { class: 'stack', 'data-testid': 'login-form',
        onsubmit: (event) => {
            event.preventDefault();
            const email = form.elements.email.value.trim();
            const password = form.elements.password.value;
            submitting(form, slot, async () => {
                const data = await api('POST', '/api/auth/login', { email, password });
                await onSignedIn(data.user || (await api('GET', '/api/auth/me')).user);
            });
        } },
        slot,
        field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true,
                         'data-testid': 'login-email' }),
        field('Password', { name: 'password', type: 'password', autocomplete: 'current-password',
                            required: true, 'data-testid': 'login-password' }),
        h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' },
          'Log in'));
    return card('Log in', form,
        h('p', { class: 'muted center' }, 'No account yet? ', h('a', { href: '#/signup' }, 'Sign up')));
}

export function signupView (onSignedIn) {
    const slot = h('div', {});
    const form = h('form', { class: 'stack', 'data-testid': 'signup-form',
        onsubmit: (event) => {
            event.preventDefault();
            const name = form.elements.name.value.trim();
            const email = form.elements.email.value.trim();
            const password = form.elements.password.value;
            submitting(form, slot, async () => {
                await api('POST', '/api/auth/register', { email, password, name });
                //  Registration may or may not start a session; logging in
                //  makes sure the cookie is set.
                const data = await api('POST', '/api/auth/login', { email, password });
                await onSignedIn(data.user || (await api('GET', '/api/auth/me')).user);
            });
        } },
        slot,
        field('Name', { name: 'name', type: 'text', autocomplete: 'name', required: true,
                        maxlength: 100, 'data-testid': 'signup-name' }),
        field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true,
                         'data-testid': 'signup-email' }),
        field('Password', { name: 'password', type: 'password', autocomplete: 'new-password',
                            required: true, minlength: 8, 'data-testid': 'signup-password',
                            'aria-describedby': 'pw-hint' }),
        h('p', { id: 'pw-hint', class: 'hint' }, 'At least 8 characters.'),
        h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'signup-submit' },
          'Create account'));
    return card('Create your account', form,
        h('p', { class: 'muted center' }, 'Already have an account? ', h('a', { href: '#/login' }, 'Log in')));
}
