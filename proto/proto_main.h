/*  =========================================================================
    proto_main - the one way a PhantomWatch program starts

    Malamute's thin main: parse flags, load config, start, wait, tear down.
    This class does the first two and the plumbing under them, the same for
    every service and tool:

      NAME [-c CONFIG] [-v] [--help-config] [the program's own flags]

    -c CONFIG defaults to deploy/phantomwatch.conf when it is readable
    (defaults and environment otherwise); --help-config prints the key
    table and exits 0. Logs go to stderr, one line per event, with the
    program's name as ident. SIGINT and SIGTERM only set a flag (the main
    loop does the shutdown, Redis style); CZMQ installs no handler of its
    own; SIGPIPE is ignored, so a closed peer is a write error. Exit
    status: 2 on bad usage, 1 on a bad config, 0 after a clean stop.
    =========================================================================
*/
#ifndef PROTO_MAIN_H_INCLUDED
#define PROTO_MAIN_H_INCLUDED

#include "proto_config.h"

#include <signal.h>
#include <stdbool.h>

typedef struct _proto_main_t proto_main_t;

//  Takes one of the program's own flags (argument NULL for a flag without
//  one); 0, or -1 for a bad one (usage, exit 2).
typedef int (proto_main_option_fn) (int option, const char *argument, void *arg);

typedef struct {
    const char *name;               //  "phantom-store": log ident, usage line
    const char *usage;              //  the program's own flags and operands, or NULL
    const char *options;            //  their getopt letters ("i:"), or NULL
    proto_main_option_fn *option;   //  takes each of them
    void *arg;                      //  passed to option
    int operands_max;               //  operands allowed after the flags
    const proto_config_key_t *keys; //  the config's table; NULL: proto_config_keys
} proto_main_spec_t;

//  Parses argv, loads the config, sets up logging and signals. NULL when
//  main should return *status at once: 0 after --help-config or -h, 2 on
//  bad usage, 1 on a bad config (each logged or printed).
proto_main_t *proto_main_new (const proto_main_spec_t *spec, int argc, char *argv[], int *status);
void proto_main_destroy (proto_main_t **self_p);

//  Prints the usage line to stderr; returns 2, the status of bad usage
//  (for a check of the program's own after proto_main_new).
int proto_main_usage (const proto_main_spec_t *spec);

//  The loaded config; borrowed, lives as long as self.
proto_config_t *proto_main_config (proto_main_t *self);
//  The path it was read from, or NULL (defaults and environment).
const char *proto_main_config_path (proto_main_t *self);
//  -v given.
bool proto_main_verbose (proto_main_t *self);
//  Operand index after the flags, or NULL.
const char *proto_main_operand (proto_main_t *self, int index);

//  Installs what proto_main_new does for signals (SIGINT and SIGTERM set
//  the flag below, no CZMQ handler, SIGPIPE ignored), for a program that
//  parses its own flags (phantom-bridge).
void proto_main_signals (void);

//  true once SIGINT or SIGTERM came.
bool proto_main_stopping (void);
//  The flag itself, for classes that poll it while starting.
volatile sig_atomic_t *proto_main_stop_flag (void);

void proto_main_test (bool verbose);

#endif
