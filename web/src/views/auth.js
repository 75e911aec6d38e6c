//  Log in and sign up. Both end in onSignedIn(user).
import { h } from '../dom.js';
import { api } from '../api.js';
import { modal, showError } from '../ui.js';
import { field, showApiFieldError, showFieldErrors } from '../forms.js';

function input (label, attrs, hint) {
    return field({ name: attrs.name, label, hint, input: h('input', { id: `f-${attrs.name}`, ...attrs }) });
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
        if (!showApiFieldError(form, error))
            showError(slot, error);
    } finally {
        button.disabled = false;
    }
}

export function loginView (onSignedIn) {
    const slot = h('div', {});
    const form = h('form', { class: 'stack', 'data-testid': 'login-form', novalidate: true,
        onsubmit: (event) => {
            event.preventDefault();
            const email = form.elements.email.value.trim();
            const password = form.elements.password.value;
            if (!showFieldErrors(form, {
                ...(email ? {} : { email: 'Enter your email address.' }),
                ...(password ? {} : { password: 'Enter your password.' }),
            }))
                return;
            submitting(form, slot, async () => {
                const data = await api('POST', '/api/auth/login', { email, password });
                await onSignedIn(data.user || (await api('GET', '/api/auth/me')).user);
            });
        } },
        slot,
        input('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true,
                         'data-testid': 'login-email' }),
        input('Password', { name: 'password', type: 'password', autocomplete: 'current-password',
                            required: true, 'data-testid': 'login-password' }),
        h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'login-submit' },
          'Log in'));
    return card('Log in', form,
        h('p', { class: 'muted center' }, 'No account yet? ', h('a', { href: '#/signup' }, 'Sign up')));
}

export function signupView (onSignedIn) {
    const slot = h('div', {});
    const form = h('form', { class: 'stack', 'data-testid': 'signup-form', novalidate: true,
        onsubmit: (event) => {
            event.preventDefault();
            const name = form.elements.name.value.trim();
            const email = form.elements.email.value.trim();
            const password = form.elements.password.value;
            const errors = {};
            if (!name)
                errors.name = 'Enter your name.';
            if (!/^[^@\s]+@[^@\s]+$/.test(email))
                errors.email = 'Enter an email address, such as you@example.com.';
            if (password.length < 8)
                errors.password = 'Choose a password of at least 8 characters.';
            if (!showFieldErrors(form, errors))
                return;
            submitting(form, slot, async () => {
                await api('POST', '/api/auth/register', { email, password, name });
                //  Registration may or may not start a session; logging in
                //  makes sure the cookie is set.
                const data = await api('POST', '/api/auth/login', { email, password });
                await onSignedIn(data.user || (await api('GET', '/api/auth/me')).user);
            });
        } },
        slot,
        input('Name', { name: 'name', type: 'text', autocomplete: 'name', required: true,
                        maxlength: 100, 'data-testid': 'signup-name' }),
        input('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true,
                         'data-testid': 'signup-email' }),
        input('Password', { name: 'password', type: 'password', autocomplete: 'new-password',
                            required: true, minlength: 8, 'data-testid': 'signup-password' },
              'At least 8 characters, not a common password: a few unrelated words work well.'),
        h('button', { type: 'submit', class: 'btn btn-primary btn-block', 'data-testid': 'signup-submit' },
          'Create account'));
    return card('Create your account', form,
        h('p', { class: 'muted center' }, 'Already have an account? ', h('a', { href: '#/login' }, 'Log in')));
}

//  The session expired while the page was open: sign in again over the
//  page, so whatever the user was editing stays where it is. Resolves the
//  user, or null when they cancel.
export function signInDialog (email) {
    return new Promise((resolve) => {
        let user = null;
        const slot = h('div', {});
        const emailInput = h('input', { name: 'email', type: 'email', autocomplete: 'username', value: email || '',
                                        required: true, 'data-testid': 'reauth-email' });
        const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password',
                                      required: true, 'data-testid': 'reauth-password' });
        const { dialog } = modal('Your session has expired', [
            h('p', {}, 'Sign in again to carry on. Nothing you entered is lost.'),
            slot,
            field({ name: 'email', label: 'Email', input: emailInput }),
            field({ name: 'password', label: 'Password', input: password }),
        ], [
            { label: 'Cancel', testid: 'reauth-cancel' },
            { label: 'Sign in', kind: 'primary', submit: true, testid: 'reauth-submit', onclick: async () => {
                const errors = {};
                if (!emailInput.value.trim())
                    errors.email = 'Enter your email address.';
                if (!password.value)
                    errors.password = 'Enter your password.';
                if (!showFieldErrors(dialog, errors))
                    return false;
                showError(slot, null);
                try {
                    const data = await api('POST', '/api/auth/login',
                                           { email: emailInput.value.trim(), password: password.value });
                    user = data.user || (await api('GET', '/api/auth/me')).user || null;
                    return true;
                } catch (error) {
                    showError(slot, error.status === 401
                        ? new Error('That email and password do not match. Try again.') : error);
                    password.select();
                    return false;
                }
            } },
        ], 'reauth-dialog', () => resolve(user));
        (email ? password : emailInput).focus();
    });
}
