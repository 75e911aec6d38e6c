//  Runs the plugin's class self tests by name: mqtt_auth_selftest [class].
#include "mqtt_auth_acl.h"
#include "mqtt_auth_table.h"

#include <stdio.h>
#include <string.h>

int
main (int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    if (!only || strcmp (only, "mqtt_auth_acl") == 0)
        mqtt_auth_acl_test (false);
    if (!only || strcmp (only, "mqtt_auth_table") == 0)
        mqtt_auth_table_test (false);
    return 0;
}
