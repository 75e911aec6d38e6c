/*  =========================================================================
    proto_main - the one way a PhantomWatch program starts

    One object per process: it installs the process's signal handler, so
    there is nothing for two of them to share but the stop flag.
    =========================================================================
*/
#include "proto_main.h"
#include "proto_curve.h"

#include <czmq.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_DEFAULT_CONFIG "deploy/phantomwatch.conf"
#define S_OPTIONS_MAX 32 //  longest getopt string of a program's own flags
#define S_HELP_CONFIG 1  //  getopt_long's value for --help-config

struct _proto_main_t {
    proto_config_t *config; //  loaded config
    char *config_path;      //  where from, NULL for defaults and environment
    bool verbose;           //  -v
    char **operands;        //  operands after the flags (argv's, borrowed)
    int operand_count;      //  how many
};

static volatile sig_atomic_t s_stop;

static void
s_signal (int signum)
{
    (void)signum;
    s_stop = 1;
}

static void
s_usage (const proto_main_spec_t *spec, FILE *stream)
{
    fprintf (stream, "usage: %s [-c CONFIG] [-v] [--help-config]%s%s\n", spec->name,
             spec->usage ? " " : "", spec->usage ? spec->usage : "");
}

//  --------------------------------------------------------------------------
//  Our handler only sets the flag; CZMQ must not install its own (zsys_init
//  would, on first use, unless told not to).
void
proto_main_signals (void)
{
    setenv ("ZSYS_SIGHANDLER", "false", 1);
    zsys_init ();
    zsys_handler_set (NULL);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);
}

