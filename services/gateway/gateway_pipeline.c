/*  =========================================================================
    gateway_pipeline - PUSH readings to partitions, SUB acks, wait for one

    Gateway: binds PUSH partition i at reading_endpoint port + i (detector i
    connects), connects SUB to the store's ack PUB, topic ack.<gateway id>.

    Many civetweb worker threads submit; each PUSH socket is guarded by its
    own mutex (a zmq socket may move between threads given a full memory
    barrier, which the mutex provides). Sends never block: a full queue or a
    partition without a detector is answered 503 at once. One ack thread
    reads acks and socket-monitor events and wakes the waiters.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "proto_curve.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

//  Pending requests are found by request % capacity; a slot is reused only
//  when 65536 later requests were submitted while it still waited.
#define PENDING_CAPACITY (1 << 16)
#define PENDING_MASK (PENDING_CAPACITY - 1)

//  Acks queue here while handlers are slow; a store batch is at most 1000.
#define ACK_RCVHWM 100000

//  The monitor events that count: a peer is up once its ZMTP handshake
//  succeeded (at TCP accept a send would still fail), down at disconnect.
//  A failed handshake is followed by a disconnect of a peer that never
//  counted, so that disconnect is skipped.
#define MONITOR_EVENTS                                                                             \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                        \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |                       \
     ZMQ_EVENT_DISCONNECTED)

static const double s_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,    1,     2.5,  5,     10};
#define BUCKETS (sizeof s_buckets / sizeof s_buckets[0])

//  The statuses /metrics counts; anything else goes to "other".
static const int s_statuses[] = {200, 201, 400, 401, 404, 405, 411, 413, 429, 500, 503, 504};
#define STATUSES (sizeof s_statuses / sizeof s_statuses[0])

//  One handler waiting for its readings' acks. The table mutex guards
//  remaining, wake_pending and what acks/outcomes receive. The ack thread
//  wakes a waiter after it let go of the table mutex, so the woken handler
//  does not queue up behind the rest of the delivery (that contention was
//  measurable, BENCH.md). done is a futex word, not a condition under a
//  mutex: a handler woken by a signal sent under its mutex first blocked
//  again on that mutex, a context switch more per request.
typedef struct {
    atomic_int done;   //  1: every ack arrived and the ack thread is done with us
    bool wake_pending; //  the ack thread will set done (table mutex)
    size_t remaining;  //  submitted readings without ack yet (table mutex)
    proto_ack_t *acks; //  where acks go, by index
    int *outcomes;     //  where outcomes go, by index
} s_waiter_t;

typedef struct {
    uint64_t request;   //  0 = free
    s_waiter_t *waiter; //  who waits for it
    size_t index;       //  which of the waiter's readings
} s_slot_t;

typedef struct {
    void *socket;          //  PUSH, bound
    pthread_mutex_t mutex; //  one sender at a time
    void *monitor;         //  PAIR receiving its monitor events
    atomic_int peers;      //  detectors connected
    int failed;            //  failed handshakes whose disconnect is still to come
} s_partition_t;

struct _gateway_pipeline_t {
    void *context;                       //  our own zmq context (inproc monitors)
    char gateway[PROTO_GATEWAY_MAX + 1]; //  gateway id
    char topic[PROTO_TOPIC_MAX + 1];     //  ack.<gateway>
    int partitions;                      //  number of partitions
    int ack_timeout_ms;                  //  longest wait
    s_partition_t *partition;            //  one per partition
    void *sub;                           //  acks from the store; ack thread only
    void *sub_monitor;                   //  PAIR for the SUB's events
    atomic_int store_connected;          //  SUB connected to the store
    int store_failed;                    //  as s_partition_t.failed, for the SUB
    pthread_mutex_t mutex;               //  guards pending
    s_slot_t *pending;                   //  PENDING_CAPACITY slots
    atomic_uint_fast64_t sequence;       //  last request number
    pthread_t thread;                    //  ack thread
    bool thread_started;                 //  joined on destroy
    atomic_bool stop;                    //  tells the ack thread to end
    proto_ack_t *acks;                   //  ack thread's decode buffer
    s_waiter_t **wake;                   //  ack thread's list of waiters to wake
    //  metrics
    atomic_long inflight;                    //  readings waiting for an ack
    atomic_ulong status_count[STATUSES + 1]; //  sensor responses by status
    atomic_ulong bucket[BUCKETS];            //  ack latency histogram (not cumulative)
    atomic_ulong latency_count;              //  acks observed
    atomic_ulong latency_sum_us;             //  their total latency
    atomic_ulong late_acks;                  //  acks nobody waited for any more
};

static int64_t
s_monotonic_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static void *s_ack_thread (void *args);

//  --------------------------------------------------------------------------
//  Monitors socket on an inproc PAIR; returns the PAIR or NULL.
static void *
s_monitor (gateway_pipeline_t *self, void *socket, const char *name, int events)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://gateway-monitor-%p-%s", (void *)self, name);
    if (zmq_socket_monitor (socket, endpoint, events) != 0)
        return NULL;
    void *pair = zmq_socket (self->context, ZMQ_PAIR);
    if (!pair)
        return NULL;
    int linger = 0;
    zmq_setsockopt (pair, ZMQ_LINGER, &linger, sizeof linger);
    int hwm = 10000;
    zmq_setsockopt (pair, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect (pair, endpoint) != 0) {
        zmq_close (pair);
        return NULL;
    }
    return pair;
}

gateway_pipeline_t *
gateway_pipeline_new (const gateway_pipeline_options_t *options)
{
    assert (options);
    if (options->partitions < 1 || options->partitions > 1024 || !options->gateway_id ||
        strlen (options->gateway_id) == 0 || strlen (options->gateway_id) > PROTO_GATEWAY_MAX ||
        !options->reading_endpoint || !options->ack_endpoint) {
        zsys_error ("gateway pipeline - invalid options");
        return NULL;
    }
    gateway_pipeline_t *self = (gateway_pipeline_t *)zmalloc (sizeof (gateway_pipeline_t));
    assert (self);
    snprintf (self->gateway, sizeof self->gateway, "%s", options->gateway_id);
    snprintf (self->topic, sizeof self->topic, "ack.%s", options->gateway_id);
    self->partitions = options->partitions;
    self->ack_timeout_ms = options->ack_timeout_ms > 0 ? options->ack_timeout_ms : 5000;
    pthread_mutex_init (&self->mutex, NULL);
    self->pending = (s_slot_t *)calloc (PENDING_CAPACITY, sizeof (s_slot_t));
    self->acks = (proto_ack_t *)calloc (PROTO_ACKS_MAX, sizeof (proto_ack_t));
    self->wake = (s_waiter_t **)calloc (PROTO_ACKS_MAX, sizeof (s_waiter_t *));
    self->partition = (s_partition_t *)calloc ((size_t)self->partitions, sizeof (s_partition_t));
    self->context = zmq_ctx_new ();
    assert (self->pending && self->acks && self->wake && self->partition && self->context);
    for (int index = 0; index < self->partitions; index++)
        pthread_mutex_init (&self->partition[index].mutex, NULL);

    int sndhwm = options->sndhwm > 0 ? options->sndhwm : 10000;
    //  Linger 0: a reading still queued at close never got its 201, so
    //  dropping it loses nothing that was acknowledged.
    int linger = 0;
    for (int index = 0; index < self->partitions; index++) {
        s_partition_t *partition = &self->partition[index];
        char *endpoint = proto_config_endpoint_offset (options->reading_endpoint, index);
        if (!endpoint) {
            zsys_error ("gateway pipeline - reading endpoint '%s' has no numeric port",
                        options->reading_endpoint);
            goto failed;
        }
        partition->socket = zmq_socket (self->context, ZMQ_PUSH);
        assert (partition->socket);
        zmq_setsockopt (partition->socket, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
        zmq_setsockopt (partition->socket, ZMQ_LINGER, &linger, sizeof linger);
        if (proto_curve_server (partition->socket, self->context, NULL) != 0) {
            free (endpoint);
            goto failed;
        }
        //  Monitored before it is bound: a detector that connects between
        //  the two would never be counted (a CI run saw /healthz stay 503
        //  with both detectors connected).
        char name[16];
        snprintf (name, sizeof name, "push%d", index);
        partition->monitor = s_monitor (self, partition->socket, name, MONITOR_EVENTS);
        if (!partition->monitor) {
            free (endpoint);
            goto failed;
        }
        if (zmq_bind (partition->socket, endpoint) != 0) {
            zsys_error ("gateway pipeline - cannot bind %s: %s", endpoint, zmq_strerror (errno));
            free (endpoint);
            goto failed;
        }
        zsys_info ("gateway pipeline - partition %d bound at %s", index, endpoint);
        free (endpoint);
    }
    self->sub = zmq_socket (self->context, ZMQ_SUB);
    assert (self->sub);
    int rcvhwm = ACK_RCVHWM;
    zmq_setsockopt (self->sub, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt (self->sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->sub, ZMQ_SUBSCRIBE, self->topic, strlen (self->topic));
    self->sub_monitor = s_monitor (self, self->sub, "sub", MONITOR_EVENTS);
    if (!self->sub_monitor)
        goto failed;
    if (proto_curve_client (self->sub, NULL) != 0)
        goto failed;
    if (zmq_connect (self->sub, options->ack_endpoint) != 0) {
        zsys_error ("gateway pipeline - cannot connect %s: %s", options->ack_endpoint,
                    zmq_strerror (errno));
        goto failed;
    }
    if (pthread_create (&self->thread, NULL, s_ack_thread, self) != 0)
        goto failed;
    self->thread_started = true;
    return self;

failed:
    gateway_pipeline_destroy (&self);
    return NULL;
}

void
gateway_pipeline_destroy (gateway_pipeline_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_pipeline_t *self = *self_p;
        if (self->thread_started) {
            atomic_store (&self->stop, true);
            pthread_join (self->thread, NULL);
        }
        for (int index = 0; index < self->partitions; index++) {
            s_partition_t *partition = &self->partition[index];
            if (partition->socket) {
                zmq_socket_monitor (partition->socket, NULL, 0);
                zmq_close (partition->socket);
            }
            if (partition->monitor)
                zmq_close (partition->monitor);
            pthread_mutex_destroy (&partition->mutex);
        }
        if (self->sub) {
            zmq_socket_monitor (self->sub, NULL, 0);
            zmq_close (self->sub);
        }
        if (self->sub_monitor)
            zmq_close (self->sub_monitor);
        zmq_ctx_term (self->context);
        pthread_mutex_destroy (&self->mutex);
        free (self->partition);
        free (self->pending);
        free (self->acks);
        free (self->wake);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Reads one monitor event; adjusts counter (+1 or 1 when up, -1 or 0 when
//  down), with failed counting handshakes that failed.
static void
s_monitor_event (void *pair, atomic_int *counter, int *failed, bool is_peer_count)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, pair, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&frame);
        return;
    }
    uint16_t event = 0;
    if (zmq_msg_size (&frame) >= 6)
        memcpy (&event, zmq_msg_data (&frame), sizeof event);
    //  Drain the address frame.
    while (zmq_msg_more (&frame)) {
        zmq_msg_close (&frame);
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, pair, ZMQ_DONTWAIT) < 0)
            break;
    }
    zmq_msg_close (&frame);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        (*failed)++;
    else if (event == ZMQ_EVENT_DISCONNECTED && *failed > 0)
        (*failed)--;
    else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (is_peer_count)
            atomic_fetch_add (counter, 1);
        else
            atomic_store (counter, 1);
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        if (is_peer_count) {
            if (atomic_fetch_sub (counter, 1) <= 0)
                atomic_store (counter, 0);
        } else
            atomic_store (counter, 0);
    }
}

//  Hands the decoded acks to their waiters.
static void
s_deliver (gateway_pipeline_t *self, size_t count)
{
    size_t wakes = 0;
    pthread_mutex_lock (&self->mutex);
    for (size_t index = 0; index < count; index++) {
        proto_ack_t *ack = &self->acks[index];
        s_slot_t *slot = &self->pending[ack->request & PENDING_MASK];
        if (ack->request == 0 || slot->request != ack->request) {
            //  Its waiter timed out and left (or it was never ours).
            atomic_fetch_add (&self->late_acks, 1);
            continue;
        }
        s_waiter_t *waiter = slot->waiter;
        waiter->acks[slot->index] = *ack;
        waiter->outcomes[slot->index] = GATEWAY_PIPELINE_ACKED;
        slot->request = 0;
        slot->waiter = NULL;
        if (--waiter->remaining == 0) {
            waiter->wake_pending = true;
            self->wake[wakes++] = waiter;
        }
    }
    pthread_mutex_unlock (&self->mutex);
    //  A waiter with wake_pending set does not return before done is set,
    //  so each is still there; after our unlock we never touch it again.
    for (size_t index = 0; index < wakes; index++) {
        s_waiter_t *waiter = self->wake[index];
        atomic_store (&waiter->done, 1);
        //  Only the word's address from here on: the waiter may be reused.
        syscall (SYS_futex, &waiter->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}

static void
s_receive_acks (gateway_pipeline_t *self)
{
    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    zmq_msg_init (&body);
    if (zmq_msg_recv (&topic, self->sub, ZMQ_DONTWAIT) < 0)
        goto done;
    if (!zmq_msg_more (&topic)) {
        zsys_warning ("gateway pipeline - ack message without body");
        goto done;
    }
    if (zmq_msg_recv (&body, self->sub, ZMQ_DONTWAIT) < 0)
        goto done;
    //  Drain anything beyond the two frames we understand.
    bool extra = zmq_msg_more (&body);
    while (extra) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, self->sub, ZMQ_DONTWAIT) < 0)
            extra = false;
        else
            extra = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
    }
    //  SUB filters by prefix; "ack.gw1" would also match "ack.gw10".
    if (zmq_msg_size (&topic) != strlen (self->topic) ||
        memcmp (zmq_msg_data (&topic), self->topic, strlen (self->topic)) != 0)
        goto done;
    size_t count = 0;
    if (proto_acks_decode (zmq_msg_data (&body), zmq_msg_size (&body), self->acks, PROTO_ACKS_MAX,
                           &count) != 0) {
        zsys_warning ("gateway pipeline - malformed ack message (%zu bytes)", zmq_msg_size (&body));
        goto done;
    }
    s_deliver (self, count);
done:
    zmq_msg_close (&topic);
    zmq_msg_close (&body);
}

static void *
s_ack_thread (void *args)
{
    gateway_pipeline_t *self = (gateway_pipeline_t *)args;
    size_t items_count = (size_t)self->partitions + 2;
    zmq_pollitem_t *items = (zmq_pollitem_t *)calloc (items_count, sizeof (zmq_pollitem_t));
    assert (items);
    items[0].socket = self->sub;
    items[0].events = ZMQ_POLLIN;
    items[1].socket = self->sub_monitor;
    items[1].events = ZMQ_POLLIN;
    for (int index = 0; index < self->partitions; index++) {
        items[index + 2].socket = self->partition[index].monitor;
        items[index + 2].events = ZMQ_POLLIN;
    }
    while (!atomic_load (&self->stop)) {
        //  100 ms bound so a stop request is seen promptly.
        int rc = zmq_poll (items, (int)items_count, 100);
        if (rc < 0) {
            if (errno == ETERM)
                break;
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            //  Drain a bounded burst before looking at monitors again.
            for (int burst = 0; burst < 1000; burst++) {
                int more = 0;
                size_t size = sizeof more;
                s_receive_acks (self);
                if (zmq_getsockopt (self->sub, ZMQ_EVENTS, &more, &size) != 0 ||
                    !(more & ZMQ_POLLIN))
                    break;
            }
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_monitor_event (self->sub_monitor, &self->store_connected, &self->store_failed, false);
        for (int index = 0; index < self->partitions; index++)
            if (items[index + 2].revents & ZMQ_POLLIN)
                s_monitor_event (self->partition[index].monitor, &self->partition[index].peers,
                                 &self->partition[index].failed, true);
    }
    free (items);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Encode buffers are kept per thread, so the hot path does not allocate
//  once warm; a thread's buffer is freed when the thread ends.
static pthread_key_t s_buffer_key;
static pthread_once_t s_buffer_once = PTHREAD_ONCE_INIT;

static void
s_buffer_free (void *item)
{
    proto_buffer_t *buffer = (proto_buffer_t *)item;
    proto_buffer_release (buffer);
    free (buffer);
}

static void
s_buffer_key_create (void)
{
    int rc = pthread_key_create (&s_buffer_key, s_buffer_free);
    assert (rc == 0);
}

static proto_buffer_t *
s_thread_buffer (void)
{
    pthread_once (&s_buffer_once, s_buffer_key_create);
    proto_buffer_t *buffer = (proto_buffer_t *)pthread_getspecific (s_buffer_key);
    if (!buffer) {
        buffer = (proto_buffer_t *)malloc (sizeof (proto_buffer_t));
        assert (buffer);
        proto_buffer_init (buffer);
        pthread_setspecific (s_buffer_key, buffer);
    }
    return buffer;
}

//  Each worker thread's partition numbers of the request in hand, grown
//  as needed and kept; NULL without memory.
static pthread_key_t s_numbers_key;
static pthread_once_t s_numbers_once = PTHREAD_ONCE_INIT;

typedef struct {
    uint32_t *number; //  partition of each reading
    size_t capacity;
} s_numbers_t;

static void
s_numbers_free (void *item)
{
    s_numbers_t *numbers = (s_numbers_t *)item;
    free (numbers->number);
    free (numbers);
}

static void
s_numbers_key_create (void)
{
    int rc = pthread_key_create (&s_numbers_key, s_numbers_free);
    assert (rc == 0);
}

static uint32_t *
s_thread_numbers (size_t count)
{
    pthread_once (&s_numbers_once, s_numbers_key_create);
    s_numbers_t *numbers = (s_numbers_t *)pthread_getspecific (s_numbers_key);
    if (!numbers) {
        numbers = (s_numbers_t *)calloc (1, sizeof (s_numbers_t));
        if (!numbers)
            return NULL;
        pthread_setspecific (s_numbers_key, numbers);
    }
    if (numbers->capacity < count) {
        uint32_t *grown = (uint32_t *)realloc (numbers->number, count * sizeof (uint32_t));
        if (!grown)
            return NULL;
        numbers->number = grown;
        numbers->capacity = count;
    }
    return numbers->number;
}

//  Each worker thread's waiter: a waiter is referenced by the table only
//  while its submit runs, and the ack thread is done with it before submit
//  returns (see the end of gateway_pipeline_submit), so the next submit of
//  the thread may reuse it.
static __thread s_waiter_t s_thread_waiter;

//  Sleeps while *word is 0, until woken or the CLOCK_MONOTONIC deadline
//  (NULL: none); false once the deadline passed.
static bool
s_futex_wait (atomic_int *word, const struct timespec *deadline)
{
    while (atomic_load (word) == 0) {
        if (syscall (SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, 0, deadline, NULL,
                     FUTEX_BITSET_MATCH_ANY) == -1 &&
            errno == ETIMEDOUT)
            return atomic_load (word) != 0;
    }
    return true;
}

//  Readings that did not go out leave the table and answer FULL. True if
//  that left the waiter nothing to wait for.
static bool
s_unsent (gateway_pipeline_t *self, s_waiter_t *waiter, proto_reading_t *readings, int *outcomes,
          const size_t *indexes, size_t count)
{
    bool none_left = false;
    pthread_mutex_lock (&self->mutex);
    for (size_t member = 0; member < count; member++) {
        size_t index = indexes[member];
        proto_reading_t *reading = &readings[index];
        s_slot_t *slot = &self->pending[reading->request & PENDING_MASK];
        if (slot->request == reading->request) {
            slot->request = 0;
            slot->waiter = NULL;
            if (--waiter->remaining == 0)
                none_left = true;
        }
        outcomes[index] = GATEWAY_PIPELINE_FULL;
        reading->request = 0;
    }
    pthread_mutex_unlock (&self->mutex);
    return none_left;
}

size_t
gateway_pipeline_submit (gateway_pipeline_t *self, proto_reading_t *readings, size_t count,
                         proto_ack_t *acks, int *outcomes)
{
    assert (self);
    if (count == 0)
        return 0;
    proto_buffer_t *buffer = s_thread_buffer ();
    //  Nobody else refers to it now: no lock needed to reset it.
    s_waiter_t *waiter = &s_thread_waiter;
    atomic_store (&waiter->done, 0);
    waiter->wake_pending = false;
    waiter->remaining = 0;
    waiter->acks = acks;
    waiter->outcomes = outcomes;
    int64_t started = s_monotonic_us ();

    //  Register before sending: the ack may come back before zmq_send returns.
    //  One block of request numbers for the whole batch.
    uint64_t first = atomic_fetch_add (&self->sequence, count) + 1;
    pthread_mutex_lock (&self->mutex);
    for (size_t index = 0; index < count; index++) {
        proto_reading_t *reading = &readings[index];
        reading->request = first + index;
        memcpy (reading->gateway, self->gateway, sizeof reading->gateway);
        s_slot_t *slot = &self->pending[reading->request & PENDING_MASK];
        if (slot->request != 0) {
            outcomes[index] = GATEWAY_PIPELINE_FULL;
            reading->request = 0;
            continue;
        }
        slot->request = reading->request;
        slot->waiter = waiter;
        slot->index = index;
        outcomes[index] = GATEWAY_PIPELINE_TIMEOUT;
        waiter->remaining++;
    }
    pthread_mutex_unlock (&self->mutex);

    //  Whether anything is left to wait for: some reading went out and no
    //  failed send took remaining to 0 (acks taking it to 0 wake us).
    //  The readings of one partition go out as one message (up to
    //  PROTO_BATCH_MAX frames each): a batch request costs a few messages,
    //  not one per reading, on every hop to the store.
    size_t sent = 0;
    bool none_left = false;
    uint32_t partitions = (uint32_t)self->partitions;
    uint32_t *numbers = count > 1 ? s_thread_numbers (count) : NULL;
    uint32_t single = 0;
    if (count == 1)
        single = proto_partition (readings[0].port, partitions) % partitions;
    else if (numbers)
        for (size_t index = 0; index < count; index++)
            numbers[index] = proto_partition (readings[index].port, partitions) % partitions;
    for (uint32_t number = 0; number < partitions; number++) {
        size_t members[PROTO_BATCH_MAX];
        size_t member_count = 0;
        proto_buffer_reset (buffer);
        for (size_t index = 0; index <= count; index++) {
            bool flush = index == count;
            if (!flush) {
                proto_reading_t *reading = &readings[index];
                uint32_t its = count == 1 ? single
                               : numbers  ? numbers[index]
                                         : proto_partition (reading->port, partitions) % partitions;
                if (reading->request == 0 || its != number)
                    continue;
                size_t size = buffer->size;
                if (proto_reading_append (reading, buffer) != 0) {
                    buffer->size = size; //  no memory: this one fails, the others go
                    none_left |= s_unsent (self, waiter, readings, outcomes, &index, 1);
                    continue;
                }
                members[member_count++] = index;
                flush = member_count == PROTO_BATCH_MAX;
            }
            if (!flush || member_count == 0)
                continue;
            s_partition_t *partition = &self->partition[number];
            pthread_mutex_lock (&partition->mutex);
            bool ok = zmq_send (partition->socket, buffer->data, buffer->size, ZMQ_DONTWAIT) ==
                      (int)buffer->size;
            pthread_mutex_unlock (&partition->mutex);
            if (ok) {
                sent += member_count;
                atomic_fetch_add (&self->inflight, (long)member_count);
            } else
                none_left |= s_unsent (self, waiter, readings, outcomes, members, member_count);
            member_count = 0;
            proto_buffer_reset (buffer);
        }
    }

    int64_t deadline_us = started + (int64_t)self->ack_timeout_ms * 1000;
    struct timespec deadline;
    deadline.tv_sec = (time_t)(deadline_us / 1000000);
    deadline.tv_nsec = (long)(deadline_us % 1000000) * 1000;
    bool done = false;
    if (sent > 0 && !none_left)
        done = s_futex_wait (&waiter->done, &deadline);
    size_t acked = 0;
    if (done) {
        //  Every reading that went out was acked: the ack thread cleared
        //  each slot and filled acks/outcomes under the table mutex, then
        //  let go of it and set done, where we saw it.
        //  No slot names us and the ack thread is done with us.
        for (size_t index = 0; index < count; index++)
            if (readings[index].request != 0 && outcomes[index] == GATEWAY_PIPELINE_ACKED)
                acked++;
    } else {
        pthread_mutex_lock (&self->mutex);
        //  Whatever is still pending times out; leaving the table makes a
        //  late ack find no slot, so it cannot write into our stack frame.
        for (size_t index = 0; index < count; index++) {
            proto_reading_t *reading = &readings[index];
            if (reading->request == 0)
                continue;
            s_slot_t *slot = &self->pending[reading->request & PENDING_MASK];
            if (slot->request == reading->request && slot->waiter == waiter) {
                slot->request = 0;
                slot->waiter = NULL;
            }
            if (outcomes[index] == GATEWAY_PIPELINE_ACKED)
                acked++;
        }
        bool wake_pending = waiter->wake_pending;
        pthread_mutex_unlock (&self->mutex);
        if (wake_pending) {
            //  Timed out in the instant the last ack came: the ack thread
            //  is between its table unlock and setting done, with nothing
            //  that blocks in between, so this wait ends at once. Leaving
            //  before it would let the ack thread touch the waiter while
            //  our next submit reuses it.
            s_futex_wait (&waiter->done, NULL);
        }
    }
    atomic_fetch_sub (&self->inflight, (long)sent);

    if (acked) {
        double seconds = (double)(s_monotonic_us () - started) / 1e6;
        size_t bucket = 0;
        while (bucket < BUCKETS && seconds > s_buckets[bucket])
            bucket++;
        if (bucket < BUCKETS)
            atomic_fetch_add (&self->bucket[bucket], acked);
        atomic_fetch_add (&self->latency_count, acked);
        atomic_fetch_add (&self->latency_sum_us, (unsigned long)(seconds * 1e6) * acked);
    }
    return acked;
}

size_t
gateway_pipeline_offline (gateway_pipeline_t *self, const char (*ports)[PROTO_UUID_LEN + 1],
                          size_t count, int64_t ts)
{
    assert (self);
    assert (ports || count == 0);
    proto_buffer_t *buffer = s_thread_buffer ();
    proto_offline_t frame;
    size_t sent = 0;
    uint32_t partitions = (uint32_t)self->partitions;
    for (uint32_t number = 0; number < partitions; number++) {
        frame.ts = ts;
        frame.count = 0;
        for (size_t index = 0; index <= count; index++) {
            bool last = index == count;
            if (!last && proto_partition (ports[index], partitions) % partitions == number)
                memcpy (frame.ports[frame.count++], ports[index], PROTO_UUID_LEN + 1);
            if (frame.count == 0 || (!last && frame.count < PROTO_OFFLINE_MAX))
                continue;
            if (proto_offline_encode (&frame, buffer) == 0) {
                s_partition_t *partition = &self->partition[number];
                pthread_mutex_lock (&partition->mutex);
                bool ok = zmq_send (partition->socket, buffer->data, buffer->size, ZMQ_DONTWAIT) ==
                          (int)buffer->size;
                pthread_mutex_unlock (&partition->mutex);
                if (ok)
                    sent += frame.count;
            }
            frame.count = 0;
        }
    }
    return sent;
}

int
gateway_pipeline_peers (gateway_pipeline_t *self, int partition)
{
    assert (self);
    if (partition < 0 || partition >= self->partitions)
        return 0;
    return atomic_load (&self->partition[partition].peers);
}

int
gateway_pipeline_partitions (gateway_pipeline_t *self)
{
    assert (self);
    return self->partitions;
}

bool
gateway_pipeline_store_connected (gateway_pipeline_t *self)
{
    assert (self);
    return atomic_load (&self->store_connected) != 0;
}

void
gateway_pipeline_count_status (gateway_pipeline_t *self, int status)
{
    gateway_pipeline_count_statuses (self, status, 1);
}

void
gateway_pipeline_count_statuses (gateway_pipeline_t *self, int status, unsigned long count)
{
    assert (self);
    size_t index = 0;
    while (index < STATUSES && s_statuses[index] != status)
        index++;
    atomic_fetch_add (&self->status_count[index], count);
}

void
gateway_pipeline_metrics (gateway_pipeline_t *self, zchunk_t *text)
{
    assert (self);
    char line[256];
    zchunk_extend (text, "# TYPE phantom_gateway_readings_total counter\n", 46);
    for (size_t index = 0; index <= STATUSES; index++) {
        int size;
        if (index < STATUSES)
            size = snprintf (line, sizeof line, "phantom_gateway_readings_total{code=\"%d\"} %lu\n",
                             s_statuses[index], atomic_load (&self->status_count[index]));
        else
            size =
                snprintf (line, sizeof line, "phantom_gateway_readings_total{code=\"other\"} %lu\n",
                          atomic_load (&self->status_count[index]));
        zchunk_extend (text, line, (size_t)size);
    }
    int size = snprintf (line, sizeof line,
                         "# TYPE phantom_gateway_inflight gauge\nphantom_gateway_inflight %ld\n"
                         "# TYPE phantom_gateway_late_acks_total counter\n"
                         "phantom_gateway_late_acks_total %lu\n"
                         "# TYPE phantom_gateway_ack_seconds histogram\n",
                         atomic_load (&self->inflight), atomic_load (&self->late_acks));
    zchunk_extend (text, line, (size_t)size);
    unsigned long cumulative = 0;
    for (size_t index = 0; index < BUCKETS; index++) {
        cumulative += atomic_load (&self->bucket[index]);
        size = snprintf (line, sizeof line, "phantom_gateway_ack_seconds_bucket{le=\"%g\"} %lu\n",
                         s_buckets[index], cumulative);
        zchunk_extend (text, line, (size_t)size);
    }
    unsigned long total = atomic_load (&self->latency_count);
    size = snprintf (line, sizeof line,
                     "phantom_gateway_ack_seconds_bucket{le=\"+Inf\"} %lu\n"
                     "phantom_gateway_ack_seconds_sum %.6f\n"
                     "phantom_gateway_ack_seconds_count %lu\n",
                     total, (double)atomic_load (&self->latency_sum_us) / 1e6, total);
    zchunk_extend (text, line, (size_t)size);
    for (int index = 0; index < self->partitions; index++) {
        size =
            snprintf (line, sizeof line, "phantom_gateway_partition_peers{partition=\"%d\"} %d\n",
                      index, gateway_pipeline_peers (self, index));
        zchunk_extend (text, line, (size_t)size);
    }
}

//  ==========================================================================
//  Self test: an in-process fake detector (PULL per partition) and fake
//  store (PUB acks).

#define TEST_READINGS "tcp://127.0.0.1:6110"
#define TEST_ACKS "tcp://127.0.0.1:6120"

typedef struct {
    gateway_pipeline_t *pipeline;
    proto_reading_t reading;
    proto_ack_t ack;
    int outcome;
    size_t acked;
} s_submit_t;

static void *
s_submit_thread (void *args)
{
    s_submit_t *submit = (s_submit_t *)args;
    submit->acked = gateway_pipeline_submit (submit->pipeline, &submit->reading, 1, &submit->ack,
                                             &submit->outcome);
    return NULL;
}

typedef struct {
    gateway_pipeline_t *pipeline;
    proto_reading_t readings[4];
    proto_ack_t acks[4];
    int outcomes[4];
    size_t acked;
} s_batch_t;

static void *
s_batch_thread (void *args)
{
    s_batch_t *job = (s_batch_t *)args;
    job->acked =
        gateway_pipeline_submit (job->pipeline, job->readings, 4, job->acks, job->outcomes);
    return NULL;
}

//  Receives the next reading frame on pull within timeout; 0 or -1. A
//  batch message's later frames wait here for the next calls (tests run
//  this from one thread, one pull socket at a time).
static int
s_receive_reading_wait (zsock_t *pull, proto_reading_t *reading, int timeout)
{
    static zframe_t *held;
    static zsock_t *held_from;
    static size_t offset;
    if (held && held_from != pull)
        zframe_destroy (&held);
    if (!held) {
        zpoller_t *poller = zpoller_new (pull, NULL);
        void *which = zpoller_wait (poller, timeout);
        zpoller_destroy (&poller);
        if (which != pull)
            return -1;
        held = zframe_recv (pull);
        held_from = pull;
        offset = 0;
    }
    size_t used = 0;
    int rc = proto_reading_decode_next (zframe_data (held) + offset, zframe_size (held) - offset,
                                        reading, &used);
    offset += used;
    if (rc || offset == zframe_size (held))
        zframe_destroy (&held);
    return rc == 0 ? 0 : -1;
}

static int
s_receive_reading (zsock_t *pull, proto_reading_t *reading)
{
    return s_receive_reading_wait (pull, reading, 2000);
}

static void
s_publish_ack (zsock_t *pub, const char *topic, const proto_ack_t *ack)
{
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int rc = proto_acks_encode (ack, 1, &buffer);
    assert (rc == 0);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, topic);
    zmsg_addmem (msg, buffer.data, buffer.size);
    zmsg_send (&msg, pub);
    proto_buffer_release (&buffer);
}

//  Waits until cond holds, up to 3 s.
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int wait_ = 0; wait_ < 300 && !(cond); wait_++)                                       \
            zclock_sleep (10);                                                                     \
        assert (cond);                                                                             \
    } while (0)

void
gateway_pipeline_test (bool verbose)
{
    printf (" * gateway_pipeline: ");
    gateway_pipeline_options_t options = {.gateway_id = "gwtest",
                                          .reading_endpoint = TEST_READINGS,
                                          .ack_endpoint = TEST_ACKS,
                                          .partitions = 2,
                                          .ack_timeout_ms = 300,
                                          .sndhwm = 4};
    zsock_t *pub = zsock_new (ZMQ_PUB);
    zsock_set_sndhwm (pub, 10000);
    zsock_set_linger (pub, 0);
    int port = zsock_bind (pub, "%s", TEST_ACKS);
    assert (port == 6120);

    gateway_pipeline_t *pipeline = gateway_pipeline_new (&options);
    assert (pipeline);
    assert (gateway_pipeline_partitions (pipeline) == 2);
    WAIT_FOR (gateway_pipeline_store_connected (pipeline));
    assert (gateway_pipeline_peers (pipeline, 0) == 0);

    proto_reading_t reading;
    memset (&reading, 0, sizeof reading);
    reading.user = 7;
    reading.device = 9;
    //  Pick a port of partition 1, so a wrong partition choice shows.
    const char *ports[] = {
        "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003", "00000000-0000-4000-8000-000000000004"};
    const char *port_id = NULL;
    for (size_t index = 0; index < 4 && !port_id; index++)
        if (proto_partition (ports[index], 2) == 1)
            port_id = ports[index];
    assert (port_id);
    snprintf (reading.port, sizeof reading.port, "%s", port_id);
    reading.ts = reading.received = 1704110400000LL;
    reading.voltage = 230.5;
    reading.current = 0.45;
    reading.power = 103.73;

    //  No detector connected: refused at once.
    proto_ack_t ack;
    int outcome;
    int64_t started = zclock_mono ();
    size_t acked = gateway_pipeline_submit (pipeline, &reading, 1, &ack, &outcome);
    assert (acked == 0 && outcome == GATEWAY_PIPELINE_FULL);
    assert (zclock_mono () - started < 100);
    char will[4][PROTO_UUID_LEN + 1];
    for (int index = 0; index < 4; index++)
        snprintf (will[index], sizeof will[index], "%s", ports[index]);
    assert (gateway_pipeline_offline (pipeline, will, 4, 1704110401000LL) == 0);

    //  Detectors connect to both partitions.
    zsock_t *pull[2];
    for (int index = 0; index < 2; index++) {
        pull[index] = zsock_new (ZMQ_PULL);
        zsock_set_rcvhwm (pull[index], 10000);
        zsock_set_linger (pull[index], 0);
        int rc = zsock_connect (pull[index], "tcp://127.0.0.1:%d", 6110 + index);
        assert (rc == 0);
    }
    WAIT_FOR (gateway_pipeline_peers (pipeline, 0) == 1 &&
              gateway_pipeline_peers (pipeline, 1) == 1);

    //  Submitted from another thread; the fake store acks it.
    s_submit_t submit;
    memset (&submit, 0, sizeof submit);
    submit.pipeline = pipeline;
    submit.reading = reading;
    pthread_t thread;
    pthread_create (&thread, NULL, s_submit_thread, &submit);
    proto_reading_t received;
    int rc = s_receive_reading (pull[1], &received);
    assert (rc == 0);
    assert (streq (received.port, port_id));
    assert (streq (received.gateway, "gwtest"));
    assert (received.request > 0);
    assert (received.power == 103.73);
    proto_ack_t sent = {.request = received.request,
                        .code = PROTO_ACK_OK,
                        .id = 4242,
                        .ts = received.ts,
                        .status = PROTO_STATUS_PHANTOM};
    //  An ack for another gateway whose id starts like ours is ignored.
    proto_ack_t other = sent;
    other.id = 1;
    s_publish_ack (pub, "ack.gwtest2", &other);
    s_publish_ack (pub, "ack.gwtest", &sent);
    pthread_join (thread, NULL);
    assert (submit.acked == 1);
    assert (submit.outcome == GATEWAY_PIPELINE_ACKED);
    assert (submit.ack.id == 4242);
    assert (submit.ack.status == PROTO_STATUS_PHANTOM);

    //  No ack: times out after ack_timeout_ms; a late ack is then ignored.
    started = zclock_mono ();
    acked = gateway_pipeline_submit (pipeline, &reading, 1, &ack, &outcome);
    int64_t waited = zclock_mono () - started;
    assert (acked == 0 && outcome == GATEWAY_PIPELINE_TIMEOUT);
    assert (waited >= 290 && waited < 1000);
    rc = s_receive_reading (pull[1], &received);
    assert (rc == 0);
    sent.request = received.request;
    s_publish_ack (pub, "ack.gwtest", &sent);
    zmsg_t *noise = zmsg_new (); //  malformed ack: logged, survived
    zmsg_addstr (noise, "ack.gwtest");
    zmsg_addstr (noise, "garbage");
    zmsg_send (&noise, pub);
    zchunk_t *text = zchunk_new (NULL, 0);
    for (int wait = 0; wait < 100; wait++) {
        zchunk_set (text, NULL, 0);
        gateway_pipeline_metrics (pipeline, text);
        zchunk_extend (text, "", 1);
        if (strstr ((char *)zchunk_data (text), "phantom_gateway_late_acks_total 1\n"))
            break;
        zclock_sleep (10);
    }
    assert (strstr ((char *)zchunk_data (text), "phantom_gateway_late_acks_total 1\n"));
    assert (strstr ((char *)zchunk_data (text), "phantom_gateway_inflight 0\n"));
    assert (strstr ((char *)zchunk_data (text), "phantom_gateway_ack_seconds_count 1\n"));
    if (verbose)
        printf ("\n%s", (char *)zchunk_data (text));
    zchunk_destroy (&text);

    //  A batch spread over both partitions, acked in reverse order.
    s_batch_t job;
    memset (&job, 0, sizeof job);
    job.pipeline = pipeline;
    for (int index = 0; index < 4; index++) {
        job.readings[index] = reading;
        snprintf (job.readings[index].port, sizeof job.readings[index].port, "%s", ports[index]);
    }
    pthread_create (&thread, NULL, s_batch_thread, &job);
    proto_reading_t got[4];
    int got_count = 0;
    for (int partition = 0; partition < 2; partition++)
        while (s_receive_reading_wait (pull[partition], &got[got_count], 100) == 0) {
            assert (proto_partition (got[got_count].port, 2) == (uint32_t)partition);
            got_count++;
        }
    assert (got_count == 4);
    for (int index = 3; index >= 0; index--) {
        proto_ack_t each = {.request = got[index].request,
                            .code = PROTO_ACK_OK,
                            .id = 100 + index,
                            .ts = got[index].ts,
                            .status = PROTO_STATUS_ACTIVE};
        s_publish_ack (pub, "ack.gwtest", &each);
    }
    pthread_join (thread, NULL);
    assert (job.acked == 4);
    for (int index = 0; index < 4; index++) {
        assert (job.outcomes[index] == GATEWAY_PIPELINE_ACKED);
        //  Each ack went to the reading with its request number.
        for (int other = 0; other < 4; other++)
            if (got[other].request == job.readings[index].request)
                assert (job.acks[index].id == 100 + other);
    }

    //  A batch of one partition crosses as one message of four frames.
    memset (&job, 0, sizeof job);
    job.pipeline = pipeline;
    for (int index = 0; index < 4; index++)
        job.readings[index] = reading; //  port_id: partition 1
    pthread_create (&thread, NULL, s_batch_thread, &job);
    zpoller_t *poller = zpoller_new (pull[1], NULL);
    assert (zpoller_wait (poller, 2000) == pull[1]);
    zpoller_destroy (&poller);
    zframe_t *message = zframe_recv (pull[1]);
    size_t offset = 0;
    for (int index = 0; index < 4; index++) {
        size_t used;
        assert (proto_reading_decode_next (zframe_data (message) + offset,
                                           zframe_size (message) - offset, &got[index],
                                           &used) == 0);
        offset += used;
        proto_ack_t each = {.request = got[index].request,
                            .code = PROTO_ACK_OK,
                            .id = 200 + index,
                            .ts = got[index].ts,
                            .status = PROTO_STATUS_ACTIVE};
        s_publish_ack (pub, "ack.gwtest", &each);
    }
    assert (offset == zframe_size (message));
    zframe_destroy (&message);
    pthread_join (thread, NULL);
    assert (job.acked == 4);

    //  A plug's will: each partition gets one offline frame of its ports.
    assert (gateway_pipeline_offline (pipeline, will, 4, 1704110401000LL) == 4);
    size_t told = 0;
    for (int partition = 0; partition < 2; partition++) {
        poller = zpoller_new (pull[partition], NULL);
        assert (zpoller_wait (poller, 2000) == pull[partition]);
        zpoller_destroy (&poller);
        message = zframe_recv (pull[partition]);
        proto_offline_t offline;
        assert (proto_offline_decode (zframe_data (message), zframe_size (message), &offline) == 0);
        assert (offline.ts == 1704110401000LL);
        for (uint32_t index = 0; index < offline.count; index++)
            assert (proto_partition (offline.ports[index], 2) == (uint32_t)partition);
        told += offline.count;
        zframe_destroy (&message);
    }
    assert (told == 4);

    //  Full queue: the detector stops reading; sends fail at once instead
    //  of blocking the handler. Its socket takes one message and a small
    //  kernel buffer (no autotuning): with the 10000-message queue and
    //  loopback's buffers of up to 32 MB above, the flood's 235 messages
    //  fit, and refusals depended on the I/O thread falling behind.
    zsock_destroy (&pull[1]);
    WAIT_FOR (gateway_pipeline_peers (pipeline, 1) == 0);
    pull[1] = zsock_new (ZMQ_PULL);
    zsock_set_rcvhwm (pull[1], 1);
    zsock_set_rcvbuf (pull[1], 4096);
    zsock_set_linger (pull[1], 0);
    assert (zsock_connect (pull[1], "tcp://127.0.0.1:%d", 6111) == 0);
    WAIT_FOR (gateway_pipeline_peers (pipeline, 1) == 1);
    size_t many = 60000;
    proto_reading_t *flood = (proto_reading_t *)calloc (many, sizeof (proto_reading_t));
    proto_ack_t *flood_acks = (proto_ack_t *)calloc (many, sizeof (proto_ack_t));
    int *flood_outcomes = (int *)calloc (many, sizeof (int));
    for (size_t index = 0; index < many; index++)
        flood[index] = reading;
    started = zclock_mono ();
    acked = gateway_pipeline_submit (pipeline, flood, many, flood_acks, flood_outcomes);
    assert (acked == 0);
    assert (zclock_mono () - started < 3000);
    size_t full = 0;
    for (size_t index = 0; index < many; index++)
        full += flood_outcomes[index] == GATEWAY_PIPELINE_FULL;
    if (verbose)
        printf ("%zu of %zu refused as full\n", full, many);
    assert (full > 0);
    free (flood);
    free (flood_acks);
    free (flood_outcomes);

    zsock_destroy (&pull[0]);
    zsock_destroy (&pull[1]);
    WAIT_FOR (gateway_pipeline_peers (pipeline, 1) == 0);
    WAIT_FOR (gateway_pipeline_peers (pipeline, 0) == 0);

    gateway_pipeline_count_status (pipeline, 201);
    gateway_pipeline_count_status (pipeline, 777);
    gateway_pipeline_destroy (&pipeline);
    gateway_pipeline_destroy (&pipeline);
    zsock_destroy (&pub);
    printf ("OK\n");
}
