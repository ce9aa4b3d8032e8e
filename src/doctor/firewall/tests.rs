//! The firewall parsers on real outputs of nft, iptables-save, ufw and
//! firewall-cmd (made in throw-away network namespaces).

use super::*;

fn block(tool: &'static str, direction: Direction, proto: Proto, broadcast_only: bool, rule: &str) -> Block {
    Block { tool, direction, proto, broadcast_only, rule: rule.to_string() }
}

fn nft(direction: Direction, proto: Proto, rule: &str) -> Block {
    block("nftables", direction, proto, false, rule)
}

fn ipt(direction: Direction, proto: Proto, rule: &str) -> Block {
    block("iptables", direction, proto, false, rule)
}

use Direction::{In, Out};
use Proto::{Both, Tcp, Udp};

// `nft -j list ruleset` in a throw-away network namespace after `nft -f` of the
// ruleset in the comment above each (one JSON object a line; nft prints one line).
// table inet filter {
//   chain input {
//     type filter hook input priority filter; policy accept;
//     tcp dport 22 drop
//     udp dport 2425 drop
//     tcp dport 2425 reject
//   }
// }
const NFT_PORT: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "filter", "handle": 1}},
{"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 2425}}, {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]}}
]}
"#;

// table inet filter {
//   set blocked {
//     type inet_service
//     elements = { 2425, 9000 }
//   }
//
//   chain input {
//     type filter hook input priority filter; policy accept;
//     udp dport { 2425, 8080 } drop
//     tcp dport 2400-2500 counter packets 0 bytes 0 drop
//     udp dport != 2425 drop
//     tcp dport != 22 reject with tcp reset
//     udp dport 2425 drop
//     tcp dport { 22, 80-90 } drop
//     udp dport @blocked drop
//     tcp dport 2425 accept
//   }
// }
const NFT_SETS: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "filter", "handle": 2}},
{"set": {"family": "inet", "name": "blocked", "table": "filter", "type": "inet_service", "handle": 2, "elem": [2425, 9000]}},
{"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [2425, 8080]}}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [2400, 2500]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 6, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 7, "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"reject": {"type": "tcp reset"}}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [22, {"range": [80, 90]}]}}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 11, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": "@blocked"}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 12, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 2425}}, {"accept": null}]}}
]}
"#;

// table inet filter {
//   chain input {
//     type filter hook input priority filter; policy drop;
//     ct state established,related accept
//     iifname "lo" accept
//     tcp dport 22 accept
//   }
// }
// table ip partial {
//   chain input {
//     type filter hook input priority filter + 10; policy drop;
//     ct state established,related accept
//     udp dport 2425 accept
//   }
// }
// table ip open {
//   chain input {
//     type filter hook input priority 20; policy drop;
//     meta l4proto { tcp, udp } th dport 2425 accept
//     udp dport 2425 drop
//     ip protocol udp drop
//   }
//
//   chain forward {
//     type filter hook forward priority filter; policy drop;
//   }
// }
// table ip6 v6only {
//   chain input {
//     type filter hook input priority filter; policy drop;
//     udp dport 2425 drop
//   }
// }
const NFT_POLICIES: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "filter", "handle": 1}},
{"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"accept": null}]}},
{"table": {"family": "ip", "name": "partial", "handle": 2}},
{"chain": {"family": "ip", "table": "partial", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 10, "policy": "drop"}},
{"rule": {"family": "ip", "table": "partial", "chain": "input", "handle": 2, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "partial", "chain": "input", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"accept": null}]}},
{"table": {"family": "ip", "name": "open", "handle": 3}},
{"chain": {"family": "ip", "table": "open", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 20, "policy": "drop"}},
{"chain": {"family": "ip", "table": "open", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
{"rule": {"family": "ip", "table": "open", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 2425}}, {"accept": null}]}},
{"rule": {"family": "ip", "table": "open", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "open", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "udp"}}, {"drop": null}]}},
{"table": {"family": "ip6", "name": "v6only", "handle": 4}},
{"chain": {"family": "ip6", "table": "v6only", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
{"rule": {"family": "ip6", "table": "v6only", "chain": "input", "handle": 2, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}}
]}
"#;

