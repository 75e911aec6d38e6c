/*  =========================================================================
    phantom-bridge - a serial board's lines into PhantomWatch, losing nothing

    Serial reader (main thread): termios device -> lines -> readings ->
    SQLite spool (WAL), committed before anything else happens to them.
    Uploader (one thread): oldest spooled readings -> POST
    /api/sensor/readings (libcurl) -> deleted only after their 201.
    Metrics: Prometheus text on a local civetweb port.
    Usage, config keys and metric names: README.md beside this file.
    =========================================================================
*/
#include "bridge_config_keys.h"

#include <civetweb.h>
#include <curl/curl.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CHANNELS_MAX 64
#define CHANNEL_NAME_MAX 32
#define UUID_LEN 36
#define ANSWER_MAX (4 * 1024 * 1024)

//  --------------------------------------------------------------------------
//  Counters, shared by the reader, the uploader and the metrics thread.

static atomic_ulong s_lines_read;
static atomic_ulong s_lines_rejected;
static atomic_ulong s_spooled;
static atomic_ulong s_uploaded;
static atomic_ulong s_refused;
static atomic_ulong s_dropped;
static atomic_ulong s_upload_failures;
static atomic_ulong s_reopens;
static atomic_long s_depth;      //  readings in the spool
static atomic_llong s_oldest_ts; //  ms of the oldest spooled reading, 0 when empty
static volatile sig_atomic_t s_interrupted;
static bool s_verbose;

static void
s_signal (int signum)
{
    (void)signum;
    s_interrupted = 1;
}

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  xorshift64: jitter only, seeded from the clock and the pid.
static uint64_t
s_random (void)
{
    static _Thread_local uint64_t state;
    if (!state)
        state = (uint64_t)s_now_ms () * 6364136223846793005ULL ^ (uint64_t)getpid () ^ 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static int64_t
s_monotonic_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  Sleeps ms in short steps so a signal stops it within 100 ms.
static void
s_sleep_ms (int64_t ms)
{
    int64_t until = s_monotonic_ms () + ms;
    while (!s_interrupted) {
        int64_t left = until - s_monotonic_ms ();
        if (left <= 0)
            break;
        struct timespec step = {0, (long)(left < 100 ? left : 100) * 1000000L};
        nanosleep (&step, NULL);
    }
}

//  --------------------------------------------------------------------------
//  Settings: the config file plus PHANTOM_* overrides, read once.

typedef struct {
    char name[CHANNEL_NAME_MAX + 1]; //  board channel, as the line names it
    char port[UUID_LEN + 1];         //  port id, lower case
} s_channel_t;

typedef struct {
    const char *device;                 //  serial device path
    int baud;                           //  line speed
    const char *url;                    //  base URL of PhantomWatch
    const char *token;                  //  device token
    const char *spool;                  //  spool path
    int64_t spool_max;                  //  readings kept at most
    const char *sync;                   //  full, normal or off
    int batch;                          //  readings per POST
    int64_t timeout_ms;                 //  one POST
    int64_t backoff_min_ms;             //  first retry delay
    int64_t backoff_max_ms;             //  longest retry delay
    size_t line_max;                    //  longer lines are rejected
    const char *voltage_name;           //  emonhub: the voltage field
    double default_voltage;             //  emonhub: when the line has none
    const char *metrics;                //  host:port or "off"
    s_channel_t channels[CHANNELS_MAX]; //  board channel -> port
    size_t channel_count;               //  used entries of channels
} s_settings_t;

//  Lower-cases a UUID into port; -1 if text is not one.
static int
s_uuid (const char *text, size_t length, char port[UUID_LEN + 1])
{
    if (length != UUID_LEN)
        return -1;
    for (size_t index = 0; index < UUID_LEN; index++) {
        char c = (char)tolower ((unsigned char)text[index]);
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (c != '-')
                return -1;
        } else if (!isxdigit ((unsigned char)c))
            return -1;
        port[index] = c;
    }
    port[UUID_LEN] = 0;
    return 0;
}

//  "name=uuid,name=uuid" into settings->channels; -1 after logging why.
static int
s_channels_parse (s_settings_t *self, const char *text)
{
    self->channel_count = 0;
    const char *cursor = text;
    while (*cursor) {
        while (*cursor == ' ' || *cursor == ',')
            cursor++;
        if (!*cursor)
            break;
        const char *end = cursor + strcspn (cursor, ",");
        const char *equals = memchr (cursor, '=', (size_t)(end - cursor));
        if (!equals || equals == cursor) {
            zsys_error ("bridge config - bridge_channels: '%.*s' is not name=port-uuid",
                        (int)(end - cursor), cursor);
            return -1;
        }
        const char *name_end = equals;
        while (name_end > cursor && name_end[-1] == ' ')
            name_end--;
        const char *value = equals + 1;
        while (*value == ' ')
            value++;
        const char *value_end = end;
        while (value_end > value && value_end[-1] == ' ')
            value_end--;
        if (self->channel_count == CHANNELS_MAX) {
            zsys_error ("bridge config - bridge_channels: more than %d channels", CHANNELS_MAX);
            return -1;
        }
        s_channel_t *channel = &self->channels[self->channel_count];
        size_t name_length = (size_t)(name_end - cursor);
        if (name_length > CHANNEL_NAME_MAX ||
            s_uuid (value, (size_t)(value_end - value), channel->port) != 0) {
            zsys_error ("bridge config - bridge_channels: '%.*s' is not name=port-uuid",
                        (int)(end - cursor), cursor);
            return -1;
        }
        memcpy (channel->name, cursor, name_length);
        channel->name[name_length] = 0;
        self->channel_count++;
        cursor = end;
    }
    return 0;
}

static const char *
s_channel_port (const s_settings_t *self, const char *name, size_t length)
{
    for (size_t index = 0; index < self->channel_count; index++)
        if (strlen (self->channels[index].name) == length &&
            strncasecmp (self->channels[index].name, name, length) == 0)
            return self->channels[index].port;
    return NULL;
}

