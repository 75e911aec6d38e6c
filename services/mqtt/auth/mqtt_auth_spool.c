/*  =========================================================================
    mqtt_auth_spool - the broker plugin's durable record of each plug
    message it lets the broker acknowledge

    One table; done = 0 pending (not yet seen stored), 1 confirmed (kept
    while a plug might still republish it, so the republish gets the same
    pw-id). digest (FNV-1a 64 of user, topic, payload) is indexed for that
    lookup. Statements are prepared once per connection.
    =========================================================================
*/
#include "mqtt_auth_spool.h"

#include <czmq.h>
#include <sqlite3.h>

struct _mqtt_auth_spool_t {
    sqlite3 *db;           //  this thread's connection
    sqlite3_stmt *insert;  //  append
    sqlite3_stmt *lookup;  //  a republish's first copy
    sqlite3_stmt *due;     //  pending and due
    sqlite3_stmt *confirm; //  done = 1
    sqlite3_stmt *drop;    //  delete one
    sqlite3_stmt *retry;   //  tries + 1, next due
    sqlite3_stmt *expire;  //  delete done and old
    sqlite3_stmt *pending; //  count pending
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS spool ("
    " row INTEGER PRIMARY KEY, pw_id TEXT NOT NULL, user TEXT NOT NULL, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, received_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,"
    " digest INTEGER NOT NULL, tries INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS spool_digest ON spool (digest);"
    "CREATE INDEX IF NOT EXISTS spool_due ON spool (done, due_ms);";

static int64_t
s_digest (const char *user, const char *topic, const void *payload, size_t size)
{
    uint64_t hash = 14695981039346656037ULL;
    const uint8_t *parts[] = {(const uint8_t *)user, (const uint8_t *)topic,
                              (const uint8_t *)payload};
    size_t sizes[] = {strlen (user) + 1, strlen (topic) + 1, size};
    for (int part = 0; part < 3; part++)
        for (size_t index = 0; index < sizes[part]; index++) {
            hash ^= parts[part][index];
            hash *= 1099511628211ULL;
        }
    return (int64_t)hash;
}

static int
s_prepare (mqtt_auth_spool_t *self, sqlite3_stmt **statement, const char *sql)
{
    if (sqlite3_prepare_v3 (self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, statement, NULL) !=
        SQLITE_OK) {
        zsys_error ("phantom-spool: prepare: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
mqtt_auth_spool_t *
mqtt_auth_spool_new (const char *path)
{
    assert (path);
    mqtt_auth_spool_t *self = (mqtt_auth_spool_t *)zmalloc (sizeof (mqtt_auth_spool_t));
    assert (self);
    char *error = NULL;
    if (sqlite3_open_v2 (path, &self->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL) != SQLITE_OK) {
        zsys_error ("phantom-spool: cannot open %s: %s", path,
                    self->db ? sqlite3_errmsg (self->db) : "no memory");
        mqtt_auth_spool_destroy (&self);
        return NULL;
    }
    //  The two connections (broker thread, keeper) wait on each other's
    //  write lock at most this long; the keeper's transactions are a few
    //  hundred rows, a few ms.
    sqlite3_busy_timeout (self->db, 2000);
    //  WAL + NORMAL: a commit is appended to the WAL, fsynced at
    //  checkpoints only. A crashed process loses nothing committed (the
    //  kernel has it); a power loss can lose the commits since the last
    //  checkpoint, never corrupt the file. 1 KiB pages (a new file only):
    //  a commit writes its pages whole, an entry is a few hundred bytes.
    if (sqlite3_exec (self->db,
                      "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                      NULL, NULL, &error) != SQLITE_OK ||
        sqlite3_exec (self->db, s_schema, NULL, NULL, &error) != SQLITE_OK) {
        zsys_error ("phantom-spool: %s: %s", path, error ? error : "?");
        sqlite3_free (error);
        mqtt_auth_spool_destroy (&self);
        return NULL;
    }
    if (s_prepare (self, &self->insert,
                   "INSERT INTO spool (pw_id, user, topic, payload, received_ms, due_ms, digest)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)") ||
        s_prepare (self, &self->lookup,
                   "SELECT pw_id FROM spool WHERE digest = ?1 AND user = ?2 AND topic = ?3"
                   " AND payload = ?4 AND received_ms < ?5 AND received_ms >= ?6"
                   " ORDER BY row LIMIT 1") ||
        s_prepare (self, &self->due,
                   "SELECT row, pw_id, user, topic, payload, received_ms, tries FROM spool"
                   " WHERE done = 0 AND due_ms <= ?1 ORDER BY due_ms LIMIT ?2") ||
        s_prepare (self, &self->confirm, "UPDATE spool SET done = 1 WHERE row = ?1") ||
        s_prepare (self, &self->drop, "DELETE FROM spool WHERE row = ?1") ||
        s_prepare (self, &self->retry,
                   "UPDATE spool SET tries = tries + 1, due_ms = ?2 WHERE row = ?1") ||
        s_prepare (self, &self->expire, "DELETE FROM spool WHERE done = 1 AND received_ms < ?1") ||
        s_prepare (self, &self->pending, "SELECT count(*) FROM spool WHERE done = 0")) {
        mqtt_auth_spool_destroy (&self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
int
mqtt_auth_spool_checkpoint_elsewhere (mqtt_auth_spool_t *self)
{
    return sqlite3_exec (self->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

int
mqtt_auth_spool_checkpoint (mqtt_auth_spool_t *self)
{
    //  PASSIVE: copies what no reader needs, never waits on the appends.
    return sqlite3_wal_checkpoint_v2 (self->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
                   SQLITE_OK
               ? 0
               : -1;
}

//  --------------------------------------------------------------------------
void
mqtt_auth_spool_destroy (mqtt_auth_spool_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mqtt_auth_spool_t *self = *self_p;
        sqlite3_stmt *statements[] = {self->insert, self->lookup, self->due,    self->confirm,
                                      self->drop,   self->retry,  self->expire, self->pending};
        for (size_t index = 0; index < sizeof statements / sizeof statements[0]; index++)
            sqlite3_finalize (statements[index]);
        sqlite3_close (self->db);
        free (self);
        *self_p = NULL;
    }
}

//  Runs a prepared statement that returns no rows; resets it.
static int
s_step_done (mqtt_auth_spool_t *self, sqlite3_stmt *statement, const char *what)
{
    int rc = sqlite3_step (statement);
    sqlite3_reset (statement);
    sqlite3_clear_bindings (statement);
    if (rc != SQLITE_DONE) {
        zsys_error ("phantom-spool: %s: %s", what, sqlite3_errmsg (self->db));
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
int
mqtt_auth_spool_append (mqtt_auth_spool_t *self, const char *user, const char *topic,
                        const void *payload, size_t size, int64_t received_ms, int64_t due_ms,
                        int64_t since_ms, int64_t window_ms, char *pw_id)
{
    assert (self && user && topic && pw_id);
    int64_t digest = s_digest (user, topic, payload, size);
    static const char empty = 0;
    if (!payload)
        payload = &empty; //  a zero-length blob, not NULL
    if (since_ms > 0) {
        sqlite3_stmt *lookup = self->lookup;
        sqlite3_bind_int64 (lookup, 1, digest);
        sqlite3_bind_text (lookup, 2, user, -1, SQLITE_STATIC);
        sqlite3_bind_text (lookup, 3, topic, -1, SQLITE_STATIC);
        sqlite3_bind_blob (lookup, 4, payload, (int)size, SQLITE_STATIC);
        sqlite3_bind_int64 (lookup, 5, since_ms);
        sqlite3_bind_int64 (lookup, 6, since_ms - window_ms);
        int rc = sqlite3_step (lookup);
        bool found = false;
        if (rc == SQLITE_ROW) {
            const char *first = (const char *)sqlite3_column_text (lookup, 0);
            if (first && strlen (first) < 48) {
                strcpy (pw_id, first);
                found = true;
            }
        }
        sqlite3_reset (lookup);
        sqlite3_clear_bindings (lookup);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            zsys_error ("phantom-spool: lookup: %s", sqlite3_errmsg (self->db));
            return -1;
        }
        if (found)
            return 1;
    }
    sqlite3_stmt *insert = self->insert;
    sqlite3_bind_text (insert, 1, pw_id, -1, SQLITE_STATIC);
    sqlite3_bind_text (insert, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text (insert, 3, topic, -1, SQLITE_STATIC);
    sqlite3_bind_blob (insert, 4, payload, (int)size, SQLITE_STATIC);
    sqlite3_bind_int64 (insert, 5, received_ms);
    sqlite3_bind_int64 (insert, 6, due_ms);
    sqlite3_bind_int64 (insert, 7, digest);
    return s_step_done (self, insert, "append");
}

static void
s_entry_free (void **item)
{
    mqtt_auth_spool_entry_destroy ((mqtt_auth_spool_entry_t **)item);
}

//  --------------------------------------------------------------------------
void
mqtt_auth_spool_entry_destroy (mqtt_auth_spool_entry_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free ((*self_p)->topic);
        free ((*self_p)->payload);
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
int
mqtt_auth_spool_due (mqtt_auth_spool_t *self, int64_t now_ms, int limit, void *out)
{
    assert (self && out);
    zlistx_t *list = (zlistx_t *)out;
    zlistx_set_destructor (list, s_entry_free);
    sqlite3_stmt *due = self->due;
    sqlite3_bind_int64 (due, 1, now_ms);
    sqlite3_bind_int (due, 2, limit);
    int rc, count = 0;
    while ((rc = sqlite3_step (due)) == SQLITE_ROW) {
        mqtt_auth_spool_entry_t *entry =
            (mqtt_auth_spool_entry_t *)zmalloc (sizeof (mqtt_auth_spool_entry_t));
        assert (entry);
        entry->row = sqlite3_column_int64 (due, 0);
        snprintf (entry->pw_id, sizeof entry->pw_id, "%s",
                  (const char *)sqlite3_column_text (due, 1));
        snprintf (entry->user, sizeof entry->user, "%s",
                  (const char *)sqlite3_column_text (due, 2));
        entry->topic = strdup ((const char *)sqlite3_column_text (due, 3));
        entry->size = (size_t)sqlite3_column_bytes (due, 4);
        entry->payload = (uint8_t *)malloc (entry->size + 1);
        assert (entry->topic && entry->payload);
        if (entry->size)
            memcpy (entry->payload, sqlite3_column_blob (due, 4), entry->size);
        entry->payload[entry->size] = 0;
        entry->received_ms = sqlite3_column_int64 (due, 5);
        entry->tries = sqlite3_column_int (due, 6);
        zlistx_add_end (list, entry);
        count++;
    }
    sqlite3_reset (due);
    sqlite3_clear_bindings (due);
    if (rc != SQLITE_DONE) {
        zsys_error ("phantom-spool: due: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    return count;
}

//  --------------------------------------------------------------------------
int
mqtt_auth_spool_begin (mqtt_auth_spool_t *self)
{
    //  IMMEDIATE: takes the write lock now, so the batch does not fail
    //  half-way on the broker thread's appends.
    return sqlite3_exec (self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int
mqtt_auth_spool_commit (mqtt_auth_spool_t *self)
{
    if (sqlite3_exec (self->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    zsys_error ("phantom-spool: commit: %s", sqlite3_errmsg (self->db));
    sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int
mqtt_auth_spool_confirm (mqtt_auth_spool_t *self, int64_t row)
{
    sqlite3_bind_int64 (self->confirm, 1, row);
    return s_step_done (self, self->confirm, "confirm");
}

int
mqtt_auth_spool_drop (mqtt_auth_spool_t *self, int64_t row)
{
    sqlite3_bind_int64 (self->drop, 1, row);
    return s_step_done (self, self->drop, "drop");
}

int
mqtt_auth_spool_retry (mqtt_auth_spool_t *self, int64_t row, int64_t due_ms)
{
    sqlite3_bind_int64 (self->retry, 1, row);
    sqlite3_bind_int64 (self->retry, 2, due_ms);
    return s_step_done (self, self->retry, "retry");
}

int
mqtt_auth_spool_expire (mqtt_auth_spool_t *self, int64_t before_ms)
{
    sqlite3_bind_int64 (self->expire, 1, before_ms);
    if (s_step_done (self, self->expire, "expire"))
        return -1;
    return sqlite3_changes (self->db);
}

int64_t
mqtt_auth_spool_pending (mqtt_auth_spool_t *self)
{
    int64_t count = -1;
    if (sqlite3_step (self->pending) == SQLITE_ROW)
        count = sqlite3_column_int64 (self->pending, 0);
    sqlite3_reset (self->pending);
    return count;
}

//  --------------------------------------------------------------------------
//  Selftest: two connections on one file, as the broker thread and the
//  keeper have; what a kill -9 leaves is read by a fresh connection (a
//  child process killed with SIGKILL after its append returned).

static int64_t
s_cpu_usecs (void)
{
    struct timespec now;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

void
mqtt_auth_spool_test (bool verbose)
{
    (void)verbose;
    printf (" * mqtt_auth_spool: ");
    char dir[] = "/tmp/mqtt_auth_spool_test.XXXXXX";
    assert (mkdtemp (dir));
    char path[128];
    snprintf (path, sizeof path, "%s/spool.db", dir);

    mqtt_auth_spool_t *broker = mqtt_auth_spool_new (path);
    mqtt_auth_spool_t *keeper = mqtt_auth_spool_new (path);
    assert (broker && keeper);
    assert (!mqtt_auth_spool_new ("/nonexistent-dir/spool.db"));

    //  Appends, due in 1 s.
    char id[48] = "1000-1";
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 1000, 2000,
                                    0, 0, id) == 0);
    strcpy (id, "1000-2");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":2}", 7, 1100, 2100,
                                    0, 0, id) == 0);
    strcpy (id, "1000-3"); //  an empty payload is a blob too
    assert (mqtt_auth_spool_append (broker, "pw-b", "pw-b/online", NULL, 0, 1200, 2200, 0, 0, id) ==
            0);
    assert (mqtt_auth_spool_pending (keeper) == 3);

    //  The same message again on the same connection is another message.
    strcpy (id, "1000-4");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 1300, 2300,
                                    0, 0, id) == 0);
    //  ... but from a plug reconnected at 5000, it is a republish of the
    //  first copy received before the reconnect: that copy's pw-id.
    strcpy (id, "2000-1");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 5100, 6100,
                                    5000, 60000, id) == 1);
    assert (streq (id, "1000-1"));
    //  Not when the first copy is older than the window, nor for another
    //  plug, topic or payload.
    strcpy (id, "2000-2");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":2}", 7, 5200, 6200,
                                    5000, 3000, id) == 0);
    assert (streq (id, "2000-2"));
    strcpy (id, "2000-3");
    assert (mqtt_auth_spool_append (broker, "pw-c", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 5300, 6300,
                                    5000, 60000, id) == 0);
    strcpy (id, "2000-4");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/STATE", "{\"x\":1}", 7, 5400, 6400,
                                    5000, 60000, id) == 0);
    assert (mqtt_auth_spool_pending (keeper) == 7);

    //  The keeper: due at 2150 are the first two, oldest first.
    zlistx_t *due = zlistx_new ();
    assert (mqtt_auth_spool_due (keeper, 2150, 100, due) == 2);
    mqtt_auth_spool_entry_t *first = (mqtt_auth_spool_entry_t *)zlistx_first (due);
    assert (streq (first->pw_id, "1000-1") && streq (first->user, "pw-a"));
    assert (streq (first->topic, "tele/pw-a/SENSOR") && first->size == 7);
    assert (memcmp (first->payload, "{\"x\":1}", 7) == 0 && first->received_ms == 1000);
    mqtt_auth_spool_entry_t *second = (mqtt_auth_spool_entry_t *)zlistx_next (due);
    assert (streq (second->pw_id, "1000-2") && second->tries == 0);
    //  The first stored, the second not yet: one more try at 9000.
    assert (mqtt_auth_spool_begin (keeper) == 0);
    assert (mqtt_auth_spool_confirm (keeper, first->row) == 0);
    assert (mqtt_auth_spool_retry (keeper, second->row, 9000) == 0);
    //  The broker thread appends while the keeper holds the write lock:
    //  it waits (busy timeout) and goes through after the commit.
    assert (mqtt_auth_spool_commit (keeper) == 0);
    zlistx_purge (due);
    assert (mqtt_auth_spool_pending (keeper) == 6);
    assert (mqtt_auth_spool_due (keeper, 2150, 100, due) == 0);
    assert (mqtt_auth_spool_due (keeper, 9000, 1, due) == 1); //  limit
    zlistx_purge (due);
    assert (mqtt_auth_spool_due (keeper, 9000, 100, due) == 7 - 1);
    first = (mqtt_auth_spool_entry_t *)zlistx_first (due);
    second = (mqtt_auth_spool_entry_t *)zlistx_last (due);
    assert (streq (first->pw_id, "1000-3"));
    assert (streq (second->pw_id, "1000-2") && second->tries == 1);
    //  A confirmed entry still answers a republish until it expires.
    strcpy (id, "3000-1");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 9100, 10100,
                                    9000, 60000, id) == 1);
    assert (streq (id, "1000-1"));
    assert (mqtt_auth_spool_expire (keeper, 1050) == 1);
    assert (mqtt_auth_spool_expire (keeper, 1050) == 0);
    strcpy (id, "3000-2");
    assert (mqtt_auth_spool_append (broker, "pw-a", "tele/pw-a/SENSOR", "{\"x\":1}", 7, 9200, 10200,
                                    9000, 60000, id) == 1);
    assert (streq (id, "1000-4")); //  the other copy, received before the reconnect
    //  Pending entries never expire; dropped ones are gone.
    assert (mqtt_auth_spool_expire (keeper, INT64_MAX) == 0);
    for (mqtt_auth_spool_entry_t *entry = (mqtt_auth_spool_entry_t *)zlistx_first (due); entry;
         entry = (mqtt_auth_spool_entry_t *)zlistx_next (due))
        assert (mqtt_auth_spool_drop (keeper, entry->row) == 0);
    assert (mqtt_auth_spool_pending (keeper) == 0);
    zlistx_destroy (&due);

    //  kill -9 right after an append returned: a fresh connection has it.
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        mqtt_auth_spool_t *doomed = mqtt_auth_spool_new (path);
        char doomed_id[48] = "4000-1";
        int rc = mqtt_auth_spool_append (doomed, "pw-k", "tele/pw-k/SENSOR", "{}", 2, 20000, 21000,
                                         0, 0, doomed_id);
        if (rc == 0)
            kill (getpid (), SIGKILL);
        _exit (1);
    }
    int status = 0;
    assert (waitpid (child, &status, 0) == child);
    assert (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
    mqtt_auth_spool_destroy (&keeper);
    mqtt_auth_spool_destroy (&broker);
    keeper = mqtt_auth_spool_new (path);
    assert (keeper);
    due = zlistx_new ();
    assert (mqtt_auth_spool_due (keeper, 30000, 100, due) == 1);
    first = (mqtt_auth_spool_entry_t *)zlistx_first (due);
    assert (streq (first->pw_id, "4000-1") && streq (first->user, "pw-k"));
    zlistx_destroy (&due);
    mqtt_auth_spool_destroy (&keeper);
    mqtt_auth_spool_destroy (&keeper); //  twice is safe

    //  -v: what the broker thread pays per plug message (one append, one
    //  commit, as in s_on_message), and per message of a reconnected plug
    //  (the republish lookup first), on a spool of 20,000 entries.
    if (verbose) {
        mqtt_auth_spool_t *bench = mqtt_auth_spool_new (path);
        assert (bench);
        assert (mqtt_auth_spool_checkpoint_elsewhere (bench) == 0);
        const char *payload =
            "{\"Time\":\"2026-12-07T04:00:00\",\"ENERGY\":{\"TotalStartTime\":\"2026-01-03T10:11:"
            "12\","
            "\"Total\":1.2,\"Yesterday\":0.1,\"Today\":0.05,\"Power\":35.12,\"ApparentPower\":40,"
            "\"ReactivePower\":19,\"Factor\":0.88,\"Voltage\":230,\"Current\":0.174}}";
        int64_t started = zclock_usecs (), cpu_started = s_cpu_usecs ();
        int count = 20000;
        for (int index = 0; index < count; index++) {
            char bench_id[48], user[16], topic[48];
            snprintf (bench_id, sizeof bench_id, "5000-%d", index);
            snprintf (user, sizeof user, "pw-%010d", index % 1000);
            snprintf (topic, sizeof topic, "tele/%s/SENSOR", user);
            int rc = mqtt_auth_spool_append (bench, user, topic, payload, strlen (payload),
                                             50000 + index, 80000 + index, 0, 0, bench_id);
            assert (rc == 0);
        }
        int64_t appended = zclock_usecs (), cpu_appended = s_cpu_usecs ();
        for (int index = 0; index < count; index++) {
            char bench_id[48], user[16], topic[48];
            snprintf (bench_id, sizeof bench_id, "6000-%d", index);
            snprintf (user, sizeof user, "pw-%010d", index % 1000);
            snprintf (topic, sizeof topic, "tele/%s/SENSOR", user);
            int rc = mqtt_auth_spool_append (bench, user, topic, payload, strlen (payload) - 1,
                                             90000 + index, 120000 + index, 89000, 60000, bench_id);
            assert (rc == 0);
        }
        int64_t looked = zclock_usecs (), cpu_looked = s_cpu_usecs ();
        printf ("\n   append: %.1f us/message (CPU %.1f us); with the reconnect lookup: %.1f us"
                " (CPU %.1f us) ",
                (double)(appended - started) / count, (double)(cpu_appended - cpu_started) / count,
                (double)(looked - appended) / count, (double)(cpu_looked - cpu_appended) / count);
        int64_t checkpoint = zclock_usecs ();
        assert (mqtt_auth_spool_checkpoint (bench) == 0);
        printf ("checkpoint of %d appends: %.1f ms ", 2 * count,
                (zclock_usecs () - checkpoint) / 1000.0);
        mqtt_auth_spool_destroy (&bench);
    }

    char command[200];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    assert (system (command) == 0);
    printf ("OK\n");
}
