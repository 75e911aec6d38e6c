/*  =========================================================================
    proto_selftest - the one runner of class tests

    Before this class each selftest program parsed its own arguments, and
    they had drifted apart: one class or many, -v first or anywhere, skips
    or none. Now they all accept the same line and exit the same way.
    =========================================================================
*/
#include "proto_selftest.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The test database's connection string, or NULL when it is not set.
static const char *
s_database (void)
{
    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    return database && *database ? database : NULL;
}

//  Index of the test called name, or count when there is none.
static size_t
s_find (const proto_selftest_t *tests, size_t count, const char *name)
{
    size_t index;
    for (index = 0; index < count; index++)
        if (strcmp (tests[index].name, name) == 0)
            break;
    return index;
}

int
proto_selftest_run (const char *program, const proto_selftest_t *tests, size_t count, int argc,
                    char *argv[])
{
    assert (program);
    assert (tests || count == 0);
    bool verbose = false;
    int named = 0;
    //  Every name is checked before any test runs: a typo costs nothing.
    for (int arg = 0; arg < argc; arg++) {
        if (strcmp (argv[arg], "-v") == 0)
            verbose = true;
        else if (s_find (tests, count, argv[arg]) == count) {
            fprintf (stderr, "%s: unknown test '%s'\n", program, argv[arg]);
            return 1;
        } else
            named++;
    }
    int ran = 0, skipped = 0;
    for (size_t index = 0; index < count; index++) {
        bool wanted = named == 0;
        for (int arg = 0; arg < argc && !wanted; arg++)
            wanted = strcmp (argv[arg], tests[index].name) == 0;
        if (!wanted)
            continue;
        if (tests[index].database && !s_database ()) {
            printf (" * %s: skipped (PHANTOM_TEST_DATABASE not set)\n", tests[index].name);
            skipped++;
            continue;
        }
        tests[index].test (verbose);
        ran++;
    }
    return ran == 0 && skipped ? PROTO_SELFTEST_SKIP : 0;
}

//  --------------------------------------------------------------------------
//  Self test: the runner on a table of counting tests

static int s_first_runs, s_second_runs, s_database_runs;
static bool s_verbose_seen;

static void
s_first (bool verbose)
{
    s_first_runs++;
    s_verbose_seen = verbose;
}

static void
s_second (bool verbose)
{
    (void)verbose;
    s_second_runs++;
}

static void
s_needs_database (bool verbose)
{
    (void)verbose;
    s_database_runs++;
}

static void
s_reset (void)
{
    s_first_runs = s_second_runs = s_database_runs = 0;
    s_verbose_seen = false;
}

void
proto_selftest_test (bool verbose)
{
    static const proto_selftest_t tests[] = {
        {"first", s_first, false},
        {"second", s_second, false},
        {"database", s_needs_database, true},
    };
    char *saved = s_database () ? strdup (s_database ()) : NULL;
    unsetenv ("PHANTOM_TEST_DATABASE");

    //  No name: every test, the database one skipped; 0 since some ran
    s_reset ();
    assert (proto_selftest_run ("t", tests, 3, 0, NULL) == 0);
    assert (s_first_runs == 1 && s_second_runs == 1 && s_database_runs == 0);
    assert (!s_verbose_seen);

    //  Names in any order with -v anywhere: each named one, once
    char second[] = "second", first[] = "first", flag[] = "-v";
    char *some[] = {second, flag, first};
    s_reset ();
    assert (proto_selftest_run ("t", tests, 3, 3, some) == 0);
    assert (s_first_runs == 1 && s_second_runs == 1 && s_verbose_seen);

    //  An unknown name: 1, and nothing runs, not even the good names
    char typo[] = "frist";
    char *bad[] = {first, typo};
    s_reset ();
    assert (proto_selftest_run ("proto_selftest_test", tests, 3, 2, bad) == 1);
    assert (s_first_runs == 0);

    //  Only the database test, without a database: SKIP
    char database[] = "database";
    char *only_database[] = {database};
    s_reset ();
    assert (proto_selftest_run ("t", tests, 3, 1, only_database) == PROTO_SELFTEST_SKIP);
    assert (s_database_runs == 0);

    //  With a database it runs
    setenv ("PHANTOM_TEST_DATABASE", "dbname=x", 1);
    s_reset ();
    assert (proto_selftest_run ("t", tests, 3, 1, only_database) == 0);
    assert (s_database_runs == 1);

    if (saved)
        setenv ("PHANTOM_TEST_DATABASE", saved, 1);
    else
        unsetenv ("PHANTOM_TEST_DATABASE");
    free (saved);
    //  After the runs: their skip and unknown lines come first
    printf (" * proto_selftest: %sOK\n", verbose ? "(runner checked) " : "");
}
