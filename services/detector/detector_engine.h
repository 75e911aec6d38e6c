/*  =========================================================================
    detector_engine - the per-port phantom state machines of one partition

    Pure C, no I/O, single-threaded: the detector's main loop feeds it one
    decoded reading at a time and turns the outcome into a verdict for the
    store and events for the bus. Ports live in an open-addressing table
    keyed by the 16 binary bytes of their uuid; a reading costs no malloc.
    See DESIGN.md "Phantom detection" for the rules this implements.
    =========================================================================
*/
#ifndef DETECTOR_ENGINE_H_INCLUDED
#define DETECTOR_ENGINE_H_INCLUDED

#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Most events one reading can cause: [status offline, phantom.end] for a
//  gap it could not bridge, then [status, phantom.start|phantom.end].
#define DETECTOR_EVENTS_MAX 4

//  Default for config key detector_offline_seconds.
#define DETECTOR_OFFLINE_SECONDS_DEFAULT 300

//  What the engine decided about one reading.
typedef struct {
    uint8_t status;          //  proto_status_t after the reading
    uint8_t previous;        //  proto_status_t before it
    bool ignored;            //  duplicate, out-of-order or unusable: state untouched
    bool rejected;           //  unusable (bad uuid, non-finite power): no verdict
    bool has_episode;        //  episode below is set
    proto_episode_t episode; //  open, just opened, or just closed episode
    size_t event_count;      //  events used
    proto_event_t events[DETECTOR_EVENTS_MAX]; //  to publish, in order
} detector_outcome_t;

//  Counters since the engine was created.
typedef struct {
    uint64_t readings;     //  readings given to detector_engine_process
    uint64_t duplicates;   //  same ts as the port's last reading
    uint64_t out_of_order; //  older than the port's last reading
    uint64_t rejected;     //  unusable (bad uuid, non-finite power)
    uint64_t gaps;         //  gaps longer than offline_after, not integrated
    uint64_t offline;      //  ports the timer marked offline
    uint64_t told_offline; //  ports an offline frame (a plug's will) marked offline
    uint64_t ports;        //  ports known
} detector_engine_stats_t;

typedef struct _detector_engine_t detector_engine_t;

//  Called once per port that detector_engine_expire takes offline, for a
//  verdict without a reading: port and user identify it, ts is its last
//  reading (the time of the change); outcome has the status change, the
//  episode it closed (if any) and the events to publish.
typedef void (detector_engine_offline_fn) (const char *port, int64_t user, int64_t ts,
                                           const detector_outcome_t *outcome, void *arg);

//  Creates an engine sized for about expected_ports ports (it grows when
//  needed). offline_after_ms: silence after which a port is offline and
//  beyond which two readings are not joined by the energy integral.
detector_engine_t *detector_engine_new (size_t expected_ports, int64_t offline_after_ms);
void detector_engine_destroy (detector_engine_t **self_p);

//  Runs one reading through its port's state machine. 0, or -1 when the
//  reading is unusable (bad port uuid, non-finite power) or the table could
//  not grow; outcome->ignored is then true and the port is untouched.
int detector_engine_process (detector_engine_t *self, const proto_reading_t *reading,
                             detector_outcome_t *outcome);

//  Same as detector_engine_process over count readings, in order, into
//  outcomes [i]; faster, because it fetches the ports' state ahead.
//  Returns how many readings were usable.
size_t detector_engine_process_batch (detector_engine_t *self, const proto_reading_t *readings,
                                      size_t count, detector_outcome_t *outcomes);

//  Marks offline every port whose last reading arrived (gateway clock,
//  reading.received) more than offline_after before now_ms, closing any
//  open episode at its last reading. Calls offline_fn once per such port.
//  Returns the number of ports that went offline.
size_t detector_engine_expire (detector_engine_t *self, int64_t now_ms,
                               detector_engine_offline_fn *offline_fn, void *arg);

//  Marks offline, as detector_engine_expire would right now, each port of
//  frame that has a reading, is not offline yet, and whose last reading
//  was received (gateway clock) at or before frame->ts; calls offline_fn
//  once per such port. Ports the engine does not know are skipped (a port
//  without readings has nothing to take offline). Returns how many went
//  offline.
size_t detector_engine_offline (detector_engine_t *self, const proto_offline_t *frame,
                                detector_engine_offline_fn *offline_fn, void *arg);

//  Seeds a port with the state a previous detector left in the database,
//  so a restart neither loses nor repeats an episode. status_since and
//  last_ts are ms since epoch (0: unknown); episode is the open episode,
//  NULL if none. now_ms is the server clock at the restore: the offline
//  timer counts from it (gateway clock), not from last_ts (device clock).
//  On its own this leaves an idle port's run without its energy and
//  samples so far (the database keeps no row for them): see
//  detector_engine_replay. Restoring a port again replaces what it had.
//  0, or -1 on a bad uuid or a full table.
int detector_engine_restore (detector_engine_t *self, const char *port, int64_t user,
                             proto_status_t status, int64_t status_since, int64_t last_ts,
                             double last_power, const proto_episode_t *episode, int64_t now_ms);

//  Rebuilds the low-draw run of a port restored idle or phantom from its
//  stored readings (ts, power; in the order they were judged, count > 0),
//  which must start with the run's first reading at run_start: afterwards
//  the port is exactly as if the detector had never stopped (run start,
//  energy, samples, peak, last reading). Its status stays the restored
//  one. Fills episode (may be NULL) with the run. 0, or -1 when
//  the readings do not make one unbroken low-draw run from run_start (a
//  gap, a reading at 0 W, a different start), leaving the port untouched.
int detector_engine_replay (detector_engine_t *self, const char *port, int64_t run_start,
                            const int64_t *ts, const double *power, size_t count, int64_t now_ms,
                            proto_episode_t *episode);

//  Status of a port, PROTO_STATUS_UNKNOWN if never seen.
proto_status_t detector_engine_status (detector_engine_t *self, const char *port);

void detector_engine_stats (detector_engine_t *self, detector_engine_stats_t *stats);

//  Bytes the engine holds per known port (table included).
double detector_engine_bytes_per_port (detector_engine_t *self);

//  Parses canonical uuid text into 16 bytes. 0 or -1.
int detector_engine_uuid_parse (const char *text, uint8_t uuid[16]);

void detector_engine_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
