/*  =========================================================================
    proto_curve - CURVE encryption and authentication of the pipeline links

    The ZAP handler is ours, not CZMQ's zauth actor: zauth serves only
    CZMQ's own context, and the gateway's pipeline has a libzmq context of
    its own. One handler thread per binder context answers ZAP requests on
    inproc://zeromq.zap.01; it ends when its context is terminated (ETERM),
    so zsys_shutdown and zmq_ctx_term need nothing from us.
    =========================================================================
*/
#include "proto_curve.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>

#define S_KEY_SIZE 32    //  CURVE keys, binary
#define S_HANDLERS_MAX 8 //  binder contexts per process
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_ZAP_FRAMES 8 //  version .. credentials; more are drained

typedef struct {
    void *context; //  the context it serves, NULL = free slot
    void *socket;  //  REP bound at S_ZAP_ENDPOINT in context
    char *allowed; //  directory of allowed public certs
} s_handler_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_handler_t s_handlers[S_HANDLERS_MAX];
static char s_default_dir[1024]; //  curve_dir when the config has none
static int s_process_enabled;    //  proto_curve_configure's curve value
static char s_process_dir[1024]; //  and its curve_dir

//  --------------------------------------------------------------------------
//  true when public key is in one of the *.cert files of directory.
static bool
s_key_allowed (const char *directory, const uint8_t *key)
{
    DIR *handle = opendir (directory);
    if (!handle) {
        zsys_warning ("proto curve - cannot read %s: %s", directory, strerror (errno));
        return false;
    }
    bool allowed = false;
    struct dirent *entry;
    while (!allowed && (entry = readdir (handle))) {
        size_t length = strlen (entry->d_name);
        if (length < 6 || strcmp (entry->d_name + length - 5, ".cert") != 0)
            continue;
        char *path = zsys_sprintf ("%s/%s", directory, entry->d_name);
        zcert_t *cert = path ? zcert_load (path) : NULL;
        if (cert && memcmp (zcert_public_key (cert), key, S_KEY_SIZE) == 0)
            allowed = true;
        zcert_destroy (&cert);
        zstr_free (&path);
    }
    closedir (handle);
    return allowed;
}

//  Sends one ZAP reply; the status text is what the refused peer is told.
static void
s_zap_reply (void *socket, zmq_msg_t *request_id, const char *status, const char *text)
{
    zmq_send (socket, "1.0", 3, ZMQ_SNDMORE);
    zmq_send (socket, zmq_msg_data (request_id), zmq_msg_size (request_id), ZMQ_SNDMORE);
    zmq_send (socket, status, strlen (status), ZMQ_SNDMORE);
    zmq_send (socket, text, strlen (text), ZMQ_SNDMORE);
    zmq_send (socket, "", 0, ZMQ_SNDMORE); //  user id
    zmq_send (socket, "", 0, 0);           //  metadata
}

//  Answers one ZAP request (RFC 27): version, request id, domain, address,
//  routing id, mechanism, credentials. 0, or -1 when the context is gone.
static int
s_zap_answer (s_handler_t *handler)
{
    zmq_msg_t frames[S_ZAP_FRAMES];
    int count = 0;
    bool more = true;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, handler->socket, 0) == -1) {
            zmq_msg_close (&frame);
            for (int index = 0; index < count; index++)
                zmq_msg_close (&frames[index]);
            return errno == ETERM ? -1 : 0;
        }
        more = zmq_msg_more (&frame);
        if (count < S_ZAP_FRAMES)
            frames[count++] = frame;
        else
            zmq_msg_close (&frame);
    }
    if (count >= 6) {
        char mechanism[16] = "";
        char address[64] = "";
        size_t size = zmq_msg_size (&frames[5]);
        if (size < sizeof mechanism)
            memcpy (mechanism, zmq_msg_data (&frames[5]), size);
        size = zmq_msg_size (&frames[3]);
        memcpy (address, zmq_msg_data (&frames[3]),
                size < sizeof address ? size : sizeof address - 1);
        if (streq (mechanism, "CURVE") && count >= 7 && zmq_msg_size (&frames[6]) == S_KEY_SIZE) {
            const uint8_t *key = (const uint8_t *)zmq_msg_data (&frames[6]);
            if (s_key_allowed (handler->allowed, key))
                s_zap_reply (handler->socket, &frames[1], "200", "OK");
            else {
                char text[41];
                zmq_z85_encode (text, key, S_KEY_SIZE);
                zsys_warning ("proto curve - refused client key %s from %s", text, address);
                s_zap_reply (handler->socket, &frames[1], "400", "key not allowed");
            }
        } else if (streq (mechanism, "NULL"))
            //  Only CURVE binders name our domain; NULL keeps classic behaviour.
            s_zap_reply (handler->socket, &frames[1], "200", "OK");
        else {
            zsys_warning ("proto curve - refused mechanism '%s' from %s", mechanism, address);
            s_zap_reply (handler->socket, &frames[1], "400", "mechanism not allowed");
        }
    }
    for (int index = 0; index < count; index++)
        zmq_msg_close (&frames[index]);
    return 0;
}

