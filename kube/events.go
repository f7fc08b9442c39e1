package kube

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Event is an events.k8s.io/v1 Event with the fields the agent writes. (The
// generated type would link k8s.io/api/core/v1 for its ObjectReference, and
// client-go's tools/events the whole generated clientset, which package
// kube exists to keep out of the agent.)
type Event struct {
	metav1.TypeMeta     `json:",inline"`
	metav1.ObjectMeta   `json:"metadata"`
	EventTime           metav1.MicroTime `json:"eventTime"`
	Series              *EventSeries     `json:"series,omitempty"`
	ReportingController string           `json:"reportingController"`
	ReportingInstance   string           `json:"reportingInstance"`
	Action              string           `json:"action"`
	Reason              string           `json:"reason"`
	Regarding           ObjectReference  `json:"regarding"`
	Note                string           `json:"note,omitempty"`
	Type                string           `json:"type"`
}

// EventSeries counts the repeats of an Event.
type EventSeries struct {
	Count            int32            `json:"count"`
	LastObservedTime metav1.MicroTime `json:"lastObservedTime"`
}

// ObjectReference names the object an Event is about.
type ObjectReference struct {
	Kind       string    `json:"kind"`
	APIVersion string    `json:"apiVersion"`
	Namespace  string    `json:"namespace"`
	Name       string    `json:"name"`
	UID        types.UID `json:"uid"`
}

// Events writes events.k8s.io/v1 Events: exactly the create and patch the
// agent's RBAC grants.
type Events interface {
	CreateEvent(ctx context.Context, ev *Event) error
	// PatchEventSeries sets the series of an Event created earlier.
	PatchEventSeries(ctx context.Context, namespace, name string, series EventSeries) error
}

// NewEvents returns an Events client for cfg (keeping its QPS, Burst,
// UserAgent and credentials).
func NewEvents(cfg *rest.Config) (Events, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &eventsV1
	c.APIPath = "/apis"
	c.NegotiatedSerializer = codecs.WithoutConversion()
	c.ContentType, c.AcceptContentTypes = "application/json", "application/json"
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes events client: %w", err)
	}
	return &eventsClient{rc: rc}, nil
}

var eventsV1 = schema.GroupVersion{Group: "events.k8s.io", Version: "v1"}

type eventsClient struct{ rc *rest.RESTClient }

func (c *eventsClient) CreateEvent(ctx context.Context, ev *Event) error {
	ev.APIVersion, ev.Kind = "events.k8s.io/v1", "Event"
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return c.rc.Post().Namespace(ev.Namespace).Resource("events").Body(body).Do(ctx).Error()
}

func (c *eventsClient) PatchEventSeries(ctx context.Context, namespace, name string, series EventSeries) error {
	body, err := json.Marshal(map[string]EventSeries{"series": series})
	if err != nil {
		return err
	}
	return c.rc.Patch(types.MergePatchType).Namespace(namespace).Resource("events").Name(name).Body(body).Do(ctx).Error()
}
