/*  =========================================================================
    bridge_uploader - the uploader thread: the oldest spooled batch, POSTed
    to /api/sensor/readings (libcurl, one keep-alive connection), each
    reading deleted from the spool only once settled

    201 and the final refusals (400, 404, logged and counted) settle a
    reading; anything else leaves it spooled and sent again with the same
    readingId, after a backoff that doubles with full jitter between
    bridge_backoff_min_ms and _max_ms, Retry-After being a floor.
    =========================================================================
*/
#ifndef BRIDGE_UPLOADER_H_INCLUDED
#define BRIDGE_UPLOADER_H_INCLUDED

#include "bridge_settings.h"
#include "bridge_spool.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#define BRIDGE_ANSWER_MAX (4 * 1024 * 1024)

//  Public: it lives in main's frame while the thread runs on it.
typedef struct {
    const bridge_settings_t *settings; //  url, token, batch, timeouts
    bridge_spool_t spool;              //  the uploader's own connection
    CURL *curl;                        //  one keep-alive connection
    char *body;                        //  request body
    size_t body_capacity;              //  bytes allocated
    char *answer;                      //  response body
    size_t answer_size;                //  bytes in answer
    bool answer_overflow;              //  answer over BRIDGE_ANSWER_MAX
    int64_t retry_after_ms;            //  the last answer's Retry-After
    bool drain;                        //  exit when the spool is empty
    int64_t *seqs;                     //  the batch's seq numbers
    bool verbose;                      //  a debug line per retry
} bridge_uploader_t;

//  Sets self up for settings: its own spool connection, curl, buffers.
//  0, or -1 (self then released).
int bridge_uploader_init (bridge_uploader_t *self, const bridge_settings_t *settings, bool drain,
                          bool verbose);

//  Frees what bridge_uploader_init made; self lives in the caller's frame.
void bridge_uploader_release (bridge_uploader_t *self);

//  The thread: uploads until interrupted, or with drain until the spool
//  is empty.
void *bridge_uploader_run (void *arg);

void bridge_uploader_test (bool verbose);

#endif