//  The handler thread: answers until its context is terminated.
static void *
s_handler_run (void *args)
{
    s_handler_t *handler = (s_handler_t *)args;
    while (true) {
        zmq_pollitem_t item = {handler->socket, 0, ZMQ_POLLIN, 0};
        //  Bounded wait; ETERM (the context ends) is what stops us.
        int rc = zmq_poll (&item, 1, 1000);
        if (rc == -1 && errno == ETERM)
            break;
        if (rc > 0 && s_zap_answer (handler) == -1)
            break;
    }
    zmq_close (handler->socket);
    pthread_mutex_lock (&s_lock);
    free (handler->allowed);
    handler->allowed = NULL;
    handler->socket = NULL;
    handler->context = NULL;
    pthread_mutex_unlock (&s_lock);
    return NULL;
}

//  Makes sure context has our ZAP handler. 0 or -1.
static int
s_handler_ensure (void *context, const char *allowed)
{
    pthread_mutex_lock (&s_lock);
    s_handler_t *free_slot = NULL;
    for (int index = 0; index < S_HANDLERS_MAX; index++) {
        if (s_handlers[index].context == context) {
            pthread_mutex_unlock (&s_lock);
            return 0;
        }
        if (!s_handlers[index].context && !free_slot)
            free_slot = &s_handlers[index];
    }
    int rc = -1;
    void *socket = free_slot ? zmq_socket (context, ZMQ_REP) : NULL;
    int linger = 0;
    if (!free_slot)
        zsys_error ("proto curve - more than %d binder contexts", S_HANDLERS_MAX);
    else if (!socket)
        zsys_error ("proto curve - cannot create ZAP socket: %s", zmq_strerror (errno));
    else if (zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger) ||
             zmq_bind (socket, S_ZAP_ENDPOINT))
        //  EADDRINUSE: another ZAP handler (zauth?) owns this context.
        zsys_error ("proto curve - cannot bind ZAP handler: %s", zmq_strerror (errno));
    else {
        free_slot->context = context;
        free_slot->socket = socket;
        free_slot->allowed = strdup (allowed);
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init (&attributes);
        pthread_attr_setdetachstate (&attributes, PTHREAD_CREATE_DETACHED);
        if (free_slot->allowed &&
            pthread_create (&thread, &attributes, s_handler_run, free_slot) == 0) {
            socket = NULL; //  the thread's now
            rc = 0;
        } else {
            zsys_error ("proto curve - cannot start ZAP handler");
            free (free_slot->allowed);
            memset (free_slot, 0, sizeof *free_slot);
        }
        pthread_attr_destroy (&attributes);
    }
    if (socket)
        zmq_close (socket);
    pthread_mutex_unlock (&s_lock);
    return rc;
}

//  Loads dir/name.cert with its secret; NULL (logged) if missing or no secret.
static zcert_t *
s_cert_load (const char *dir, const char *name, bool secret)
{
    char *path = zsys_sprintf ("%s/%s.cert", dir, name);
    zcert_t *cert = path ? zcert_load (path) : NULL;
    static const uint8_t zeros[S_KEY_SIZE] = {0};
    if (cert && secret && memcmp (zcert_secret_key (cert), zeros, S_KEY_SIZE) == 0)
        zcert_destroy (&cert);
    if (!cert)
        zsys_error ("proto curve - cannot load %s%s (run deploy/curve-keys)", path ? path : name,
                    secret ? "_secret" : "");
    zstr_free (&path);
    return cert;
}

//  1 on, 0 off (the config checked the value is one of them).
static int
s_enabled (proto_config_t *config)
{
    if (!config) {
        pthread_mutex_lock (&s_lock);
        int enabled = s_process_enabled;
        pthread_mutex_unlock (&s_lock);
        return enabled;
    }
    return (int)proto_config_int (config, "curve");
}

