package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/metrics"
)

// TestPodInformerForbiddenNamesTheGrant: an agent whose role cannot list
// pods says so in its own log, naming what to grant, while it stays unready.
func TestPodInformerForbiddenNamesTheGrant(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`cannot list resource "pods"`))
	})
	core, logs := observer.New(zapcore.InfoLevel)
	idx := NewPodIndex(kubeclientset.Wrap(client), "node-a", time.Millisecond, zap.New(core), metrics.New(prometheus.NewRegistry()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := idx.Start(ctx); err == nil {
		t.Fatal("the index synced without being allowed to list pods")
	}
	found := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(found) == 0 || !strings.Contains(found[0].Message, "grant list and watch on pods") {
		t.Fatalf("log: %v", logs.All())
	}
}