// table inet filter {
//   chain input {
//     type filter hook input priority filter; policy accept;
//     meta pkttype broadcast drop
//     iifname "eth0" udp dport 2425 drop
//     ip saddr 10.0.0.0/8 jump lan_in
//     tcp dport 2425 goto lan_tcp
//     ip protocol udp jump lan_in
//   }
//
//   chain lan_in {
//     udp dport 2425 reject with icmpx admin-prohibited
//     tcp dport 22 drop
//   }
//
//   chain lan_tcp {
//     drop
//   }
// }
const NFT_JUMPS: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "filter", "handle": 6}},
{"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"chain": {"family": "inet", "table": "filter", "name": "lan_in", "handle": 2}},
{"chain": {"family": "inet", "table": "filter", "name": "lan_tcp", "handle": 3}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "pkttype"}}, "right": "broadcast"}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, {"jump": {"target": "lan_in"}}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 2425}}, {"goto": {"target": "lan_tcp"}}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "udp"}}, {"jump": {"target": "lan_in"}}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "lan_in", "handle": 9, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "lan_in", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "lan_tcp", "handle": 11, "expr": [{"drop": null}]}}
]}
"#;

// table inet filter {
//   chain output {
//     type filter hook output priority filter; policy accept;
//     udp sport 2425 drop
//     udp dport 2425 drop
//     tcp dport 22 drop
//   }
// }
// table ip proto {
//   chain output {
//     type filter hook output priority filter; policy accept;
//     ip protocol udp drop
//   }
//
//   chain input {
//     type filter hook input priority filter; policy accept;
//     meta l4proto tcp drop
//     drop
//   }
// }
const NFT_OUTPUT: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "filter", "handle": 7}},
{"chain": {"family": "inet", "table": "filter", "name": "output", "handle": 1, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "filter", "chain": "output", "handle": 2, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "sport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "output", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 2425}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "filter", "chain": "output", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"drop": null}]}},
{"table": {"family": "ip", "name": "proto", "handle": 8}},
{"chain": {"family": "ip", "table": "proto", "name": "output", "handle": 1, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
{"chain": {"family": "ip", "table": "proto", "name": "input", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"rule": {"family": "ip", "table": "proto", "chain": "output", "handle": 3, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "udp"}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "proto", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"drop": null}]}},
{"rule": {"family": "ip", "table": "proto", "chain": "input", "handle": 5, "expr": [{"drop": null}]}}
]}
"#;

