/*  =========================================================================
    proto - the frames that PhantomWatch services exchange, and their codec

    The one place that knows the wire format. Every frame is a msgpack map
    with a schema version "v". Encoders write into a proto_buffer_t; decoders
    check every type and bound and return -2 for anything malformed,
    truncated, oversized or of an unknown version. They never crash and
    never read past the frame.

    Topology (see DESIGN.md):
      gateway  --PUSH reading-->  detector[i]  --PUSH verdict-->  store
      store    --PUB  [ack.<gateway>][acks]-->  gateway
      detector --PUB  [<topic>][event]-->  notifier, phantom-tap
      mqtt     --PUSH offline-->  detector[i]   (a plug's will: its ports)
    =========================================================================
*/
#ifndef PROTO_H_INCLUDED
#define PROTO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION 1
#define PROTO_UUID_LEN 36           //  port ids are canonical lower-case UUID text
#define PROTO_KEY_MAX 64            //  longest readingId accepted
#define PROTO_GATEWAY_MAX 32        //  longest gateway id
#define PROTO_TIMEZONE_MAX 48       //  longest IANA time zone name
#define PROTO_ACKS_MAX 8192         //  most acks in one ack message
#define PROTO_BATCH_MAX 256         //  most reading or verdict frames in one message
#define PROTO_MESSAGE_MAX (4 << 20) //  ZMQ_MAXMSGSIZE of every receiving socket, bytes
#define PROTO_TOPIC_MAX 64          //  longest PUB topic
#define PROTO_GATEWAY_NONE "-"      //  gateway of a no-reading verdict: nobody waits for an ack

//  Port statuses, in the order of DESIGN.md. Values are on the wire.
typedef enum {
    PROTO_STATUS_UNKNOWN = 0,
    PROTO_STATUS_ACTIVE = 1,
    PROTO_STATUS_IDLE = 2,
    PROTO_STATUS_PHANTOM = 3,
    PROTO_STATUS_OFF = 4,
    PROTO_STATUS_OFFLINE = 5
} proto_status_t;

//  What a port is for (DESIGN.md "What counts as waste"). Values are on
//  the wire.
typedef enum {
    PROTO_ROLE_STANDBY = 0,       //  low draw for min_phantom_seconds is phantom
    PROTO_ROLE_SHOULD_BE_OFF = 1, //  while a window is on (none: always), any draw
                                  //  above off_watts is low draw; else as standby
    PROTO_ROLE_ALWAYS_ON = 2      //  by design: never idle or phantom
} proto_role_t;

//  A weekly window of the owner's local time, packed into a uint32:
//  days << 22 | from << 11 | to. days: bit 0 Monday ... bit 6 Sunday, the
//  days the window starts on; from and to: minutes after local midnight,
//  from < 1440, to <= 1440, from != to. A window whose to is at or before
//  its from runs past midnight into the next day; to 0 or 1440 ends at
//  midnight. 0 is an unused window.
#define PROTO_WINDOWS_MAX 4
#define PROTO_WINDOW_MINUTES 1440
#define PROTO_WINDOW_PACK(days, from, to)                                                          \
    (((uint32_t)(days) << 22) | ((uint32_t)(from) << 11) | (uint32_t)(to))
#define PROTO_WINDOW_DAYS(window) (((window) >> 22) & 0x7f)
#define PROTO_WINDOW_FROM(window) (((window) >> 11) & 0x7ff)
#define PROTO_WINDOW_TO(window) ((window)&0x7ff)

//  Result codes carried in acks.
typedef enum {
    PROTO_ACK_OK = 0,      //  committed (or already committed: same id)
    PROTO_ACK_RETRY = 1,   //  not stored, transient failure: client retries (503)
    PROTO_ACK_REJECTED = 2 //  not stored, never will be (400)
} proto_ack_code_t;