//  --------------------------------------------------------------------------

bool
proto_curve_enabled (proto_config_t *config)
{
    return s_enabled (config) == 1;
}

int
proto_curve_configure (proto_config_t *config)
{
    assert (config);
    int enabled = s_enabled (config);
    const char *dir = proto_curve_dir (config);
    pthread_mutex_lock (&s_lock);
    s_process_enabled = enabled;
    snprintf (s_process_dir, sizeof s_process_dir, "%s", dir);
    pthread_mutex_unlock (&s_lock);
    if (enabled)
        zsys_info ("proto curve - pipeline links use CURVE, certs in %s", dir);
    return 0;
}

const char *
proto_curve_dir (proto_config_t *config)
{
    if (!config && s_process_dir[0])
        return s_process_dir; //  set once by main, before any thread uses it
    const char *dir = config ? proto_config_str (config, "curve_dir") : NULL;
    if (dir && *dir)
        return dir;
    pthread_mutex_lock (&s_lock);
    if (!s_default_dir[0]) {
        const char *var = getenv ("PHANTOM_VAR");
        snprintf (s_default_dir, sizeof s_default_dir, "%s/curve", var && *var ? var : "var");
    }
    pthread_mutex_unlock (&s_lock);
    return s_default_dir;
}

int
proto_curve_server (void *socket, void *context, proto_config_t *config)
{
    int enabled = s_enabled (config);
    if (enabled <= 0)
        return enabled;
    void *handle = zsock_resolve (socket);
    if (!handle)
        return -1;
    if (!context)
        context = zsys_init ();
    const char *dir = proto_curve_dir (config);
    char *allowed = zsys_sprintf ("%s/allowed", dir);
    zcert_t *cert = s_cert_load (dir, "server", true);
    int rc = allowed && cert ? s_handler_ensure (context, allowed) : -1;
    int on = 1;
    if (rc == 0 &&
        (zmq_setsockopt (handle, ZMQ_ZAP_DOMAIN, PROTO_CURVE_DOMAIN, strlen (PROTO_CURVE_DOMAIN)) ||
         zmq_setsockopt (handle, ZMQ_CURVE_SERVER, &on, sizeof on) ||
         zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY, zcert_secret_key (cert), S_KEY_SIZE) ||
         zmq_setsockopt (handle, ZMQ_CURVE_PUBLICKEY, zcert_public_key (cert), S_KEY_SIZE))) {
        zsys_error ("proto curve - cannot make a CURVE server: %s", zmq_strerror (errno));
        rc = -1;
    }
    zcert_destroy (&cert);
    zstr_free (&allowed);
    return rc;
}

int
proto_curve_client (void *socket, proto_config_t *config)
{
    int enabled = s_enabled (config);
    if (enabled <= 0)
        return enabled;
    void *handle = zsock_resolve (socket);
    if (!handle)
        return -1;
    const char *dir = proto_curve_dir (config);
    zcert_t *cert = s_cert_load (dir, "client", true);
    zcert_t *server = cert ? s_cert_load (dir, "server", false) : NULL;
    int rc = server ? 0 : -1;
    if (rc == 0 &&
        (zmq_setsockopt (handle, ZMQ_CURVE_SERVERKEY, zcert_public_key (server), S_KEY_SIZE) ||
         zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY, zcert_secret_key (cert), S_KEY_SIZE) ||
         zmq_setsockopt (handle, ZMQ_CURVE_PUBLICKEY, zcert_public_key (cert), S_KEY_SIZE))) {
        zsys_error ("proto curve - cannot make a CURVE client: %s", zmq_strerror (errno));
        rc = -1;
    }
    zcert_destroy (&cert);
    zcert_destroy (&server);
    return rc;
}

//  Writes a new keypair as dir/name.cert(_secret) unless the secret exists.
static int
s_keypair_ensure (const char *dir, const char *name)
{
    char *path = zsys_sprintf ("%s/%s.cert", dir, name);
    char *secret = zsys_sprintf ("%s/%s.cert_secret", dir, name);
    int rc = path && secret ? 0 : -1;
    if (rc == 0 && !zsys_file_exists (secret)) {
        zcert_t *cert = zcert_new ();
        if (cert) {
            zcert_set_meta (cert, "name", "phantomwatch %s", name);
            rc = zcert_save (cert, path);
            zcert_destroy (&cert);
        } else
            rc = -1;
        if (rc == 0)
            rc = chmod (secret, 0600);
        if (rc == 0)
            zsys_info ("proto curve - wrote %s", path);
    }
    zstr_free (&path);
    zstr_free (&secret);
    return rc;
}

