/*  =========================================================================
    phantom-mqtt - smart plugs (Tasmota, Shelly, ESPHome) over MQTT

    phantom-mqtt [-c CONFIG] [-v] [--help-config] [-i INSTANCE]
    Foreground, logs to stderr, exits 0 after a clean shutdown on SIGTERM/SIGINT.
    Instance i (0 .. mqtt_instances - 1) is client phantom-mqtt-<i>, binds
    its partitions at mqtt_reading_endpoint + i * partitions and serves
    metrics on mqtt_metrics_port + i.
    =========================================================================
*/
#include "mqtt_service.h"
#include "proto_main.h"

#include <czmq.h>

static int
s_option (int option, const char *argument, void *arg)
{
    int *instance = (int *)arg;
    if (option != 'i' || !argument)
        return -1;
    char *end;
    long value = strtol (argument, &end, 10);
    if (end == argument || *end || value < 0 || value > 15)
        return -1;
    *instance = (int)value;
    return 0;
}

int
main (int argc, char *argv[])
{
    int instance = 0;
    proto_main_spec_t spec = {.name = "phantom-mqtt",
                              .usage = "[-i INSTANCE]",
                              .options = "i:",
                              .option = s_option,
                              .arg = &instance};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    if (instance >= proto_config_int (proto_main_config (app), "mqtt_instances")) {
        zsys_error ("mqtt - instance %d, but mqtt_instances is %" PRId64, instance,
                    proto_config_int (proto_main_config (app), "mqtt_instances"));
        proto_main_destroy (&app);
        return 1;
    }
    mqtt_service_t *service =
        mqtt_service_new (proto_main_config (app), instance, proto_main_verbose (app));
    if (!service) {
        proto_main_destroy (&app);
        return proto_main_stopping () ? 0 : 1;
    }
    mqtt_service_run (service, proto_main_stop_flag ());
    zsys_info ("mqtt - stopping");
    mqtt_service_destroy (&service);
    proto_main_destroy (&app);
    zsys_info ("mqtt - stopped");
    return 0;
}
