/*  =========================================================================
    proto_config - the one shared configuration every service reads

    File format: "key = value" lines, '#' comments, blank lines ignored.
    Every key can be overridden by the environment as PHANTOM_<KEY> with the
    key in upper case (PHANTOM_PARTITIONS=4). A malformed line stops start-up
    with the file, line number and reason (Redis style).
    =========================================================================
*/
#ifndef PROTO_CONFIG_H_INCLUDED
#define PROTO_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct _proto_config_t proto_config_t;

//  Loads path (NULL: defaults and environment only). NULL on a bad file or
//  line, after logging why.
proto_config_t *proto_config_new (const char *path);
void proto_config_destroy (proto_config_t **self_p);

//  Value of key: environment first, then the file, then default_value. The
//  returned string is borrowed and lives as long as the config.
const char *proto_config_get (proto_config_t *self, const char *key, const char *default_value);

//  Integer value of key; default_value when unset; -1 into *error (and a log
//  line) when set but not an integer in [min, max].
int64_t proto_config_int (proto_config_t *self, const char *key, int64_t default_value,
                          int64_t min, int64_t max, int *error);

//  "tcp://host:port" with offset added to port, into a fresh string the
//  caller frees; NULL if endpoint has no numeric port. Used for
//  per-partition endpoints (partition i binds at base port + i).
char *proto_config_endpoint_offset (const char *endpoint, int offset);

void proto_config_test (bool verbose);

#endif