static bool
s_printable (const char *text)
{
    for (; *text; text++)
        if (*text < 0x21 || *text > 0x7e || *text == '"' || *text == '\\')
            return false;
    return true;
}

static speed_t
s_speed (int baud)
{
    switch (baud) {
    case 1200:
        return B1200;
    case 2400:
        return B2400;
    case 4800:
        return B4800;
    case 9600:
        return B9600;
    case 19200:
        return B19200;
    case 38400:
        return B38400;
    case 57600:
        return B57600;
    case 115200:
        return B115200;
    case 230400:
        return B230400;
    default:
        return 0;
    }
}

//  Reads the settings; -1 after logging the bad key.
static int
s_settings_load (s_settings_t *self, proto_config_t *config)
{
    memset (self, 0, sizeof *self);
    self->device = proto_config_str (config, "bridge_device");
    self->baud = (int)proto_config_int (config, "bridge_baud");
    self->url = proto_config_str (config, "bridge_url");
    self->token = proto_config_str (config, "bridge_device_token");
    self->spool = proto_config_str (config, "bridge_spool");
    self->spool_max = proto_config_int (config, "bridge_spool_max_readings");
    self->sync = proto_config_str (config, "bridge_spool_sync");
    self->batch = (int)proto_config_int (config, "bridge_batch");
    self->timeout_ms = proto_config_int (config, "bridge_http_timeout_ms");
    self->backoff_min_ms = proto_config_int (config, "bridge_backoff_min_ms");
    self->backoff_max_ms = proto_config_int (config, "bridge_backoff_max_ms");
    self->line_max = (size_t)proto_config_int (config, "bridge_line_max");
    self->voltage_name = proto_config_str (config, "bridge_voltage_name");
    self->default_voltage = (double)proto_config_int (config, "bridge_default_voltage");
    self->metrics = proto_config_str (config, "bridge_metrics_address");
    if (s_speed (self->baud) == 0) {
        zsys_error ("bridge config - bridge_baud %d is not one of 1200, 2400, 4800, 9600, "
                    "19200, 38400, 57600, 115200, 230400",
                    self->baud);
        return -1;
    }
    if (self->backoff_max_ms < self->backoff_min_ms)
        self->backoff_max_ms = self->backoff_min_ms;
    if (self->token &&
        (!*self->token || strlen (self->token) > 200 || !s_printable (self->token))) {
        zsys_error ("bridge config - bridge_device_token must be 1..200 printable characters");
        return -1;
    }
    return s_channels_parse (self, proto_config_str (config, "bridge_channels"));
}

//  --------------------------------------------------------------------------
//  Line parsing: one line (no newline) into up to CHANNELS_MAX readings.

typedef struct {
    char port[UUID_LEN + 1]; //  port id
    double voltage;          //  V
    double current;          //  A
    double power;            //  W
} s_reading_t;

//  The gateway's ranges: a reading outside them would be refused for
//  ever, so it is rejected here, where the line can still be logged.
static bool
s_in_range (double voltage, double current, double power)
{
    return isfinite (voltage) && isfinite (current) && isfinite (power) && voltage >= 0 &&
           voltage <= 1000 && current >= 0 && current <= 1000 && power >= 0 && power <= 1e6;
}

static int
s_reject (const char **reason, const char *why)
{
    *reason = why;
    return -1;
}

static int
s_parse_json (const s_settings_t *settings, const char *line, size_t length, s_reading_t *out,
              const char **reason)
{
    json_error_t error;
    json_t *object = json_loadb (line, length, JSON_REJECT_DUPLICATES, &error);
    if (!object || !json_is_object (object)) {
        json_decref (object);
        return s_reject (reason, "not a JSON object");
    }
    int rc = 0;
    json_t *voltage = json_object_get (object, "voltage");
    json_t *current = json_object_get (object, "current");
    json_t *power = json_object_get (object, "power");
    if (!json_is_number (voltage) || !json_is_number (current) || !json_is_number (power))
        rc = s_reject (reason, "voltage, current and power must be numbers");
    else {
        out->voltage = json_number_value (voltage);
        out->current = json_number_value (current);
        out->power = json_number_value (power);
        if (!s_in_range (out->voltage, out->current, out->power))
            rc = s_reject (reason, "value out of range");
    }
    json_t *port_id = json_object_get (object, "portId");
    json_t *channel = json_object_get (object, "channel");
    if (!channel)
        channel = json_object_get (object, "ch");
    if (!channel)
        channel = json_object_get (object, "port");
    if (rc == 0) {
        char name[CHANNEL_NAME_MAX + 1];
        const char *port = NULL;
        if (port_id) {
            if (!json_is_string (port_id) ||
                s_uuid (json_string_value (port_id), json_string_length (port_id), out->port))
                rc = s_reject (reason, "portId is not a UUID");
        } else {
            if (!channel)
                snprintf (name, sizeof name, "default");
            else if (json_is_string (channel) && json_string_length (channel) <= CHANNEL_NAME_MAX)
                snprintf (name, sizeof name, "%s", json_string_value (channel));
            else if (json_is_integer (channel))
                snprintf (name, sizeof name, "%" JSON_INTEGER_FORMAT, json_integer_value (channel));
            else
                name[0] = 0;
            if (name[0])
                port = s_channel_port (settings, name, strlen (name));
            if (!port)
                rc = s_reject (reason, "channel not in bridge_channels");
            else
                memcpy (out->port, port, sizeof out->port);
        }
    }
    json_decref (object);
    return rc;
}

//  A whole-field number (strtod, no trailing junk); -1 if it is not one.
static int
s_number (const char *text, size_t length, double *value)
{
    char buffer[64];
    if (length == 0 || length >= sizeof buffer)
        return -1;
    memcpy (buffer, text, length);
    buffer[length] = 0;
    char *end;
    errno = 0;
    *value = strtod (buffer, &end);
    if (end != buffer + length || errno || !isfinite (*value))
        return -1;
    return 0;
}