//  Per-port detection settings; the gateway sends them with every reading
//  from its cache, so a settings change reaches the detector with the next
//  reading and the detector needs no lookup of its own.
typedef struct {
    float off_watts;                       //  at or below: off
    float standby_watts;                   //  above: in use
    int32_t min_phantom_seconds;           //  low draw must last this long to be phantom
    uint8_t role;                          //  proto_role_t
    uint32_t windows[PROTO_WINDOWS_MAX];   //  should_be_off's schedule, packed
                                           //  (PROTO_WINDOW_PACK); all 0: always
    char timezone[PROTO_TIMEZONE_MAX + 1]; //  owner's IANA zone, "" = UTC
} proto_settings_t;

//  A reading as the gateway accepted it.
typedef struct {
    uint64_t request;                    //  gateway's request number, echoed in the ack
    char gateway[PROTO_GATEWAY_MAX + 1]; //  gateway id; acks go to topic ack.<gateway>
    int64_t user;                        //  owner of the port
    int64_t device;                      //  device whose token signed it
    char port[PROTO_UUID_LEN + 1];       //  port uuid
    int64_t ts;                          //  reading time, ms since epoch (device's or gateway's)
    int64_t received;                    //  gateway clock at receipt, ms since epoch
    double voltage;                      //  V
    double current;                      //  A
    double power;                        //  W
    char key[PROTO_KEY_MAX + 1];         //  readingId, "" when the device sent none
    proto_settings_t settings;           //  the port's detection settings
    bool live;                           //  the detector publishes it on the bus ("reading"
                                         //  event): its sender has no live channel to the
                                         //  dashboard (phantom-mqtt). Wire key "lv", optional:
                                         //  present only when set
} proto_reading_t;

//  A phantom episode as the detector knows it.
typedef struct {
    int64_t start;     //  ms since epoch; (port, start) identifies it
    int64_t end;       //  ms since epoch, 0 while open
    double energy_wh;  //  trapezoidal integral so far
    double mean_watts; //  energy / duration
    double peak_watts; //  highest reading inside
    uint32_t samples;  //  readings inside
} proto_episode_t;

//  What the detector decided about one reading; the store persists it.
//  A no-reading verdict carries a change with no reading behind it (the
//  offline timer taking a silent port offline and closing its episode):
//  the store uses only reading.user, reading.port and reading.ts (the time
//  of the change), writes no readings row and sends no ack; reading.gateway
//  is PROTO_GATEWAY_NONE. Wire key "nr" is optional: present only when
//  no_reading is set.
typedef struct {
    proto_reading_t reading; //  the reading itself
    uint8_t status;          //  proto_status_t after this reading
    uint8_t previous;        //  proto_status_t before it
    bool has_episode;        //  episode below is set
    proto_episode_t episode; //  opened, updated or closed by this reading
    bool no_reading;         //  no reading behind it: no readings row, no ack
} proto_verdict_t;

//  The store's answer for one reading.
typedef struct {
    uint64_t request; //  gateway's request number
    uint8_t code;     //  proto_ack_code_t
    int64_t id;       //  readings.id (same id for a retried readingId)
    int64_t ts;       //  stored reading time, ms since epoch
    uint8_t status;   //  port status after the reading
} proto_ack_t;

//  "These ports are offline now, as of ts": a plug's will (its MQTT last
//  will, Offline), PUSHed to the detector partition that owns the ports,
//  on the link readings take, so it comes after the readings sent before
//  it. The detector takes each port offline as its offline timer would,
//  unless the port has had a reading received after ts. A message holds
//  either reading frames or one offline frame. Wire:
//  {"v": 1, "t": ts, "ps": [port, ...]}, 1 to PROTO_OFFLINE_MAX ports.
#define PROTO_OFFLINE_MAX 64
typedef struct {
    int64_t ts;                                        //  as of: sender's clock, ms since epoch
    uint32_t count;                                    //  ports used, 1..PROTO_OFFLINE_MAX
    char ports[PROTO_OFFLINE_MAX][PROTO_UUID_LEN + 1]; //  port uuids
} proto_offline_t;