int
proto_curve_keys (const char *dir)
{
    assert (dir);
    char *allowed = zsys_sprintf ("%s/allowed", dir);
    char *client = zsys_sprintf ("%s/client.cert", dir);
    char *allowed_client = zsys_sprintf ("%s/allowed/client.cert", dir);
    int rc = allowed && client && allowed_client ? 0 : -1;
    if (rc == 0 && (zsys_dir_create ("%s", allowed) || chmod (dir, 0700)))
        rc = -1;
    if (rc == 0)
        rc = s_keypair_ensure (dir, "server");
    if (rc == 0)
        rc = s_keypair_ensure (dir, "client");
    if (rc == 0 && !zsys_file_exists (allowed_client)) {
        zcert_t *cert = zcert_load (client);
        rc = cert ? zcert_save_public (cert, allowed_client) : -1;
        zcert_destroy (&cert);
    }
    if (rc)
        zsys_error ("proto curve - cannot write keys under %s", dir);
    zstr_free (&allowed);
    zstr_free (&client);
    zstr_free (&allowed_client);
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test

//  The next message on sock within timeout_ms, or NULL.
static char *
s_receive (zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    char *text = zpoller_wait (poller, timeout_ms) ? zstr_recv (sock) : NULL;
    zpoller_destroy (&poller);
    return text;
}

static zsock_t *
s_socket (int type)
{
    zsock_t *sock = zsock_new (type);
    assert (sock);
    zsock_set_sndhwm (sock, 100);
    zsock_set_rcvhwm (sock, 100);
    zsock_set_linger (sock, 0);
    zsock_set_sndtimeo (sock, 1000);
    return sock;
}

void
proto_curve_test (bool verbose)
{
    printf (" * proto_curve: ");
    if (!zsys_has_curve ()) {
        printf ("skipped (libzmq without CURVE)\n");
        return;
    }
    char dir[] = "/tmp/proto_curve_XXXXXX";
    assert (mkdtemp (dir));
    assert (proto_curve_keys (dir) == 0);
    char *server_path = zsys_sprintf ("%s/server.cert", dir);
    zcert_t *server_cert = zcert_load (server_path);
    assert (server_cert);
    //  Running it again keeps the keys.
    assert (proto_curve_keys (dir) == 0);
    zcert_t *again = zcert_load (server_path);
    assert (again && zcert_eq (server_cert, again));
    zcert_destroy (&again);

    char *config_path = zsys_sprintf ("%s/test.conf", dir);
    FILE *file = fopen (config_path, "w");
    assert (file);
    fprintf (file, "curve = 1\ncurve_dir = %s\n", dir);
    fclose (file);
    proto_config_t *config = proto_config_new (config_path);
    assert (config);
    assert (proto_curve_enabled (config));
    assert (streq (proto_curve_dir (config), dir));

    //  Off: nothing changes.
    proto_config_t *plain = proto_config_new (NULL);
    assert (plain);
    zsock_t *untouched = s_socket (ZMQ_PULL);
    if (!getenv ("PHANTOM_CURVE")) {
        assert (!proto_curve_enabled (plain));
        assert (proto_curve_server (untouched, NULL, plain) == 0);
        assert (zsock_mechanism (untouched) == ZMQ_NULL);
    }
    zsock_destroy (&untouched);

    //  Process-wide settings: a NULL config means what main configured.
    assert (proto_curve_enabled (NULL) == false);
    assert (proto_curve_configure (config) == 0);
    assert (proto_curve_enabled (NULL));
    assert (streq (proto_curve_dir (NULL), dir));

    //  A binder with the server identity.
    zsock_t *server = s_socket (ZMQ_PULL);
    assert (proto_curve_server (server, NULL, config) == 0);
    assert (zsock_mechanism (server) == ZMQ_CURVE);
    int port = zsock_bind (server, "tcp://127.0.0.1:*");
    assert (port > 0);

    //  The allowed client gets through.
    zsock_t *client = s_socket (ZMQ_PUSH);
    assert (proto_curve_client (client, NULL) == 0);
    assert (zsock_connect (client, "tcp://127.0.0.1:%d", port) == 0);
    assert (zstr_send (client, "allowed") == 0);
    char *text = s_receive (server, 3000);
    assert (text && streq (text, "allowed"));
    zstr_free (&text);

    //  A client with a key not in allowed/ is refused: nothing arrives.
    zcert_t *stranger_cert = zcert_new ();
    assert (stranger_cert);
    zsock_t *stranger = s_socket (ZMQ_PUSH);
    zcert_apply (stranger_cert, stranger);
    zsock_set_curve_serverkey_bin (stranger, zcert_public_key (server_cert));
    assert (zsock_connect (stranger, "tcp://127.0.0.1:%d", port) == 0);
    zsock_set_sndtimeo (stranger, 0);
    zstr_send (stranger, "stranger"); //  queued, or EAGAIN: both fine
    text = s_receive (server, 1000);
    assert (text == NULL);

    //  A client without CURVE is refused too.
    zsock_t *open_client = s_socket (ZMQ_PUSH);
    assert (zsock_connect (open_client, "tcp://127.0.0.1:%d", port) == 0);
    zsock_set_sndtimeo (open_client, 0);
    zstr_send (open_client, "plain");
    text = s_receive (server, 1000);
    assert (text == NULL);

    //  allowed/ is read on every handshake: once the stranger's cert is
    //  there, a new connection with that key gets through.
    char *stranger_path = zsys_sprintf ("%s/allowed/stranger.cert", dir);
    assert (zcert_save_public (stranger_cert, stranger_path) == 0);
    zsock_t *welcome = s_socket (ZMQ_PUSH);
    zcert_apply (stranger_cert, welcome);
    zsock_set_curve_serverkey_bin (welcome, zcert_public_key (server_cert));
    assert (zsock_connect (welcome, "tcp://127.0.0.1:%d", port) == 0);
    assert (zstr_send (welcome, "welcome") == 0);
    text = s_receive (server, 3000);
    assert (text && streq (text, "welcome"));
    zstr_free (&text);
    zsock_destroy (&welcome);

    //  A libzmq context of its own (the gateway's pipeline): the handler
    //  serves it, and ends when the context is terminated.
    void *context = zmq_ctx_new ();
    assert (context);
    void *raw = zmq_socket (context, ZMQ_PULL);
    int linger = 0, timeout = 3000;
    zmq_setsockopt (raw, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (raw, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    assert (proto_curve_server (raw, context, config) == 0);
    assert (zmq_bind (raw, "tcp://127.0.0.1:*") == 0);
    char endpoint[64];
    size_t endpoint_size = sizeof endpoint;
    assert (zmq_getsockopt (raw, ZMQ_LAST_ENDPOINT, endpoint, &endpoint_size) == 0);
    zsock_t *raw_client = s_socket (ZMQ_PUSH);
    assert (proto_curve_client (raw_client, config) == 0);
    assert (zsock_connect (raw_client, "%s", endpoint) == 0);
    assert (zstr_send (raw_client, "raw") == 0);
    char buffer[8] = "";
    assert (zmq_recv (raw, buffer, sizeof buffer - 1, 0) == 3 && streq (buffer, "raw"));
    zmq_close (raw);
    assert (zmq_ctx_term (context) == 0); //  returns: the handler let go

    //  Missing certs: a binder must not be made (it would accept anyone).
    char *empty_path = zsys_sprintf ("%s/empty.conf", dir);
    file = fopen (empty_path, "w");
    assert (file);
    fprintf (file, "curve = 1\ncurve_dir = %s/nowhere\n", dir);
    fclose (file);
    proto_config_t *broken = proto_config_new (empty_path);
    assert (broken);
    zsock_t *refused = s_socket (ZMQ_PULL);
    assert (proto_curve_server (refused, NULL, broken) == -1);
    assert (proto_curve_client (refused, broken) == -1);
    zsock_destroy (&refused);
    proto_config_destroy (&broken);

    zsock_destroy (&raw_client);
    zsock_destroy (&open_client);
    zsock_destroy (&stranger);
    zsock_destroy (&client);
    zsock_destroy (&server);
    zcert_destroy (&stranger_cert);
    zcert_destroy (&server_cert);
    proto_config_destroy (&plain);
    proto_config_destroy (&config);
    char *command = zsys_sprintf ("rm -rf '%s'", dir);
    if (system (command) != 0 && verbose)
        printf ("(could not remove %s) ", dir);
    zstr_free (&command);
    zstr_free (&empty_path);
    zstr_free (&stranger_path);
    zstr_free (&config_path);
    zstr_free (&server_path);
    printf ("OK\n");
}
