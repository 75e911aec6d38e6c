//  What every view may need: the signed-in user, their settings, the unread
//  count, and a clock that ticks (so "7 min ago" and "offline" move on
//  without a reload).
export const state = {
    user: null,         //  {id, email, name} or null
    settings: {},       //  /api/settings
    unread: 0,          //  unread notifications
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

const tickListeners = new Set();
setInterval(() => {
    const now = Date.now();
    for (const fn of tickListeners)
        fn(now);
}, 5000);
//  fn(nowMs) every 5 s; returns the unsubscribe.
export function onTick (fn) {
    tickListeners.add(fn);
    return () => tickListeners.delete(fn);
}
