/*  =========================================================================
    proto_config - the one shared configuration every service reads

    File format: "key = value" lines, '#' comments, blank lines ignored.
    Every key is defined once, in a table of {name, type, default, range,
    doc} (proto_config_keys.c for the services, Redis's static_configs[] is
    the model): a key the table does not know, a value of the wrong type or
    out of range stops start-up with "<file>:<line> - <reason>". Every key
    can be overridden by the environment as PHANTOM_<KEY> with the key in
    upper case (PHANTOM_PARTITIONS=4), checked the same way when loading.
    =========================================================================
*/
#ifndef PROTO_CONFIG_H_INCLUDED
#define PROTO_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct _proto_config_t proto_config_t;

typedef enum {
    PROTO_CONFIG_INT,    //  decimal integer in [min, max]
    PROTO_CONFIG_STRING, //  any text, read by proto_config_str
    PROTO_CONFIG_CHOICE  //  one of the '|'-separated words of choices
} proto_config_type_t;

//  One key of a table; a table ends with a {NULL} entry.
typedef struct {
    const char *name;          //  key as written in the file, [a-z0-9_]
    proto_config_type_t type;  //  how the value is checked
    const char *default_value; //  as it would be written; NULL: unset
    int64_t min, max;          //  PROTO_CONFIG_INT: the accepted range
    const char *choices;       //  PROTO_CONFIG_CHOICE: "on|off"
    const char *doc;           //  one line for --help-config
} proto_config_key_t;

//  The rows of a key table.
#define PROTO_CONFIG_KEY_INT(name, value, min, max, doc)                                           \
    {                                                                                              \
        name, PROTO_CONFIG_INT, value, min, max, NULL, doc                                         \
    }
#define PROTO_CONFIG_KEY_STRING(name, value, doc)                                                  \
    {                                                                                              \
        name, PROTO_CONFIG_STRING, value, 0, 0, NULL, doc                                          \
    }
#define PROTO_CONFIG_KEY_CHOICE(name, value, choices, doc)                                         \
    {                                                                                              \
        name, PROTO_CONFIG_CHOICE, value, 0, 0, choices, doc                                       \
    }

//  The keys of deploy/phantomwatch.conf, read by every service and tool.
extern const proto_config_key_t proto_config_keys[];

//  Loads path (NULL: defaults and environment only) against the shared
//  table. NULL on a bad file, line, key or value, after logging why.
proto_config_t *proto_config_new (const char *path);

//  Same, against a table of a program's own (phantom-bridge).
proto_config_t *proto_config_new_with_keys (const char *path, const proto_config_key_t *keys);

void proto_config_destroy (proto_config_t **self_p);

//  Value of a STRING or CHOICE key: environment, else the file, else the
//  table's default (NULL when it has none). Borrowed, lives as long as the
//  config. A key not in the table is a programmer error (asserts).
const char *proto_config_str (proto_config_t *self, const char *key);

//  Value of an INT key, checked against the table's range when loaded.
//  A key not in the table, or an INT key with no value, asserts.
int64_t proto_config_int (proto_config_t *self, const char *key);

//  Prints keys as --help-config does: per key "name = default  (range)"
//  and its doc, indented. The docs (docs/config.md) are this output.
void proto_config_print (const proto_config_key_t *keys, FILE *stream);

//  "tcp://host:port" with offset added to port, into a fresh string the
//  caller frees; NULL if endpoint has no numeric port. Used for
//  per-partition endpoints (partition i binds at base port + i).
char *proto_config_endpoint_offset (const char *endpoint, int offset);

void proto_config_test (bool verbose);

#endif
