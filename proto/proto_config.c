/*  =========================================================================
    proto_config - the one shared configuration every service reads

    Values come from the environment (PHANTOM_<KEY>), then the file, then the
    caller's default. Read it at start-up from one thread: lookups cache the
    environment values they borrow out, so the config is not thread-safe.
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

#define S_KEY_MAX 64 //  longest key; keeps env names bounded

struct _proto_config_t {
    char *path;           //  file we loaded, NULL for env/defaults only
    zhash_t *values;      //  key -> value from the file (autofree)
    zhash_t *environment; //  key -> copy of PHANTOM_<KEY> seen by get (autofree)
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
    while ((length = getline (&line, &capacity, file)) != -1) {
        number++;
        char *key, *value;
        const char *reason = NULL;
        //  A NUL would silently cut the value short, so it is an error.
        if (strlen (line) != (size_t)length)
            reason = "NUL byte in line";
        else if (s_parse_line (line, &key, &value, &reason) == 0 && key)
            zhash_update (self->values, key, value); //  later lines win, as in Redis
        if (reason) {
            zsys_error ("config %s:%d - %s", path, number, reason);
            rc = -1;
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

//  --------------------------------------------------------------------------
//  Loads path (NULL: defaults and environment only). NULL on a bad file or
//  line, after logging why.
proto_config_t *
proto_config_new (const char *path)
{
    proto_config_t *self = (proto_config_t *)zmalloc (sizeof (proto_config_t));
    if (!self)
        return NULL;
    self->values = zhash_new ();
    self->environment = zhash_new ();
    if (!self->values || !self->environment) {
        proto_config_destroy (&self);
        return NULL;
    }
    zhash_autofree (self->values);
    zhash_autofree (self->environment);
    if (path) {
        self->path = strdup (path);
        if (!self->path || s_load (self, path)) {
            proto_config_destroy (&self);
            return NULL;
        }
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
        zhash_destroy (&self->values);
        zhash_destroy (&self->environment);
        free (self->path);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Value of key: environment first, then the file, then default_value.
//  An environment value is copied the first time it is read, so the
//  borrowed pointer stays valid for the life of the config.
const char *
proto_config_get (proto_config_t *self, const char *key, const char *default_value)
{
    assert (self);
    assert (key);
    size_t length = strlen (key);
    if (length > S_KEY_MAX)
        return default_value;
    const char *cached = (const char *)zhash_lookup (self->environment, key);
    if (cached)
        return cached;
    char name[sizeof ("PHANTOM_") + S_KEY_MAX];
    memcpy (name, "PHANTOM_", 8);
    for (size_t index = 0; index < length; index++)
        name[8 + index] = (char)toupper ((unsigned char)key[index]);
    name[8 + length] = 0;
    const char *from_environment = getenv (name);
    if (from_environment) {
        if (zhash_insert (self->environment, key, (void *)from_environment) == 0)
            return (const char *)zhash_lookup (self->environment, key);
        zsys_error ("config %s - out of memory", key);
    }
    const char *from_file = (const char *)zhash_lookup (self->values, key);
    return from_file ? from_file : default_value;
}

//  --------------------------------------------------------------------------
//  Integer value of key; default_value when unset; -1 into *error (and a log
//  line) when set but not an integer in [min, max]. *error is left alone on
//  success so a caller can read many keys and check once.
int64_t
proto_config_int (proto_config_t *self, const char *key, int64_t default_value, int64_t min,
                  int64_t max, int *error)
{
    const char *value = proto_config_get (self, key, NULL);
    if (!value)
        return default_value;
    errno = 0;
    char *end = NULL;
    long long number = strtoll (value, &end, 10);
    bool valid = end != value && *end == 0 && errno == 0 && !isspace ((unsigned char)*value) &&
                 number >= min && number <= max;
    if (!valid) {
        zsys_error ("config %s - '%s' is not an integer in [%" PRId64 ", %" PRId64 "]", key, value,
                    min, max);
        if (error)
            *error = -1;
        return default_value;
    }
    return (int64_t)number;
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

void
proto_config_test (bool verbose)
{
    printf (" * proto_config: ");
    //  The errors below are expected; show them only under -v
    if (!verbose)
        zsys_set_logstream (NULL);
    char dir[] = "/tmp/proto_config_test.XXXXXX";
    assert (mkdtemp (dir));

    //  A good file: comments, blank lines, spaces, '=' inside the value,
    //  later lines win.
    char *path = s_write_file (dir, "good.conf",
                               "# comment\n"
                               "\n"
                               "   database =  host=/tmp dbname=phantom watch  \n"
                               "partitions=2\n"
                               "  # indented comment\n"
                               "batch_ms = 2\r\n"
                               "empty =\n"
                               "batch_ms = 7\n"
                               "gateway_id = gw1\n"
                               "big = 99999999999999999999\n"
                               "word = twelve\n"
                               "negative = -5\n");
    unsetenv ("PHANTOM_PARTITIONS");
    unsetenv ("PHANTOM_GATEWAY_ID");
    proto_config_t *config = proto_config_new (path);
    assert (config);
    assert (streq (proto_config_get (config, "database", "x"), "host=/tmp dbname=phantom watch"));
    assert (streq (proto_config_get (config, "partitions", "x"), "2"));
    assert (streq (proto_config_get (config, "batch_ms", "x"), "7"));
    assert (streq (proto_config_get (config, "empty", "x"), ""));
    assert (streq (proto_config_get (config, "missing", "fallback"), "fallback"));
    assert (proto_config_get (config, "missing", NULL) == NULL);

    //  Integers: value, default, range and syntax errors
    int error = 0;
    assert (proto_config_int (config, "partitions", 1, 1, 64, &error) == 2);
    assert (proto_config_int (config, "batch_ms", 1, 0, 1000, &error) == 7);
    assert (proto_config_int (config, "missing", 42, 0, 100, &error) == 42);
    assert (proto_config_int (config, "negative", 0, -10, 10, &error) == -5);
    assert (error == 0);
    assert (proto_config_int (config, "partitions", 9, 3, 64, &error) == 9);
    assert (error == -1);
    error = 0;
    assert (proto_config_int (config, "negative", 9, 0, 10, &error) == 9);
    assert (error == -1);
    error = 0;
    assert (proto_config_int (config, "big", 9, INT64_MIN, INT64_MAX, &error) == 9);
    assert (error == -1);
    error = 0;
    assert (proto_config_int (config, "word", 9, 0, 100, &error) == 9);
    assert (error == -1);
    error = 0;
    assert (proto_config_int (config, "empty", 9, 0, 100, &error) == 9);
    assert (error == -1);

    //  Environment overrides the file and the default
    setenv ("PHANTOM_PARTITIONS", "4", 1);
    setenv ("PHANTOM_GATEWAY_ID", "gw 9", 1);
    setenv ("PHANTOM_ONLY_ENV", "yes", 1);
    const char *partitions = proto_config_get (config, "partitions", "x");
    assert (streq (partitions, "4"));
    assert (streq (proto_config_get (config, "gateway_id", "x"), "gw 9"));
    assert (streq (proto_config_get (config, "only_env", "x"), "yes"));
    error = 0;
    assert (proto_config_int (config, "partitions", 1, 1, 64, &error) == 4);
    assert (error == 0);
    //  The borrowed string outlives the environment variable
    unsetenv ("PHANTOM_PARTITIONS");
    assert (streq (partitions, "4"));
    unsetenv ("PHANTOM_GATEWAY_ID");
    unsetenv ("PHANTOM_ONLY_ENV");
    proto_config_destroy (&config);
    assert (config == NULL);
    proto_config_destroy (&config);

    //  No file: environment and defaults only
    setenv ("PHANTOM_BATCH_MAX", "500", 1);
    config = proto_config_new (NULL);
    assert (config);
    error = 0;
    assert (proto_config_int (config, "batch_max", 1000, 1, 100000, &error) == 500);
    assert (proto_config_int (config, "batch_ms", 2, 0, 1000, &error) == 2);
    assert (error == 0);
    unsetenv ("PHANTOM_BATCH_MAX");
    proto_config_destroy (&config);

    //  Bad files are refused (each logs "config <path>:<line> - <reason>")
    const char *bad[] = {
        "a = 1\nno equals sign\n", "a = 1\n = value\n", "Upper = 1\n",
        "bad-key = 1\n",           "bad key = 1\n",
    };
    for (size_t index = 0; index < sizeof (bad) / sizeof (bad[0]); index++) {
        char *bad_path = s_write_file (dir, "bad.conf", bad[index]);
        assert (proto_config_new (bad_path) == NULL);
        unlink (bad_path);
        zstr_free (&bad_path);
    }
    //  Missing file is an error, not an empty config
    char *missing = zsys_sprintf ("%s/missing.conf", dir);
    assert (proto_config_new (missing) == NULL);
    zstr_free (&missing);

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
    if (!verbose)
        zsys_set_logstream (stderr);
    printf ("OK\n");
}
