package democlient_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
)

func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

func TestWhoami(t *testing.T) {
	tests := []struct {
		name, token, want string
		wantErr           bool
	}{
		{name: "a MinIO session token names the ServiceAccount", token: jwt(`{"accessKey":"X","sub":"system:serviceaccount:ns:sa","exp":1}`), want: "system:serviceaccount:ns:sa"},
		{name: "padded base64 is tolerated", token: "e30." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"me"}`)) + ".sig", want: "me"},
		{name: "an opaque AWS token cannot tell", token: "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ", wantErr: true},
		{name: "an empty token cannot tell", token: "", wantErr: true},
		{name: "a JWT without sub cannot tell", token: jwt(`{"accessKey":"X"}`), wantErr: true},
		{name: "a JWT with a numeric sub cannot tell", token: jwt(`{"sub":42}`), wantErr: true},
		{name: "a JWT with an empty sub cannot tell", token: jwt(`{"sub":""}`), wantErr: true},
		{name: "a payload that is not base64 cannot tell", token: "a.!!!.c", wantErr: true},
		{name: "a payload that is not JSON cannot tell", token: jwt(`not json`), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := democlient.Whoami(tc.token)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("Whoami = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// FuzzWhoami: the token comes from the network; parsing it must not panic,
// and no error may echo it (errors end up in logs, tokens must not).
func FuzzWhoami(f *testing.F) {
	f.Add(jwt(`{"sub":"system:serviceaccount:ns:sa"}`))
	f.Add(jwt(`{"sub":null}`))
	f.Add("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ")
	f.Add("..")
	f.Add("a.b=.c")
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := democlient.Whoami(token)
		if err != nil {
			if sub != "" {
				t.Fatalf("error %v with a subject %q", err, sub)
			}
			if len(token) >= 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("error %q echoes the token", err)
			}
			return
		}
		if sub == "" {
			t.Fatal("no error and no subject")
		}
	})
}
