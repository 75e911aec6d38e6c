//  What every view may need: the signed-in user and the unread count.
export const state = {
    user: null,         //  {id, email, name, settings?} or null
    unread: 0,          //  unread notifications
    currency: 'EUR',    //  from the user's settings when known
};

const unreadListeners = new Set();
export function setUnread (count) {
    state.unread = Math.max(0, Number(count) || 0);
    for (const fn of unreadListeners)
        fn(state.unread);
}
export function onUnread (fn) {
    unreadListeners.add(fn);
    return () => unreadListeners.delete(fn);
}
