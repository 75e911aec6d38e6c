/*  =========================================================================
    proto_selftest - the one runner of class tests

    Every selftest program (a service's, the proto library's, a tool's
    --selftest) is a table of its classes handed to proto_selftest_run:

      PROGRAM [-v] [CLASS ...]

    No class runs them all, in table order; each named class runs in table
    order too. A test that needs PostgreSQL is marked in the table and
    skipped when PHANTOM_TEST_DATABASE is unset, so ctest can report SKIP
    (exit 77) for it instead of a failure.
    =========================================================================
*/
#ifndef PROTO_SELFTEST_H_INCLUDED
#define PROTO_SELFTEST_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  The exit status ctest reads as SKIP (SKIP_RETURN_CODE).
#define PROTO_SELFTEST_SKIP 77

typedef struct {
    const char *name;            //  class name, as ctest runs it
    void (*test) (bool verbose); //  its self test
    bool database;               //  needs PHANTOM_TEST_DATABASE
} proto_selftest_t;

//  Runs the tests that the arguments name (argv[0 .. argc), the program's
//  own name not among them): "-v" anywhere, class names in any order.
//  Returns 0 when they ran; 1 for an unknown name (printed as "program:
//  unknown test 'name'", nothing run); PROTO_SELFTEST_SKIP when none ran
//  because each needs the database and it is unset.
int proto_selftest_run (const char *program, const proto_selftest_t *tests, size_t count, int argc,
                        char *argv[]);

void proto_selftest_test (bool verbose);

#endif
