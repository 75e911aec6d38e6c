/*  =========================================================================
    bridge_spool - the durable spool: SQLite in WAL mode
    =========================================================================
*/
#include "bridge_spool.h"
#include "bridge_metrics.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>

int
bridge_spool_exec (sqlite3 *db, const char *sql)
{
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) != SQLITE_OK) {
        zsys_error ("bridge spool - %s: %s", sql, error ? error : "?");
        sqlite3_free (error);
        return -1;
    }
    return 0;
}

void
bridge_spool_close (bridge_spool_t *self)
{
    sqlite3_finalize (self->insert);
    sqlite3_finalize (self->select);
    sqlite3_finalize (self->remove);
    sqlite3_finalize (self->drop);
    sqlite3_close (self->db);
    memset (self, 0, sizeof *self);
}

int
bridge_spool_open (bridge_spool_t *self, const char *path, const char *sync)
{
    memset (self, 0, sizeof *self);
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        zsys_error ("bridge spool %s - cannot open: %s", path,
                    self->db ? sqlite3_errmsg (self->db) : "out of memory");
        bridge_spool_close (self);
        return -1;
    }
    //  The other thread's commit holds the lock for one fsync at most.
    sqlite3_busy_timeout (self->db, 10000);
    char pragma[64];
    snprintf (pragma, sizeof pragma, "PRAGMA synchronous=%s", sync);
    if (bridge_spool_exec (self->db, "PRAGMA journal_mode=WAL") ||
        bridge_spool_exec (self->db, pragma) ||
        bridge_spool_exec (self->db, "PRAGMA cache_size=-2048") ||
        bridge_spool_exec (self->db,
                           "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)") ||
        bridge_spool_exec (self->db,
                           "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY "
                           "AUTOINCREMENT, ts INTEGER NOT NULL, port TEXT NOT NULL, voltage REAL "
                           "NOT NULL, current REAL NOT NULL, power REAL NOT NULL)")) {
        bridge_spool_close (self);
        return -1;
    }
    //  The prefix makes readingIds unique across spools; the sequence
    //  (AUTOINCREMENT: never reused) across restarts of one spool.
    uint8_t random[6];
    char fresh[16];
    FILE *urandom = fopen ("/dev/urandom", "rb");
    if (!urandom || fread (random, 1, sizeof random, urandom) != sizeof random) {
        zsys_error ("bridge spool - cannot read /dev/urandom");
        if (urandom)
            fclose (urandom);
        bridge_spool_close (self);
        return -1;
    }
    fclose (urandom);
    for (size_t index = 0; index < sizeof random; index++)
        snprintf (fresh + 2 * index, 3, "%02x", random[index]);
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2 (self->db,
                                 "INSERT INTO meta (key, value) VALUES ('prefix', ?) ON CONFLICT "
                                 "DO NOTHING",
                                 -1, &statement, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text (statement, 1, fresh, -1, SQLITE_STATIC);
        rc = sqlite3_step (statement) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize (statement);
    statement = NULL;
    if (rc == SQLITE_OK &&
        sqlite3_prepare_v2 (self->db, "SELECT value FROM meta WHERE key = 'prefix'", -1, &statement,
                            NULL) == SQLITE_OK &&
        sqlite3_step (statement) == SQLITE_ROW)
        snprintf (self->prefix, sizeof self->prefix, "%s",
                  (const char *)sqlite3_column_text (statement, 0));
    sqlite3_finalize (statement);
    if (!self->prefix[0] ||
        sqlite3_prepare_v2 (self->db,
                            "INSERT INTO spool (ts, port, voltage, current, power) VALUES "
                            "(?, ?, ?, ?, ?)",
                            -1, &self->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2 (self->db,
                            "SELECT seq, ts, port, voltage, current, power FROM spool ORDER BY "
                            "seq LIMIT ?",
                            -1, &self->select, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2 (self->db, "DELETE FROM spool WHERE seq = ?", -1, &self->remove, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2 (self->db,
                            "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq "
                            "LIMIT ?)",
                            -1, &self->drop, NULL) != SQLITE_OK) {
        zsys_error ("bridge spool %s - cannot prepare: %s", path, sqlite3_errmsg (self->db));
        bridge_spool_close (self);
        return -1;
    }
    return 0;
}

int64_t
bridge_spool_count (bridge_spool_t *self)
{
    sqlite3_stmt *statement = NULL;
    int64_t count = -1;
    if (sqlite3_prepare_v2 (self->db, "SELECT count(*) FROM spool", -1, &statement, NULL) ==
            SQLITE_OK &&
        sqlite3_step (statement) == SQLITE_ROW)
        count = sqlite3_column_int64 (statement, 0);
    sqlite3_finalize (statement);
    return count;
}

int
bridge_spool_append (bridge_spool_t *self, const bridge_reading_t *readings, size_t count,
                     const int64_t *ts, int64_t max)
{
    if (bridge_spool_exec (self->db, "BEGIN IMMEDIATE"))
        return -1;
    int64_t over = atomic_load (&bridge_counters.depth) + (int64_t)count - max;
    int64_t dropped = 0;
    if (over > 0) {
        sqlite3_reset (self->drop);
        sqlite3_bind_int64 (self->drop, 1, over);
        if (sqlite3_step (self->drop) != SQLITE_DONE)
            goto failed;
        dropped = sqlite3_changes (self->db);
    }
    for (size_t index = 0; index < count; index++) {
        sqlite3_reset (self->insert);
        sqlite3_bind_int64 (self->insert, 1, ts[index]);
        sqlite3_bind_text (self->insert, 2, readings[index].port, BRIDGE_UUID_LEN, SQLITE_STATIC);
        sqlite3_bind_double (self->insert, 3, readings[index].voltage);
        sqlite3_bind_double (self->insert, 4, readings[index].current);
        sqlite3_bind_double (self->insert, 5, readings[index].power);
        if (sqlite3_step (self->insert) != SQLITE_DONE)
            goto failed;
    }
    if (bridge_spool_exec (self->db, "COMMIT"))
        goto failed;
    if (dropped) {
        atomic_fetch_add (&bridge_counters.dropped, (unsigned long)dropped);
        zsys_warning ("bridge spool - full (%" PRId64 " readings): dropped the %" PRId64 " oldest",
                      max, dropped);
    }
    atomic_fetch_add (&bridge_counters.depth, (long)count - (long)dropped);
    atomic_fetch_add (&bridge_counters.spooled, (unsigned long)count);
    int64_t expected = 0;
    atomic_compare_exchange_strong (&bridge_counters.oldest_ts, (long long *)&expected, ts[0]);
    return 0;
failed:
    zsys_error ("bridge spool - write failed: %s", sqlite3_errmsg (self->db));
    sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int
bridge_spool_fill (const bridge_settings_t *settings, bridge_spool_t *spool, int64_t total)
{
    if (settings->channel_count == 0) {
        zsys_error ("bridge fill - bridge_channels is empty");
        return -1;
    }
    size_t ports = settings->channel_count;
    int64_t now = zclock_time ();
    int64_t per_port = (total + (int64_t)ports - 1) / (int64_t)ports;
    enum { CHUNK = 10000 };
    bridge_reading_t *readings = (bridge_reading_t *)malloc (CHUNK * sizeof (bridge_reading_t));
    int64_t *ts = (int64_t *)malloc (CHUNK * sizeof (int64_t));
    if (!readings || !ts) {
        free (readings);
        free (ts);
        return -1;
    }
    int64_t done = 0;
    while (done < total) {
        size_t count = 0;
        while (count < CHUNK && done + (int64_t)count < total) {
            int64_t index = done + (int64_t)count;
            bridge_reading_t *reading = &readings[count];
            memcpy (reading->port, settings->channels[index % (int64_t)ports].port,
                    sizeof reading->port);
            reading->voltage = 230 + (double)(index % 7);
            reading->power = 4 + (double)(index % 1000) / 100.0;
            reading->current = reading->power / reading->voltage;
            ts[count] = now - (per_port - index / (int64_t)ports) * 1000;
            count++;
        }
        if (bridge_spool_append (spool, readings, count, ts, settings->spool_max))
            break;
        done += (int64_t)count;
    }
    free (readings);
    free (ts);
    printf ("BRIDGE filled=%" PRId64 " depth=%ld\n", done, atomic_load (&bridge_counters.depth));
    return done == total ? 0 : -1;
}

void
bridge_spool_test_file (char dir[64], char file[128])
{
    snprintf (dir, 64, "/tmp/phantom-bridge-test-XXXXXX");
    assert (mkdtemp (dir));
    snprintf (file, 128, "%s/spool.db", dir);
}

void
bridge_spool_test_remove (const char *dir)
{
    char command[256];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    if (system (command) != 0)
        printf ("(could not remove %s) ", dir);
}

void
bridge_spool_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_spool: ");
    bridge_settings_t settings;
    memset (&settings, 0, sizeof settings);
    settings.spool_max = 5;
    bridge_reading_t readings[1] = {{"22222222-2222-4222-8222-222222222222", 240, 0.2, 24}};
    atomic_store (&bridge_counters.dropped, 0);

    //  Spool: ids across a reopen, the bound, deletes.
    char path[64], file[128];
    bridge_spool_test_file (path, file);
    bridge_spool_t spool;
    assert (bridge_spool_open (&spool, file, "full") == 0);
    char prefix[16];
    snprintf (prefix, sizeof prefix, "%s", spool.prefix);
    assert (strlen (prefix) == 12);
    atomic_store (&bridge_counters.depth, 0);
    int64_t ts[3] = {1000, 1000, 1000};
    for (int round = 0; round < 3; round++)
        assert (bridge_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    bridge_spool_close (&spool);
    assert (bridge_spool_open (&spool, file, "full") == 0);
    assert (strcmp (spool.prefix, prefix) == 0);
    assert (bridge_spool_count (&spool) == 3);
    for (int round = 0; round < 4; round++)
        assert (bridge_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    assert (bridge_spool_count (&spool) == 5 && atomic_load (&bridge_counters.dropped) == 2);
    sqlite3_stmt *statement;
    assert (sqlite3_prepare_v2 (spool.db, "SELECT min(seq), max(seq) FROM spool", -1, &statement,
                                NULL) == SQLITE_OK);
    assert (sqlite3_step (statement) == SQLITE_ROW);
    assert (sqlite3_column_int64 (statement, 0) == 3 && sqlite3_column_int64 (statement, 1) == 7);
    sqlite3_finalize (statement);
    //  A deleted newest seq is not reused (AUTOINCREMENT).
    assert (bridge_spool_exec (spool.db, "DELETE FROM spool WHERE seq = 7") == 0);
    atomic_fetch_sub (&bridge_counters.depth, 1);
    assert (bridge_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    assert (sqlite3_prepare_v2 (spool.db, "SELECT max(seq) FROM spool", -1, &statement, NULL) ==
            SQLITE_OK);
    assert (sqlite3_step (statement) == SQLITE_ROW && sqlite3_column_int64 (statement, 0) == 8);
    sqlite3_finalize (statement);
    bridge_spool_close (&spool);
    bridge_spool_close (&spool);
    assert (spool.db == NULL);
    bridge_spool_test_remove (path);
    if (verbose)
        printf ("OK\n");
}
