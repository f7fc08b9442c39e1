package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/netsetup"
)

// uninstallNodeMain runs `podcreds uninstall-node`: it removes the IMDS
// redirect, the per-source connection cap and the interface that the
// agent's -link-setup made, and the IMDS token key file, giving the node back
// as it was before install. The agent never removes them itself
// (pods would reach the node's real IMDS whenever it is down), so this is the
// operator's step after deleting the DaemonSet, or a pre-delete hook's. It
// needs CAP_NET_ADMIN in the node's network namespace.
func uninstallNodeMain(args []string) int {
	return uninstallNode(args, os.Stdout, os.Stderr, netsetup.Uninstall, agent.RemoveIMDSKey)
}

func uninstallNode(args []string, stdout, stderr io.Writer, uninstall func(context.Context, string) (*netsetup.Uninstalled, error), removeKey func(string) (bool, error)) int {
	fs := flag.NewFlagSet("podcreds uninstall-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("link-interface", netsetup.DefaultInterface, "the interface the agent's -link-setup created")
	keyFile := fs.String("imds-key-file", "", "also delete the IMDS token key the agent's -imds-key-file kept on the node (deploy/uninstall/ passes the DaemonSet's /var/lib/podcreds/imds-token.key); empty: leave files alone")
	hold := fs.Bool("hold", false, "after removing, wait for SIGTERM instead of exiting (to run as a DaemonSet's container: deploy/uninstall/)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: podcreds uninstall-node [flags]\n\n"+
			"Removes the IMDS redirect and the per-source connection cap (nftables tables ip and\n"+
			"ip6 "+netsetup.TableName+") and the interface carrying the agent's addresses, which the agent\n"+
			"leaves in place when it exits so that pods never reach the node's real IMDS while it is\n"+
			"down, and with -imds-key-file the IMDS token key. Run it once the agent is gone for good:\n"+
			"afterwards pods reach the node's IMDS again. Needs CAP_NET_ADMIN in the node's network\n"+
			"namespace.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "podcreds uninstall-node: unexpected arguments %q\n", fs.Args())
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := uninstall(ctx, *iface)
	removedSomething := false
	if res != nil {
		if res.Tables {
			fmt.Fprintf(stdout, "removed the IMDS redirect and the connection cap (nftables tables ip and ip6 %s)\n", netsetup.TableName)
		}
		if res.Interface != "" {
			fmt.Fprintf(stdout, "removed interface %s\n", res.Interface)
		}
		removedSomething = res.Tables || res.Interface != ""
	}
	// The key goes only once the redirect is gone: a node left half
	// uninstalled can still run an agent that serves pods' IMDSv2 tokens.
	if err == nil && *keyFile != "" {
		var removed bool
		if removed, err = removeKey(*keyFile); removed {
			fmt.Fprintf(stdout, "removed the IMDS token key %s\n", *keyFile)
			removedSomething = true
		}
	}
	if err == nil && !removedSomething {
		what := "no nftables tables " + netsetup.TableName + " and no interface " + *iface
		if *keyFile != "" {
			what += " and no IMDS token key " + *keyFile
		}
		fmt.Fprintln(stdout, "nothing to remove: "+what)
	}
	if err != nil {
		fmt.Fprintf(stderr, "podcreds uninstall-node: %v\n", err)
		return 1
	}
	if *hold {
		<-signalContext().Done()
	}
	return 0
}
