package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

// handler answers AdmissionReviews for pod creation.
type handler struct {
	resolve  func(ctx context.Context, pod roles.Pod) error
	settings Settings
	metrics  *Metrics
	logger   *zap.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := h.serve(w, r)
	h.metrics.Admissions.WithLabelValues(result).Inc()
	h.metrics.Duration.Observe(time.Since(start).Seconds())
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) string {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an AdmissionReview (admission.k8s.io/v1) as JSON", http.StatusMethodNotAllowed)
		return ResultBad
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("Content-Type %q: expected application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return ResultBad
	}
	req, pod, err := decodeReview(r.Body)
	if err != nil {
		h.logger.Debug("bad admission request", zap.String("remote", r.RemoteAddr), zap.Error(err))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return ResultBad
	}
	ctx, cancel := context.WithTimeout(r.Context(), 8*time.Second)
	defer cancel()
	resp, result, err := h.admit(ctx, req, pod)
	if err != nil {
		h.logger.Warn("cannot decide on pod", zap.String("namespace", req.Namespace), zap.String("pod", pod.displayName()), zap.Error(err))
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return ResultError
	}
	if ce := h.logger.Check(zap.DebugLevel, "admitted"); ce != nil {
		reason := ""
		if resp.Result != nil {
			reason = resp.Result.Message
		}
		ce.Write(zap.String("namespace", req.Namespace), zap.String("pod", pod.displayName()), zap.String("result", result),
			zap.Strings("warnings", resp.Warnings), zap.String("reason", reason))
	}
	resp.UID = req.UID
	out, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "encoding the AdmissionReview response: "+err.Error(), http.StatusInternalServerError)
		return ResultError
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return result
}

// admit decides on one pod. An error means the decision could not be made
// (a ServiceAccount could not be read); the API server then applies the
// webhook's failurePolicy.
func (h *handler) admit(ctx context.Context, req *admissionv1.AdmissionRequest, pod *podView) (*admissionv1.AdmissionResponse, string, error) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if strings.TrimSpace(pod.Metadata.Labels[InjectLabel]) == "false" {
		return allow, ResultUnchanged, nil
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Metadata.Namespace
	}
	subject := subjectOf(namespace, pod)
	if leave, warning, err := leaveAlone(subject, h.resolve(ctx, subject)); err != nil {
		return nil, "", err
	} else if leave {
		if warning != "" {
			allow.Warnings = []string{warning}
		}
		return allow, ResultUnchanged, nil
	}
	ops, warnings, err := plan(pod, h.settings)
	var ref *refusal
	if errors.As(err, &ref) {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: "podcreds: " + ref.msg,
		}}, ResultRefused, nil
	}
	if err != nil {
		return nil, "", err
	}
	allow.Warnings = append(allow.Warnings, warnings...)
	if len(ops) == 0 {
		return allow, ResultUnchanged, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, "", err
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow, ResultInjected, nil
}

// leaveAlone applies the role decision's answer (roleErr) for subject: a
// pod the agent would refuse is admitted as it is, with a warning unless it
// simply has no role (most pods); a decision that could not be made is an
// error (the API server applies the failurePolicy).
func leaveAlone(subject roles.Pod, roleErr error) (leave bool, warning string, err error) {
	if roleErr == nil {
		return false, "", nil
	}
	fe := failure.From(roleErr)
	if fe.Retriable() {
		return true, "", fmt.Errorf("podcreds webhook cannot decide on pod %s/%s: %s; retry, or check the webhook's access to the Kubernetes API", subject.Namespace, subject.Name, fe.Message)
	}
	switch fe.Code {
	case "NoRole", "ServiceAccountNotFound":
		return true, "", nil
	}
	return true, "podcreds: not injected: " + fe.Message, nil
}

// subjectOf is what the webhook's role decision reads of a pod at its
// creation (the API server has not yet filled in the default
// ServiceAccount).
func subjectOf(namespace string, pod *podView) roles.Pod {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return roles.Pod{Namespace: namespace, Name: pod.displayName(), ServiceAccount: sa,
		RoleARN: strings.TrimSpace(pod.Metadata.Annotations[roles.PodRoleAnnotation])}
}