//  --------------------------------------------------------------------------
//  Parses argv, loads the config, sets up logging and signals. NULL with
//  the exit status in *status when main should return at once.
proto_main_t *
proto_main_new (const proto_main_spec_t *spec, int argc, char *argv[], int *status)
{
    assert (spec && spec->name && status);
    const proto_config_key_t *keys = spec->keys ? spec->keys : proto_config_keys;
    char letters[S_OPTIONS_MAX + 8];
    int written = snprintf (letters, sizeof letters, "+c:vh%s", spec->options ? spec->options : "");
    assert (written > 0 && (size_t)written < sizeof letters);
    static const struct option long_options[] = {{"help-config", no_argument, NULL, S_HELP_CONFIG},
                                                 {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    bool verbose = false;
    int option;
    optind = 0; //  glibc: start over, so a test may parse twice
    while ((option = getopt_long (argc, argv, letters, long_options, NULL)) != -1) {
        if (option == 'c')
            config_path = optarg;
        else if (option == 'v')
            verbose = true;
        else if (option == 'h' || option == S_HELP_CONFIG) {
            if (option == 'h')
                s_usage (spec, stdout);
            else
                proto_config_print (keys, stdout);
            *status = fflush (stdout) == 0 ? 0 : 1;
            return NULL;
        } else if (option == '?' || !spec->option || spec->option (option, optarg, spec->arg)) {
            s_usage (spec, stderr);
            *status = 2;
            return NULL;
        }
    }
    if (argc - optind > spec->operands_max) {
        s_usage (spec, stderr);
        *status = 2;
        return NULL;
    }
    //  Logs to stderr, one line per event; stdout is for data (phantom-tap).
    proto_main_signals ();
    zsys_set_logstream (stderr);
    zsys_set_logident (spec->name);
    if (!config_path && keys == proto_config_keys && access (S_DEFAULT_CONFIG, R_OK) == 0)
        config_path = S_DEFAULT_CONFIG;

    proto_main_t *self = (proto_main_t *)zmalloc (sizeof (proto_main_t));
    assert (self);
    self->verbose = verbose;
    self->operands = argv + optind;
    self->operand_count = argc - optind;
    self->config_path = config_path ? strdup (config_path) : NULL;
    self->config = proto_config_new_with_keys (config_path, keys);
    if (!self->config || (keys == proto_config_keys && proto_curve_configure (self->config))) {
        proto_main_destroy (&self);
        *status = 1;
        return NULL;
    }
    if (verbose)
        zsys_info ("%s - config %s", spec->name,
                   config_path ? config_path : "(defaults and environment)");
    *status = 0;
    return self;
}

//  --------------------------------------------------------------------------
//  Prints the usage line to stderr; returns 2, the status of bad usage.
int
proto_main_usage (const proto_main_spec_t *spec)
{
    assert (spec);
    s_usage (spec, stderr);
    return 2;
}

//  --------------------------------------------------------------------------
//  Destroy the object and its config; nullifies the caller's reference.
void
proto_main_destroy (proto_main_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        proto_main_t *self = *self_p;
        proto_config_destroy (&self->config);
        free (self->config_path);
        free (self);
        *self_p = NULL;
    }
}

proto_config_t *
proto_main_config (proto_main_t *self)
{
    assert (self);
    return self->config;
}

const char *
proto_main_config_path (proto_main_t *self)
{
    assert (self);
    return self->config_path;
}

bool
proto_main_verbose (proto_main_t *self)
{
    assert (self);
    return self->verbose;
}

const char *
proto_main_operand (proto_main_t *self, int index)
{
    assert (self);
    return index >= 0 && index < self->operand_count ? self->operands[index] : NULL;
}

bool
proto_main_stopping (void)
{
    return s_stop != 0;
}

volatile sig_atomic_t *
proto_main_stop_flag (void)
{
    return &s_stop;
}

//  --------------------------------------------------------------------------
//  Self test

static int
s_test_option (int option, const char *argument, void *arg)
{
    if (option != 'i' || !argument || !*argument)
        return -1;
    *(const char **)arg = argument;
    return 0;
}

void
proto_main_test (bool verbose)
{
    printf (" * proto_main: ");
    char dir[] = "/tmp/proto_main_test.XXXXXX";
    assert (mkdtemp (dir));
    char *good = zsys_sprintf ("%s/good.conf", dir);
    char *bad = zsys_sprintf ("%s/bad.conf", dir);
    FILE *file = fopen (good, "w");
    assert (file);
    fprintf (file, "partitions = 3\n");
    fclose (file);
    file = fopen (bad, "w");
    assert (file);
    fprintf (file, "partitons = 3\n");
    fclose (file);
    unsetenv ("PHANTOM_PARTITIONS");

    //  Usage and log lines go to /dev/null unless -v.
    int saved_stderr = dup (STDERR_FILENO);
    assert (saved_stderr >= 0);
    if (!verbose) {
        int null = open ("/dev/null", O_WRONLY);
        assert (null >= 0 && dup2 (null, STDERR_FILENO) == STDERR_FILENO);
        close (null);
    }
    const char *partition = NULL;
    proto_main_spec_t spec = {.name = "phantom-test",
                              .usage = "-i PARTITION [DIR]",
                              .options = "i:",
                              .option = s_test_option,
                              .arg = &partition,
                              .operands_max = 1};
    int status = -1;
    //  Flags, the program's own flag, one operand, the config.
    char *args[] = {"phantom-test", "-c", good, "-v", "-i", "1", "dir", NULL};
    proto_main_t *self = proto_main_new (&spec, 7, args, &status);
    assert (self && status == 0);
    assert (proto_main_verbose (self));
    assert (partition && streq (partition, "1"));
    assert (streq (proto_main_operand (self, 0), "dir"));
    assert (proto_main_operand (self, 1) == NULL);
    assert (streq (proto_main_config_path (self), good));
    assert (proto_config_int (proto_main_config (self), "partitions") == 3);
    proto_main_destroy (&self);
    proto_main_destroy (&self);

    //  Bad usage is 2: an unknown flag, a bad value of the program's own
    //  flag, a missing argument, too many operands.
    char *unknown[] = {"phantom-test", "-x", NULL};
    assert (proto_main_new (&spec, 2, unknown, &status) == NULL && status == 2);
    char *empty[] = {"phantom-test", "-i", "", NULL};
    assert (proto_main_new (&spec, 3, empty, &status) == NULL && status == 2);
    char *missing[] = {"phantom-test", "-c", NULL};
    assert (proto_main_new (&spec, 2, missing, &status) == NULL && status == 2);
    char *operands[] = {"phantom-test", "a", "b", NULL};
    assert (proto_main_new (&spec, 3, operands, &status) == NULL && status == 2);
    //  A bad config is 1.
    char *misspelt[] = {"phantom-test", "-c", bad, NULL};
    assert (proto_main_new (&spec, 3, misspelt, &status) == NULL && status == 1);

    //  SIGTERM sets the flag and nothing else.
    char *plain[] = {"phantom-test", "-c", good, NULL};
    self = proto_main_new (&spec, 3, plain, &status);
    assert (self && !proto_main_stopping ());
    raise (SIGTERM);
    assert (proto_main_stopping () && *proto_main_stop_flag () == 1);
    s_stop = 0;
    raise (SIGPIPE); //  ignored
    proto_main_destroy (&self);
    //  A program with flags of its own installs the same handler alone.
    proto_main_signals ();
    raise (SIGINT);
    assert (proto_main_stopping ());
    s_stop = 0;
    fflush (stderr);
    dup2 (saved_stderr, STDERR_FILENO);
    close (saved_stderr);

    unlink (good);
    unlink (bad);
    rmdir (dir);
    zstr_free (&good);
    zstr_free (&bad);
    printf ("OK\n");
}
