"""mqtt_ceiling.py INSTANCES MESSAGES - a quick ceiling of broker ->
phantom-mqtt -> detector -> store: MESSAGES messages on 4 ESPHome power
topics of one plug, published at QoS 1 by 4 mosquitto_pub -l at once, on
test_mqtt's stack and broker (no auth plugin, so no pw-id: the readings
get hash ids, hence the distinct payloads). Not the issue's benchmark
(10,000 connected plugs); see services/mqtt/README.md.

    PHANTOM_BUILD_DIR=$PWD/build python3 services/mqtt/bench/mqtt_ceiling.py 1 4000
"""
import os, subprocess, sys, time, unittest
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "integration"))
import harness, test_mqtt
instances = sys.argv[1]
N = int(sys.argv[2])
orig_start = harness.start_module_stack
def start(name, slot, **kw):
    kw["settings"]["PHANTOM_MQTT_INSTANCES"] = instances
    return orig_start(name, slot, **kw)
test_mqtt.harness.start_module_stack = start
try:
    test_mqtt.setUpModule()
    s = test_mqtt.STACK
    _, token, _, _ = s.register_user()
    dev = s.create_device(token, "Bench")
    name = s.scalar("SELECT mqtt_name FROM devices WHERE id = %s", dev["id"])
    # channels first, so port creation is not in the timing
    for c in range(4):
        test_mqtt.publish("%s/sensor/power%d/state" % (name, c), "1.0")
    harness.wait_for(lambda: test_mqtt.metrics().get("phantom_mqtt_readings_stored_total", 0) >= 4, 20)
    base = test_mqtt.metrics().get("phantom_mqtt_readings_stored_total", 0)
    t0 = time.time()
    procs = []
    for c in range(4):
        p = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(test_mqtt.BROKER_PORT),
                              "-V", "mqttv5", "-q", "1", "-t", "%s/sensor/power%d/state" % (name, c), "-l"],
                             stdin=subprocess.PIPE, text=True)
        p.stdin.write("".join("%d.%d\n" % (i % 300, i) for i in range(N // 4)))
        p.stdin.close()
        procs.append(p)
    for p in procs:
        p.wait()
    t_pub = time.time() - t0
    harness.wait_for(lambda: test_mqtt.metrics().get("phantom_mqtt_readings_stored_total", 0) >= base + N, 300, 0.5)
    dt = time.time() - t0
    m = test_mqtt.metrics()
    stored = m.get("phantom_mqtt_readings_stored_total", 0) - base
    rss = subprocess.run("ps -C phantom-mqtt -o rss=", shell=True, capture_output=True, text=True).stdout.split()
    print("instances=%s messages=%d published_in=%.1fs stored=%d in %.1fs -> %.0f msg/s; ack_lag_mean=%.2f ms max=%.1f ms; rss_kib=%s; failed=%d"
          % (instances, N, t_pub, stored, dt, stored / dt,
             1000 * m["phantom_mqtt_ack_lag_seconds_sum"] / m["phantom_mqtt_ack_lag_seconds_count"],
             1000 * m["phantom_mqtt_ack_lag_max_seconds"], rss, m.get("phantom_mqtt_readings_failed_total", 0)))
    print("rows:", s.count("SELECT count(*) FROM readings r JOIN mqtt_channels c ON c.port_id = r.port_id WHERE c.device_id = %s", dev["id"]))
finally:
    unittest.case._ModuleCleanups = None
    unittest.doModuleCleanups()
