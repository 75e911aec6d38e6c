/*  =========================================================================
    bridge_uploader - the oldest spooled batch, POSTed; deleted per reading
    once settled
    =========================================================================
*/
#include "bridge_uploader.h"
#include "bridge_metrics.h"
#include "bridge_signal.h"
#include "proto_main.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <strings.h>
#include <unistd.h>

//  xorshift64: jitter only, seeded from the clock and the pid.
static uint64_t
s_random (void)
{
    static _Thread_local uint64_t state;
    if (!state)
        state = (uint64_t)zclock_time () * 6364136223846793005ULL ^ (uint64_t)getpid () ^ 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static size_t
s_on_body (char *data, size_t size, size_t count, void *arg)
{
    bridge_uploader_t *self = (bridge_uploader_t *)arg;
    size_t bytes = size * count;
    if (self->answer_size + bytes > BRIDGE_ANSWER_MAX) {
        self->answer_overflow = true;
        return 0;
    }
    char *grown = (char *)realloc (self->answer, self->answer_size + bytes + 1);
    if (!grown)
        return 0;
    self->answer = grown;
    memcpy (self->answer + self->answer_size, data, bytes);
    self->answer_size += bytes;
    self->answer[self->answer_size] = 0;
    return bytes;
}

static size_t
s_on_header (char *data, size_t size, size_t count, void *arg)
{
    bridge_uploader_t *self = (bridge_uploader_t *)arg;
    size_t bytes = size * count;
    if (bytes > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        long seconds = strtol (data + 12, NULL, 10);
        if (seconds > 0 && seconds < 3600)
            self->retry_after_ms = seconds * 1000;
    }
    return bytes;
}

static int
s_body_add (bridge_uploader_t *self, size_t *size, const char *format, ...)
{
    for (;;) {
        va_list args;
        va_start (args, format);
        int written = vsnprintf (self->body + *size, self->body_capacity - *size, format, args);
        va_end (args);
        if (written < 0)
            return -1;
        if (*size + (size_t)written < self->body_capacity) {
            *size += (size_t)written;
            return 0;
        }
        size_t capacity = self->body_capacity * 2 + (size_t)written;
        char *grown = (char *)realloc (self->body, capacity);
        if (!grown)
            return -1;
        self->body = grown;
        self->body_capacity = capacity;
    }
}

//  Fills the body with the oldest batch; the number of readings, or -1.
static int
s_uploader_batch (bridge_uploader_t *self, size_t *size)
{
    *size = 0;
    sqlite3_stmt *select = self->spool.select;
    sqlite3_reset (select);
    sqlite3_bind_int (select, 1, self->settings->batch);
    if (s_body_add (self, size, "{\"deviceToken\":\"%s\",\"readings\":[", self->settings->token))
        return -1;
    int count = 0, rc;
    while ((rc = sqlite3_step (select)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64 (select, 0);
        int64_t ts = sqlite3_column_int64 (select, 1);
        if (count == 0)
            atomic_store (&bridge_counters.oldest_ts, ts);
        self->seqs[count] = seq;
        //  %.15g gives the shortest text of values read from a line's
        //  decimal text; no exponent for sensor-sized values, which keeps
        //  the gateway on its fast scanner.
        if (s_body_add (self, size,
                        "%s{\"portId\":\"%s\",\"voltage\":%.15g,\"current\":%.15g,\"power\":%.15g,"
                        "\"timestamp\":%" PRId64 ",\"readingId\":\"%s-%" PRId64 "\"}",
                        count ? "," : "", (const char *)sqlite3_column_text (select, 2),
                        sqlite3_column_double (select, 3), sqlite3_column_double (select, 4),
                        sqlite3_column_double (select, 5), ts, self->spool.prefix, seq))
            return -1;
        count++;
    }
    sqlite3_reset (select);
    if (rc != SQLITE_DONE) {
        zsys_error ("bridge spool - read failed: %s", sqlite3_errmsg (self->spool.db));
        return -1;
    }
    if (count == 0)
        atomic_store (&bridge_counters.oldest_ts, 0);
    if (s_body_add (self, size, "]}"))
        return -1;
    return count;
}

//  Deletes the readings whose status says they are done; the number of
//  readings still to retry, or -1 when the answer is not a batch answer.
static int
s_uploader_settle (bridge_uploader_t *self, int count)
{
    json_error_t error;
    json_t *answer = json_loadb (self->answer, self->answer_size, 0, &error);
    json_t *results = json_object_get (json_object_get (answer, "data"), "results");
    if (!json_is_array (results)) {
        json_decref (answer);
        return -1;
    }
    int retry = 0;
    unsigned long uploaded = 0, refused = 0;
    long removed = 0;
    if (bridge_spool_exec (self->spool.db, "BEGIN IMMEDIATE")) {
        json_decref (answer);
        return -1;
    }
    size_t index;
    json_t *result;
    bool seen[BRIDGE_BATCH_LIMIT] = {false};
    json_array_foreach (results, index, result)
    {
        json_t *at = json_object_get (result, "index");
        json_int_t position = json_is_integer (at) ? json_integer_value (at) : (json_int_t)index;
        json_int_t status = json_integer_value (json_object_get (result, "status"));
        if (position < 0 || position >= count || seen[position])
            continue;
        seen[position] = true;
        if (status == 201)
            uploaded++;
        else if (status == 400 || status == 404) {
            refused++;
            json_t *failure = json_object_get (result, "error");
            zsys_warning ("bridge upload %s-%" PRId64 " - refused %d %s: %s", self->spool.prefix,
                          self->seqs[position], (int)status,
                          json_string_value (json_object_get (failure, "code")) ?: "?",
                          json_string_value (json_object_get (failure, "message")) ?: "");
        } else {
            retry++;
            continue;
        }
        sqlite3_reset (self->spool.remove);
        sqlite3_bind_int64 (self->spool.remove, 1, self->seqs[position]);
        if (sqlite3_step (self->spool.remove) != SQLITE_DONE) {
            zsys_error ("bridge spool - delete failed: %s", sqlite3_errmsg (self->spool.db));
            sqlite3_exec (self->spool.db, "ROLLBACK", NULL, NULL, NULL);
            json_decref (answer);
            return -1;
        }
        removed += sqlite3_changes (self->spool.db);
    }
    json_decref (answer);
    for (int position = 0; position < count; position++)
        if (!seen[position])
            retry++;
    //  A failed commit leaves the readings spooled: they are sent again
    //  with the same readingIds, which the gateway de-duplicates.
    if (bridge_spool_exec (self->spool.db, "COMMIT")) {
        sqlite3_exec (self->spool.db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    atomic_fetch_add (&bridge_counters.uploaded, uploaded);
    atomic_fetch_add (&bridge_counters.refused, refused);
    atomic_fetch_sub (&bridge_counters.depth, removed);
    return retry;
}

void *
bridge_uploader_run (void *arg)
{
    bridge_uploader_t *self = (bridge_uploader_t *)arg;
    const bridge_settings_t *settings = self->settings;
    char url[1024];
    snprintf (url, sizeof url, "%s/api/sensor/readings", settings->url);
    struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
    headers = curl_slist_append (headers, "Expect:");
    curl_easy_setopt (self->curl, CURLOPT_URL, url);
    curl_easy_setopt (self->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (self->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (self->curl, CURLOPT_TIMEOUT_MS, (long)settings->timeout_ms);
    curl_easy_setopt (self->curl, CURLOPT_CONNECTTIMEOUT_MS,
                      (long)(settings->timeout_ms < 5000 ? settings->timeout_ms : 5000));
    curl_easy_setopt (self->curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (self->curl, CURLOPT_WRITEDATA, self);
    curl_easy_setopt (self->curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (self->curl, CURLOPT_HEADERDATA, self);
    curl_easy_setopt (self->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    int64_t backoff = 0;
    while (!proto_main_stopping ()) {
        size_t size;
        int count = s_uploader_batch (self, &size);
        if (count == 0) {
            if (self->drain)
                break;
            bridge_signal_sleep_ms (100);
            continue;
        }
        int retry = count;
        long status = 0;
        if (count > 0) {
            self->answer_size = 0;
            self->answer_overflow = false;
            self->retry_after_ms = 0;
            curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, self->body);
            curl_easy_setopt (self->curl, CURLOPT_POSTFIELDSIZE, (long)size);
            CURLcode code = curl_easy_perform (self->curl);
            curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, &status);
            if (code != CURLE_OK)
                zsys_warning ("bridge upload %s - %s", url, curl_easy_strerror (code));
            else if (status == 200)
                retry = s_uploader_settle (self, count);
            else
                zsys_warning ("bridge upload %s - HTTP %ld: %.200s", url, status,
                              self->answer ? self->answer : "");
            if (retry < 0) {
                zsys_warning ("bridge upload %s - answer is not a batch answer", url);
                retry = count;
            }
        }
        if (retry == 0) {
            backoff = 0;
            continue;
        }
        if (retry == count)
            atomic_fetch_add (&bridge_counters.upload_failures, 1);
        //  Doubling with full jitter, so bridges that lost the same gateway
        //  do not come back in step; Retry-After is a floor.
        backoff = backoff ? backoff * 2 : settings->backoff_min_ms;
        if (backoff > settings->backoff_max_ms)
            backoff = settings->backoff_max_ms;
        int64_t delay = backoff / 2 + (int64_t)(s_random () % (uint64_t)(backoff / 2 + 1));
        if (self->retry_after_ms > delay)
            delay = self->retry_after_ms;
        if (self->verbose)
            zsys_debug ("bridge upload - %d to retry, waiting %" PRId64 " ms", retry, delay);
        bridge_signal_sleep_ms (delay);
    }
    curl_slist_free_all (headers);
    return NULL;
}

int
bridge_uploader_init (bridge_uploader_t *self, const bridge_settings_t *settings, bool drain,
                      bool verbose)
{
    memset (self, 0, sizeof *self);
    self->settings = settings;
    self->drain = drain;
    self->verbose = verbose;
    self->curl = curl_easy_init ();
    self->seqs = (int64_t *)calloc (BRIDGE_BATCH_LIMIT, sizeof (int64_t));
    self->body_capacity = 256 * 1024;
    self->body = (char *)malloc (self->body_capacity);
    if (!self->curl || !self->seqs || !self->body ||
        bridge_spool_open (&self->spool, settings->spool, settings->sync)) {
        bridge_uploader_release (self);
        return -1;
    }
    return 0;
}

void
bridge_uploader_release (bridge_uploader_t *self)
{
    bridge_spool_close (&self->spool);
    if (self->curl)
        curl_easy_cleanup (self->curl);
    free (self->seqs);
    free (self->body);
    free (self->answer);
    memset (self, 0, sizeof *self);
}

void
bridge_uploader_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_uploader: ");
    char path[64], file[128];
    bridge_spool_test_file (path, file);
    bridge_spool_t spool;
    assert (bridge_spool_open (&spool, file, "full") == 0);
    atomic_store (&bridge_counters.depth, 0);
    bridge_reading_t readings[1] = {{"22222222-2222-4222-8222-222222222222", 240, 0.2, 24}};
    int64_t ts[1] = {1000};
    for (int round = 0; round < 5; round++)
        assert (bridge_spool_append (&spool, readings, 1, ts, 1000) == 0);

    //  The uploader's settle: 201 and 404 leave, 503 and missing stay.
    bridge_uploader_t uploader;
    memset (&uploader, 0, sizeof uploader);
    int64_t seqs[5] = {1, 2, 3, 4, 5};
    uploader.seqs = seqs;
    uploader.spool = spool;
    const char *answer = "{\"success\":true,\"data\":{\"results\":["
                         "{\"index\":0,\"status\":201},{\"index\":1,\"status\":503},"
                         "{\"index\":2,\"status\":404,\"error\":{\"code\":\"port_not_found\"}},"
                         "{\"index\":3,\"status\":201}]}}";
    uploader.answer = (char *)answer;
    uploader.answer_size = strlen (answer);
    unsigned long uploaded = atomic_load (&bridge_counters.uploaded);
    assert (s_uploader_settle (&uploader, 5) == 2);
    assert (atomic_load (&bridge_counters.uploaded) == uploaded + 2);
    assert (bridge_spool_count (&spool) == 2);
    uploader.answer = (char *)"<html>";
    uploader.answer_size = 6;
    assert (s_uploader_settle (&uploader, 2) == -1);
    assert (bridge_spool_count (&spool) == 2);
    bridge_spool_close (&spool);

    //  Set-up opens its own connection to the same spool; release undoes it.
    bridge_settings_t settings;
    memset (&settings, 0, sizeof settings);
    settings.spool = file;
    settings.sync = "full";
    bridge_uploader_t started;
    assert (bridge_uploader_init (&started, &settings, true, false) == 0);
    assert (started.curl && started.seqs && started.body && started.drain);
    assert (bridge_spool_count (&started.spool) == 2);
    bridge_uploader_release (&started);
    assert (started.curl == NULL && started.spool.db == NULL);
    settings.spool = "/nonexistent/directory/spool.db";
    assert (bridge_uploader_init (&started, &settings, false, false) == -1);
    assert (started.curl == NULL);

    bridge_spool_test_remove (path);
    if (verbose)
        printf ("OK\n");
}
