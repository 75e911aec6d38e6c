/*  =========================================================================
    gateway_reading - the sensor reading contract

    What a reading is (the sensor-simulator guide): its members, their JSON
    types, ranges and error answers, in one table (s_members in
    gateway_reading.c), and the checks every route that takes readings
    applies, whoever read the body: jansson (the adapter here), the fast
    scanner (gateway_scanner) or the Emoncms input API (gateway_emoncms).
    Adding a member is one row of that table, one field of
    gateway_reading_t and one value of gateway_reading_member_t.
    =========================================================================
*/
#ifndef GATEWAY_READING_H_INCLUDED
#define GATEWAY_READING_H_INCLUDED

#include "gateway.h"

#define GATEWAY_READING_TOKEN_MAX 200  //  longest deviceToken, in bytes
#define GATEWAY_READING_BATCH_MAX 1000 //  readings of one batch
//  Clocks of cheap boards drift; beyond this it is a wrong clock, and
//  storing it would put the reading in a partition nobody reads.
#define GATEWAY_READING_SKEW_PAST_MS (30LL * 24 * 3600 * 1000)
#define GATEWAY_READING_SKEW_FUTURE_MS (5LL * 60 * 1000)

//  A reading's members, in the order the checks answer for them.
typedef enum {
    GATEWAY_READING_PORT,      //  portId
    GATEWAY_READING_VOLTAGE,   //  voltage
    GATEWAY_READING_CURRENT,   //  current
    GATEWAY_READING_POWER,     //  power
    GATEWAY_READING_TIMESTAMP, //  timestamp
    GATEWAY_READING_KEY,       //  readingId
    GATEWAY_READING_MEMBERS
} gateway_reading_member_t;

//  A reading that passed the checks.
typedef struct {
    char port[PROTO_UUID_LEN + 1]; //  canonical lower-case uuid, "" if malformed
    double voltage;
    double current;
    double power;
    bool voltage_integer; //  sent as a JSON integer: echoed as one
    bool current_integer;
    bool power_integer;
    bool has_ts;                 //  the device sent a timestamp
    int64_t ts;                  //  ms since epoch
    char key[PROTO_KEY_MAX + 1]; //  readingId, "" if none
} gateway_reading_t;

//  A JSON value as the checks see it, filled from jansson or by the scanner.
typedef enum {
    GATEWAY_VALUE_ABSENT = 0,
    GATEWAY_VALUE_NULL,
    GATEWAY_VALUE_STRING,
    GATEWAY_VALUE_INTEGER,
    GATEWAY_VALUE_REAL,
    GATEWAY_VALUE_OTHER //  true, false, an object, an array
} gateway_value_kind_t;

typedef struct {
    const char *text; //  STRING: NUL-terminated (borrowed)
    union {
        json_int_t integer; //  INTEGER
        double real;        //  REAL
    };
    uint32_t length; //  STRING: bytes
    uint8_t kind;    //  gateway_value_kind_t
} gateway_value_t;

//  One reading object's members as read (all ABSENT when it is not an object).
typedef struct {
    bool object;
    gateway_value_t member[GATEWAY_READING_MEMBERS]; //  by gateway_reading_member_t
} gateway_reading_item_t;

//  A batch body as read: deviceToken and the readings array.
typedef struct {
    gateway_value_t token;         //  deviceToken
    bool array;                    //  readings is an array
    size_t count;                  //  its size; items are filled when it is 1..BATCH_MAX
    gateway_reading_item_t *items; //  malloc'd, capacity of them
    size_t capacity;
    json_t *json; //  jansson's parse the values borrow from, or NULL
} gateway_reading_batch_t;

//  The member a JSON key names, or -1 if it is none of a reading's.
int gateway_reading_member (const char *key, size_t length);

//  The jansson adapter: a value, a reading object (anything else reads as
//  not an object).
void gateway_reading_value_json (json_t *value, gateway_value_t *out);
void gateway_reading_item_json (json_t *object, gateway_reading_item_t *item);

//  The checks of one reading: 0, or the HTTP status (400) with code and
//  message set to static strings. now_ms bounds the timestamp.
int gateway_reading_check (const gateway_reading_item_t *item, int64_t now_ms,
                           gateway_reading_t *out, const char **code, const char **message);
//  deviceToken: a string of 1..200 bytes; *token borrows its text.
int gateway_reading_check_token (const gateway_value_t *value, const char **token,
                                 const char **code, const char **message);
//  Both through jansson: one reading object, and a single-reading body
//  (the reading plus deviceToken, checked first; *token borrowed from body).
int gateway_reading_parse (json_t *object, int64_t now_ms, gateway_reading_t *out,
                           const char **code, const char **message);
int gateway_reading_parse_body (json_t *body, int64_t now_ms, const char **token,
                                gateway_reading_t *out, const char **code, const char **message);

//  For inputs that are not the guide's JSON (Emoncms): value is within
//  member's range; ts_ms is within the skew window around now_ms; key is
//  a valid readingId (1..64 printable ASCII characters).
bool gateway_reading_in_range (gateway_reading_member_t member, double value);
bool gateway_reading_time_valid (int64_t ts_ms, int64_t now_ms);
bool gateway_reading_key_valid (const char *key);

//  The reading as the pipeline carries it, for a device's port, received now.
void gateway_reading_to_proto (const gateway_reading_t *self, const gateway_device_t *device,
                               const gateway_port_t *port, int64_t now_ms, proto_reading_t *out);

//  A batch: room for count items (0 or -1); the body through jansson
//  (keeps body; 0, or -1 out of memory); back to empty; memory freed;
//  the body-level checks (token, then the readings array: 0 or 400).
int gateway_reading_batch_reserve (gateway_reading_batch_t *self, size_t count);
int gateway_reading_batch_json (gateway_reading_batch_t *self, json_t *body);
void gateway_reading_batch_reset (gateway_reading_batch_t *self);
void gateway_reading_batch_release (gateway_reading_batch_t *self);
int gateway_reading_batch_check (const gateway_reading_batch_t *self, const char **token,
                                 const char **code, const char **message);

void gateway_reading_test (bool verbose);

#endif