typedef struct {
    const char *name; //  not terminated
    size_t name_size; //  bytes of name
    double value;     //  parsed
} s_field_t;

static const s_field_t *
s_field_find (const s_field_t *fields, size_t count, const char *name, size_t size)
{
    for (size_t index = 0; index < count; index++)
        if (fields[index].name_size == size && strncasecmp (fields[index].name, name, size) == 0)
            return &fields[index];
    return NULL;
}

//  The current field of a power channel: I<suffix> or Irms<suffix>, where
//  the suffix is what follows the channel's leading letters (P1 -> 1).
static const s_field_t *
s_current_field (const s_field_t *fields, size_t count, const char *channel, size_t size)
{
    size_t at = 0;
    while (at < size && isalpha ((unsigned char)channel[at]))
        at++;
    if (at == size)
        return NULL;
    char name[CHANNEL_NAME_MAX + 8];
    int length = snprintf (name, sizeof name, "I%.*s", (int)(size - at), channel + at);
    const s_field_t *field = s_field_find (fields, count, name, (size_t)length);
    if (!field) {
        length = snprintf (name, sizeof name, "Irms%.*s", (int)(size - at), channel + at);
        field = s_field_find (fields, count, name, (size_t)length);
    }
    return field;
}

static int
s_parse_emonhub (const s_settings_t *settings, const char *line, size_t length, s_reading_t *out,
                 size_t max, size_t *count, const char **reason)
{
    s_field_t fields[64];
    size_t used = 0;
    const char *cursor = line, *end = line + length;
    while (cursor < end) {
        const char *item_end = memchr (cursor, ',', (size_t)(end - cursor));
        if (!item_end)
            item_end = end;
        const char *colon = memchr (cursor, ':', (size_t)(item_end - cursor));
        if (!colon)
            return s_reject (reason, "field without name:value");
        const char *name = cursor, *name_end = colon;
        while (name < name_end && *name == ' ')
            name++;
        while (name_end > name && name_end[-1] == ' ')
            name_end--;
        const char *value = colon + 1, *value_end = item_end;
        while (value < value_end && *value == ' ')
            value++;
        while (value_end > value && value_end[-1] == ' ')
            value_end--;
        if (name == name_end)
            return s_reject (reason, "field without a name");
        for (const char *c = name; c < name_end; c++)
            if (!isalnum ((unsigned char)*c) && *c != '_')
                return s_reject (reason, "field name not alphanumeric");
        if (used == sizeof fields / sizeof fields[0])
            return s_reject (reason, "too many fields");
        s_field_t *field = &fields[used++];
        field->name = name;
        field->name_size = (size_t)(name_end - name);
        if (s_number (value, (size_t)(value_end - value), &field->value))
            return s_reject (reason, "non-numeric value");
        cursor = item_end + 1;
    }
    double voltage = settings->default_voltage;
    const s_field_t *field =
        s_field_find (fields, used, settings->voltage_name, strlen (settings->voltage_name));
    if (!field)
        field = s_field_find (fields, used, "v", 1);
    if (field)
        voltage = field->value;
    *count = 0;
    for (size_t index = 0; index < used; index++) {
        const char *port = s_channel_port (settings, fields[index].name, fields[index].name_size);
        if (!port)
            continue;
        if (*count == max)
            return s_reject (reason, "too many channels");
        s_reading_t *reading = &out[(*count)++];
        memcpy (reading->port, port, sizeof reading->port);
        reading->voltage = voltage;
        reading->power = fields[index].value;
        const s_field_t *current =
            s_current_field (fields, used, fields[index].name, fields[index].name_size);
        reading->current = current ? current->value : voltage > 0 ? reading->power / voltage : 0;
        if (!s_in_range (reading->voltage, reading->current, reading->power))
            return s_reject (reason, "value out of range");
    }
    if (*count == 0)
        return s_reject (reason, "no field is a channel in bridge_channels");
    return 0;
}

//  One line (CR stripped by the caller) into readings; 0, or -1 with the
//  reason. count is 0 for a blank line.
static int
s_line_parse (const s_settings_t *settings, const char *line, size_t length, s_reading_t *out,
              size_t max, size_t *count, const char **reason)
{
    *count = 0;
    while (length && (*line == ' ' || *line == '\t')) {
        line++;
        length--;
    }
    while (length && (line[length - 1] == ' ' || line[length - 1] == '\t'))
        length--;
    if (length == 0)
        return 0;
    if (memchr (line, 0, length))
        return s_reject (reason, "NUL byte");
    if (*line == '{') {
        int rc = s_parse_json (settings, line, length, out, reason);
        if (rc == 0)
            *count = 1;
        return rc;
    }
    return s_parse_emonhub (settings, line, length, out, max, count, reason);
}

//  --------------------------------------------------------------------------
//  Line assembly from a byte stream: LF ends a line, a CR before it is
//  dropped, a line longer than line_max is rejected whole.

typedef struct {
    char *data;    //  the line so far
    size_t size;   //  bytes in data
    size_t max;    //  line_max
    bool overlong; //  the current line went over max: skip to its end
} s_assembler_t;

typedef void (s_line_fn) (void *arg, const char *line, size_t size, bool overlong);

static void
s_assembler_feed (s_assembler_t *self, const char *data, size_t size, s_line_fn *fn, void *arg)
{
    for (size_t index = 0; index < size; index++) {
        char c = data[index];
        if (c == '\n') {
            size_t length = self->size;
            if (length && self->data[length - 1] == '\r')
                length--;
            fn (arg, self->data, length, self->overlong);
            self->size = 0;
            self->overlong = false;
        } else if (self->overlong)
            continue;
        else if (self->size == self->max)
            self->overlong = true;
        else
            self->data[self->size++] = c;
    }
}

