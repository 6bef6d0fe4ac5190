#!/bin/bash
# TCP connect + orderly close over loopback inside one namespace.
. "$(dirname "$0")/../lib.sh"
lib_setup

NS=trk-lo
ns_create $NS
start_tcp_server $NS 127.0.0.1 8000
oracle_start $NS
traffic $NS tcp-client 127.0.0.1 8000 --count 5
ct_flush $NS               # entries sit in TIME_WAIT: -F yields their DESTROY events
oracle_stop
expect_events '^ *\[NEW\] tcp +6 .*dport=8000 ' 5 5
expect_events '^\[DESTROY\] tcp +6 .*dport=8000 ' 5 5
oracle_compare
