#!/bin/bash
# conntrack -E's filters, given the same words on both sides: mixed traffic (TCP and UDP,
# IPv4 and IPv6, one UDP port marked 1 by nft `ct mark set`) and, per filter set, the
# tracker's stream must equal conntrack -E's. Family, protocol and mark are applied in
# the eBPF programs, the rest in userspace: both paths are covered.
# timeout: 480
. "$(dirname "$0")/../lib.sh"
lib_setup
need_cmd nft

NS=trk-filter
ns_create $NS
in_ns $NS nft -f - <<'NFT' || skip "nft cannot set ct mark here"
table inet trk_mark {
    chain out {
        type filter hook output priority mangle; policy accept;
        udp dport 5301 ct mark set 1
    }
}
NFT
start_tcp_server $NS 127.0.0.1 8000
start_tcp_server $NS ::1 8001
start_udp_echo $NS 127.0.0.1 5300
start_udp_echo $NS 127.0.0.1 5301
start_udp_echo $NS ::1 5302

run_filter() {
    local words=$1 min=$2
    log "filter: $words"
    # shellcheck disable=SC2086
    TRACKER_ARGS="$words" oracle_start $NS $words
    traffic $NS tcp-client 127.0.0.1 8000 --count 1
    traffic $NS tcp-client ::1 8001 --count 1
    traffic $NS udp-client 127.0.0.1 5300 --count 1
    traffic $NS udp-client 127.0.0.1 5301 --count 2
    traffic $NS udp-client ::1 5302 --count 1
    ct_flush $NS
    oracle_stop
    expect_events '\[(NEW|DESTROY)\]' "$min" "$min"
    oracle_compare
}

run_filter "-p udp --dport 5301 -m 1" 4
run_filter "-f ipv6 -r ::1 -q ::1 -p udp" 2
run_filter "-s 127.0.0.0/8 -d 127.0.0.1 -p tcp" 2
note "3 filter sets (-p --dport -m -f -r -q -s -d) equal to conntrack -E"
