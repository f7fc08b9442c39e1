package webhook

// The webhook's view of a pod: only what the injection reads. The patch it
// answers with addresses fields by position, so everything else in the pod
// (fields this view does not know included) is left exactly as it was.

type podView struct {
	Metadata struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string          `json:"serviceAccountName"`
		Containers         []containerView `json:"containers"`
		InitContainers     []containerView `json:"initContainers"`
		Volumes            []volumeView    `json:"volumes"`
	} `json:"spec"`
}

type containerView struct {
	Name         string      `json:"name"`
	Env          []envVar    `json:"env"`
	VolumeMounts []mountView `json:"volumeMounts"`
}

// envVar is written into patches as well as read: a literal value.
type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// mountView is written into patches as well as read.
type mountView struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type volumeView struct {
	Name      string `json:"name"`
	Projected *struct {
		Sources []struct {
			ServiceAccountToken *struct {
				Audience string `json:"audience"`
				Path     string `json:"path"`
			} `json:"serviceAccountToken"`
		} `json:"sources"`
	} `json:"projected"`
}

// isOurs reports whether v is the token volume this webhook injects (an
// earlier invocation's), as opposed to a user's volume of the same name.
func (v *volumeView) isOurs(audience string) bool {
	if v.Projected == nil || len(v.Projected.Sources) != 1 {
		return false
	}
	t := v.Projected.Sources[0].ServiceAccountToken
	return t != nil && t.Audience == audience && t.Path == TokenFileName
}

// displayName names the pod in messages; at creation it may have only a
// generateName.
func (p *podView) displayName() string {
	if p.Metadata.Name != "" {
		return p.Metadata.Name
	}
	if p.Metadata.GenerateName != "" {
		return p.Metadata.GenerateName + "<generated>"
	}
	return "<unnamed>"
}