// table inet fw {
//   set ipmsg_ports {
//     type inet_service
//     flags interval
//     elements = { 2420-2430, 5000 }
//   }
//
//   map port_verdicts {
//     type inet_service : verdict
//     elements = { 22 : accept, 2425 : drop }
//   }
//
//   chain input {
//     type filter hook input priority filter; policy accept;
//     ct state vmap { invalid : drop, established : accept, related : accept }
//     meta l4proto vmap { tcp : jump tcp_in, udp : jump udp_in }
//   }
//
//   chain tcp_in {
//     th dport @ipmsg_ports drop
//   }
//
//   chain udp_in {
//     udp dport vmap @port_verdicts
//   }
//
//   chain output {
//     type filter hook output priority filter; policy accept;
//     th sport 2425 reject
//     ip daddr 192.168.1.9 drop
//     oifname "lo" drop
//   }
// }
const NFT_VMAPS: &str = r#"{"nftables": [
{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "fw", "handle": 1}},
{"set": {"family": "inet", "name": "ipmsg_ports", "table": "fw", "type": "inet_service", "handle": 5, "flags": ["interval"], "elem": [{"range": [2420, 2430]}, 5000]}},
{"map": {"family": "inet", "name": "port_verdicts", "table": "fw", "type": "inet_service", "handle": 6, "map": "verdict", "elem": [[22, {"accept": null}], [2425, {"drop": null}]]}},
{"chain": {"family": "inet", "table": "fw", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
{"chain": {"family": "inet", "table": "fw", "name": "tcp_in", "handle": 2}},
{"chain": {"family": "inet", "table": "fw", "name": "udp_in", "handle": 3}},
{"chain": {"family": "inet", "table": "fw", "name": "output", "handle": 4, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "fw", "chain": "input", "handle": 8, "expr": [{"vmap": {"key": {"ct": {"key": "state"}}, "data": {"set": [["invalid", {"drop": null}], ["established", {"accept": null}], ["related", {"accept": null}]]}}}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "input", "handle": 10, "expr": [{"vmap": {"key": {"meta": {"key": "l4proto"}}, "data": {"set": [["tcp", {"jump": {"target": "tcp_in"}}], ["udp", {"jump": {"target": "udp_in"}}]]}}}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "tcp_in", "handle": 11, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": "@ipmsg_ports"}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "udp_in", "handle": 12, "expr": [{"vmap": {"key": {"payload": {"protocol": "udp", "field": "dport"}}, "data": "@port_verdicts"}}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "output", "handle": 13, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "sport"}}, "right": 2425}}, {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "output", "handle": 14, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.168.1.9"}}, {"drop": null}]}},
{"rule": {"family": "inet", "table": "fw", "chain": "output", "handle": 15, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lo"}}, {"drop": null}]}}
]}
"#;

// `iptables-save` (iptables-nft) in a network namespace after `iptables-restore`.
const IPT_RULES: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Fri Dec  4 10:36:49 2026
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:LAN - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -j DROP
-A INPUT -p udp -m udp --dport 2425 -j DROP
-A INPUT -p tcp -m multiport --dports 2425,2426 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p udp -m udp --dport 2400:2500 -j DROP
-A INPUT -p udp -m udp ! --dport 2425 -j DROP
-A INPUT -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset
-A INPUT -i eth0 -p udp -m udp --sport 2425 -j DROP
-A INPUT -m pkttype --pkt-type broadcast -j DROP
-A INPUT -s 10.0.0.0/8 -j LAN
-A INPUT -p tcp -m multiport --dports 80,443 -j DROP
-A INPUT -p udp -m comment --comment "drop ipmsg" -m udp --dport 2425 -j DROP
-A OUTPUT -p udp -m udp --sport 2425 -j DROP
-A OUTPUT -p tcp -m tcp --dport 22 -j DROP
-A LAN -p udp -m udp --dport 2425 -j REJECT --reject-with icmp-port-unreachable
-A LAN -p tcp -m tcp --dport 22 -j DROP
COMMIT
# Completed on Fri Dec  4 10:36:49 2026
"#;

// `iptables-save` (iptables-nft) in a network namespace after `iptables-restore`.
const IPT_ACCEPTS: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Fri Dec  4 10:36:49 2026
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT DROP [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p udp -m udp --dport 2425 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 2425 -j ACCEPT
-A INPUT -p udp -m udp --dport 2425 -j DROP
-A INPUT -j DROP
-A OUTPUT -p udp -j ACCEPT
COMMIT
# Completed on Fri Dec  4 10:36:49 2026
"#;

// `ufw status verbose` (ufw 0.36.2, run in a network namespace) after `ufw enable` and
//   ufw allow 22/tcp
//   ufw deny 2425/udp
//   ufw deny out 2425/tcp
//   ufw reject in on eth0 to any port 2400:2500 proto tcp
//   ufw deny 23/tcp
//   ufw deny from 10.0.0.5
//   ufw deny proto udp from any port 2425
// (the padding spaces at the ends of the lines left out).
const UFW_DENIES: &str = r#"Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    Anywhere
2425/udp                   DENY IN     Anywhere
2400:2500/tcp on eth0      REJECT IN   Anywhere
23/tcp                     DENY IN     Anywhere
Anywhere                   DENY IN     10.0.0.5
Anywhere                   DENY IN     2425/udp
22/tcp (v6)                ALLOW IN    Anywhere (v6)
2425/udp (v6)              DENY IN     Anywhere (v6)
2400:2500/tcp (v6) on eth0 REJECT IN   Anywhere (v6)
23/tcp (v6)                DENY IN     Anywhere (v6)
Anywhere (v6)              DENY IN     2425/udp (v6)

2425/tcp                   DENY OUT    Anywhere
2425/tcp (v6)              DENY OUT    Anywhere (v6)

"#;

// `ufw status verbose` (ufw 0.36.2, run in a network namespace) after `ufw enable` and
//   ufw default deny outgoing
//   ufw allow 2425/udp
//   ufw deny 2425
//   ufw allow out 2425/udp
//   ufw deny 80/tcp
// (the padding spaces at the ends of the lines left out).
const UFW_ALLOW_FIRST: &str = r#"Status: active
Logging: on (low)
Default: deny (incoming), deny (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
2425/udp                   ALLOW IN    Anywhere
2425                       DENY IN     Anywhere
80/tcp                     DENY IN     Anywhere
2425/udp (v6)              ALLOW IN    Anywhere (v6)
2425 (v6)                  DENY IN     Anywhere (v6)
80/tcp (v6)                DENY IN     Anywhere (v6)

2425/udp                   ALLOW OUT   Anywhere
2425/udp (v6)              ALLOW OUT   Anywhere (v6)

"#;

// `ufw status verbose` (ufw 0.36.2, run in a network namespace) after `ufw enable` and
//   ufw default reject incoming
//   ufw allow 2425,2426/udp
//   ufw allow 2400:2500/tcp
//   ufw deny out 2425/udp comment 'no ipmsg out'
// (the padding spaces at the ends of the lines left out).
const UFW_RANGES: &str = r#"Status: active
Logging: on (low)
Default: reject (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
2425,2426/udp              ALLOW IN    Anywhere
2400:2500/tcp              ALLOW IN    Anywhere
2425,2426/udp (v6)         ALLOW IN    Anywhere (v6)
2400:2500/tcp (v6)         ALLOW IN    Anywhere (v6)

2425/udp                   DENY OUT    Anywhere                   # no ipmsg out
2425/udp (v6)              DENY OUT    Anywhere (v6)              # no ipmsg out

"#;

// `firewall-offline-cmd --list-all` (firewalld 1.3.3, the same printer as
// `firewall-cmd --list-all`) on a copy of the stock configuration after
//   --add-port=8080/tcp
// (the spaces after empty fields left out).
const FWD_CLOSED: &str = r#"public
  target: default
  icmp-block-inversion: no
  interfaces:
  sources:
  services: dhcpv6-client ssh
  ports: 8080/tcp
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
"#;

// `firewall-offline-cmd --list-all` (firewalld 1.3.3, the same printer as
// `firewall-cmd --list-all`) on a copy of the stock configuration after
//   --add-port=2425/udp
//   --add-port=2400-2500/tcp
//   --add-rich-rule='rule family="ipv4" source address="192.168.7.0/24" port port="2425" protocol="udp" reject'
//   --add-rich-rule='rule family="ipv4" port port="22" protocol="tcp" drop'
//   --add-rich-rule='rule family="ipv4" source address="10.0.0.0/8" accept'
// (the spaces after empty fields left out).
const FWD_RICH: &str = r#"public
  target: default
  icmp-block-inversion: no
  interfaces:
  sources:
  services: dhcpv6-client ssh
  ports: 2425/udp 2400-2500/tcp
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
	rule family="ipv4" source address="192.168.7.0/24" port port="2425" protocol="udp" reject
	rule family="ipv4" port port="22" protocol="tcp" drop
	rule family="ipv4" source address="10.0.0.0/8" accept
"#;

// `firewall-offline-cmd --list-all` (firewalld 1.3.3, the same printer as
// `firewall-cmd --list-all`) on a copy of the stock configuration after
//   --set-target=DROP
//   --add-port=2425/tcp
//   --add-interface=eth0
// (the spaces after empty fields left out).
const FWD_DROP: &str = r#"public (active)
  target: DROP
  icmp-block-inversion: no
  interfaces: eth0
  sources:
  services: dhcpv6-client ssh
  ports: 2425/tcp
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
"#;

// `firewall-offline-cmd --list-all` (firewalld 1.3.3, the same printer as
// `firewall-cmd --list-all`) on a copy of the stock configuration after
//   --new-service=ipmsg
//   --service=ipmsg --add-port=2425/udp
//   --service=ipmsg --add-port=2425/tcp
//   --add-service=ipmsg
//   --add-source-port=2425/udp
// (the spaces after empty fields left out).
const FWD_SERVICE: &str = r#"public
  target: default
  icmp-block-inversion: no
  interfaces:
  sources:
  services: dhcpv6-client ipmsg ssh
  ports:
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports: 2425/udp
  icmp-blocks:
  rich rules:
"#;

// `firewall-offline-cmd --list-all` (firewalld 1.3.3, the same printer as
// `firewall-cmd --list-all`) on a copy of the stock configuration after
//   (the stock block zone: --zone=block --list-all)
// (the spaces after empty fields left out).
const FWD_BLOCK_ZONE: &str = r#"block
  target: %%REJECT%%
  icmp-block-inversion: no
  interfaces:
  sources:
  services:
  ports:
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
"#;

#[test]
fn nft_port_drop_and_reject_but_not_other_ports() {
    let want = vec![
        nft(In, Udp, "table inet filter, chain input: udp dport 2425 drop"),
        nft(In, Tcp, "table inet filter, chain input: tcp dport 2425 reject"),
    ];
    assert_eq!(parse_nft_json(NFT_PORT, 2425).unwrap(), want);
    // The port is a parameter: on 22 only the ssh rule counts.
    assert_eq!(
        parse_nft_json(NFT_PORT, 22).unwrap(),
        vec![nft(In, Tcp, "table inet filter, chain input: tcp dport 22 drop")]
    );
    assert_eq!(parse_nft_json(NFT_PORT, 2426).unwrap(), vec![]);
}

#[test]
fn nft_sets_ranges_and_negations() {
    let want = vec![
        nft(In, Udp, "table inet filter, chain input: udp dport { 2425, 8080 } drop"),
        nft(In, Tcp, "table inet filter, chain input: tcp dport 2400-2500 counter drop"),
        nft(In, Tcp, "table inet filter, chain input: tcp dport != 22 reject with tcp reset"),
        nft(In, Udp, "table inet filter, chain input: udp dport 2425 drop"),
        nft(In, Udp, "table inet filter, chain input: udp dport @blocked drop"),
    ];
    assert_eq!(parse_nft_json(NFT_SETS, 2425).unwrap(), want);
    // 9000 is only in the named set (and not 22, so `tcp dport != 22` drops it too).
    let want = vec![
        nft(In, Udp, "table inet filter, chain input: udp dport != 2425 drop"),
        nft(In, Tcp, "table inet filter, chain input: tcp dport != 22 reject with tcp reset"),
        nft(In, Udp, "table inet filter, chain input: udp dport @blocked drop"),
    ];
    assert_eq!(parse_nft_json(NFT_SETS, 9000).unwrap(), want);
}

#[test]
fn nft_drop_policies_unless_the_port_is_accepted_first() {
    // `ct state established,related accept` and `iifname "lo" accept` do not
    // open the port; an accept of UDP leaves TCP to the policy; an accept of
    // both makes the later drops harmless; IPv6 tables and forward chains
    // are not Pigeon's.
    let want = vec![
        nft(In, Both, "table inet filter, chain input: policy drop"),
        nft(In, Tcp, "table ip partial, chain input: policy drop"),
    ];
    assert_eq!(parse_nft_json(NFT_POLICIES, 2425).unwrap(), want);
}

#[test]
fn nft_broadcast_interface_and_jumps() {
    let want = vec![
        block("nftables", In, Udp, true, "table inet filter, chain input: meta pkttype broadcast drop"),
        nft(In, Udp, "table inet filter, chain input: iifname \"eth0\" udp dport 2425 drop"),
        // Reached twice (from 10.0.0.0/8, and for all UDP): reported once.
        nft(
            In,
            Udp,
            "table inet filter, chain input (ip saddr 10.0.0.0/8 jump lan_in) → lan_in: udp dport 2425 reject with icmpx admin-prohibited",
        ),
        nft(In, Tcp, "table inet filter, chain input (tcp dport 2425 goto lan_tcp) → lan_tcp: drop"),
    ];
    assert_eq!(parse_nft_json(NFT_JUMPS, 2425).unwrap(), want);
}

#[test]
fn nft_output_and_whole_protocol_drops() {
    let want = vec![
        nft(Out, Udp, "table inet filter, chain output: udp sport 2425 drop"),
        nft(Out, Udp, "table inet filter, chain output: udp dport 2425 drop"),
        nft(Out, Udp, "table ip proto, chain output: ip protocol udp drop"),
        nft(In, Tcp, "table ip proto, chain input: meta l4proto tcp drop"),
        nft(In, Both, "table ip proto, chain input: drop"),
    ];
    assert_eq!(parse_nft_json(NFT_OUTPUT, 2425).unwrap(), want);
}

#[test]
fn nft_verdict_maps_and_named_interval_sets() {
    // `ct state vmap` decides nothing for new traffic; `daddr` and `oifname "lo"` drops are not Pigeon's.
    let via = "table inet fw, chain input (meta l4proto vmap { tcp : jump tcp_in, udp : jump udp_in })";
    let want = vec![
        nft(In, Tcp, &format!("{via} → tcp_in: th dport @ipmsg_ports drop")),
        nft(In, Udp, &format!("{via} → udp_in: udp dport vmap @port_verdicts")),
        nft(Out, Both, "table inet fw, chain output: th sport 2425 reject"),
    ];
    assert_eq!(parse_nft_json(NFT_VMAPS, 2425).unwrap(), want);
    // 22 is accepted by the map, 5000 only in the TCP set.
    assert_eq!(parse_nft_json(NFT_VMAPS, 22).unwrap(), vec![]);
    assert_eq!(
        parse_nft_json(NFT_VMAPS, 5000).unwrap(),
        vec![nft(In, Tcp, &format!("{via} → tcp_in: th dport @ipmsg_ports drop"))]
    );
}

#[test]
fn nft_reads_the_tables_of_iptables_nft() {
    // The ruleset of IPT_RULES as nft shows it: `xt` matches (conntrack,
    // multiport, pkttype) are opaque, so the multiport and pkttype rules
    // are only found by the iptables reader; the conntrack accept does not
    // open anything.
    let json = include_str!("testdata/iptables-nft.json");
    let want = vec![
        nft(In, Udp, "table ip filter, chain INPUT: udp dport 2425 counter drop"),
        nft(In, Udp, "table ip filter, chain INPUT: udp dport 2400-2500 counter drop"),
        nft(In, Tcp, "table ip filter, chain INPUT: tcp dport != 22 counter xt target REJECT"),
        nft(In, Udp, "table ip filter, chain INPUT: iifname \"eth0\" udp sport 2425 counter drop"),
        nft(
            In,
            Udp,
            "table ip filter, chain INPUT (ip saddr 10.0.0.0/8 counter jump LAN) → LAN: udp dport 2425 counter xt target REJECT",
        ),
        nft(In, Udp, "table ip filter, chain INPUT: meta l4proto udp xt match comment udp dport 2425 counter drop"),
        nft(In, Both, "table ip filter, chain INPUT: policy drop"),
        nft(Out, Udp, "table ip filter, chain OUTPUT: udp sport 2425 counter drop"),
    ];
    assert_eq!(parse_nft_json(json, 2425).unwrap(), want);
}

#[test]
fn nft_refuses_what_is_not_its_json() {
    assert!(parse_nft_json("Error: syntax error", 2425).is_err());
    assert!(parse_nft_json(r#"{"foo": []}"#, 2425).is_err());
    assert_eq!(parse_nft_json("", 2425).unwrap(), vec![]);
    let empty = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}]}"#;
    assert_eq!(parse_nft_json(empty, 2425).unwrap(), vec![]);
}

#[test]
fn iptables_rules_multiport_ranges_negations_and_a_user_chain() {
    let want = vec![
        ipt(In, Udp, "table filter, chain INPUT: -p udp -m udp --dport 2425 -j DROP"),
        ipt(In, Tcp, "table filter, chain INPUT: -p tcp -m multiport --dports 2425,2426 -j REJECT --reject-with icmp-port-unreachable"),
        ipt(In, Udp, "table filter, chain INPUT: -p udp -m udp --dport 2400:2500 -j DROP"),
        ipt(In, Tcp, "table filter, chain INPUT: -p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset"),
        ipt(In, Udp, "table filter, chain INPUT: -i eth0 -p udp -m udp --sport 2425 -j DROP"),
        block("iptables", In, Udp, true, "table filter, chain INPUT: -m pkttype --pkt-type broadcast -j DROP"),
        ipt(
            In,
            Udp,
            "table filter, chain INPUT (-s 10.0.0.0/8 -j LAN) → LAN: -p udp -m udp --dport 2425 -j REJECT --reject-with icmp-port-unreachable",
        ),
        ipt(In, Udp, "table filter, chain INPUT: -p udp -m comment --comment \"drop ipmsg\" -m udp --dport 2425 -j DROP"),
        ipt(In, Both, "table filter, chain INPUT: policy DROP"),
        ipt(Out, Udp, "table filter, chain OUTPUT: -p udp -m udp --sport 2425 -j DROP"),
    ];
    assert_eq!(parse_iptables_save(IPT_RULES, 2425), want);
}

#[test]
fn iptables_accepts_before_drops_and_policies() {
    // Both protocols accepted on input before the drops; on output only UDP.
    assert_eq!(parse_iptables_save(IPT_ACCEPTS, 2425), vec![ipt(Out, Tcp, "table filter, chain OUTPUT: policy DROP")]);
}

#[test]
fn iptables_follows_ufw_chains() {
    // ufw's own chains (ufw1 below): the user rules two jumps down, the
    // broadcast rule that skips to the policy, the policy; not the
    // conditional drops (invalid state, not-local, 10.0.0.5).
    let save = include_str!("testdata/ufw.iptables-save");
    let user = "table filter, chain INPUT → ufw-before-input → ufw-user-input";
    let want = vec![
        ipt(In, Udp, &format!("{user}: -p udp -m udp --dport 2425 -j DROP")),
        ipt(In, Tcp, &format!("{user}: -i eth0 -p tcp -m multiport --dports 2400:2500 -j REJECT --reject-with tcp-reset")),
        ipt(In, Udp, &format!("{user}: -p udp -m udp --sport 2425 -j DROP")),
        block(
            "iptables",
            In,
            Udp,
            true,
            "table filter, chain INPUT → ufw-after-input (-m addrtype --dst-type BROADCAST -j ufw-skip-to-policy-input) → ufw-skip-to-policy-input: -j DROP",
        ),
        ipt(In, Both, "table filter, chain INPUT: policy DROP"),
        ipt(Out, Tcp, "table filter, chain OUTPUT → ufw-before-output → ufw-user-output: -p tcp -m tcp --dport 2425 -j DROP"),
    ];
    assert_eq!(parse_iptables_save(save, 2425), want);
}

#[test]
fn iptables_counters_old_negation_goto_and_other_tables() {
    let save = "\
*raw
:PREROUTING ACCEPT [10:800]
:OUTPUT ACCEPT [10:800]
[3:120] -A PREROUTING -p udp -m udp --dport 2425 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
[0:0] -A OUTPUT -p udp -m udp --dport 2425 -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:TCPIN - [0:0]
[0:0] -A INPUT -p udp -m udp --dport ! 2425 -j DROP
[0:0] -A INPUT -s 192.168.1.7/32 -j DROP
[0:0] -A INPUT -p all -m limit --limit 5/sec -j DROP
[0:0] -A INPUT -p tcp -g TCPIN
[0:0] -A INPUT -p tcp -j DROP
[0:0] -A TCPIN -p tcp -m tcp --dport 2425 -j ACCEPT
[0:0] -A OUTPUT -o lo -j DROP
[0:0] -A OUTPUT -p udp -m addrtype --dst-type BROADCAST -j DROP
COMMIT
";
    let want = vec![
        ipt(In, Udp, "table raw, chain PREROUTING: -p udp -m udp --dport 2425 -j DROP"),
        block(
            "iptables",
            Out,
            Udp,
            true,
            "table filter, chain OUTPUT: -p udp -m addrtype --dst-type BROADCAST -j DROP",
        ),
    ];
    assert_eq!(parse_iptables_save(save, 2425), want);
}

#[test]
fn ufw_denies_and_default_deny() {
    let want = vec![
        ufw(In, Udp, "2425/udp DENY IN Anywhere"),
        ufw(In, Tcp, "2400:2500/tcp on eth0 REJECT IN Anywhere"),
        ufw(In, Udp, "Anywhere DENY IN 2425/udp"),
        ufw(Out, Tcp, "2425/tcp DENY OUT Anywhere"),
        ufw(In, Both, "Default: deny (incoming)"),
    ];
    assert_eq!(parse_ufw_status(UFW_DENIES, 2425), want);
    // As printed, with the columns padded by spaces.
    let padded: String = UFW_DENIES.lines().map(|l| format!("{l:<40}\n")).collect();
    assert_eq!(parse_ufw_status(&padded, 2425), want);
    assert_eq!(
        parse_ufw_status(UFW_DENIES, 23),
        vec![ufw(In, Tcp, "23/tcp DENY IN Anywhere"), ufw(In, Both, "Default: deny (incoming)")]
    );
}

#[test]
fn ufw_an_allow_before_a_deny_wins() {
    let want = vec![
        ufw(In, Tcp, "2425 DENY IN Anywhere"),
        ufw(In, Tcp, "Default: deny (incoming)"),
        ufw(Out, Tcp, "Default: deny (outgoing)"),
    ];
    assert_eq!(parse_ufw_status(UFW_ALLOW_FIRST, 2425), want);
}

#[test]
fn ufw_lists_ranges_comments_and_inactive() {
    assert_eq!(parse_ufw_status(UFW_RANGES, 2425), vec![ufw(Out, Udp, "2425/udp DENY OUT Anywhere # no ipmsg out")]);
    // 2427 is in the TCP range but not in the UDP list.
    assert_eq!(parse_ufw_status(UFW_RANGES, 2427), vec![ufw(In, Udp, "Default: reject (incoming)")]);
    assert_eq!(parse_ufw_status("Status: inactive\n", 2425), vec![]);
    // An application profile's ports are not shown: its row is left out.
    let app = "Status: active\n\nTo Action From\n-- ------ ----\nIPMsg ALLOW IN Anywhere\n2425 DENY IN Anywhere\n";
    assert_eq!(parse_ufw_status(app, 2425), vec![ufw(In, Both, "2425 DENY IN Anywhere")]);
}

#[test]
fn firewalld_default_zone_without_the_port() {
    assert_eq!(
        parse_firewalld(FWD_CLOSED, 2425),
        vec![fwd(Both, "zone public, target default: 2425/udp and 2425/tcp not open")]
    );
    assert_eq!(parse_firewalld(FWD_CLOSED, 8080), vec![fwd(Udp, "zone public, target default: 8080/udp not open")]);
    assert_eq!(
        parse_firewalld(FWD_BLOCK_ZONE, 2425),
        vec![fwd(Both, "zone block, target %%REJECT%%: 2425/udp and 2425/tcp not open")]
    );
}

#[test]
fn firewalld_ports_ranges_and_rich_rules() {
    let want = vec![fwd(
        Udp,
        "zone public: rule family=\"ipv4\" source address=\"192.168.7.0/24\" port port=\"2425\" protocol=\"udp\" reject",
    )];
    assert_eq!(parse_firewalld(FWD_RICH, 2425), want);
}

#[test]
fn firewalld_drop_target_and_active_zones() {
    assert_eq!(parse_firewalld(FWD_DROP, 2425), vec![fwd(Udp, "zone public, target DROP: 2425/udp not open")]);
    // Of several zones only the active ones count.
    let zones = format!("{}\n{}", FWD_CLOSED.replacen("public", "home", 1), FWD_DROP);
    assert_eq!(parse_firewalld(&zones, 2425), vec![fwd(Udp, "zone public, target DROP: 2425/udp not open")]);
}

#[test]
fn firewalld_services_open_what_their_definitions_say() {
    // Without the definitions only the source port counts.
    assert_eq!(parse_firewalld(FWD_SERVICE, 2425), vec![fwd(Tcp, "zone public, target default: 2425/tcp not open")]);
    // The definition firewall-offline-cmd wrote for `ipmsg`.
    let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service>\n  <port port=\"2425\" protocol=\"udp\"/>\n  <port port=\"2425\" protocol=\"tcp\"/>\n</service>\n";
    let (ports, includes) = service_xml(xml);
    assert_eq!((ports.clone(), includes), (vec!["2425/udp".to_string(), "2425/tcp".to_string()], vec![]));
    let lookup = |name: &str| if name == "ipmsg" { ports.clone() } else { Vec::new() };
    assert_eq!(parse_firewalld_with_services(FWD_SERVICE, 2425, &lookup), vec![]);
    // The shipped definitions put the protocol first, and include others.
    let stock = "<service>\n  <short>X</short>\n  <port protocol=\"tcp\" port=\"2400-2500\"/>\n  <source-port protocol='udp' port='2425'/>\n  <protocol value=\"udp\"/>\n  <include service=\"ssh\"/>\n</service>";
    let want = (vec!["2400-2500/tcp".to_string(), "2425/udp".to_string(), "udp".to_string()], vec!["ssh".to_string()]);
    assert_eq!(service_xml(stock), want);
}

fn sh(script: &str, timeout: Duration) -> Result<Ran, String> {
    run_tool_within(Path::new("/bin/sh"), &["-c", script], timeout)
}

#[test]
fn tools_run_bounded_and_their_failures_are_said_briefly() {
    let started = Instant::now();
    let slow = sh("sleep 10", Duration::from_millis(300));
    assert_eq!(slow.err().as_deref(), Some("gave no answer within 0.3 s"));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // More output than a pipe holds does not stall the tool.
    let big = sh("head -c 300000 /dev/zero | tr '\\0' a", Duration::from_secs(5)).unwrap();
    assert_eq!(big.stdout.len(), 300_000);
    let why = |script: &str| sh(script, Duration::from_secs(5)).unwrap().why();
    assert_eq!(
        why("echo 'netlink: Error: cache initialization failed: Operation not permitted' >&2; exit 1"),
        "needs root"
    );
    assert_eq!(why("echo 'ERROR: You need to be root to run this script' >&2; exit 1"), "needs root");
    assert_eq!(why("echo '  boom  ' >&2; exit 3"), "boom");
    assert_eq!(why("exit 3"), "exited with status 3");
    assert_eq!(sh("echo running", Duration::from_secs(5)).unwrap().stdout_if_ok().unwrap(), "running\n");
    assert!(find_tool("sh").is_some());
    assert!(find_tool("no-such-firewall-tool").is_none());
}

fn ufw(direction: Direction, proto: Proto, rule: &str) -> Block {
    block("ufw", direction, proto, false, rule)
}

fn fwd(proto: Proto, rule: &str) -> Block {
    block("firewalld", In, proto, false, rule)
}