//  --------------------------------------------------------------------------
//  The spool: SQLite in WAL mode, one connection per thread.

typedef struct {
    sqlite3 *db;          //  this thread's connection
    char prefix[16];      //  readingId prefix of this spool
    sqlite3_stmt *insert; //  one reading
    sqlite3_stmt *select; //  the oldest batch
    sqlite3_stmt *remove; //  one reading by seq
    sqlite3_stmt *drop;   //  the oldest n
} s_spool_t;

static int
s_exec (sqlite3 *db, const char *sql)
{
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) != SQLITE_OK) {
        zsys_error ("bridge spool - %s: %s", sql, error ? error : "?");
        sqlite3_free (error);
        return -1;
    }
    return 0;
}

static void
s_spool_close (s_spool_t *self)
{
    sqlite3_finalize (self->insert);
    sqlite3_finalize (self->select);
    sqlite3_finalize (self->remove);
    sqlite3_finalize (self->drop);
    sqlite3_close (self->db);
    memset (self, 0, sizeof *self);
}

//  Opens (creating) the spool at path; -1 after logging why.
static int
s_spool_open (s_spool_t *self, const char *path, const char *sync)
{
    memset (self, 0, sizeof *self);
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        zsys_error ("bridge spool %s - cannot open: %s", path,
                    self->db ? sqlite3_errmsg (self->db) : "out of memory");
        s_spool_close (self);
        return -1;
    }
    //  The other thread's commit holds the lock for one fsync at most.
    sqlite3_busy_timeout (self->db, 10000);
    char pragma[64];
    snprintf (pragma, sizeof pragma, "PRAGMA synchronous=%s", sync);
    if (s_exec (self->db, "PRAGMA journal_mode=WAL") || s_exec (self->db, pragma) ||
        s_exec (self->db, "PRAGMA cache_size=-2048") ||
        s_exec (self->db, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)") ||
        s_exec (self->db, "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY "
                          "AUTOINCREMENT, ts INTEGER NOT NULL, port TEXT NOT NULL, voltage REAL "
                          "NOT NULL, current REAL NOT NULL, power REAL NOT NULL)")) {
        s_spool_close (self);
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
        s_spool_close (self);
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
        s_spool_close (self);
        return -1;
    }
    return 0;
}

static int64_t
s_spool_count (s_spool_t *self)
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

//  Appends count readings stamped ts in one transaction, first dropping the
//  oldest to stay within max; 0, or -1 (nothing written) after logging.
static int
s_spool_append (s_spool_t *self, const s_reading_t *readings, size_t count, const int64_t *ts,
                int64_t max)
{
    if (s_exec (self->db, "BEGIN IMMEDIATE"))
        return -1;
    int64_t over = atomic_load (&s_depth) + (int64_t)count - max;
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
        sqlite3_bind_text (self->insert, 2, readings[index].port, UUID_LEN, SQLITE_STATIC);
        sqlite3_bind_double (self->insert, 3, readings[index].voltage);
        sqlite3_bind_double (self->insert, 4, readings[index].current);
        sqlite3_bind_double (self->insert, 5, readings[index].power);
        if (sqlite3_step (self->insert) != SQLITE_DONE)
            goto failed;
    }
    if (s_exec (self->db, "COMMIT"))
        goto failed;
    if (dropped) {
        atomic_fetch_add (&s_dropped, (unsigned long)dropped);
        zsys_warning ("bridge spool - full (%" PRId64 " readings): dropped the %" PRId64 " oldest",
                      max, dropped);
    }
    atomic_fetch_add (&s_depth, (long)count - (long)dropped);
    atomic_fetch_add (&s_spooled, (unsigned long)count);
    int64_t expected = 0;
    atomic_compare_exchange_strong (&s_oldest_ts, (long long *)&expected, ts[0]);
    return 0;
failed:
    zsys_error ("bridge spool - write failed: %s", sqlite3_errmsg (self->db));
    sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

//  --------------------------------------------------------------------------
//  Serial reader: each line into the spool.

typedef struct {
    const s_settings_t *settings; //  channels, limits
    s_spool_t *spool;             //  the reader's connection
} s_reader_t;

static void
s_reader_line (void *arg, const char *line, size_t size, bool overlong)
{
    s_reader_t *self = (s_reader_t *)arg;
    s_reading_t readings[CHANNELS_MAX];
    size_t count = 0;
    const char *reason = NULL;
    int rc = overlong ? s_reject (&reason, "line too long")
                      : s_line_parse (self->settings, line, size, readings, CHANNELS_MAX, &count,
                                      &reason);
    if (rc == 0 && count == 0)
        return; //  blank
    atomic_fetch_add (&s_lines_read, 1);
    if (rc) {
        atomic_fetch_add (&s_lines_rejected, 1);
        zsys_warning ("bridge line - rejected (%s): %.*s", reason, (int)(size > 120 ? 120 : size),
                      line);
        return;
    }
    int64_t now = s_now_ms ();
    int64_t ts[CHANNELS_MAX];
    for (size_t index = 0; index < count; index++)
        ts[index] = now;
    //  A spool that cannot be written is retried: the line is in memory only
    //  until it is committed, and the serial input waits in the kernel.
    while (s_spool_append (self->spool, readings, count, ts, self->settings->spool_max) != 0 &&
           !s_interrupted)
        s_sleep_ms (1000);
}

