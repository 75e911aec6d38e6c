/*  =========================================================================
    phantom-certs - writes the CURVE certificates of the pipeline links

    phantom-certs [-c CONFIG] [-v] [--help-config] [DIR]

    DIR (default: curve_dir of the config, else $PHANTOM_VAR/curve, else
    var/curve) gets server.cert(_secret), client.cert(_secret) and
    allowed/client.cert. Existing keypairs are kept, so running it again is
    harmless. To let another host's connectors in, copy their public
    client.cert into allowed/ under any NAME.cert; to move the binders'
    identity to another host, copy server.cert and server.cert_secret.
    =========================================================================
*/
#include "proto_curve.h"
#include "proto_main.h"

#include <czmq.h>

int
main (int argc, char *argv[])
{
    proto_main_spec_t spec = {.name = "phantom-certs", .usage = "[DIR]", .operands_max = 1};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    if (!zsys_has_curve ()) {
        zsys_error ("phantom-certs - libzmq was built without CURVE");
        proto_main_destroy (&app);
        return 1;
    }
    const char *dir = proto_main_operand (app, 0);
    if (!dir)
        dir = proto_curve_dir (proto_main_config (app));
    int rc = proto_curve_keys (dir);
    if (rc == 0)
        printf ("%s\n", dir);
    proto_main_destroy (&app);
    return rc ? 1 : 0;
}