//  A bus event; the topic is "<kind>.<port>", e.g. "phantom.start.<uuid>".
//  Kind "reading": a live reading (proto_reading_t.live), watts its power,
//  status and previous the detector's judgement of it.
typedef struct {
    char kind[24];                 //  "status", "phantom.start", "phantom.end"
    int64_t user;                  //  owner
    char port[PROTO_UUID_LEN + 1]; //  port uuid
    int64_t ts;                    //  reading time that caused it, ms since epoch
    double watts;                  //  power of that reading
    uint8_t status;                //  status now
    uint8_t previous;              //  status before
    bool has_episode;              //  episode below is set (phantom.*)
    proto_episode_t episode;       //  the episode started or ended
} proto_event_t;

//  Growable output buffer for encoders.
typedef struct {
    uint8_t *data;   //  bytes, owned
    size_t size;     //  bytes used
    size_t capacity; //  bytes allocated
} proto_buffer_t;

void proto_buffer_init (proto_buffer_t *self);
void proto_buffer_reset (proto_buffer_t *self);   //  size = 0, keeps memory
void proto_buffer_release (proto_buffer_t *self); //  frees memory

//  Status names ("active", ...). Unknown values give "unknown"; parse gives
//  PROTO_STATUS_UNKNOWN for an unknown name.
const char *proto_status_name (int status);
proto_status_t proto_status_parse (const char *name);

//  Encoders reset the buffer, then write one frame into it. 0 or -1 (no memory).
int proto_reading_encode (const proto_reading_t *self, proto_buffer_t *buffer);
int proto_verdict_encode (const proto_verdict_t *self, proto_buffer_t *buffer);
int proto_acks_encode (const proto_ack_t *acks, size_t count, proto_buffer_t *buffer);
int proto_event_encode (const proto_event_t *self, proto_buffer_t *buffer);
int proto_offline_encode (const proto_offline_t *self, proto_buffer_t *buffer);

//  Decoders fill *self from size bytes. 0, or -2 malformed (*self undefined).
int proto_reading_decode (const void *data, size_t size, proto_reading_t *self);
int proto_verdict_decode (const void *data, size_t size, proto_verdict_t *self);
int proto_acks_decode (const void *data, size_t size, proto_ack_t *acks, size_t max, size_t *count);
int proto_event_decode (const void *data, size_t size, proto_event_t *self);
int proto_offline_decode (const void *data, size_t size, proto_offline_t *self);

//  Batch messages: one ZeroMQ message may carry up to PROTO_BATCH_MAX
//  reading frames, or verdict frames, back to back (a msgpack map ends
//  itself), so a burst crosses each hop as one message. A single frame is
//  a batch of one. Append writes one more frame after what buffer holds;
//  decode_next decodes the frame at the start of data and sets *used to
//  its length. A malformed frame makes the rest of its message unreadable.
int proto_reading_append (const proto_reading_t *self, proto_buffer_t *buffer);
int proto_verdict_append (const proto_verdict_t *self, proto_buffer_t *buffer);
int proto_reading_decode_next (const void *data, size_t size, proto_reading_t *self, size_t *used);
int proto_verdict_decode_next (const void *data, size_t size, proto_verdict_t *self, size_t *used);

//  Whether a packed window is 0 (unused) or a window as PROTO_WINDOW_PACK
//  describes; the decoders refuse any other value.
bool proto_window_valid (uint32_t window);

//  Writes the PUB topic of an event ("phantom.start.<port>") into topic.
void proto_event_topic (const proto_event_t *self, char topic[PROTO_TOPIC_MAX + 1]);

//  Partition of a port: stable hash of its uuid text modulo partitions.
//  Gateways and tests must agree, so this is the only implementation.
uint32_t proto_partition (const char *port, uint32_t partitions);

//  Self test
void proto_test (bool verbose);

#ifdef __cplusplus
}
#endif

//  Absolute CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait
//  on a condition whose clock is CLOCK_MONOTONIC.
struct timespec proto_deadline_ms (int ms);

#endif
