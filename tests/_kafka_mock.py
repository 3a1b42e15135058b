# Copyright 2026 the @eventbus/core authors. MIT license.
"""Starts librdkafka's built-in mock Kafka cluster for tests.

librdkafka (Debian package librdkafka1) ships a mock cluster that speaks the
Kafka protocol on loopback: produce, fetch, consumer groups, offset commits,
rebalances. No JVM, no ZooKeeper. This launcher starts one through the C API
(rd_kafka_mock_cluster_new) with ctypes, prints one line

    bootstrap=127.0.0.1:PORT,127.0.0.1:PORT,...

on stdout, then reads commands from stdin, one a line:

    topic NAME PARTITIONS    create a topic; answers "ok NAME" or "error ..."

It stops when stdin closes or on SIGTERM/SIGINT. The brokers bind 127.0.0.1
on ports the OS picks, so parallel test runs never collide.

Usage: python3 tests/_kafka_mock.py [--brokers N]
"""

import ctypes
import ctypes.util
import signal
import sys

RD_KAFKA_PRODUCER = 0


def load():
    for name in ("librdkafka.so.1", ctypes.util.find_library("rdkafka")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    sys.stderr.write(
        "error: librdkafka not found, install it with"
        " `apt-get install -y librdkafka1`\n"
    )
    sys.exit(3)


def main():
    brokers = 3
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--brokers":
        brokers = int(args[1])
    elif args:
        sys.stderr.write("usage: _kafka_mock.py [--brokers N]\n")
        sys.exit(2)

    lib = load()
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
        ctypes.c_char_p, ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
    ]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
    ]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]

    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # The handle only hosts the mock cluster's thread; keep it quiet.
    lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
    rk = lib.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, 512)
    if not rk:
        sys.stderr.write("error: rd_kafka_new: %s\n" % errstr.value.decode())
        sys.exit(1)
    cluster = lib.rd_kafka_mock_cluster_new(rk, brokers)
    if not cluster:
        sys.stderr.write("error: rd_kafka_mock_cluster_new failed\n")
        sys.exit(1)

    def stop(*_):
        lib.rd_kafka_mock_cluster_destroy(cluster)
        lib.rd_kafka_destroy(rk)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    bootstrap = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()
    print("bootstrap=" + bootstrap, flush=True)

    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "topic":
            err = lib.rd_kafka_mock_topic_create(
                cluster, parts[1].encode(), int(parts[2]), 1)
            if err == 0:
                print("ok " + parts[1], flush=True)
            else:
                print("error " + lib.rd_kafka_err2str(err).decode(), flush=True)
        elif parts:
            print("error unknown command: " + line.strip(), flush=True)
    stop()


if __name__ == "__main__":
    main()
