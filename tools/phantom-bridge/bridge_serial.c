/*  =========================================================================
    bridge_serial - the serial reader: device -> lines -> readings -> spool
    =========================================================================
*/
#include "bridge_serial.h"
#include "bridge_line.h"
#include "bridge_metrics.h"
#include "bridge_signal.h"
#include "proto_main.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

//  Line assembly from a byte stream: LF ends a line, a CR before it is
//  dropped, a line longer than line_max is rejected whole.
typedef struct {
    char *data;    //  the line so far
    size_t size;   //  bytes in data
    size_t max;    //  line_max
    bool overlong; //  the current line went over max: skip to its end
} s_assembler_t;

typedef void (s_line_fn) (void *arg, const char *line, size_t size, bool overlong);

static void
s_assembler_feed (s_assembler_t *self, const char *data, size_t size, s_line_fn *fn, void *arg)
{
    for (size_t index = 0; index < size; index++) {
        char c = data[index];
        if (c == '\n') {
            size_t length = self->size;
            if (length && self->data[length - 1] == '\r')
                length--;
            fn (arg, self->data, length, self->overlong);
            self->size = 0;
            self->overlong = false;
        } else if (self->overlong)
            continue;
        else if (self->size == self->max)
            self->overlong = true;
        else
            self->data[self->size++] = c;
    }
}

static void
s_serial_line (void *arg, const char *line, size_t size, bool overlong)
{
    bridge_serial_t *self = (bridge_serial_t *)arg;
    bridge_reading_t readings[BRIDGE_CHANNELS_MAX];
    size_t count = 0;
    const char *reason = NULL;
    int rc = overlong ? bridge_line_reject (&reason, "line too long")
                      : bridge_line_parse (self->settings, line, size, readings,
                                           BRIDGE_CHANNELS_MAX, &count, &reason);
    if (rc == 0 && count == 0)
        return; //  blank
    atomic_fetch_add (&bridge_counters.lines_read, 1);
    if (rc) {
        atomic_fetch_add (&bridge_counters.lines_rejected, 1);
        zsys_warning ("bridge line - rejected (%s): %.*s", reason, (int)(size > 120 ? 120 : size),
                      line);
        return;
    }
    int64_t now = zclock_time ();
    int64_t ts[BRIDGE_CHANNELS_MAX];
    for (size_t index = 0; index < count; index++)
        ts[index] = now;
    //  A spool that cannot be written is retried: the line is in memory only
    //  until it is committed, and the serial input waits in the kernel.
    while (bridge_spool_append (self->spool, readings, count, ts, self->settings->spool_max) != 0 &&
           !proto_main_stopping ())
        bridge_signal_sleep_ms (1000);
}

static int
s_serial_open (const char *path, int baud)
{
    int fd = open (path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios tty;
    if (isatty (fd) && tcgetattr (fd, &tty) == 0) {
        cfmakeraw (&tty);
        tty.c_cflag |= CLOCAL | CREAD;
        speed_t speed = bridge_settings_speed (baud);
        if (speed) {
            cfsetispeed (&tty, speed);
            cfsetospeed (&tty, speed);
        }
        tty.c_cc[VMIN] = 1;
        tty.c_cc[VTIME] = 0;
        if (tcsetattr (fd, TCSANOW, &tty) != 0) {
            close (fd);
            return -1;
        }
    }
    return fd;
}

void
bridge_serial_run (bridge_serial_t *self)
{
    const bridge_settings_t *settings = self->settings;
    char line[BRIDGE_LINE_MAX_LIMIT];
    s_assembler_t assembler = {line, 0, settings->line_max, false};
    int fd = -1;
    bool opened_once = false, told = false;
    int64_t checked = 0;
    while (!proto_main_stopping ()) {
        if (fd < 0) {
            fd = s_serial_open (settings->device, settings->baud);
            if (fd < 0) {
                if (!told)
                    zsys_warning ("bridge serial %s - cannot open (%s), retrying every second",
                                  settings->device, strerror (errno));
                told = true;
                bridge_signal_sleep_ms (1000);
                continue;
            }
            zsys_info ("bridge serial %s - open at %d baud", settings->device, settings->baud);
            if (opened_once)
                atomic_fetch_add (&bridge_counters.reopens, 1);
            opened_once = true;
            told = false;
            //  A line cut by the outage would read as a wrong one.
            assembler.size = 0;
            assembler.overlong = false;
        }
        struct pollfd item = {fd, POLLIN, 0};
        int rc = poll (&item, 1, 500);
        bool gone = false;
        errno = 0;
        if (rc > 0 && (item.revents & POLLIN)) {
            char data[4096];
            ssize_t size = read (fd, data, sizeof data);
            if (size > 0)
                s_assembler_feed (&assembler, data, (size_t)size, s_serial_line, self);
            else if (size == 0 || (errno != EAGAIN && errno != EINTR))
                gone = true;
        } else if (rc > 0 && (item.revents & (POLLHUP | POLLERR | POLLNVAL)))
            gone = true;
        //  A node that vanished (USB unplugged) may still give no error on fd.
        if (!gone && zclock_mono () - checked > 1000) {
            checked = zclock_mono ();
            struct stat node;
            if (stat (settings->device, &node) != 0)
                gone = true;
        }
        if (gone) {
            zsys_warning ("bridge serial %s - lost (%s), reopening", settings->device,
                          errno ? strerror (errno) : "hang-up");
            close (fd);
            fd = -1;
            bridge_signal_sleep_ms (200);
        }
    }
    if (fd >= 0)
        close (fd);
}

typedef struct {
    char lines[16][128];
    size_t count;
    size_t overlong;
} s_collect_t;

static void
s_collect (void *arg, const char *line, size_t size, bool overlong)
{
    s_collect_t *self = (s_collect_t *)arg;
    if (overlong)
        self->overlong++;
    else if (self->count < 16)
        snprintf (self->lines[self->count++], 128, "%.*s", (int)size, line);
}

void
bridge_serial_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_serial: ");
    //  Line assembly: CRLF, partial lines across reads, over-long lines.
    char buffer[40];
    s_assembler_t assembler = {buffer, 0, sizeof buffer, false};
    s_collect_t collect = {.count = 0};
    const char *stream = "{\"a\":1}\r\npart";
    s_assembler_feed (&assembler, stream, strlen (stream), s_collect, &collect);
    assert (collect.count == 1 && strcmp (collect.lines[0], "{\"a\":1}") == 0);
    stream = "ial\n0123456789012345678901234567890123456789012345\nok\n";
    s_assembler_feed (&assembler, stream, strlen (stream), s_collect, &collect);
    assert (collect.count == 3 && strcmp (collect.lines[1], "partial") == 0);
    assert (strcmp (collect.lines[2], "ok") == 0 && collect.overlong == 1);
    if (verbose)
        printf ("OK\n");
}
