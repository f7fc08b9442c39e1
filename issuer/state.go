package issuer

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// StateObject is where, beside the published documents, the publisher keeps
// its memory of keys. It holds only public keys and times. Bucket policies
// need not make it public.
const StateObject = "podcreds-issuer-state.json"

// stateVersion is written into every state object; another version is
// refused rather than guessed at.
const stateVersion = 1

// State is the publisher's memory: every key it publishes, and since when
// the API server has stopped serving it. A key the API server no longer
// serves stays published until it has been absent a whole overlap window.
// Only appearances and disappearances change it, so a steady cluster's
// state is never rewritten.
type State struct {
	Version int        `json:"version"`
	Issuer  string     `json:"issuer"`
	Keys    []KeyState `json:"keys"`
}

// KeyState is one remembered key.
type KeyState struct {
	ID        string         `json:"kid"`
	Members   map[string]any `json:"jwk"`
	FirstSeen time.Time      `json:"firstSeen"`
	// AbsentSince is when the publisher first found the key missing from
	// the API server; nil while it is served.
	AbsentSince *time.Time `json:"absentSince,omitempty"`
}

func parseState(b []byte, issuer string) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state object %s is not JSON: %w (delete it to start over; keys still published are kept for one window)", StateObject, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state object %s has version %d, this publisher understands %d", StateObject, s.Version, stateVersion)
	}
	if s.Issuer != issuer {
		return nil, fmt.Errorf("state object %s belongs to issuer %q, not %q: publish each issuer to its own prefix", StateObject, s.Issuer, issuer)
	}
	return &s, nil
}

// merge returns the next state: every key served now, and every remembered
// key absent for less than window. Keys found only in the published JWKS (a
// state object lost or never written) count as absent from now: forgetting
// them early could break tokens still in use, keeping them one window longer
// cannot. It also returns the kids dropped.
func merge(prev *State, published, served []Key, now time.Time, window time.Duration) (next *State, dropped []string) {
	now = now.UTC().Truncate(time.Second)
	byID := map[string]KeyState{}
	if prev != nil {
		for _, k := range prev.Keys {
			byID[k.ID] = k
		}
	}
	for _, k := range published {
		if _, ok := byID[k.ID]; !ok {
			byID[k.ID] = KeyState{ID: k.ID, Members: k.Members, FirstSeen: now}
		}
	}
	servedNow := map[string]bool{}
	for _, k := range served {
		servedNow[k.ID] = true
		ks, ok := byID[k.ID]
		if !ok {
			ks.FirstSeen = now
		}
		ks.ID, ks.Members, ks.AbsentSince = k.ID, k.Members, nil
		byID[k.ID] = ks
	}
	next = &State{Version: stateVersion}
	for id, k := range byID {
		if !servedNow[id] {
			if k.AbsentSince == nil {
				t := now
				k.AbsentSince = &t
			}
			if now.Sub(*k.AbsentSince) >= window {
				dropped = append(dropped, id)
				continue
			}
		}
		next.Keys = append(next.Keys, k)
	}
	sort.Slice(next.Keys, func(i, j int) bool { return next.Keys[i].ID < next.Keys[j].ID })
	sort.Strings(dropped)
	return next, dropped
}

// publishedKeys returns the state's keys as a JWKS's members.
func (s *State) publishedKeys() []Key {
	keys := make([]Key, len(s.Keys))
	for i, k := range s.Keys {
		keys[i] = Key{ID: k.ID, Members: k.Members}
	}
	return keys
}

// render writes the state object; equal states render to equal bytes.
func (s *State) render() []byte { return render(s) }
