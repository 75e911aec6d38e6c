/*  =========================================================================
    load_run - one load run: its options (flags, URL, credentials) and the
    progress every worker thread shares

    The struct is public and large (workers read the settings and update the
    atomics on every request), so main keeps it static rather than on the
    stack.
    =========================================================================
*/
#ifndef LOAD_RUN_H_INCLUDED
#define LOAD_RUN_H_INCLUDED

#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LOAD_RUN_BATCH_MAX 10000 //  above the gateway's 1000, to provoke 400/413
#define LOAD_RUN_FIELD_MAX 200   //  longest deviceToken / portId we accept from -f

typedef struct {
    char *token;  //  deviceToken
    char **ports; //  its portIds
    size_t port_count;
    atomic_size_t cursor; //  next port for batches of this device
} load_device_t;

typedef struct {
    size_t device; //  index into devices
    size_t port;   //  index into that device's ports
} load_pair_t;

typedef struct {
    //  Settings
    const char *url; //  -u, as given (printed at the start)
    char host[256];  //  for connect and the Host header
    char port[16];
    char prefix[256]; //  path before /api/..., without trailing /
    struct sockaddr_storage address;
    socklen_t address_length;
    int connections;
    int threads;
    double duration_s;
    int64_t total; //  -n readings, 0 = by duration
    double rate;   //  readings/s over all connections, 0 = flat out
    int batch;
    int64_t timeout_us;
    bool retry;
    bool verbose;
    const char *ids_path;
    const char *verify;
    char run[17];   //  hex run prefix of every readingId
    char head[640]; //  request line and headers up to Content-Length
    size_t head_length;

    //  Credentials
    load_device_t *devices;
    size_t device_count;
    load_pair_t *pairs; //  every (device, port), in file order
    size_t pair_count;
    atomic_size_t pair_cursor;
    atomic_size_t device_cursor;

    //  Shared progress
    atomic_llong next_seq;    //  next readingId sequence number
    atomic_bool stop;         //  no new requests
    atomic_llong abort_at_us; //  give up on requests in flight (0 = not yet)
    atomic_llong requests;    //  responses received (progress line)
    atomic_llong acked;       //  readings acknowledged (progress line)
    atomic_int running;       //  workers still running
} load_run_t;

//  What load_run_configure found on the command line.
typedef enum {
    LOAD_RUN_GO,       //  a run, ready to start
    LOAD_RUN_SELFTEST, //  --selftest; argv [*selftest_at], if any, names a class
    LOAD_RUN_HELP,     //  -h: usage printed, exit 0
    LOAD_RUN_BAD       //  bad usage, said on stderr: exit 2
} load_run_start_t;

//  Fills self (zeroed by the caller) from the flags, resolves the URL,
//  prepares the request head, loads the credentials and draws the run id.
load_run_start_t load_run_configure (load_run_t *self, int argc, char *argv[], int *selftest_at);

//  Frees what load_run_configure allocated (the credentials).
void load_run_release (load_run_t *self);

//  Splits an http:// URL into host, port and path prefix and resolves it.
//  0, or -1 (said on stderr).
int load_run_parse_url (load_run_t *self, const char *url);

//  Loads "<deviceToken> <portId>" lines, grouping ports by token. 0 or -1.
int load_run_load_credentials (load_run_t *self, const char *path);

//  Writes the part of every request before its Content-Length value once,
//  so building a request is copying, not formatting. 0, or -1 if too long.
int load_run_prepare_head (load_run_t *self);

void load_run_test (bool verbose);

#endif
