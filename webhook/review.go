package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	admissionv1 "k8s.io/api/admission/v1"
)

// MaxReviewBytes bounds an AdmissionReview body. The API server refuses
// objects over 3 MiB and a CREATE review carries one object.
const MaxReviewBytes = 4 << 20

// badReview is input the webhook cannot act on: answered 400 with its
// message, never a crash and never a guess.
type badReview struct{ msg string }

func (e *badReview) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badReview{fmt.Sprintf(format, args...)} }

// decodeReview reads an AdmissionReview (admission.k8s.io/v1) for the
// creation of a core/v1 Pod and returns its request and the pod's view.
// Every other input is a *badReview saying what was expected.
func decodeReview(r io.Reader) (*admissionv1.AdmissionRequest, *podView, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxReviewBytes+1))
	if err != nil {
		return nil, nil, badf("reading the request body: %v", err)
	}
	if len(body) > MaxReviewBytes {
		return nil, nil, badf("request body exceeds %d bytes; an AdmissionReview for one pod is far smaller", MaxReviewBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, badf("empty request body; expected an AdmissionReview (admission.k8s.io/v1) as JSON")
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, nil, badf("malformed AdmissionReview: %v", err)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return nil, nil, badf("expected kind AdmissionReview of apiVersion admission.k8s.io/v1, got kind %q of %q; list admissionReviewVersions: [v1] in the webhook configuration",
			review.Kind, review.APIVersion)
	}
	req := review.Request
	if req == nil || req.UID == "" {
		return nil, nil, badf("AdmissionReview without a request or request.uid")
	}
	if req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return nil, nil, badf("this webhook admits core/v1 Pods only, got %s/%s %s (subresource %q); its configuration's rules must name only pods",
			req.Kind.Group, req.Kind.Version, req.Kind.Kind, req.SubResource)
	}
	if req.Operation != admissionv1.Create {
		return nil, nil, badf("this webhook admits pod CREATE only, got %s; its configuration's rules must name only CREATE", req.Operation)
	}
	if len(req.Object.Raw) == 0 {
		return nil, nil, badf("AdmissionReview request carries no object")
	}
	pod := &podView{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return nil, nil, badf("malformed pod in the AdmissionReview: %v", err)
	}
	return req, pod, nil
}
