/*  =========================================================================
    phantom-certs - writes the CURVE certificates of the pipeline links

    phantom-certs [-c CONFIG] [DIR]

    DIR (default: curve_dir of the config, else $PHANTOM_VAR/curve, else
    var/curve) gets server.cert(_secret), client.cert(_secret) and
    allowed/client.cert. Existing keypairs are kept, so running it again is
    harmless. To let another host's connectors in, copy their public
    client.cert into allowed/ under any NAME.cert; to move the binders'
    identity to another host, copy server.cert and server.cert_secret.
    =========================================================================
*/
#include "proto_config.h"
#include "proto_curve.h"

#include <czmq.h>

int
main (int argc, char *argv [])
{
    const char *config_path = NULL;
    const char *dir = NULL;
    for (int arg = 1; arg < argc; arg++) {
        if (streq (argv [arg], "-c") && arg + 1 < argc)
            config_path = argv [++arg];
        else
        if (argv [arg][0] != '-' && !dir)
            dir = argv [arg];
        else {
            fprintf (stderr, "usage: phantom-certs [-c CONFIG] [DIR]\n");
            return 2;
        }
    }
    if (!zsys_has_curve ()) {
        fprintf (stderr, "phantom-certs: libzmq was built without CURVE\n");
        return 1;
    }
    //  Same default as the services: deploy/phantomwatch.conf if present.
    if (!config_path && zsys_file_exists ("deploy/phantomwatch.conf"))
        config_path = "deploy/phantomwatch.conf";
    proto_config_t *config = proto_config_new (config_path);
    if (!config)
        return 1;
    if (!dir)
        dir = proto_curve_dir (config);
    int rc = proto_curve_keys (dir);
    if (rc == 0)
        printf ("%s\n", dir);
    proto_config_destroy (&config);
    return rc ? 1 : 0;
}
