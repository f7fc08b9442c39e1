package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Stamped by `make build` (and the image builds) with
// -ldflags "-X main.version=... -X main.commit=...". A plain `go build` or
// `go install` leaves them empty and buildInfo falls back to what the Go
// toolchain recorded: the module version and the VCS revision.
var (
	version string
	commit  string
)

// buildInfo says which podcreds this is.
type buildInfo struct {
	Version   string // a git describe, a module version, or "unknown"
	Commit    string // the full revision, "+dirty" when built from a modified tree; or "unknown"
	GoVersion string
}

// currentBuild reads the stamped values, falling back to the build
// information the Go toolchain embeds in every binary.
func currentBuild() buildInfo {
	return resolveBuild(version, commit, debug.ReadBuildInfo)
}

// resolveBuild prefers the linker-stamped version and commit and fills what
// is missing from read (runtime/debug.ReadBuildInfo).
func resolveBuild(stampedVersion, stampedCommit string, read func() (*debug.BuildInfo, bool)) buildInfo {
	b := buildInfo{Version: stampedVersion, Commit: stampedCommit, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "+dirty"
			}
			b.Commit = rev
		}
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (b buildInfo) String() string {
	return fmt.Sprintf("podcreds %s (commit %s, %s, %s/%s)", b.Version, b.Commit, b.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// versionMain runs `podcreds version` (and `podcreds --version`).
func versionMain(args []string) int {
	fs := flag.NewFlagSet("podcreds version", flag.ContinueOnError)
	caBundle := fs.Bool("ca-bundle", false, "also load the system CA certificates the agent trusts for STS (SSL_CERT_FILE, SSL_CERT_DIR, else the OS bundle such as /etc/ssl/certs/ca-certificates.crt) and print how many there are; exit 1 if there are none")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: podcreds version [--ca-bundle]\n\nprints the version, commit and Go version this binary was built with\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "podcreds version: takes no arguments, got %q\n", strings.Join(fs.Args(), " "))
		return 2
	}
	fmt.Println(currentBuild())
	if *caBundle {
		n, err := systemRoots()
		if err != nil || n == 0 {
			fmt.Fprintf(os.Stderr, "podcreds: no system CA certificates (%v): the agent could not verify STS over TLS; install a CA bundle at /etc/ssl/certs/ca-certificates.crt or set SSL_CERT_FILE\n", err)
			return 1
		}
		fmt.Printf("system CA certificates: %d\n", n)
	}
	return 0
}

// systemRoots counts the certificates in the pool Go's TLS clients (the STS
// client among them) verify servers against by default.
func systemRoots() (int, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		return 0, err
	}
	// Subjects is deprecated because it cannot see the platform verifiers'
	// roots on macOS and Windows; on Linux, where the agent runs, the pool is
	// the files it loaded, and Subjects counts exactly those.
	//lint:ignore SA1019 see above
	return len(pool.Subjects()), nil
}
