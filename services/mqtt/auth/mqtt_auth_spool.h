/*  =========================================================================
    mqtt_auth_spool - the broker plugin's durable record of each plug
    message it lets the broker acknowledge

    An SQLite file (WAL, synchronous=NORMAL) under the broker's data dir.
    The broker thread appends a plug's PUBLISH (user, topic, payload,
    pw-id, receive time) before the plug gets its PUBACK; the plugin's
    keeper thread, on a connection of its own, reads entries that are due,
    confirms them against PostgreSQL, marks them done or hands them back
    for another try. A commit is a write() into the WAL, not an fsync:
    it survives a kill -9 of any process; a power loss can take the
    commits since the last checkpoint (the keeper's, each second).
    =========================================================================
*/
#ifndef MQTT_AUTH_SPOOL_H_INCLUDED
#define MQTT_AUTH_SPOOL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _mqtt_auth_spool_t mqtt_auth_spool_t;

//  An entry the keeper works on (mqtt_auth_spool_due).
typedef struct {
    int64_t row;         //  the spool's row id
    char pw_id[48];      //  the stamp the broker gave it
    char user[64];       //  the plug (devices.mqtt_name)
    char *topic;         //  owned
    uint8_t *payload;    //  owned, size bytes
    size_t size;         //  of payload
    int64_t received_ms; //  when the broker received it
    int tries;           //  confirmations that found it not stored
} mqtt_auth_spool_entry_t;

//  Opens (creating) the spool at path; NULL (logged) on failure. Each
//  thread opens its own.
mqtt_auth_spool_t *mqtt_auth_spool_new (const char *path);

void mqtt_auth_spool_destroy (mqtt_auth_spool_t **self_p);

//  Broker thread. Appends a plug's message, due for its first
//  confirmation at due_ms. When the plug is in its first seconds after a
//  (re)connect (since_ms: the connect, 0 = not), a message identical
//  (same user, topic, payload) to one received before since_ms and at
//  most window_ms earlier is the plug republishing what it had no PUBACK
//  for: nothing is appended and *pw_id becomes that message's stamp, so
//  the service derives the same readingIds and the store keeps one.
//  Returns 0 appended, 1 a republish (pw_id replaced), -1 failed (the
//  caller must not let the broker acknowledge). pw_id holds 48 bytes.
int mqtt_auth_spool_append (mqtt_auth_spool_t *self, const char *user, const char *topic,
                            const void *payload, size_t size, int64_t received_ms, int64_t due_ms,
                            int64_t since_ms, int64_t window_ms, char *pw_id);

//  Keeper. Up to limit pending entries due at now_ms, oldest first, in
//  out (a zlistx_t of mqtt_auth_spool_entry_t, with destructor set).
//  Returns the number, -1 on failure.
int mqtt_auth_spool_due (mqtt_auth_spool_t *self, int64_t now_ms, int limit, void *out);

//  The broker thread's connection leaves checkpoints (the fsyncs) to the
//  keeper's, which calls mqtt_auth_spool_checkpoint each second.
int mqtt_auth_spool_checkpoint_elsewhere (mqtt_auth_spool_t *self);
int mqtt_auth_spool_checkpoint (mqtt_auth_spool_t *self);

//  Keeper: one transaction around a batch of the calls below.
int mqtt_auth_spool_begin (mqtt_auth_spool_t *self);
int mqtt_auth_spool_commit (mqtt_auth_spool_t *self);

//  Stored: kept (done) until it leaves the republish window, then expired.
int mqtt_auth_spool_confirm (mqtt_auth_spool_t *self, int64_t row);
//  Gone for good (never readings, or out of tries).
int mqtt_auth_spool_drop (mqtt_auth_spool_t *self, int64_t row);
//  Not stored yet: one more try, due again at due_ms.
int mqtt_auth_spool_retry (mqtt_auth_spool_t *self, int64_t row, int64_t due_ms);
//  Deletes done entries received before before_ms; returns how many.
int mqtt_auth_spool_expire (mqtt_auth_spool_t *self, int64_t before_ms);
//  Entries not confirmed yet; -1 on failure.
int64_t mqtt_auth_spool_pending (mqtt_auth_spool_t *self);

void mqtt_auth_spool_entry_destroy (mqtt_auth_spool_entry_t **self_p);

void mqtt_auth_spool_test (bool verbose);

#endif
