// Package deps holds the project's chosen dependencies in go.mod while the
// packages that use them are being written, so parallel work never edits
// go.mod. It is deleted once every dependency has a real importer.
package deps

import (
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/sync/singleflight"
	_ "k8s.io/utils/clock/testing"
)
