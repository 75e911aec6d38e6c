/*  =========================================================================
    fuzz_proto - libFuzzer target over the five frame decoders

    Each input goes to every decoder, and to the batch decoders as a batch
    message (frames back to back). A decoder must answer 0 or -2 and
    never read outside the input (ASan) or hit undefined behaviour (UBSan).
    A frame that decodes must encode and decode again: the decoder accepts
    nothing the encoder could not reproduce.
    =========================================================================
*/
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>

//  abort() so libFuzzer records the input even in release builds
#define S_CHECK(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf (stderr, "fuzz_proto: check failed: %s\n", #condition);                        \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static proto_ack_t acks[PROTO_ACKS_MAX]; //  libFuzzer runs one input at a time
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);

    proto_reading_t reading;
    int rc = proto_reading_decode (data, size, &reading);
    S_CHECK (rc == 0 || rc == -2);
    if (rc == 0) {
        S_CHECK (proto_reading_encode (&reading, &buffer) == 0);
        S_CHECK (proto_reading_decode (buffer.data, buffer.size, &reading) == 0);
    }

    proto_verdict_t verdict;
    rc = proto_verdict_decode (data, size, &verdict);
    S_CHECK (rc == 0 || rc == -2);
    if (rc == 0) {
        S_CHECK (proto_verdict_encode (&verdict, &buffer) == 0);
        S_CHECK (proto_verdict_decode (buffer.data, buffer.size, &verdict) == 0);
    }

    size_t count = 0;
    rc = proto_acks_decode (data, size, acks, PROTO_ACKS_MAX, &count);
    S_CHECK (rc == 0 || rc == -2);
    if (rc == 0) {
        S_CHECK (count <= PROTO_ACKS_MAX);
        S_CHECK (proto_acks_encode (acks, count, &buffer) == 0);
        size_t again = 0;
        S_CHECK (proto_acks_decode (buffer.data, buffer.size, acks, count, &again) == 0);
        S_CHECK (again == count);
    }

    proto_event_t event;
    rc = proto_event_decode (data, size, &event);
    S_CHECK (rc == 0 || rc == -2);
    if (rc == 0) {
        char topic[PROTO_TOPIC_MAX + 1];
        proto_event_topic (&event, topic);
        S_CHECK (proto_event_encode (&event, &buffer) == 0);
        S_CHECK (proto_event_decode (buffer.data, buffer.size, &event) == 0);
    }

    static proto_offline_t offline;
    rc = proto_offline_decode (data, size, &offline);
    S_CHECK (rc == 0 || rc == -2);
    if (rc == 0) {
        S_CHECK (offline.count >= 1 && offline.count <= PROTO_OFFLINE_MAX);
        S_CHECK (proto_offline_encode (&offline, &buffer) == 0);
        S_CHECK (proto_offline_decode (buffer.data, buffer.size, &offline) == 0);
    }

    //  As a batch message: frame after frame until one fails; each used
    //  length stays inside what is left, and what decodes re-encodes.
    size_t offset = 0, used = 0;
    while (offset < size &&
           proto_reading_decode_next (data + offset, size - offset, &reading, &used) == 0) {
        S_CHECK (used > 0 && used <= size - offset);
        S_CHECK (proto_reading_encode (&reading, &buffer) == 0);
        offset += used;
    }
    offset = 0;
    while (offset < size &&
           proto_verdict_decode_next (data + offset, size - offset, &verdict, &used) == 0) {
        S_CHECK (used > 0 && used <= size - offset);
        S_CHECK (proto_verdict_encode (&verdict, &buffer) == 0);
        offset += used;
    }

    proto_buffer_release (&buffer);
    return 0;
}
