/*  =========================================================================
    bridge_config_keys - every key of phantom-bridge's own config file

    The bridge reads its file (deploy/bridge.conf.example) with proto_config
    against this table, as the services read theirs: an unknown key or a
    bad value stops start-up with file:line. `phantom-bridge --help-config`
    prints it.
    =========================================================================
*/
#ifndef BRIDGE_CONFIG_KEYS_H_INCLUDED
#define BRIDGE_CONFIG_KEYS_H_INCLUDED

#include "proto_config.h"

#define BRIDGE_LINE_MAX_LIMIT 4096 //  longest bridge_line_max
#define BRIDGE_BATCH_LIMIT 1000    //  largest bridge_batch (the gateway's own bound)

extern const proto_config_key_t bridge_config_keys[];

#endif
