package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

const (
	chartDir         = "../../deploy/helm/podcreds"
	chartAllFeatures = chartDir + "/ci/all-features.yaml"
)

// renderChart runs the pinned `helm template` into podcreds-system.
func renderChart(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	helm, err := testenv.Tool("helm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helm, append([]string{"template", "podcreds", chartDir, "--namespace", agentNamespace}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("helm template output: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// helmOnlyLabels are the bookkeeping labels the chart adds to every object's
// metadata (never to selectors or pod templates) and kustomize's manifests
// do not carry.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

// TestHelmAndKustomizeRenderTheSameAgent: `helm template` with the values
// that match deploy/kustomization.yaml (its image, and the namespace it
// creates) yields the same objects as `kubectl apply -k deploy/`, field for
// field, once Helm's bookkeeping labels are set aside. So the two ways to
// install cannot drift, and moving from one to the other changes nothing.
func TestHelmAndKustomizeRenderTheSameAgent(t *testing.T) {
	kustomized, err := renderKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	helmed := renderChart(t, "--set", "image.tag=latest", "--set", "namespace.create=true")

	key := func(o *unstructured.Unstructured) string {
		return o.GetKind() + " " + strings.TrimPrefix(o.GetNamespace()+"/"+o.GetName(), "/")
	}
	fromHelm := map[string]*unstructured.Unstructured{}
	for _, o := range helmed {
		o = o.DeepCopy()
		labels := o.GetLabels()
		for _, l := range helmOnlyLabels {
			if _, ok := labels[l]; !ok {
				t.Errorf("%s: the chart's label helper lost %s", key(o), l)
			}
			delete(labels, l)
		}
		o.SetLabels(labels)
		fromHelm[key(o)] = o
	}
	for _, k := range kustomized {
		h, ok := fromHelm[key(k)]
		if !ok {
			t.Errorf("kustomize renders %s, the chart does not", key(k))
			continue
		}
		delete(fromHelm, key(k))
		if !reflect.DeepEqual(k.Object, h.Object) {
			kj, _ := json.MarshalIndent(k.Object, "", "  ")
			hj, _ := json.MarshalIndent(h.Object, "", "  ")
			t.Errorf("%s differs:\n--- kustomize\n%s\n--- helm\n%s", key(k), kj, hj)
		}
	}
	for k := range fromHelm {
		t.Errorf("the chart renders %s, kustomize does not", k)
	}
}

// TestHelmChartPassesServerSideDryRun has the real API server admit every
// object the chart renders, with its default values and with every feature
// on (ci/all-features.yaml: ServiceMonitor, PrometheusRule, dashboard,
// namespace), by strict server-side dry run, warnings failing; then checks
// the DaemonSet keeps the properties the agent depends on.
func TestHelmChartPassesServerSideDryRun(t *testing.T) {
	ctx := ctxT(t)
	installMonitoringCRDs(ctx, t)
	if err := env.EnsureNamespace(ctx, agentNamespace); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default values", nil},
		{"all features", []string{"-f", chartAllFeatures}},
	} {
		t.Run(tc.name+" are admitted", func(t *testing.T) {
			objs := renderChart(t, tc.args...)
			dryRunAll(ctx, t, objs)
			var ds appsv1.DaemonSet
			decodeInto(t, mustFind(t, objs, "DaemonSet", agentNamespace, "podcreds"), &ds)
			checkDaemonSet(t, &ds)
		})
	}
	t.Run("all features scrape the agent on the node's address as job podcreds", func(t *testing.T) {
		objs := renderChart(t, "-f", chartAllFeatures)
		sm := mustFind(t, objs, "ServiceMonitor", agentNamespace, "podcreds")
		svc := mustFind(t, objs, "Service", agentNamespace, "podcreds-metrics")
		jobLabel, _, _ := unstructured.NestedString(sm.Object, "spec", "jobLabel")
		if svc.GetLabels()[jobLabel] != "podcreds" {
			t.Fatalf("the ServiceMonitor names its job from the Service's %q label, which is %q; the alert rules expect job=\"podcreds\"", jobLabel, svc.GetLabels()[jobLabel])
		}
		ds := mustFind(t, objs, "DaemonSet", agentNamespace, "podcreds")
		containers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
		args := fmt.Sprint(containers[0].(map[string]any)["args"])
		env := fmt.Sprint(containers[0].(map[string]any)["env"])
		if !strings.Contains(args, "--metrics-listen=$(HOST_IP):8091") || !strings.Contains(env, "status.hostIP") {
			t.Fatalf("the agent must listen for scrapes on $(HOST_IP):8091 with HOST_IP from status.hostIP: args %s env %s", args, env)
		}
		mustFind(t, objs, "PrometheusRule", agentNamespace, "podcreds")
		mustFind(t, objs, "ConfigMap", agentNamespace, "podcreds-dashboard")
	})
}

// installMonitoringCRDs creates the ServiceMonitor and PrometheusRule
// stand-ins (testdata/monitoring-crds.yaml) and waits until they serve.
func installMonitoringCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	crds, err := readManifests("testdata/monitoring-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dyn, mapper := dynamicClient(t, env.Config)
	for _, o := range crds {
		ri := resourceFor(t, dyn, mapper, o)
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: deployManager, Force: true}); err != nil {
			t.Fatalf("apply CRD %s: %v", o.GetName(), err)
		}
	}
	for _, o := range crds {
		ri := resourceFor(t, dyn, mapper, o)
		eventually(t, 30*time.Second, "CRD "+o.GetName()+" to be established", func() bool {
			got, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false
			}
			conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conditions {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return true
				}
			}
			return false
		})
	}
}
