package main

import (
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
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			fmt.Println("usage: podcreds version\n\nprints the version, commit and Go version this binary was built with")
			return 0
		}
		fmt.Fprintf(os.Stderr, "podcreds version: takes no arguments, got %q\n", strings.Join(args, " "))
		return 2
	}
	fmt.Println(currentBuild())
	return 0
}
