#!/bin/bash
# TCP between two namespaces over a veth pair; the oracle watches the server side.
. "$(dirname "$0")/../lib.sh"
lib_setup

CLI=trk-cli SRV=trk-srv
ns_create $CLI
ns_create $SRV
veth_link $CLI veth-c 10.200.1.2/24 $SRV veth-s 10.200.1.1/24
start_tcp_server $SRV 10.200.1.1 8000
oracle_start $SRV
traffic $CLI tcp-client 10.200.1.1 8000 --count 5
ct_flush $SRV
oracle_stop
expect_events '^ *\[NEW\] tcp +6 .*src=10\.200\.1\.2 dst=10\.200\.1\.1 .*dport=8000 ' 5 5
expect_events '^\[DESTROY\] tcp +6 .*src=10\.200\.1\.2 dst=10\.200\.1\.1 .*\[ASSURED\]' 5 5
oracle_compare
