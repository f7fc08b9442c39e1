// Package netsetup gives the node the addresses the agent listens on, caps
// each source's connections to them in the kernel and, for the
// IMDS-compatible endpoint, steers pods' instance-metadata traffic to it.
// The agent calls it at start (--link-setup) instead of asking operators to
// configure every node by hand.
//
// # The link
//
// Ensure keeps one interface (default podcreds0) carrying exactly the
// agent's link-local addresses: 169.254.170.23/32 and 169.254.170.2/32, plus
// fd00:ec2::23/128 when the node has IPv6 on. It is a dummy device, as
// kube-proxy's kube-ipvs0 and NodeLocal DNSCache's nodelocaldns are: a device
// that only holds addresses, so the kernel delivers packets for them locally
// and never sends anything out of it. On a kernel built without the dummy
// driver (some minimal VM kernels) it makes an ifb device instead, which
// behaves the same for this purpose; Result.Kind says which. Running Ensure
// again, after a restart or a crash, leaves exactly one interface with
// exactly those addresses: missing ones are added, any other address on that
// interface is removed (the interface is podcreds' own), and the kernel's
// automatic IPv6 link-local address is turned off on it. An interface of that
// name that is neither dummy nor ifb belongs to someone else: Ensure refuses
// to touch it.
//
// The agent leaves the interface and its addresses in place when it exits, on
// purpose. While the agent restarts, a pod's request to 169.254.170.23 is then
// refused at once by the node's own kernel (the SDK retries and succeeds when
// the new agent is up a moment later). Without the addresses it would follow
// the pod's default route off the node, carrying the pod's projected token in
// its Authorization header. Uninstall (podcreds uninstall-node) removes the
// interface, once the agent is gone for good.
//
// # IMDS
//
// With IMDS set, Ensure installs an nftables table of its own, "ip podcreds",
// through netlink (the agent image has no iptables or nft binary; the same
// table holds the connection cap below):
//
//	table ip podcreds {
//		chain prerouting {
//			type nat hook prerouting priority dstnat - 10; policy accept;
//			iifname "veth*" jump imds
//			iifname "cali*" jump imds
//			...
//		}
//		chain imds {
//			ip daddr 169.254.169.254 tcp dport 80 dnat to 169.254.170.23:8169
//		}
//	}
//
// Only packets that arrive on a pod interface are redirected. The node's own
// processes (and hostNetwork pods) reach 169.254.169.254 through the output
// path, which this table does not hook, so they keep talking to the real
// instance metadata service. The table is replaced atomically in one netlink
// transaction, so a restart (or a crash and a restart) leaves exactly one
// jump per pattern and one DNAT rule, and there is no moment without the
// rule while the new one is installed. It coexists with iptables, legacy or
// nft-based (kube-proxy, CNI plugins): each has its own table on the same
// hook, and this chain's priority runs it just before iptables' nat
// PREROUTING. List it with `nft list table ip podcreds`.
//
// The table stays when the agent exits, stops or crashes: pods' IMDS requests
// are then redirected to a port nobody serves on the node's own address, and
// the kernel refuses them at once. No pod reaches the node's real IMDS (and
// with it the node's instance role) because the agent is absent; SDKs that
// fall through from a refused container endpoint to IMDS meet the same
// refusal. Only Uninstall (podcreds uninstall-node, an explicit operator step)
// deletes the table and gives pods back the path to the real IMDS. Keep the
// instances at IMDSv2-required with a hop limit of 1 all the same: it also
// covers pods on interfaces no pattern names.
//
// IPv6: EC2 also serves IMDS at [fd00:ec2::254] when the instance's metadata
// options enable it (HttpProtocolIpv6, off by default). The agent's IMDS
// endpoint is IPv4, so on a network namespace with IPv6 Ensure installs a
// second table, "ip6 podcreds", that drops pods' packets to that address
// (same interface patterns, prerouting hook, so the node's own traffic is
// untouched), in the same netlink transaction as the redirect. It too stays
// when the agent exits; Uninstall removes both.
//
// # Per-source connection cap
//
// With ConnCap set, Ensure also puts into those tables (ip, and ip6 for IPv6
// listeners on a namespace with IPv6) a filter chain on the input hook that
// refuses a source address's new connection to the agent once that address
// already has Max connections to it:
//
//	table ip podcreds {
//		set conncap_sources {
//			type ipv4_addr
//			size 65535
//			flags dynamic
//		}
//		chain conncap {
//			type filter hook input priority filter; policy accept;
//			ip daddr 169.254.170.23 tcp dport 80 tcp flags syn / fin,syn,rst,ack add @conncap_sources { ip saddr ct count over 32 } reject with tcp reset
//			...one rule per listener
//		}
//	}
//
// The count is conntrack's: per source address, the connections to any of
// the listeners that are not closed (TIME_WAIT no longer counts), the new
// one included. A SYN past the cap is answered with a TCP reset by the
// kernel, so a pod hoarding connections costs the agent nothing for each
// refused one (the agent's own per-address cap would accept it, wake up and
// reset it). The input hook sees a connection after the IMDS redirect's
// DNAT, with the pod's source address, so the IMDS listener is counted per
// pod like the others. The agent's user-space cap stays as the second line:
// for listeners the rule does not cover (a host name) and for kernels that
// cannot count. Ensure installs the cap in the same netlink transaction as
// the redirect; if the kernel refuses it (no nf_conntrack or nft_connlimit,
// nftables unusable), it installs the rest without it and says why in
// Result.ConnCapErr rather than failing, since the agent still caps
// connections itself. Replacing the table on a restart starts the counts
// afresh: connections opened before it are not counted (the agent's own cap
// still sees them). The cap stays when the agent exits, with the redirect, and
// Uninstall removes it with the tables. InstallConnCap installs the same
// rules alone in tables of another name, for measuring them
// (bench/hotpath).
//
// # Pod interface names
//
// Patterns name the interfaces on which pods' packets reach the node's IP
// layer, in iptables' syntax: a trailing "+" matches any suffix ("*" is
// accepted too). For a routed plugin that is the node side of each pod's
// veth; for a bridge-based one it is the bridge, not the veth.
// DefaultPodInterfaces covers the common CNI plugins:
//
//	veth+  routed veth pairs: the CNI ptp plugin, kindnet and others
//	cni+   the CNI bridge plugin's default bridge, cni0 (Flannel uses it too)
//	cali+  Calico
//	eni+   the AWS VPC CNI (EKS)
//	lxc+   Cilium
//	gke+   GKE
//	azv+   Azure CNI
//
// Other bridges (docker0, weave, kube-bridge, ...) and plugins that name
// pod interfaces after the pod (Antrea, OVN-Kubernetes) need their names
// listed. A dataplane that forwards pod traffic in eBPF without the
// netfilter hooks (Cilium with eBPF host routing, for one) never meets this
// rule at all. The container-credentials endpoints need no redirect and work
// with every plugin.
package netsetup
