/*  =========================================================================
    bridge_spool - the durable spool: SQLite in WAL mode, one connection per
    thread

    Every accepted reading is committed here (fsync per line with sync
    full) before anything else happens to it, and leaves only once the
    gateway answered for it. readingIds are "<prefix>-<seq>": the prefix,
    drawn once per spool file, makes them unique across spools, the
    AUTOINCREMENT sequence (never reused) across restarts. The bound drops
    the oldest readings, counted, only when the spool is full.

    The struct is public: the uploader steps its prepared statements (the
    oldest batch, a delete per settled reading) inside its own transaction.
    =========================================================================
*/
#ifndef BRIDGE_SPOOL_H_INCLUDED
#define BRIDGE_SPOOL_H_INCLUDED

#include "bridge_line.h"
#include "bridge_settings.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    sqlite3 *db;          //  this thread's connection
    char prefix[16];      //  readingId prefix of this spool
    sqlite3_stmt *insert; //  one reading
    sqlite3_stmt *select; //  the oldest batch
    sqlite3_stmt *remove; //  one reading by seq
    sqlite3_stmt *drop;   //  the oldest n
} bridge_spool_t;

//  Opens (creating) the spool at path with PRAGMA synchronous=sync; -1
//  after logging why.
int bridge_spool_open (bridge_spool_t *self, const char *path, const char *sync);

//  Closes it; safe on a spool that failed to open or is closed.
void bridge_spool_close (bridge_spool_t *self);

//  Readings in the spool, or -1.
int64_t bridge_spool_count (bridge_spool_t *self);

//  Appends count readings stamped ts in one transaction, first dropping the
//  oldest to stay within max; 0, or -1 (nothing written) after logging.
int bridge_spool_append (bridge_spool_t *self, const bridge_reading_t *readings, size_t count,
                         const int64_t *ts, int64_t max);

//  Runs sql (no parameters: transaction control and schema); -1 after logging.
int bridge_spool_exec (sqlite3 *db, const char *sql);

//  --fill: total synthetic readings for the benchmark, through append, one
//  second apart per port of bridge_channels, ending now. Prints "BRIDGE
//  filled=N depth=N". 0, or -1.
int bridge_spool_fill (const bridge_settings_t *settings, bridge_spool_t *spool, int64_t total);

//  For the tests: a new temporary directory (dir) and a spool file path in
//  it (file); and the directory's removal with what the spool left there.
void bridge_spool_test_file (char dir[64], char file[128]);
void bridge_spool_test_remove (const char *dir);

void bridge_spool_test (bool verbose);

#endif
