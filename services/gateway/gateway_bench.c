/*  =========================================================================
    gateway_bench - tools to measure the gateway alone (see BENCH.md)

    gateway_bench fake READING_ENDPOINT PARTITIONS ACK_ENDPOINT [SECONDS]
        A fake detector+store in one process: PULLs readings from every
        partition (READING_ENDPOINT port + i) and PUBlishes an ack for each
        at once, so what is measured is the gateway, not the pipeline
        behind it. Ends on SIGTERM/SIGINT or after SECONDS (default 600).
    gateway_bench seed CONNINFO DEVICES PORTS_PER_DEVICE
        Creates one user "bench@bench" with DEVICES devices (token
        "bench-token-<n>", n from 1) and PORTS_PER_DEVICE ports each.
        Any earlier bench user is deleted first. Prints one port uuid.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "proto_pg.h"

#include <inttypes.h>
#include <signal.h>
#include <zmq.h>

static volatile sig_atomic_t s_stop;

static void
s_signal (int signum)
{
    (void)signum;
    s_stop = 1;
}

#define FAKE_BURST 1000

static int
s_fake (const char *reading_endpoint, int partitions, const char *ack_endpoint, int seconds)
{
    void *context = zmq_ctx_new ();
    void *pub = zmq_socket (context, ZMQ_PUB);
    int hwm = 100000, linger = 0;
    zmq_setsockopt (pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (pub, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind (pub, ack_endpoint) != 0) {
        fprintf (stderr, "fake: cannot bind %s\n", ack_endpoint);
        return 1;
    }
    zmq_pollitem_t *items = (zmq_pollitem_t *)calloc ((size_t)partitions, sizeof *items);
    assert (items);
    for (int index = 0; index < partitions; index++) {
        void *pull = zmq_socket (context, ZMQ_PULL);
        zmq_setsockopt (pull, ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt (pull, ZMQ_LINGER, &linger, sizeof linger);
        char *endpoint = proto_config_endpoint_offset (reading_endpoint, index);
        assert (endpoint);
        zmq_connect (pull, endpoint);
        free (endpoint);
        items[index].socket = pull;
        items[index].events = ZMQ_POLLIN;
    }
    proto_ack_t *acks = (proto_ack_t *)calloc (FAKE_BURST, sizeof *acks);
    assert (acks);
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    char topic[PROTO_TOPIC_MAX + 1] = "";
    int64_t id = 0, until = zclock_mono () + (int64_t)seconds * 1000;
    uint64_t total = 0;
    while (!s_stop && zclock_mono () < until) {
        if (zmq_poll (items, partitions, 100) <= 0)
            continue;
        for (int index = 0; index < partitions; index++) {
            size_t count = 0;
            zmq_msg_t msg;
            zmq_msg_init (&msg);
            //  Acks go out per burst, as the store's group commit sends them.
            while (count + PROTO_BATCH_MAX <= FAKE_BURST &&
                   zmq_msg_recv (&msg, items[index].socket, ZMQ_DONTWAIT) >= 0) {
                //  A message carries one or more reading frames (a batch).
                const uint8_t *data = (const uint8_t *)zmq_msg_data (&msg);
                size_t size = zmq_msg_size (&msg), offset = 0, used;
                proto_reading_t reading;
                while (offset < size && proto_reading_decode_next (data + offset, size - offset,
                                                                   &reading, &used) == 0) {
                    offset += used;
                    char this_topic[PROTO_TOPIC_MAX + 1];
                    snprintf (this_topic, sizeof this_topic, "ack.%s", reading.gateway);
                    if (count && strcmp (this_topic, topic) != 0)
                        continue; //  one gateway per bench; others are dropped
                    snprintf (topic, sizeof topic, "%s", this_topic);
                    acks[count++] = (proto_ack_t){.request = reading.request,
                                                  .code = PROTO_ACK_OK,
                                                  .id = ++id,
                                                  .ts = reading.ts,
                                                  .status = PROTO_STATUS_ACTIVE};
                }
            }
            zmq_msg_close (&msg);
            if (count && proto_acks_encode (acks, count, &buffer) == 0) {
                zmq_send (pub, topic, strlen (topic), ZMQ_SNDMORE);
                zmq_send (pub, buffer.data, buffer.size, 0);
                total += count;
            }
        }
    }
    fprintf (stderr, "fake: acked %" PRIu64 " readings\n", total);
    proto_buffer_release (&buffer);
    free (acks);
    for (int index = 0; index < partitions; index++)
        zmq_close (items[index].socket);
    free (items);
    zmq_close (pub);
    zmq_ctx_term (context);
    return 0;
}

static bool
s_exec (PGconn *conn, const char *sql, int count, const char **parameters)
{
    PGresult *result = PQexecParams (conn, sql, count, NULL, parameters, NULL, NULL, 0);
    bool ok =
        PQresultStatus (result) == PGRES_COMMAND_OK || PQresultStatus (result) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf (stderr, "seed: %s: %s", sql, PQerrorMessage (conn));
    else if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1)
        printf ("%s\n", PQgetvalue (result, 0, 0));
    PQclear (result);
    return ok;
}

static int
s_seed (const char *conninfo, const char *devices, const char *ports)
{
    PGconn *conn = proto_pg_connect (conninfo, "gateway_bench", 0);
    if (!conn)
        return 1;
    const char *parameters[] = {devices, ports};
    bool ok = s_exec (conn, "DELETE FROM users WHERE email = 'bench@bench'", 0, NULL) &&
              s_exec (conn,
                      "INSERT INTO users (email, name, password_hash) "
                      "VALUES ('bench@bench', 'bench', 'x')",
                      0, NULL) &&
              s_exec (conn,
                      "INSERT INTO devices (user_id, name, token_hash) "
                      "SELECT u.id, 'd' || n, sha256(convert_to('bench-token-' || n, 'UTF8')) "
                      "FROM users u, generate_series(1, $1::int) n WHERE u.email = 'bench@bench'",
                      1, parameters) &&
              s_exec (conn,
                      "INSERT INTO ports (user_id, device_id, name) "
                      "SELECT d.user_id, d.id, 'p' || n FROM devices d "
                      "JOIN users u ON u.id = d.user_id, generate_series(1, $1::int) n "
                      "WHERE u.email = 'bench@bench'",
                      1, parameters + 1) &&
              s_exec (conn,
                      "SELECT p.id::text FROM ports p JOIN devices d ON d.id = p.device_id "
                      "WHERE d.name = 'd1' AND d.user_id = "
                      "(SELECT id FROM users WHERE email = 'bench@bench') LIMIT 1",
                      0, NULL);
    PQfinish (conn);
    return ok ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    signal (SIGPIPE, SIG_IGN);
    signal (SIGTERM, s_signal);
    signal (SIGINT, s_signal);
    if (argc >= 5 && streq (argv[1], "fake"))
        return s_fake (argv[2], atoi (argv[3]), argv[4], argc > 5 ? atoi (argv[5]) : 600);
    if (argc == 5 && streq (argv[1], "seed"))
        return s_seed (argv[2], argv[3], argv[4]);
    fprintf (stderr, "usage: gateway_bench fake READING_ENDPOINT PARTITIONS ACK_ENDPOINT "
                     "[SECONDS]\n       gateway_bench seed CONNINFO DEVICES PORTS_PER_DEVICE\n");
    return 2;
}