static int
s_serial_open (const char *path, int baud)
{
    int fd = open (path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios tty;
    if (isatty (fd) && tcgetattr (fd, &tty) == 0) {
        cfmakeraw (&tty);
        tty.c_cflag |= CLOCAL | CREAD;
        speed_t speed = s_speed (baud);
        if (speed) {
            cfsetispeed (&tty, speed);
            cfsetospeed (&tty, speed);
        }
        tty.c_cc[VMIN] = 1;
        tty.c_cc[VTIME] = 0;
        if (tcsetattr (fd, TCSANOW, &tty) != 0) {
            close (fd);
            return -1;
        }
    }
    return fd;
}

//  Reads the device until interrupted, reopening it after it went away.
static void
s_reader_run (s_reader_t *self)
{
    const s_settings_t *settings = self->settings;
    char line[BRIDGE_LINE_MAX_LIMIT];
    s_assembler_t assembler = {line, 0, settings->line_max, false};
    int fd = -1;
    bool opened_once = false, told = false;
    int64_t checked = 0;
    while (!s_interrupted) {
        if (fd < 0) {
            fd = s_serial_open (settings->device, settings->baud);
            if (fd < 0) {
                if (!told)
                    zsys_warning ("bridge serial %s - cannot open (%s), retrying every second",
                                  settings->device, strerror (errno));
                told = true;
                s_sleep_ms (1000);
                continue;
            }
            zsys_info ("bridge serial %s - open at %d baud", settings->device, settings->baud);
            if (opened_once)
                atomic_fetch_add (&s_reopens, 1);
            opened_once = true;
            told = false;
            //  A line cut by the outage would read as a wrong one.
            assembler.size = 0;
            assembler.overlong = false;
        }
        struct pollfd item = {fd, POLLIN, 0};
        int rc = poll (&item, 1, 500);
        bool gone = false;
        errno = 0;
        if (rc > 0 && (item.revents & POLLIN)) {
            char data[4096];
            ssize_t size = read (fd, data, sizeof data);
            if (size > 0)
                s_assembler_feed (&assembler, data, (size_t)size, s_reader_line, self);
            else if (size == 0 || (errno != EAGAIN && errno != EINTR))
                gone = true;
        } else if (rc > 0 && (item.revents & (POLLHUP | POLLERR | POLLNVAL)))
            gone = true;
        //  A node that vanished (USB unplugged) may still give no error on fd.
        if (!gone && s_monotonic_ms () - checked > 1000) {
            checked = s_monotonic_ms ();
            struct stat node;
            if (stat (settings->device, &node) != 0)
                gone = true;
        }
        if (gone) {
            zsys_warning ("bridge serial %s - lost (%s), reopening", settings->device,
                          errno ? strerror (errno) : "hang-up");
            close (fd);
            fd = -1;
            s_sleep_ms (200);
        }
    }
    if (fd >= 0)
        close (fd);
}

//  --------------------------------------------------------------------------
//  Uploader: the oldest batch, POSTed; deleted per reading after its 201.

typedef struct {
    const s_settings_t *settings; //  url, token, batch, timeouts
    s_spool_t spool;              //  the uploader's own connection
    CURL *curl;                   //  one keep-alive connection
    char *body;                   //  request body
    size_t body_capacity;         //  bytes allocated
    char *answer;                 //  response body
    size_t answer_size;           //  bytes in answer
    bool answer_overflow;         //  answer over ANSWER_MAX
    int64_t retry_after_ms;       //  the last answer's Retry-After
    bool drain;                   //  exit when the spool is empty
    int64_t *seqs;                //  the batch's seq numbers
} s_uploader_t;

static size_t
s_on_body (char *data, size_t size, size_t count, void *arg)
{
    s_uploader_t *self = (s_uploader_t *)arg;
    size_t bytes = size * count;
    if (self->answer_size + bytes > ANSWER_MAX) {
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
    s_uploader_t *self = (s_uploader_t *)arg;
    size_t bytes = size * count;
    if (bytes > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        long seconds = strtol (data + 12, NULL, 10);
        if (seconds > 0 && seconds < 3600)
            self->retry_after_ms = seconds * 1000;
    }
    return bytes;
}

static int
s_body_add (s_uploader_t *self, size_t *size, const char *format, ...)
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
s_uploader_batch (s_uploader_t *self, size_t *size)
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
            atomic_store (&s_oldest_ts, ts);
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
        atomic_store (&s_oldest_ts, 0);
    if (s_body_add (self, size, "]}"))
        return -1;
    return count;
}

//  Deletes the readings whose status says they are done; the number of
//  readings still to retry, or -1 when the answer is not a batch answer.
static int
s_uploader_settle (s_uploader_t *self, int count)
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
    if (s_exec (self->spool.db, "BEGIN IMMEDIATE")) {
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
    if (s_exec (self->spool.db, "COMMIT")) {
        sqlite3_exec (self->spool.db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    atomic_fetch_add (&s_uploaded, uploaded);
    atomic_fetch_add (&s_refused, refused);
    atomic_fetch_sub (&s_depth, removed);
    return retry;
}

static void *
s_uploader_run (void *arg)
{
    s_uploader_t *self = (s_uploader_t *)arg;
    const s_settings_t *settings = self->settings;
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
    while (!s_interrupted) {
        size_t size;
        int count = s_uploader_batch (self, &size);
        if (count == 0) {
            if (self->drain)
                break;
            s_sleep_ms (100);
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
            atomic_fetch_add (&s_upload_failures, 1);
        //  Doubling with full jitter, so bridges that lost the same gateway
        //  do not come back in step; Retry-After is a floor.
        backoff = backoff ? backoff * 2 : settings->backoff_min_ms;
        if (backoff > settings->backoff_max_ms)
            backoff = settings->backoff_max_ms;
        int64_t delay = backoff / 2 + (int64_t)(s_random () % (uint64_t)(backoff / 2 + 1));
        if (self->retry_after_ms > delay)
            delay = self->retry_after_ms;
        if (s_verbose)
            zsys_debug ("bridge upload - %d to retry, waiting %" PRId64 " ms", retry, delay);
        s_sleep_ms (delay);
    }
    curl_slist_free_all (headers);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Metrics: Prometheus text.

static size_t
s_metrics_text (char *out, size_t size)
{
    int64_t oldest = atomic_load (&s_oldest_ts);
    long depth = atomic_load (&s_depth);
    double age = depth > 0 && oldest > 0 ? (double)(s_now_ms () - oldest) / 1000.0 : 0;
    int written = snprintf (
        out, size,
        "# TYPE phantom_bridge_lines_read_total counter\n"
        "phantom_bridge_lines_read_total %lu\n"
        "# TYPE phantom_bridge_lines_rejected_total counter\n"
        "phantom_bridge_lines_rejected_total %lu\n"
        "# TYPE phantom_bridge_readings_spooled_total counter\n"
        "phantom_bridge_readings_spooled_total %lu\n"
        "# TYPE phantom_bridge_readings_uploaded_total counter\n"
        "phantom_bridge_readings_uploaded_total %lu\n"
        "# TYPE phantom_bridge_readings_refused_total counter\n"
        "phantom_bridge_readings_refused_total %lu\n"
        "# TYPE phantom_bridge_readings_dropped_total counter\n"
        "phantom_bridge_readings_dropped_total %lu\n"
        "# TYPE phantom_bridge_upload_failures_total counter\n"
        "phantom_bridge_upload_failures_total %lu\n"
        "# TYPE phantom_bridge_serial_reopens_total counter\n"
        "phantom_bridge_serial_reopens_total %lu\n"
        "# TYPE phantom_bridge_spool_depth gauge\n"
        "phantom_bridge_spool_depth %ld\n"
        "# TYPE phantom_bridge_spool_oldest_age_seconds gauge\n"
        "phantom_bridge_spool_oldest_age_seconds %.3f\n",
        atomic_load (&s_lines_read), atomic_load (&s_lines_rejected), atomic_load (&s_spooled),
        atomic_load (&s_uploaded), atomic_load (&s_refused), atomic_load (&s_dropped),
        atomic_load (&s_upload_failures), atomic_load (&s_reopens), depth < 0 ? 0 : depth, age);
    return written < 0 ? 0 : (size_t)written < size ? (size_t)written : size - 1;
}

static int
s_metrics_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    char text[2048];
    size_t size = s_metrics_text (text, sizeof text);
    mg_printf (conn,
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
               size);
    mg_write (conn, text, size);
    return 200;
}

static struct mg_context *
s_metrics_start (const char *address)
{
    if (!address || !*address || strcmp (address, "off") == 0)
        return NULL;
    const char *options[] = {"listening_ports",    address, "num_threads", "2",
                             "request_timeout_ms", "5000",  NULL};
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    mg_init_library (0);
    struct mg_context *context = mg_start (&callbacks, NULL, options);
    if (!context) {
        zsys_error ("bridge metrics %s - cannot listen", address);
        return NULL;
    }
    mg_set_request_handler (context, "/metrics", s_metrics_handler, NULL);
    zsys_info ("bridge metrics - http://%s/metrics", address);
    return context;
}

//  --------------------------------------------------------------------------
//  --fill: synthetic readings for the benchmark, through the spool's own
//  append, one second apart per port ending now.

static int
s_fill (const s_settings_t *settings, s_spool_t *spool, int64_t total)
{
    if (settings->channel_count == 0) {
        zsys_error ("bridge fill - bridge_channels is empty");
        return -1;
    }
    size_t ports = settings->channel_count;
    int64_t now = s_now_ms ();
    int64_t per_port = (total + (int64_t)ports - 1) / (int64_t)ports;
    enum { CHUNK = 10000 };
    s_reading_t *readings = (s_reading_t *)malloc (CHUNK * sizeof (s_reading_t));
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
            s_reading_t *reading = &readings[count];
            memcpy (reading->port, settings->channels[index % (int64_t)ports].port,
                    sizeof reading->port);
            reading->voltage = 230 + (double)(index % 7);
            reading->power = 4 + (double)(index % 1000) / 100.0;
            reading->current = reading->power / reading->voltage;
            ts[count] = now - (per_port - index / (int64_t)ports) * 1000;
            count++;
        }
        if (s_spool_append (spool, readings, count, ts, settings->spool_max))
            break;
        done += (int64_t)count;
    }
    free (readings);
    free (ts);
    printf ("BRIDGE filled=%" PRId64 " depth=%ld\n", done, atomic_load (&s_depth));
    return done == total ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Self test.

typedef struct {
    char lines[16][128];
    size_t count;
    size_t overlong;
} s_collect_t;

static void
s_collect (void *arg, const char *line, size_t size, bool overlong)
{
    s_collect_t *self = (s_collect_t *)arg;
    if (overlong)
        self->overlong++;
    else if (self->count < 16)
        snprintf (self->lines[self->count++], 128, "%.*s", (int)size, line);
}

#define P1 "11111111-1111-4111-8111-111111111111"
#define P2 "22222222-2222-4222-8222-222222222222"
#define PD "dddddddd-dddd-4ddd-8ddd-dddddddddddd"

static void
s_test (bool verbose)
{
    printf (" * phantom_bridge: ");
    s_settings_t settings;
    memset (&settings, 0, sizeof settings);
    settings.voltage_name = "vrms";
    settings.default_voltage = 230;
    settings.line_max = 40;
    settings.spool_max = 5;
    assert (s_channels_parse (&settings, "default=" PD ", 1 = " P1 ",P2=" P2 ",ct1=" P1) == 0);
    assert (settings.channel_count == 4);
    assert (s_channels_parse (&settings, "x=not-a-uuid") == -1);
    assert (s_channels_parse (&settings, "=" P1) == -1);
    assert (s_channels_parse (&settings, "default=" PD ",1=" P1 ",P2=" P2 ",ct1=" P1) == 0);

    //  Line assembly: CRLF, partial lines across reads, over-long lines.
    char buffer[40];
    s_assembler_t assembler = {buffer, 0, sizeof buffer, false};
    s_collect_t collect = {.count = 0};
    const char *stream = "{\"a\":1}\r\npart";
    s_assembler_feed (&assembler, stream, strlen (stream), s_collect, &collect);
    assert (collect.count == 1 && strcmp (collect.lines[0], "{\"a\":1}") == 0);
    stream = "ial\n0123456789012345678901234567890123456789012345\nok\n";
    s_assembler_feed (&assembler, stream, strlen (stream), s_collect, &collect);
    assert (collect.count == 3 && strcmp (collect.lines[1], "partial") == 0);
    assert (strcmp (collect.lines[2], "ok") == 0 && collect.overlong == 1);

    //  Parsing.
    s_reading_t readings[CHANNELS_MAX];
    size_t count;
    const char *reason;
#define PARSE(text)                                                                                \
    s_line_parse (&settings, text, strlen (text), readings, CHANNELS_MAX, &count, &reason)
    assert (PARSE ("{\"voltage\":230.5,\"current\":0.45,\"power\":103.73}") == 0 && count == 1);
    assert (strcmp (readings[0].port, PD) == 0 && readings[0].power == 103.73);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"channel\":1}") == 0 &&
            strcmp (readings[0].port, P1) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"ch\":\"p2\"}") == 0 &&
            strcmp (readings[0].port, P2) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"portId\":\"" P2 "\"}") == 0 &&
            strcmp (readings[0].port, P2) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"channel\":9}") == -1);
    assert (PARSE ("{\"voltage\":\"230\",\"current\":1,\"power\":5}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":-5}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5") == -1);
    assert (PARSE ("   ") == 0 && count == 0);
    assert (PARSE ("garbage") == -1);
    assert (PARSE ("\x01\xff\xfe") == -1);
    assert (PARSE ("MSG:3,Vrms:240,P1:120,P2:24,I2:0.2,E1:99") == 0 && count == 1);
    assert (strcmp (readings[0].port, P2) == 0 && readings[0].voltage == 240);
    assert (readings[0].power == 24 && readings[0].current == 0.2);
    assert (PARSE ("ct1:115, vrms:230") == 0 && count == 1);
    assert (strcmp (readings[0].port, P1) == 0 && readings[0].current == 0.5);
    assert (PARSE ("P2:46") == 0 && count == 1 && readings[0].voltage == 230);
    assert (PARSE ("P2:abc") == -1 && strcmp (reason, "non-numeric value") == 0);
    assert (PARSE ("P2:1e999") == -1);
    assert (PARSE ("MSG:3,E1:5") == -1);
    assert (PARSE ("P2:5,,P1:3") == -1);
    settings.channels[1].name[0] = '1';
    assert (PARSE ("1:10") == 0 && count == 1 && strcmp (readings[0].port, P1) == 0);
#undef PARSE

    //  Spool: ids across a reopen, the bound, deletes.
    char path[] = "/tmp/phantom-bridge-test-XXXXXX";
    assert (mkdtemp (path));
    char file[128];
    snprintf (file, sizeof file, "%s/spool.db", path);
    s_spool_t spool;
    assert (s_spool_open (&spool, file, "full") == 0);
    char prefix[16];
    snprintf (prefix, sizeof prefix, "%s", spool.prefix);
    assert (strlen (prefix) == 12);
    atomic_store (&s_depth, 0);
    int64_t ts[3] = {1000, 1000, 1000};
    for (int round = 0; round < 3; round++)
        assert (s_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    s_spool_close (&spool);
    assert (s_spool_open (&spool, file, "full") == 0);
    assert (strcmp (spool.prefix, prefix) == 0);
    assert (s_spool_count (&spool) == 3);
    for (int round = 0; round < 4; round++)
        assert (s_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    assert (s_spool_count (&spool) == 5 && atomic_load (&s_dropped) == 2);
    sqlite3_stmt *statement;
    assert (sqlite3_prepare_v2 (spool.db, "SELECT min(seq), max(seq) FROM spool", -1, &statement,
                                NULL) == SQLITE_OK);
    assert (sqlite3_step (statement) == SQLITE_ROW);
    assert (sqlite3_column_int64 (statement, 0) == 3 && sqlite3_column_int64 (statement, 1) == 7);
    sqlite3_finalize (statement);
    //  A deleted newest seq is not reused (AUTOINCREMENT).
    assert (s_exec (spool.db, "DELETE FROM spool WHERE seq = 7") == 0);
    atomic_fetch_sub (&s_depth, 1);
    assert (s_spool_append (&spool, readings, 1, ts, settings.spool_max) == 0);
    assert (sqlite3_prepare_v2 (spool.db, "SELECT max(seq) FROM spool", -1, &statement, NULL) ==
            SQLITE_OK);
    assert (sqlite3_step (statement) == SQLITE_ROW && sqlite3_column_int64 (statement, 0) == 8);
    sqlite3_finalize (statement);

    //  The uploader's settle: 201 and 404 leave, 503 and missing stay.
    s_uploader_t uploader;
    memset (&uploader, 0, sizeof uploader);
    int64_t seqs[5] = {3, 4, 5, 6, 8};
    uploader.seqs = seqs;
    uploader.spool = spool;
    const char *answer = "{\"success\":true,\"data\":{\"results\":["
                         "{\"index\":0,\"status\":201},{\"index\":1,\"status\":503},"
                         "{\"index\":2,\"status\":404,\"error\":{\"code\":\"port_not_found\"}},"
                         "{\"index\":3,\"status\":201}]}}";
    uploader.answer = (char *)answer;
    uploader.answer_size = strlen (answer);
    unsigned long uploaded = atomic_load (&s_uploaded);
    assert (s_uploader_settle (&uploader, 5) == 2);
    assert (atomic_load (&s_uploaded) == uploaded + 2);
    assert (s_spool_count (&spool) == 2);
    uploader.answer = (char *)"<html>";
    uploader.answer_size = 6;
    assert (s_uploader_settle (&uploader, 2) == -1);
    assert (s_spool_count (&spool) == 2);
    s_spool_close (&spool);

    char metrics[2048];
    assert (s_metrics_text (metrics, sizeof metrics) > 0);
    assert (strstr (metrics, "phantom_bridge_readings_dropped_total 2\n"));
    if (verbose)
        printf ("\n%s", metrics);
    char command[256];
    snprintf (command, sizeof command, "rm -rf '%s'", path);
    if (system (command) != 0)
        printf ("(could not remove %s) ", path);
    printf ("OK\n");
}

//  --------------------------------------------------------------------------

static void
s_usage (void)
{
    fprintf (stderr, "usage: phantom-bridge [-c CONFIG] [-v] [--device PATH] [--spool PATH]\n"
                     "       phantom-bridge --help-config\n"
                     "       phantom-bridge --selftest [-v]\n"
                     "       phantom-bridge -c CONFIG --fill N\n"
                     "       phantom-bridge -c CONFIG --drain\n");
}

static long
s_rss_max_kb (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

int
main (int argc, char *argv[])
{
    const char *config_path = NULL, *device = NULL, *spool_path = NULL;
    bool selftest = false, drain = false;
    int64_t fill = -1;
    for (int index = 1; index < argc; index++) {
        const char *arg = argv[index];
        const char *next = index + 1 < argc ? argv[index + 1] : NULL;
        if (strcmp (arg, "-v") == 0)
            s_verbose = true;
        else if (strcmp (arg, "--selftest") == 0)
            selftest = true;
        else if (strcmp (arg, "--drain") == 0)
            drain = true;
        else if (strcmp (arg, "--help-config") == 0) {
            proto_config_print (bridge_config_keys, stdout);
            return 0;
        } else if (strcmp (arg, "-c") == 0 && next)
            config_path = argv[++index];
        else if (strcmp (arg, "--device") == 0 && next)
            device = argv[++index];
        else if (strcmp (arg, "--spool") == 0 && next)
            spool_path = argv[++index];
        else if (strcmp (arg, "--fill") == 0 && next && atoll (next) > 0)
            fill = atoll (argv[++index]);
        else {
            s_usage ();
            return 1;
        }
    }
    zsys_init ();
    zsys_set_logstream (stderr);
    zsys_set_logsystem (false);
    if (selftest) {
        s_test (s_verbose);
        return 0;
    }
    proto_config_t *config = proto_config_new_with_keys (config_path, bridge_config_keys);
    if (!config)
        return 1;
    s_settings_t settings;
    if (s_settings_load (&settings, config)) {
        proto_config_destroy (&config);
        return 1;
    }
    if (device)
        settings.device = device;
    if (spool_path)
        settings.spool = spool_path;
    int rc = 1;
    s_spool_t spool;
    if (s_spool_open (&spool, settings.spool, settings.sync)) {
        proto_config_destroy (&config);
        return 1;
    }
    atomic_store (&s_depth, (long)s_spool_count (&spool));
    zsys_info ("bridge spool %s - %ld readings, readingId prefix %s, sync %s", settings.spool,
               atomic_load (&s_depth), spool.prefix, settings.sync);
    if (fill > 0) {
        rc = s_fill (&settings, &spool, fill) == 0 ? 0 : 1;
        s_spool_close (&spool);
        proto_config_destroy (&config);
        return rc;
    }
    if (!settings.token) {
        zsys_error ("bridge config - bridge_device_token is required");
        goto done;
    }
    if (!drain && !settings.device) {
        zsys_error ("bridge config - bridge_device is required");
        goto done;
    }
    signal (SIGINT, s_signal);
    signal (SIGTERM, s_signal);
    signal (SIGPIPE, SIG_IGN);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_uploader_t uploader;
    memset (&uploader, 0, sizeof uploader);
    uploader.settings = &settings;
    uploader.drain = drain;
    uploader.curl = curl_easy_init ();
    uploader.seqs = (int64_t *)calloc (BRIDGE_BATCH_LIMIT, sizeof (int64_t));
    uploader.body_capacity = 256 * 1024;
    uploader.body = (char *)malloc (uploader.body_capacity);
    if (!uploader.curl || !uploader.seqs || !uploader.body ||
        s_spool_open (&uploader.spool, settings.spool, settings.sync)) {
        zsys_error ("bridge - cannot start the uploader");
        goto done;
    }
    struct mg_context *metrics = s_metrics_start (settings.metrics);
    int64_t started = s_monotonic_ms ();
    long depth_before = atomic_load (&s_depth);
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_uploader_run, &uploader) != 0) {
        zsys_error ("bridge - cannot start the uploader thread");
        goto done;
    }
    if (drain) {
        pthread_join (thread, NULL);
        double seconds = (double)(s_monotonic_ms () - started) / 1000.0;
        printf ("BRIDGE drained=%lu refused=%lu left=%ld of=%ld seconds=%.2f rate=%.0f "
                "failures=%lu rss_max_kb=%ld\n",
                atomic_load (&s_uploaded), atomic_load (&s_refused), atomic_load (&s_depth),
                depth_before, seconds, seconds > 0 ? atomic_load (&s_uploaded) / seconds : 0,
                atomic_load (&s_upload_failures), s_rss_max_kb ());
        rc = atomic_load (&s_depth) == 0 ? 0 : 1;
    } else {
        s_reader_t reader = {&settings, &spool};
        s_reader_run (&reader);
        pthread_join (thread, NULL);
        rc = 0;
    }
    if (metrics)
        mg_stop (metrics);
    s_spool_close (&uploader.spool);
    curl_easy_cleanup (uploader.curl);
    free (uploader.seqs);
    free (uploader.body);
    free (uploader.answer);
    curl_global_cleanup ();
    zsys_info ("bridge - stopped (spool %ld readings)", atomic_load (&s_depth));
done:
    s_spool_close (&spool);
    proto_config_destroy (&config);
    return rc;
}
