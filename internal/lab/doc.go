// Package lab builds real-kernel path-MTU labs from Go tests: three network
// namespaces (client, router, server) joined by veth pairs, a router that
// misbehaves the way real networks do, real servers (nginx, openssl
// s_server, a Go crypto/tls server) in the server namespace, and client code
// run inside the client namespace. It is Linux-only and needs root and the
// tools ip, nft, ethtool, nginx, openssl, curl, apache2, haproxy,
// gnutls-serv, lighttpd and squid; [Require] skips a test without them, or
// fails it when CI=true.
//
// go test -short means "no lab": [Require] (and so [New]) skips every lab
// test under -short, CI=true or not, and the test binary does not start
// generating the lab's certificates. The fast suite stays fast anywhere;
// run the lab without -short.
//
// # Topology
//
//	 PREFIXc (client)          PREFIXr (router)                 PREFIXs (server)
//	+----------------+      +------------------------+      +------------------+
//	|            c0  |------|  r0                r1  |------|  s0              |
//	| 198.18.0.2/24  | veth | 198.18.0.1  198.18.1.1 | veth | 198.18.1.2/24    |
//	| fd00:198:18::2 |      | fd00:198:18::1         |      | fd00:198:18:1::2 |
//	|                |      |      fd00:198:18:1::1  |      |                  |
//	| clients:       |      | forwarding, nft rules  |      | nginx :443 :8443 |
//	|  re-exec'd test|      | of the scenario        |      | go    :9443      |
//	|  binary, curl, |      |                        |      | s_server :20000+ |
//	|  openssl,      |      |                        |      | interop servers: |
//	|  chromium      |      |                        |      | :10443..:13443   |
//	|                |      |                        |      | diagpage :8080   |
//	+----------------+      +------------------------+      +------------------+
//	     default route via the router on both ends; MTU 1500 on every veth
//
// Addresses come only from 198.18.0.0/15 and fd00:198:18::/48. Every veth
// has TSO, GSO and GRO turned off, so that a packet in the lab is a packet on
// a wire (with offloads on, a 1500-byte ClientHello crosses a veth as one
// super-packet and the router drops more than a real link would). Neighbour
// entries are static, IPv6 duplicate address detection is off, the kernel's
// per-destination TCP metrics are not saved (every dial is cold), and
// net.ipv4.tcp_mtu_probing is 0 in the client namespace unless a test sets
// it.
//
// Each test binary run picks a random prefix ("fl" and five base-36
// characters); each lab adds a sequence number, so its namespaces are named
// like fl3k9zq1c, fl3k9zq1r and fl3k9zq1s. A lab removes exactly what it
// created: its own processes, then whatever still runs inside its own
// namespaces, then the namespaces (the veths go with them). Teardown runs
// from t.Cleanup, from Close, on SIGINT and SIGTERM, and shortly before the
// test binary's -test.timeout would kill it.
//
// # Scenarios
//
// N is Config.MTU (1400 unless set): 576..1500 for blackhole and reset,
// which only match packet lengths in nft, 1280..1500 for pmtud-ok,
// mtu-icmp-blocked and fragments-dropped, which set real link and route
// MTUs (IPv6 links carry at least 1280). Below 1280, an IPv6 black hole
// is artificial: no conforming IPv6 link drops such packets, though a
// broken box or tunnel may, and it tests the clamps all the way down.
//
//   - healthy: nothing is dropped.
//   - pmtud-ok: the router's links have MTU N and the router sends ICMP
//     "fragmentation needed" / ICMPv6 "packet too big": path-MTU discovery
//     works and the kernel copes by itself. The router's addresses sit on
//     bridges br0/br1 of MTU N whose only ports are r0/r1 (MTU 1500): a
//     veth drops any received frame over its own MTU, silently, so MTU N on
//     r0/r1 themselves would never reach the router's forwarding code and
//     its ICMP; behind the bridges, a packet over N is refused on egress,
//     as by a router in front of a tunnel.
//   - mtu-icmp-blocked: the same links of MTU N, but the router's ICMP
//     frag-needed and ICMPv6 packet-too-big are dropped in an nft output
//     chain: a classic PMTUD black hole, in both directions.
//   - fragments-dropped: the router's route towards the server has MTU N
//     and ICMP works, the client clears DF (net.ipv4.ip_no_pmtu_disc=1 in
//     the client namespace for curl and openssl; Go clients use [ClearDF]
//     as their net.Dialer.Control), so the router fragments the client's
//     large IPv4 packets, and a firewall in the server namespace drops
//     every IP fragment ("ip frag-off & 0x3fff != 0", IPv6 fragment
//     headers). Only the client-to-server direction is broken, and only on
//     IPv4: IPv6 routers never fragment, they send packet-too-big, which
//     the client's TCP obeys even with IPV6_PMTUDISC_DONT. The way back
//     keeps MTU 1500 on purpose: with N there too, the server would learn
//     the path MTU from ICMP on its first large reply and announce MSS
//     N−40 in its SYN-ACKs for ten minutes, healing the client's direction
//     of every later connection (a Linux server does this: measured in this
//     lab with N on both of the router's routes).
//   - blackhole: the router silently drops every forwarded packet longer
//     than N bytes, with no ICMP, in the Config.Direction given: both
//     (default), upstream (client to server only) or downstream (server to
//     client only).
//   - reset: the router answers every forwarded TCP packet longer than N
//     bytes with a TCP reset instead of forwarding it (nft "reject with tcp
//     reset", from the packet's destination address to its sender), as a
//     firewall or intrusion-prevention box that refuses large segments
//     does; other protocols over N are dropped. Config.Direction as for
//     blackhole. Upstream, the client's hello is refused and the client is
//     reset at once ("connection reset by peer"). The server keeps its side
//     of that connection, with the hello's tail, waiting for the head:
//     nothing resets it, as the client's kernel answers the server's SACK
//     with no reset (measured on Linux 6.18). openssl s_server, which
//     serves one connection at a time, then hangs on it, and no redial can
//     reach it: Reset is therefore not in [Scenarios], the main matrix, and
//     TestLabReset runs it against nginx. Downstream, the reset goes to the
//     server, and the client is left as by a black hole: the reply's tail
//     arrives out of order, its head never does, and nothing resets the
//     client (its SACK, a pure ACK that finds only the server's listening
//     socket, draws no reset; its FIN, at close, does).
//   - split-intolerant: an inline TLS inspector that judges a flow by its
//     first client data segment and cannot wait for the rest of a
//     ClientHello. It models AWS Network Firewall (Suricata 6) with an SNI
//     allow-list, which logged "tls.version UNDETERMINED" for a hello in
//     two segments and dropped the flow (hashicorp/terraform-provider-aws
//     #39110, #39125; a rule fix was ssl_state:client_hello,
//     aws/amazon-vpc-cni-k8s#3311; still reported after Suricata 7,
//     aws/eks-pod-identity-agent#87, dadrian/tldr.fail#23), HAProxy
//     evaluating req.ssl_sni before the whole hello arrived
//     (haproxy/haproxy#3148), and the FortiGate boxes Chrome's CECPQ2
//     experiment found. When a flow's first client data segment starts a
//     TLS handshake record (0x16 0x03) longer than the segment carries, the
//     segment is forwarded (the server gets it) and the flow is
//     condemned: with Config.Reject RejectDrop (the default) every later
//     packet, both ways, is dropped; with RejectReset the router answers
//     the client's next packet (the hello's tail) with a TCP reset and
//     drops the rest. A hello that fits one segment passes untouched,
//     whatever its size, and so does every flow whose first data is not a
//     split handshake record. It is the opposite of a black hole, where
//     the full-size head is lost and the small tail arrives: here the head
//     passes and the tail is lost, and a smaller MSS makes it worse; only
//     a hello that fits one segment gets through. "Record longer than
//     segment" compares two packet fields, which nft cannot do, so the
//     comparison is tabulated in a set of concatenated ranges: for each
//     TCP header length (tcp doff) and IP length the lab can carry, the
//     record lengths (@ih,24,16) that do not fit the payload (ip length −
//     20 − 4·doff on IPv4, ip6 length − 4·doff on IPv6). IPv4 packets with
//     IP options and IPv6 packets with extension headers are not judged,
//     nor a first segment of under 5 bytes (it shows no record length).
//   - size-intolerant: a box that refuses a flow whose first client data
//     segment starts a TLS handshake record of more than
//     Config.HelloLimit bytes (its 5-byte header included; 1400 unless
//     set), however the hello is segmented: the record's length field is
//     in its first bytes. The segment is not forwarded; with RejectReset
//     (the default) the client gets a TCP reset, with RejectDrop silence;
//     later packets are dropped. It models intrusion-prevention signatures
//     that reset on what a large hello carries, such as Palo Alto's threat
//     signature 58033 on signature_algorithms_cert (golang/go#79626; F5
//     and Kaseya named in golang/go#81199): the content that trips them
//     grows with the hello, so the lab draws the line at a size. No MSS
//     helps; only a smaller hello does.
//   - squid: a real TLS-inspecting proxy, Squid's SslBump (Debian's
//     squid-openssl, 5.7 measured) in the router namespace, as
//     enterprises deploy it transparently: the router redirects the
//     client's flows to TCP port 443 ([SquidInterceptedPort]) on any
//     address, IPv4 and IPv6 (nft nat prerouting "redirect"), to Squid's
//     "https_port ... intercept ssl-bump" ([SquidPort]) on its
//     client-side addresses; Squid accepts the connection itself
//     (its kernel acknowledges the client's hello), peeks at the whole
//     ClientHello ("ssl_bump peek step1"), looks the hello's server name
//     up, then opens its own connection from the router to the client's
//     original destination and splices the two ("ssl_bump splice all":
//     the client completes its handshake with the real server; access.log
//     says TCP_TUNNEL, ORIGINAL_DST). Squid resolves through the lab's
//     own DNS server on the router's loopback (a Go UDP responder:
//     ServerName and every name under it have the server's addresses; PTR
//     and other names get no record at once). Config.Squid adds what real
//     deployments do: Block, an SNI blocklist ("acl ssl::server_name",
//     "ssl_bump terminate": Squid closes the connection, a FIN with no
//     alert, about 5 ms after the hello, and never reaches the server);
//     ResolverDelay, a slow resolver: Squid looks each name up once, holds
//     every connection for that name until the answer comes, and then
//     opens all their server connections within a millisecond (measured
//     with tcpdump: four connections of one dial, begun 0, 0.25, 0.5 and
//     0.75 s into a 0.9 s wait, reached the server within 0.3 ms of each
//     other), and caches the answer for at least a minute
//     (negative_dns_ttl), so only a name's first connections wait; and
//     FarMTU, a black hole beyond Squid (router↔server, both ways, no
//     ICMP), which the client cannot see: Squid has acknowledged its
//     hello. Squid runs as its own process under the lab (squid -N, its
//     configuration, CA, logs and pid file under Dir()/squid, as user
//     proxy, shared memory named after the lab's prefix), never as a
//     system service; [Lab.SquidAccessLog], [Lab.SquidCacheLog] and
//     [Lab.ResolverLog] tell what it saw. Not in [Scenarios]: the client
//     talks to Squid, not to the path the matrix asserts.
//
// [Lab.StartSilentBox] adds, to any scenario, the box Squid's FarMTU cannot
// model: a transparent relay in the router that acknowledges for the
// server and whose far connection carries the client's MSS, so that a
// black hole beyond it is invisible to TCP_INFO and yet a client's clamp
// gets through (IPv4; its own nft table, inet fitbox). Its far drops are
// counted where packets arrive (router input, server prerouting): an
// output chain would see TCP's GSO packets, several segments long.
//
// The middleboxes keep their verdict in the flow's conntrack mark (0
// undecided, 1 passed, 2 condemned, 3 reset sent). Like reset, they leave
// the server a connection waiting for the rest of a hello, and they refuse
// flows by content, not packet size: they are not in [Scenarios], and
// TestLabMiddleboxes runs them against nginx, after checking each box with
// fake hello records of chosen sizes ([Lab.SendRecord]).
//
// [Config.Lost] tells which packet sizes a scenario loses for good, so a
// test can assert only what is true: e.g. curl's ~570-byte ClientHello
// crosses every lab at N=1400, and only a large server flight (the long
// chain on :8443) breaks it. [Config.Resets] tells which of them reset
// the client rather than leave it waiting. [Config.Refuses] tells which
// hellos a middlebox condemns. [Lab.Drops] reads the router's counters of
// dropped and reset packets and condemned flows.
//
// # Clients and servers
//
// Go code runs in a namespace by re-executing the test binary under
// "ip netns exec" with an environment variable naming a function registered
// with [RegisterClient] or [RegisterServer]; the test package's TestMain
// must call [Main]. All of net/http's goroutines are then in the namespace
// too. [Lab.RunClient] returns the client function's result as JSON;
// [Lab.Dial] runs the package's own clients (stock crypto/tls, also under
// GODEBUG=tlsmlkem=0, the fitshake Dialer, TCPDialer under crypto/tls,
// net/http over TCPDialer), DialArgs.Runs
// times: cold each time (a new dialer and pmtu.Cache per run), or with
// DialArgs.ShareCache one dialer and cache for all runs, as in a
// long-lived process. To add one:
//
//	func init() {
//		lab.RegisterClient("my-client", func(ctx context.Context, args json.RawMessage) (any, error) {
//			var a myArgs
//			if err := json.Unmarshal(args, &a); err != nil {
//				return nil, err
//			}
//			return myResult{...}, nil // JSON-encoded back to the test
//		})
//	}
//
//	raw, err := l.RunClient(ctx, "my-client", myArgs{Addr: l.Addr(lab.IPv4, lab.PortNginxSmall)})
//
// A lab test, in a package whose TestMain calls [Main]:
//
//	func TestMine(t *testing.T) {
//		l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: lab.Downstream})
//		if _, err := l.StartNginx(); err != nil {
//			t.Fatal(err)
//		}
//		pki, err := l.PKI()
//		if err != nil {
//			t.Fatal(err)
//		}
//		res, err := l.Dial(context.Background(), lab.FitshakeDialer, lab.DialArgs{
//			Addr: l.Addr(lab.IPv6, lab.PortNginxLong), CAFile: pki.CAFile})
//		if err != nil || !res.Runs[0].OK {
//			t.Fatalf("%v %+v", err, res)
//		}
//		t.Log(res.Runs[0].Report) // MSS, attempts, outcomes
//	}
//
// [Lab.StartNginx] runs nginx (TLS 1.2 and 1.3, HTTP/2) with its own prefix,
// configuration and pid file in the lab's directory: a small ECDSA
// certificate on :443 and an RSA-4096 leaf with two RSA-4096 intermediates
// (a server flight over 4 KB) on :8443. [Lab.StartOpenSSL] runs openssl
// s_server -WWW serving a small file at [OpenSSLPath] (-www's status page
// is several kilobytes: a downstream black hole would eat the response, not
// the handshake); it serves one connection at a time (start one per
// client). [Lab.StartGoServer] runs a Go crypto/tls + net/http server on
// :9443. [Lab.StartRecordServer] runs, on :9444, a server that reads one
// TLS record per connection and says how much arrived, for
// [Lab.SendRecord]'s fake hellos. The certificates are generated once per
// test binary run and are verified by every client against the lab's CA.
//
// # Real servers
//
// [RealServers] is the interop matrix: nginx, apache2 (:10443, mod_ssl and
// mod_http2, apache2 -X with its own configuration), haproxy (:11443, TLS
// termination answering with "http-request return"), gnutls-serv --http
// (:12443), lighttpd (:13443, mod_openssl), openssl s_server held to TLS
// 1.2 with ECDSA P-256, ECDSA P-384 and RSA-2048 certificates, held to TLS
// 1.3 with P-256 or P-384 as its only group, and without ALPN, and the Go
// server. [Lab.StartRealServers] starts the long-lived ones;
// [Lab.Endpoint] gives a client its address (for an s_server variant, a
// new s_server of its own). Each runs in the foreground with its
// configuration, pid file and logs under Dir(), never the system's.
package lab
