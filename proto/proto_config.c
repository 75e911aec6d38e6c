/*  =========================================================================
    proto_config - the one shared configuration every service reads

    Values come from the environment (PHANTOM_<KEY>), then the file, then
    the table's default. Everything is checked when loading, so a lookup
    cannot fail: a config that loaded holds only known keys with values of
    their type and range. Read it at start-up; it does not change after.
    =========================================================================
*/
#include "proto_config.h"

#include <czmq.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_KEY_MAX 64     //  longest key; keeps env names bounded
#define S_REASON_MAX 256 //  longest reason a check gives

struct _proto_config_t {
    const proto_config_key_t *keys; //  the table (static, borrowed)
    size_t count;                   //  keys in it
    char **values;                  //  per key: its value, NULL for the default
    int64_t *numbers;               //  per INT key: its value, parsed once
};

static bool
s_key_valid (const char *key, size_t length)
{
    if (length == 0 || length > S_KEY_MAX)
        return false;
    for (size_t index = 0; index < length; index++) {
        char c = key[index];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static char *
s_trim (char *text)
{
    while (*text && isspace ((unsigned char)*text))
        text++;
    size_t length = strlen (text);
    while (length > 0 && isspace ((unsigned char)text[length - 1]))
        text[--length] = 0;
    return text;
}

//  Parses one line; 0 with *key NULL for blank/comment lines, -1 with a
//  reason for a malformed one.
static int
s_parse_line (char *line, char **key_p, char **value_p, const char **reason_p)
{
    *key_p = NULL;
    char *text = s_trim (line);
    if (*text == 0 || *text == '#')
        return 0;
    char *equals = strchr (text, '=');
    if (!equals) {
        *reason_p = "expected 'key = value'";
        return -1;
    }
    *equals = 0;
    char *key = s_trim (text);
    if (*key == 0) {
        *reason_p = "empty key";
        return -1;
    }
    if (!s_key_valid (key, strlen (key))) {
        *reason_p = "key must be 1-64 characters of [a-z0-9_]";
        return -1;
    }
    *key_p = key;
    *value_p = s_trim (equals + 1);
    return 0;
}

//  Index of name in keys, or -1.
static int
s_find (const proto_config_key_t *keys, const char *name)
{
    for (int index = 0; keys[index].name; index++)
        if (streq (keys[index].name, name))
            return index;
    return -1;
}

//  True if word is one of the '|'-separated choices.
static bool
s_choice (const char *choices, const char *word)
{
    size_t length = strlen (word);
    for (const char *start = choices; start;) {
        const char *bar = strchr (start, '|');
        size_t size = bar ? (size_t)(bar - start) : strlen (start);
        if (size == length && strncmp (start, word, length) == 0)
            return true;
        start = bar ? bar + 1 : NULL;
    }
    return false;
}

//  Checks value against key; 0 with the number of an INT key in *number,
//  or -1 with the reason in reason.
static int
s_check (const proto_config_key_t *key, const char *value, int64_t *number, char *reason)
{
    if (key->type == PROTO_CONFIG_INT) {
        errno = 0;
        char *end = NULL;
        long long parsed = strtoll (value, &end, 10);
        if (end == value || *end || errno || isspace ((unsigned char)*value)) {
            snprintf (reason, S_REASON_MAX, "%s: '%s' is not an integer", key->name, value);
            return -1;
        }
        if (parsed < key->min || parsed > key->max) {
            snprintf (reason, S_REASON_MAX, "%s: %lld is out of range %" PRId64 "..%" PRId64,
                      key->name, parsed, key->min, key->max);
            return -1;
        }
        *number = (int64_t)parsed;
    } else if (key->type == PROTO_CONFIG_CHOICE && !s_choice (key->choices, value)) {
        snprintf (reason, S_REASON_MAX, "%s: '%s' is not one of %s", key->name, value,
                  key->choices);
        return -1;
    }
    return 0;
}

//  Takes value for key index (from a file line or the environment).
//  0, or -1 with the reason.
static int
s_set (proto_config_t *self, int index, const char *value, char *reason)
{
    int64_t number = 0;
    if (s_check (&self->keys[index], value, &number, reason))
        return -1;
    char *copy = strdup (value);
    if (!copy) {
        snprintf (reason, S_REASON_MAX, "out of memory");
        return -1;
    }
    free (self->values[index]);
    self->values[index] = copy;
    self->numbers[index] = number;
    return 0;
}

static int
s_load (proto_config_t *self, const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        zsys_error ("config %s - cannot open: %s", path, strerror (errno));
        return -1;
    }
    char *line = NULL;
    size_t capacity = 0;
    int number = 0;
    int rc = 0;
    ssize_t length;
    char reason[S_REASON_MAX] = "";
    while ((length = getline (&line, &capacity, file)) != -1) {
        number++;
        char *key, *value;
        const char *parse_reason = NULL;
        //  A NUL would silently cut the value short, so it is an error.
        if (strlen (line) != (size_t)length)
            parse_reason = "NUL byte in line";
        else if (s_parse_line (line, &key, &value, &parse_reason) == 0 && key) {
            //  Later lines win, as in Redis.
            int index = s_find (self->keys, key);
            if (index < 0)
                snprintf (reason, sizeof reason, "unknown key '%s'", key);
            else if (s_set (self, index, value, reason) == 0)
                continue;
            rc = -1;
        }
        if (parse_reason) {
            snprintf (reason, sizeof reason, "%s", parse_reason);
            rc = -1;
        }
        if (rc) {
            zsys_error ("config %s:%d - %s", path, number, reason);
            break;
        }
    }
    if (rc == 0 && ferror (file)) {
        zsys_error ("config %s:%d - read failed: %s", path, number, strerror (errno));
        rc = -1;
    }
    free (line);
    fclose (file);
    return rc;
}

//  PHANTOM_<KEY> of every key in the table overrides the file.
static int
s_load_environment (proto_config_t *self)
{
    for (size_t index = 0; index < self->count; index++) {
        const char *key = self->keys[index].name;
        size_t length = strlen (key);
        assert (length <= S_KEY_MAX);
        char name[sizeof ("PHANTOM_") + S_KEY_MAX];
        memcpy (name, "PHANTOM_", 8);
        for (size_t at = 0; at < length; at++)
            name[8 + at] = (char)toupper ((unsigned char)key[at]);
        name[8 + length] = 0;
        const char *value = getenv (name);
        char reason[S_REASON_MAX];
        if (value && s_set (self, (int)index, value, reason)) {
            zsys_error ("config environment %s - %s", name, reason);
            return -1;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Loads path (NULL: defaults and environment only) against the shared
//  table. NULL on a bad file, line, key or value, after logging why.
proto_config_t *
proto_config_new (const char *path)
{
    return proto_config_new_with_keys (path, proto_config_keys);
}

//  --------------------------------------------------------------------------
//  Same, against a table of a program's own.
proto_config_t *
proto_config_new_with_keys (const char *path, const proto_config_key_t *keys)
{
    assert (keys);
    proto_config_t *self = (proto_config_t *)zmalloc (sizeof (proto_config_t));
    if (!self)
        return NULL;
    self->keys = keys;
    while (keys[self->count].name)
        self->count++;
    self->values = (char **)calloc (self->count + 1, sizeof (char *));
    self->numbers = (int64_t *)calloc (self->count + 1, sizeof (int64_t));
    if (!self->values || !self->numbers) {
        proto_config_destroy (&self);
        return NULL;
    }
    //  Defaults are parsed like values (the selftest checks every table's
    //  defaults are valid), so an INT key's default is in numbers too.
    for (size_t index = 0; index < self->count; index++) {
        const proto_config_key_t *key = &keys[index];
        char reason[S_REASON_MAX];
        if (key->default_value &&
            s_check (key, key->default_value, &self->numbers[index], reason)) {
            zsys_error ("config - default of %s", reason);
            proto_config_destroy (&self);
            return NULL;
        }
    }
    if ((path && s_load (self, path)) || s_load_environment (self)) {
        proto_config_destroy (&self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the config; nullifies the caller's reference. Safe to call twice.
void
proto_config_destroy (proto_config_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        proto_config_t *self = *self_p;
        for (size_t index = 0; self->values && index < self->count; index++)
            free (self->values[index]);
        free (self->values);
        free (self->numbers);
        free (self);
        *self_p = NULL;
    }
}

//  A key the table must have: asking for another is a programmer error.
static int
s_index (proto_config_t *self, const char *key, proto_config_type_t type)
{
    assert (self);
    assert (key);
    int index = s_find (self->keys, key);
    if (index < 0 || (self->keys[index].type == PROTO_CONFIG_INT) != (type == PROTO_CONFIG_INT)) {
        fprintf (stderr, "proto_config: '%s' is not a %s key of the table\n", key,
                 type == PROTO_CONFIG_INT ? "integer" : "string");
        assert (false);
    }
    return index;
}

//  --------------------------------------------------------------------------
//  Value of a STRING or CHOICE key: environment, else the file, else the
//  table's default (NULL when it has none).
const char *
proto_config_str (proto_config_t *self, const char *key)
{
    int index = s_index (self, key, PROTO_CONFIG_STRING);
    return self->values[index] ? self->values[index] : self->keys[index].default_value;
}

//  --------------------------------------------------------------------------
//  Value of an INT key, checked against the table's range when loaded.
int64_t
proto_config_int (proto_config_t *self, const char *key)
{
    int index = s_index (self, key, PROTO_CONFIG_INT);
    assert (self->values[index] || self->keys[index].default_value);
    return self->numbers[index];
}

//  --------------------------------------------------------------------------
//  Prints keys as --help-config does: per key "name = default  (range)"
//  and its doc, indented.
void
proto_config_print (const proto_config_key_t *keys, FILE *stream)
{
    for (const proto_config_key_t *key = keys; key->name; key++) {
        fprintf (stream, "%s =", key->name);
        if (key->default_value && *key->default_value)
            fprintf (stream, " %s", key->default_value);
        if (key->type == PROTO_CONFIG_INT)
            fprintf (stream, "  (integer %" PRId64 "..%" PRId64 ")", key->min, key->max);
        else if (key->type == PROTO_CONFIG_CHOICE)
            fprintf (stream, "  (%s)", key->choices);
        else
            fprintf (stream, "  (text)");
        fprintf (stream, "\n    %s\n", key->doc);
    }
}

//  --------------------------------------------------------------------------
//  "tcp://host:port" with offset added to port, or "ipc://path" as
//  "ipc://path-<offset>", into a fresh string the caller frees; NULL if a
//  tcp endpoint has no numeric port or the sum is no port.
char *
proto_config_endpoint_offset (const char *endpoint, int offset)
{
    if (!endpoint)
        return NULL;
    if (strncmp (endpoint, "ipc://", 6) == 0)
        return endpoint[6] && offset >= 0 ? zsys_sprintf ("%s-%d", endpoint, offset) : NULL;
    const char *colon = strrchr (endpoint, ':');
    if (!colon || colon[1] == 0)
        return NULL;
    long port = 0;
    for (const char *digit = colon + 1; *digit; digit++) {
        if (*digit < '0' || *digit > '9' || port > 65535)
            return NULL;
        port = port * 10 + (*digit - '0');
    }
    long shifted = port + offset;
    if (port > 65535 || shifted < 1 || shifted > 65535)
        return NULL;
    int host_length = (int)(colon - endpoint);
    return zsys_sprintf ("%.*s:%ld", host_length, endpoint, shifted);
}

//  --------------------------------------------------------------------------
//  Self test

static char *
s_write_file (const char *dir, const char *name, const char *text)
{
    char *path = zsys_sprintf ("%s/%s", dir, name);
    assert (path);
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
    return path;
}

//  Loads path against keys with the log captured; the config (or NULL)
//  and what was logged, which the caller frees.
static proto_config_t *
s_load_logged (const char *path, const proto_config_key_t *keys, char **log_p)
{
    char *log = NULL;
    size_t size = 0;
    FILE *stream = open_memstream (&log, &size);
    assert (stream);
    zsys_set_logstream (stream);
    proto_config_t *config = proto_config_new_with_keys (path, keys);
    zsys_set_logstream (NULL);
    fclose (stream);
    *log_p = log;
    return config;
}

static const proto_config_key_t s_test_keys[] = {
    {"database", PROTO_CONFIG_STRING, "dbname=x", 0, 0, NULL, "db"},
    {"partitions", PROTO_CONFIG_INT, "2", 1, 64, NULL, "partitions"},
    {"batch_ms", PROTO_CONFIG_INT, "2", 0, 1000, NULL, "batch"},
    {"negative", PROTO_CONFIG_INT, "0", -10, 10, NULL, "signed"},
    {"empty", PROTO_CONFIG_STRING, "x", 0, 0, NULL, "empty"},
    {"unset", PROTO_CONFIG_STRING, NULL, 0, 0, NULL, "no default"},
    {"commit", PROTO_CONFIG_CHOICE, "on", 0, 0, "on|off", "choice"},
    {"gateway_id", PROTO_CONFIG_STRING, "gw1", 0, 0, NULL, "id"},
    {NULL, PROTO_CONFIG_STRING, NULL, 0, 0, NULL, NULL}};

void
proto_config_test (bool verbose)
{
    printf (" * proto_config: ");
    //  The errors below are expected; show them only under -v
    if (!verbose)
        zsys_set_logstream (NULL);
    char dir[] = "/tmp/proto_config_test.XXXXXX";
    assert (mkdtemp (dir));
    const char *names[] = {"PHANTOM_DATABASE", "PHANTOM_PARTITIONS", "PHANTOM_BATCH_MS",
                           "PHANTOM_NEGATIVE", "PHANTOM_EMPTY",      "PHANTOM_UNSET",
                           "PHANTOM_COMMIT",   "PHANTOM_GATEWAY_ID"};
    for (size_t index = 0; index < sizeof names / sizeof names[0]; index++)
        unsetenv (names[index]);

    //  Every table entry of the shared table is well-formed: a valid,
    //  unique name, a doc, a default of its type and range.
    for (const proto_config_key_t *key = proto_config_keys; key->name; key++) {
        assert (s_key_valid (key->name, strlen (key->name)));
        assert (s_find (proto_config_keys, key->name) == (int)(key - proto_config_keys));
        assert (key->doc && *key->doc);
        assert (key->type != PROTO_CONFIG_INT || key->min <= key->max);
        assert (key->type != PROTO_CONFIG_CHOICE || (key->choices && key->default_value));
        int64_t number;
        char reason[S_REASON_MAX];
        assert (!key->default_value || s_check (key, key->default_value, &number, reason) == 0);
    }

    //  Defaults come from the table, and only from it.
    char *log = NULL;
    proto_config_t *config = s_load_logged (NULL, s_test_keys, &log);
    assert (config);
    zstr_free (&log);
    assert (proto_config_int (config, "partitions") == 2);
    assert (proto_config_int (config, "batch_ms") == 2);
    assert (streq (proto_config_str (config, "database"), "dbname=x"));
    assert (streq (proto_config_str (config, "commit"), "on"));
    assert (proto_config_str (config, "unset") == NULL);
    proto_config_destroy (&config);

    //  A good file: comments, blank lines, spaces, '=' inside the value,
    //  later lines win.
    char *path = s_write_file (dir, "good.conf",
                               "# comment\n"
                               "\n"
                               "   database =  host=/tmp dbname=phantom watch  \n"
                               "partitions=4\n"
                               "  # indented comment\n"
                               "batch_ms = 2\r\n"
                               "empty =\n"
                               "batch_ms = 7\n"
                               "commit = off\n"
                               "negative = -5\n");
    config = s_load_logged (path, s_test_keys, &log);
    assert (config);
    zstr_free (&log);
    assert (streq (proto_config_str (config, "database"), "host=/tmp dbname=phantom watch"));
    assert (proto_config_int (config, "partitions") == 4);
    assert (proto_config_int (config, "batch_ms") == 7);
    assert (proto_config_int (config, "negative") == -5);
    assert (streq (proto_config_str (config, "empty"), ""));
    assert (streq (proto_config_str (config, "commit"), "off"));
    assert (streq (proto_config_str (config, "gateway_id"), "gw1"));
    proto_config_destroy (&config);
    assert (config == NULL);
    proto_config_destroy (&config);

    //  Environment overrides the file and the default, checked as strictly.
    setenv ("PHANTOM_PARTITIONS", "8", 1);
    setenv ("PHANTOM_GATEWAY_ID", "gw 9", 1);
    config = s_load_logged (path, s_test_keys, &log);
    assert (config);
    zstr_free (&log);
    unsetenv ("PHANTOM_GATEWAY_ID");
    assert (proto_config_int (config, "partitions") == 8);
    assert (streq (proto_config_str (config, "gateway_id"), "gw 9"));
    proto_config_destroy (&config);
    setenv ("PHANTOM_PARTITIONS", "65", 1);
    assert (s_load_logged (path, s_test_keys, &log) == NULL);
    assert (strstr (log, "config environment PHANTOM_PARTITIONS - partitions: 65 is out of range "
                         "1..64"));
    zstr_free (&log);
    unsetenv ("PHANTOM_PARTITIONS");

    //  Bad files are refused, each with "<file>:<line> - <reason>".
    const struct {
        const char *text, *reason;
    } bad[] = {
        {"partitions = 2\npartitons = 4\n", ":2 - unknown key 'partitons'"},
        {"# wrong type\npartitions = four\n", ":2 - partitions: 'four' is not an integer"},
        {"partitions = 2\n\npartitions = 300\n", ":3 - partitions: 300 is out of range 1..64"},
        {"negative = -11\n", ":1 - negative: -11 is out of range -10..10"},
        {"batch_ms = 99999999999999999999\n", ":1 - batch_ms: '99999999999999999999' is not"},
        {"batch_ms =\n", ":1 - batch_ms: '' is not an integer"},
        {"batch_ms = 2 ms\n", ":1 - batch_ms: '2 ms' is not an integer"},
        {"commit = maybe\n", ":1 - commit: 'maybe' is not one of on|off"},
        {"database = x\nno equals sign\n", ":2 - expected 'key = value'"},
        {"database = x\n = value\n", ":2 - empty key"},
        {"Upper = 1\n", ":1 - key must be"},
        {"bad-key = 1\n", ":1 - key must be"},
        {"bad key = 1\n", ":1 - key must be"},
    };
    for (size_t index = 0; index < sizeof (bad) / sizeof (bad[0]); index++) {
        char *bad_path = s_write_file (dir, "bad.conf", bad[index].text);
        char *expected = zsys_sprintf ("config %s%s", bad_path, bad[index].reason);
        assert (s_load_logged (bad_path, s_test_keys, &log) == NULL);
        if (!strstr (log, expected)) {
            fprintf (stderr, "\nexpected '%s' in '%s'\n", expected, log);
            assert (false);
        }
        zstr_free (&log);
        zstr_free (&expected);
        unlink (bad_path);
        zstr_free (&bad_path);
    }
    //  Missing file is an error, not an empty config
    char *missing = zsys_sprintf ("%s/missing.conf", dir);
    assert (s_load_logged (missing, s_test_keys, &log) == NULL);
    assert (strstr (log, "cannot open"));
    zstr_free (&log);
    zstr_free (&missing);

    //  The shared table's defaults load.
    config = proto_config_new (NULL);
    assert (config);
    assert (proto_config_int (config, "partitions") >= 1);
    proto_config_destroy (&config);

    //  --help-config's text: every key, its default and range, its doc.
    char *text = NULL;
    size_t size = 0;
    FILE *stream = open_memstream (&text, &size);
    assert (stream);
    proto_config_print (s_test_keys, stream);
    fclose (stream);
    assert (strstr (text, "partitions = 2  (integer 1..64)\n    partitions\n"));
    assert (strstr (text, "commit = on  (on|off)\n    choice\n"));
    assert (strstr (text, "unset =  (text)\n    no default\n"));
    free (text);

    //  Line parser reports the reason
    char line[] = "key_1 = a = b";
    char *key, *value;
    const char *reason = NULL;
    assert (s_parse_line (line, &key, &value, &reason) == 0);
    assert (streq (key, "key_1") && streq (value, "a = b"));
    char line2[] = "nothing here";
    assert (s_parse_line (line2, &key, &value, &reason) == -1);
    assert (reason && strstr (reason, "key = value"));

    //  Endpoint offsets
    char *endpoint = proto_config_endpoint_offset ("tcp://127.0.0.1:5600", 2);
    assert (endpoint && streq (endpoint, "tcp://127.0.0.1:5602"));
    zstr_free (&endpoint);
    endpoint = proto_config_endpoint_offset ("tcp://*:5600", 0);
    assert (endpoint && streq (endpoint, "tcp://*:5600"));
    zstr_free (&endpoint);
    endpoint = proto_config_endpoint_offset ("tcp://*:5600", 3);
    assert (endpoint && streq (endpoint, "tcp://*:5603"));
    zstr_free (&endpoint);
    endpoint = proto_config_endpoint_offset ("tcp://[::1]:7000", 1);
    assert (endpoint && streq (endpoint, "tcp://[::1]:7001"));
    zstr_free (&endpoint);
    assert (proto_config_endpoint_offset ("tcp://127.0.0.1:*", 1) == NULL);
    assert (proto_config_endpoint_offset ("tcp://127.0.0.1:", 1) == NULL);
    assert (proto_config_endpoint_offset ("tcp://127.0.0.1:56a0", 1) == NULL);
    endpoint = proto_config_endpoint_offset ("ipc:///tmp/x", 1);
    assert (endpoint && streq (endpoint, "ipc:///tmp/x-1"));
    zstr_free (&endpoint);
    endpoint = proto_config_endpoint_offset ("ipc:///tmp/x", 0);
    assert (endpoint && streq (endpoint, "ipc:///tmp/x-0"));
    zstr_free (&endpoint);
    assert (proto_config_endpoint_offset ("ipc://", 1) == NULL);
    assert (proto_config_endpoint_offset ("ipc:///tmp/x", -1) == NULL);
    assert (proto_config_endpoint_offset ("tcp://h:65535", 1) == NULL);
    assert (proto_config_endpoint_offset ("tcp://h:99999999999999999999", 1) == NULL);
    assert (proto_config_endpoint_offset (NULL, 1) == NULL);

    unlink (path);
    zstr_free (&path);
    rmdir (dir);
    zsys_set_logstream (stderr);
    printf ("OK\n");
}
